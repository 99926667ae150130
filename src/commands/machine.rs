//! `apply --json`: the same pipeline as `apply`, with one JSON document on stdout instead of the
//! human plan and report. Messages (warnings, errors) stay on stderr.

use std::io::Write;

use anyhow::Result;

use super::{
    Exit, Locked, apply_under_lock, compute, load_config, open_stores, refuse_plan_errors, state_changed, user_error,
};
use crate::cli::{ApplyArgs, Cli};
use crate::plan::Plan;
use crate::render_json::{ApplyDocument, ApplyResult, to_pretty};

fn print_doc(p: &Plan, result: ApplyResult) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(to_pretty(&ApplyDocument::new(p, result)).as_bytes())?;
    out.flush()?;
    Ok(())
}

pub(super) async fn apply_json(cli: &Cli, args: &ApplyArgs) -> Result<Exit> {
    if !args.auto_approve {
        return Err(user_error(
            "apply --json cannot ask for a confirmation",
            "review the plan (plan --json), then run apply --auto-approve --json",
        ));
    }
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let desired = &loaded.desired;
    let existing = open_stores(desired, false, cli.verbose > 0).await?;
    let (_actual, p) = compute(desired, existing.as_ref(), &args.read).await?;
    super::warn_targets(cli, &p);
    if !p.errors.is_empty() {
        print_doc(&p, ApplyResult::new(None, false))?;
        refuse_plan_errors(&p)?;
    }
    if !p.has_changes() {
        print_doc(&p, ApplyResult::new(None, true))?;
        return Ok(0);
    }
    let safety = super::effective_safety(&loaded.safety, args);
    if let Err(e) = super::destroy_limit(&p, &safety, true) {
        print_doc(&p, ApplyResult::new(None, false))?;
        return Err(e);
    }
    match apply_under_lock(existing, desired, args, &p, cli.verbose > 0, None, &safety).await? {
        Locked::StateChanged | Locked::Stale(_) => {
            print_doc(&p, ApplyResult::new(None, false))?;
            Err(state_changed())
        }
        Locked::Applied(report) => {
            print_doc(&p, ApplyResult::new(Some(&report), true))?;
            if report.failed() > 0 {
                eprintln!(
                    "error: apply failed for {} instance(s); see result.instances. Run plan to see what remains.",
                    report.failed()
                );
                return Ok(1);
            }
            Ok(0)
        }
    }
}
