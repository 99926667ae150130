//! `plan --out FILE` and `apply FILE`: saving a plan, and applying exactly a saved plan (no prompt:
//! it was reviewed when saved), or refusing it when it is stale. The staleness check itself runs
//! under the apply lock, in [`super::apply_under_lock`]; see [`crate::saved_plan`].

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::{Exit, Locked, apply_under_lock, load_config, open_stores, print_report, refuse_plan_errors, user_error};
use crate::actual::Actual;
use crate::cli::{ApplyArgs, Cli, PlanArgs, ReadArgs};
use crate::desired::Desired;
use crate::plan::Plan;
use crate::render::Style;
use crate::render_json::{ApplyDocument, ApplyResult, to_pretty};
use crate::saved_plan::{self, SavedGuard, SavedPlan};
use crate::store::Store;

/// Writes the saved plan of `p`, computed from `actual` (just read from `store`).
pub(super) async fn save(
    cli: &Cli,
    args: &PlanArgs,
    desired: &Desired,
    store: Option<&Store>,
    actual: &Actual,
    p: &Plan,
    out: &Path,
) -> Result<()> {
    let basis = saved_plan::basis(store, actual, p).await?;
    let saved = SavedPlan::new(p, basis, &cli.config, &desired.config_hash, args.read.deep);
    saved.write(out)?;
    if !cli.quiet {
        eprintln!(
            "\nSaved the plan to: {}\n\nTo perform exactly these actions, run:\n  cozyform apply {}",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// `apply FILE`.
pub(super) async fn apply_saved(cli: &Cli, args: &ApplyArgs, file: &Path, color: bool) -> Result<Exit> {
    if !args.read.target.is_empty() || args.read.deep {
        return Err(user_error(
            "--target and --deep cannot be given with a saved plan: they are recorded in it",
            format!("run: cozyform apply {}", file.display()),
        ));
    }
    let saved = SavedPlan::read(file)?;
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let desired = &loaded.desired;
    saved.check_config(&cli.config, &desired.config_hash)?;
    let p = saved.internal.clone();
    super::warn_targets(cli, &p);
    let st = Style::new(color);
    refuse_plan_errors(&p)?;
    // As Terraform does, the saved plan is not printed again: it was reviewed when saved, and a stale
    // one is refused before anything is shown as if it were to happen.
    if !cli.quiet {
        let s = p.summary();
        eprintln!(
            "Applying the saved plan {} ({} to add, {} to change, {} to destroy)...",
            file.display(),
            s.add,
            s.change,
            s.destroy
        );
    }
    let guard = SavedGuard {
        read: ReadArgs {
            deep: saved.read.deep,
            target: saved.read.targets.clone(),
            ..args.read.clone()
        },
        saved,
    };
    // A saved plan is applied without a prompt, like --auto-approve: the destroy limit holds.
    let safety = super::effective_safety(&loaded.safety, args);
    super::destroy_limit(&p, &safety, true)?;
    let existing = open_stores(desired, false, cli.verbose > 0).await?;
    let outcome = apply_under_lock(existing, desired, args, &p, cli.verbose > 0, Some(&guard), &safety).await;
    let print_doc = |result: ApplyResult| -> Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(to_pretty(&ApplyDocument::new(&p, result)).as_bytes())?;
        out.flush()?;
        Ok(())
    };
    match outcome? {
        Locked::Stale(reasons) => {
            if args.json {
                print_doc(ApplyResult::new(None, false))?;
            }
            Err(saved_plan::stale_error(file, &reasons))
        }
        Locked::StateChanged => {
            if args.json {
                print_doc(ApplyResult::new(None, false))?;
            }
            Err(saved_plan::stale_error(
                file,
                &["the plan computed now differs from the saved one (e.g. a folder on disk changed)".to_string()],
            ))
        }
        Locked::Applied(report) => {
            if args.json {
                print_doc(ApplyResult::new(Some(&report), true))?;
            } else {
                print_report(&report, st);
            }
            if report.failed() > 0 {
                if args.json {
                    eprintln!(
                        "error: apply failed for {} instance(s); see result.instances. Run plan to see what remains.",
                        report.failed()
                    );
                }
                return Ok(1);
            }
            Ok(0)
        }
    }
}
