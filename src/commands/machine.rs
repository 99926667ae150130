//! `apply --json`: the same pipeline as `apply`, with one JSON document on stdout instead of the
//! human plan and report. Messages (warnings, errors) stay on stderr.

use std::io::Write;

use anyhow::{Context, Result};

use super::{Exit, compute, load_config, open_store, refuse_plan_errors, user_error};
use crate::apply::{self, ApplyOptions};
use crate::cli::{ApplyArgs, Cli};
use crate::desired::Desired;
use crate::plan::Plan;
use crate::render_json::{ApplyDocument, ApplyResult, to_pretty};
use crate::store::Store;

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
    let existing = open_store(desired, false, cli.verbose > 0).await?;
    let (_actual, p) = compute(desired, existing.as_ref(), &args.read).await?;
    if !p.errors.is_empty() {
        print_doc(&p, ApplyResult::new(None, false))?;
        refuse_plan_errors(&p)?;
    }
    if !p.has_changes() {
        print_doc(&p, ApplyResult::new(None, true))?;
        return Ok(0);
    }
    let store = match existing {
        Some(s) => s,
        None => open_store(desired, true, cli.verbose > 0)
            .await?
            .context("the store could not be created")?,
    };
    let lock = crate::lock::acquire(&store, "apply", args.lock_timeout)
        .await
        .map_err(|e| match e.downcast_ref::<crate::lock::Locked>() {
            Some(l) => {
                let id = l.0.id.clone();
                user_error(
                    format!("{e}"),
                    format!(
                        "wait for that run to end (or pass --lock-timeout 5m); if it died, run: cozyform force-unlock {id}"
                    ),
                )
            }
            None => e,
        })?;
    let result = apply_locked(&store, desired, args, &p).await;
    let released = crate::lock::release(&store, &lock).await;
    let code = result?;
    released.context("releasing the lock")?;
    Ok(code)
}

/// Under the lock: re-plan, refuse if the state changed, apply, print the document.
async fn apply_locked(store: &Store, desired: &Desired, args: &ApplyArgs, shown: &Plan) -> Result<Exit> {
    let (_actual, p) = compute(desired, Some(store), &args.read).await?;
    if p.instances != shown.instances || p.errors != shown.errors {
        print_doc(shown, ApplyResult::new(None, false))?;
        return Err(user_error(
            "the state changed while the lock was taken (another run or cozy-stack wrote meanwhile); nothing was applied",
            "run apply again",
        ));
    }
    let opts = ApplyOptions::new(args.read.parallelism as usize, desired.fs_root.clone());
    let report = apply::apply(store, desired, &p, &opts).await;
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
