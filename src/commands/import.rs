//! `cozyform import`: picks the instances, reads them, and prints or writes their declaration
//! (built by [`crate::import`]). `--write` replaces the config file atomically (temp file, fsync,
//! rename) and only if nobody changed it meanwhile.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Exit, load_config, open_stores, user_error};
use crate::actual::{self, ReadOptions};
use crate::cli::{Cli, ImportArgs};
use crate::config::parse::base_dir;
use crate::domain::validate_domain;

/// Replaces `path` by `text` atomically (temp file + rename), failing if its content is no longer
/// `expected` (someone edited it while import read the instances).
fn write_atomically(path: &Path, expected: &str, text: &str) -> Result<()> {
    let now = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if now != expected {
        anyhow::bail!(
            "{} changed while cozyform was importing; nothing was written",
            path.display()
        );
    }
    crate::atomic_file::write(path, text.as_bytes())
}

pub(super) async fn import_cmd(cli: &Cli, args: &ImportArgs) -> Result<Exit> {
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let desired = &loaded.desired;
    let src = std::fs::read_to_string(&cli.config).with_context(|| format!("reading {}", cli.config.display()))?;
    let Some(stores) = open_stores(desired, false, cli.verbose > 0).await? else {
        return Err(user_error(
            "there is nothing to import: the embedded store does not exist yet",
            "import reads existing instances; point [couchdb] url at the server that holds them",
        ));
    };
    let mut opts = ReadOptions {
        parallelism: args.parallelism as usize,
        ..Default::default()
    };
    // Instances that the file declares, or renames from: never imported.
    let declared: BTreeSet<&str> = desired
        .instances
        .values()
        .flat_map(|w| std::iter::once(w.domain.as_str()).chain(w.renamed_from.as_deref()))
        .collect();
    let mut domains: Vec<String> = Vec::new();
    if args.all {
        let first = actual::read_actual_in(&stores, &desired.fs_root, &opts).await?;
        let skipped = first
            .instances
            .iter()
            .filter(|i| declared.contains(i.domain.as_str()))
            .count();
        domains = first
            .instances
            .iter()
            .map(|i| i.domain.clone())
            .filter(|d| !declared.contains(d.as_str()))
            .collect();
        if skipped > 0 && !cli.quiet {
            eprintln!(
                "{skipped} existing instance(s) already declared in {}: skipped.",
                cli.config.display()
            );
        }
    } else {
        for raw in &args.domains {
            let d = validate_domain(raw)
                .map_err(|e| user_error(format!("invalid domain {raw:?}: {e}"), "give the instance's domain"))?;
            if declared.contains(d.as_str()) {
                return Err(user_error(
                    format!("{d} is already declared in {}", cli.config.display()),
                    "import only adds instances the file does not declare; edit its table instead",
                ));
            }
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
    }
    opts.settings_for = domains.iter().cloned().collect();
    let mut actual = actual::read_actual_in(&stores, &desired.fs_root, &opts).await?;
    for f in &actual.findings {
        if f.domain.as_ref().is_some_and(|d| domains.contains(d)) && !cli.quiet {
            eprintln!("warning: {}: {}", f.domain.as_deref().unwrap_or(""), f.message);
        }
    }
    let by_domain = actual.by_domain();
    for d in &domains {
        if by_domain.contains_key(d.as_str()) {
            continue;
        }
        if actual.ambiguous.contains(d) {
            return Err(user_error(
                format!("several instance docs claim {d}"),
                "remove the extra instance docs first (see the warnings of plan)",
            ));
        }
        if let Some(owner) = actual.instances.iter().find(|i| i.aliases().contains(d)) {
            return Err(user_error(
                format!("{d} is an alias of the instance {}", owner.domain),
                format!("import it as --domain {}", owner.domain),
            ));
        }
        return Err(user_error(
            format!("no instance {d} in {}", stores.main.describe()),
            "check the domain; plan lists the existing instances the file does not declare as unmanaged",
        ));
    }
    // A doc whose domain is not in normal form cannot be declared under it (the config would
    // normalize it to another instance).
    domains.retain(|d| match validate_domain(d) {
        Ok(n) if n == *d => true,
        Ok(n) => {
            eprintln!(
                "warning: {d}: not imported: its domain is not normalized (cozy-stack would look it up as {n:?})"
            );
            false
        }
        Err(e) => {
            eprintln!("warning: {d:?}: not imported: {e}");
            false
        }
    });
    if domains.is_empty() {
        if !cli.quiet {
            eprintln!("Nothing to import: every existing instance is declared.");
        }
        return Ok(0);
    }
    // The installed apps and konnectors of each imported instance, declared with it.
    let prefixes: Vec<(String, u32, String)> = {
        let by_domain = actual.by_domain();
        domains
            .iter()
            .filter(|d| {
                let h = by_domain[d.as_str()];
                let complete = [crate::apps::AppKind::Webapp, crate::apps::AppKind::Konnector]
                    .iter()
                    .all(|k| h.doctypes.contains(k.doctype()));
                if !complete {
                    eprintln!(
                        "warning: {d}: its io.cozy.apps or io.cozy.konnectors database is missing (plan repairs it): its apps are not imported"
                    );
                }
                complete
            })
            .map(|d| {
                let h = by_domain[d.as_str()];
                (d.clone(), crate::clusters::couch_cluster_of(&h.doc), h.db_prefix.clone())
            })
            .collect()
    };
    for (d, cluster, prefix) in &prefixes {
        let apps = crate::apps::actual::read_instance_apps(&stores, *cluster, prefix)
            .await
            .with_context(|| format!("reading the apps of {d}"))?;
        actual.apps.installed.insert(d.clone(), apps);
    }
    let env = |k: &str| std::env::var(k).ok();
    let imported = crate::import::import(&src, &cli.config, &base_dir(&cli.config), &env, &actual, &domains).await?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    if args.write {
        write_atomically(&cli.config, &src, &imported.config)?;
        if !cli.quiet {
            eprintln!(
                "Added {} instance(s) to {}. Run cozyform plan: it shows no change for them{}.",
                domains.len(),
                cli.config.display(),
                if imported.warnings.iter().any(|w| w.contains("plan will not be empty")) {
                    ", except as warned above"
                } else {
                    ""
                }
            );
        }
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(imported.snippet.as_bytes())?;
        out.flush()?;
    }
    Ok(0)
}
