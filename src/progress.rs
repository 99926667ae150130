//! Progress on stderr (indicatif) for long plans and applies: instances done out of total, the
//! current operation and an ETA. One bar per process, shared by the stages that report on it (the
//! actual-state reader, the executor) so that their signatures stay free of UI concerns.
//!
//! The bar exists only when [`configure`] enabled it: stderr is a terminal, and neither `--json`,
//! `-q` nor `--no-progress` was given. Otherwise every function here is a no-op, except
//! [`log_line`], which then writes the line to stderr as is. Log lines (`-v`) go through
//! [`log_line`] so that they print above the bar instead of garbling it.

use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Decides once per process whether progress is shown.
pub fn configure(enabled: bool) {
    ENABLED.store(enabled, Ordering::SeqCst);
}

fn bar() -> Option<ProgressBar> {
    BAR.lock().ok().and_then(|b| b.clone())
}

/// Starts (or restarts) the bar for a phase of `len` instances; `len = 0` shows a spinner only.
pub fn stage(len: u64, msg: impl Into<Cow<'static, str>>) {
    if !ENABLED.load(Ordering::SeqCst) {
        return;
    }
    let Ok(mut slot) = BAR.lock() else { return };
    let pb = slot.get_or_insert_with(|| {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let style = if len == 0 {
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
    } else {
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} instances, {eta} left")
    };
    if let Ok(style) = style {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.reset();
    pb.set_length(len);
    pb.set_position(0);
    pb.set_message(msg);
}

/// One more instance done.
pub fn inc() {
    if let Some(pb) = bar() {
        pb.inc(1);
    }
}

/// The current operation.
pub fn message(msg: impl Into<Cow<'static, str>>) {
    if let Some(pb) = bar() {
        pb.set_message(msg);
    }
}

/// Removes the bar (before printing a plan, asking a question or ending).
pub fn finish() {
    if let Some(pb) = BAR.lock().ok().and_then(|mut b| b.take()) {
        pb.finish_and_clear();
    }
}

/// Writes a log line to stderr, above the bar when there is one.
pub fn log_line(line: &str) {
    match bar() {
        Some(pb) => pb.println(line),
        None => eprintln!("{line}"),
    }
}

/// With `COZYFORM_TIMINGS` set, logs how long a phase took (`timing: <phase> <duration>`), for
/// benchmarks and profiling of large fleets.
pub fn timing(phase: &str, since: std::time::Instant) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("COZYFORM_TIMINGS").is_some()) {
        // On Linux, the resident memory now and at its peak so far, to see which phase costs it.
        let mem = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .filter(|l| l.starts_with("VmRSS:") || l.starts_with("VmHWM:"))
                    .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join(" kB, ")
                    + " kB"
            })
            .unwrap_or_default();
        log_line(&format!("timing: {phase} {:?} ({mem})", since.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_progress_creates_no_bar() {
        configure(false);
        stage(10, "reading");
        inc();
        message("x");
        assert!(bar().is_none());
        finish();
    }
}
