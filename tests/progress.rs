//! Progress bars stay off stderr when it is not a terminal (as here), with or without
//! `--no-progress`, and `-v` request logs still come out whole, one per line.

mod common;

use common::*;

#[test]
fn no_bar_when_stderr_is_not_a_terminal_and_logs_stay_whole() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", "[instances.\"a.example\"]\nemail = \"a@example.com\"\n");
    ws.apply_ok();
    for extra in [&[][..], &["--no-progress"][..]] {
        let out = ws.cmd().args(["-v", "plan", "--deep"]).args(extra).output().unwrap();
        assert!(out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            !err.contains('\r') && !err.contains('\u{1b}'),
            "no bar drawing: {err:?}"
        );
        assert!(!err.contains("instances,"), "{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines.iter().filter(|l| l.starts_with("http: ")).count() > 10, "{err}");
        assert!(
            lines.iter().all(|l| l.starts_with("http: ")),
            "only whole log lines: {err}"
        );
    }
}
