//! `cozyform show <domain>`: one instance's actual state, for people or (`--json`) machines. Secrets
//! are never printed: the instance doc is shown without them, and only their names are listed.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use super::{Exit, load_config, open_stores, user_error};
use crate::actual::{self, Observed, ReadOptions};
use crate::cli::{Cli, ShowArgs};
use crate::domain::validate_domain;
use crate::layout;
use crate::store::PathSelector;

pub(super) async fn show_cmd(cli: &Cli, args: &ShowArgs) -> Result<Exit> {
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let desired = &loaded.desired;
    let wanted = validate_domain(&args.domain).map_err(|e| {
        user_error(
            format!("invalid domain {:?}: {e}", args.domain),
            "give the instance's domain",
        )
    })?;
    let Some(stores) = open_stores(desired, false, cli.verbose > 0).await? else {
        return Err(user_error(
            format!("no instance {wanted}: the embedded store does not exist yet"),
            "run cozyform apply to create the instances of the config file",
        ));
    };
    let mut opts = ReadOptions {
        deep: args.deep,
        parallelism: 1,
        ..Default::default()
    };
    let first = actual::read_actual_in(&stores, &desired.fs_root, &opts).await?;
    if first.ambiguous.contains(&wanted) {
        return Err(user_error(
            format!("several instance docs claim {wanted}"),
            "remove the extra instance docs (see the warnings of plan)",
        ));
    }
    let domain = first
        .instances
        .iter()
        .find(|i| i.domain == wanted)
        .or_else(|| first.instances.iter().find(|i| i.aliases().contains(&wanted)))
        .map(|i| i.domain.clone())
        .ok_or_else(|| {
            user_error(
                format!("no instance {wanted} in {}", stores.main.describe()),
                "check the domain (an alias is accepted too)",
            )
        })?;
    // Read again, with the settings doc (and --deep) for that one instance only.
    opts.settings_for.insert(domain.clone());
    let actual = if args.deep {
        first
    } else {
        actual::read_actual_in(&stores, &desired.fs_root, &opts).await?
    };
    let inst = actual
        .instances
        .iter()
        .find(|i| i.domain == domain)
        .context("the instance disappeared while it was read")?;

    // Names of the secrets present (values never leave the store client).
    let raw = stores
        .main
        .get_doc(layout::GLOBAL_INSTANCES_DB, &inst.id)
        .await
        .context("reading the instance doc")?
        .unwrap_or(Value::Null);
    let secrets: Vec<&str> = layout::SECRET_KEYS
        .iter()
        .copied()
        .filter(|k| raw.get(*k).is_some_and(|v| !v.is_null()))
        .collect();

    let missing: Vec<&str> = layout::INSTANCE_DOCTYPES
        .iter()
        .copied()
        .filter(|dt| !inst.doctypes.contains(*dt))
        .collect();
    let known: Vec<String> = layout::INSTANCE_DOCTYPES
        .iter()
        .map(|dt| layout::db_name(&inst.db_prefix, dt))
        .collect();
    let all = inst.databases();
    let other: Vec<&String> = all.iter().filter(|d| !known.contains(d)).collect();

    let locale = inst.doc.get_str("locale").unwrap_or(layout::DEFAULT_LOCALE);
    let names = layout::default_dir_names(locale);
    let files_db = layout::db_name(&inst.db_prefix, layout::FILES);
    let mut default_dirs = Vec::new();
    for name in [names.administrative, names.photos] {
        let path = format!("/{name}");
        let docs = if inst.doctypes.contains(layout::FILES) {
            stores
                .for_instance(&inst.doc)
                .find_by_path(&files_db, PathSelector::Eq(&path))
                .await
                .with_context(|| format!("reading {files_db}"))?
        } else {
            vec![]
        };
        default_dirs.push(json!({
            "path": path,
            "doc_id": docs.first().and_then(|d| d.get("_id")).cloned().unwrap_or(Value::Null),
            "folder": crate::fsops::subdir_exists(&desired.fs_root, &inst.domain, name),
        }));
    }

    let settings = match &inst.settings {
        Observed::Present(m) => Value::Object((**m).clone()),
        _ => Value::Null,
    };
    let findings: Vec<&String> = actual
        .findings
        .iter()
        .filter(|f| f.domain.as_deref() == Some(inst.domain.as_str()))
        .map(|f| &f.message)
        .collect();
    let folder = desired.fs_root.join(&inst.domain);
    let doc = json!({
        "domain": inst.domain,
        "id": inst.id,
        "rev": inst.rev,
        "db_prefix": inst.db_prefix,
        "declared": desired.instances.contains_key(&inst.domain),
        "instance_doc": Value::Object(inst.doc.to_map()),
        "secrets_present": secrets,
        "settings": settings,
        "databases": {
            // The `[[couchdb.clusters]]` index holding them; null without clusters (main URL).
            "cluster": (!stores.clusters.is_empty()).then(|| crate::clusters::couch_cluster_of(&inst.doc)),
            "present": inst.doctypes,
            "missing": missing,
            "other": other,
        },
        "folder": {
            "path": folder.display().to_string(),
            "exists": inst.fs.root,
            "trash": inst.fs.trash,
            "symlink": inst.fs.symlink,
        },
        "default_dirs": default_dirs,
        "deep": inst.deep,
        "findings": findings,
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(crate::render_json::to_pretty(&doc).as_bytes())?;
    } else {
        out.write_all(render_text(&doc).as_bytes())?;
    }
    out.flush()?;
    Ok(0)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn render_map(out: &mut String, m: &Map<String, Value>, indent: &str) {
    for (k, v) in m {
        out.push_str(&format!("{indent}{k} = {}\n", scalar(v)));
    }
}

fn render_text(d: &Value) -> String {
    let mut out = String::new();
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    out.push_str(&format!("instance \"{}\"\n", s("domain")));
    out.push_str(&format!("  id = {:?}, rev = {:?}\n", s("id"), s("rev")));
    out.push_str(&format!("  database prefix = {:?}\n", s("db_prefix")));
    out.push_str(&format!(
        "  declared in the config file: {}\n",
        if d["declared"] == json!(true) { "yes" } else { "no" }
    ));
    out.push_str("\ninstance doc (global/instances):\n");
    if let Some(m) = d["instance_doc"].as_object() {
        render_map(&mut out, m, "  ");
    }
    let secrets: Vec<&str> = d["secrets_present"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !secrets.is_empty() {
        out.push_str(&format!("  ({} present, not shown)\n", secrets.join(", ")));
    }
    out.push_str("\nsettings doc (io.cozy.settings.instance):\n");
    match d["settings"].as_object() {
        Some(m) if m.is_empty() => out.push_str("  (empty)\n"),
        Some(m) => render_map(&mut out, m, "  "),
        None => out.push_str("  (missing)\n"),
    }
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let present = list(&d["databases"]["present"]);
    let missing = list(&d["databases"]["missing"]);
    let other = list(&d["databases"]["other"]);
    out.push_str(&format!(
        "\ndatabases: {} of {} present{}\n",
        present.len(),
        present.len() + missing.len(),
        match d["databases"]["cluster"].as_u64() {
            Some(n) => format!(" (on cluster {n})"),
            None => String::new(),
        }
    ));
    if !missing.is_empty() {
        out.push_str(&format!("  missing: {}\n", missing.join(", ")));
    }
    if !other.is_empty() {
        out.push_str(&format!("  other databases with this prefix: {}\n", other.join(", ")));
    }
    let f = &d["folder"];
    out.push_str(&format!("\nfolder {}\n", f["path"].as_str().unwrap_or("")));
    if f["symlink"] == json!(true) {
        out.push_str("  is a symbolic link (cozyform does not act through it)\n");
    } else {
        out.push_str(&format!(
            "  exists: {}, .cozy_trash: {}\n",
            f["exists"] == json!(true),
            f["trash"] == json!(true)
        ));
    }
    for dd in d["default_dirs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  default directory {}: doc {}, folder {}\n",
            dd["path"].as_str().unwrap_or(""),
            if dd["doc_id"].is_null() { "missing" } else { "present" },
            if dd["folder"] == json!(true) {
                "present"
            } else {
                "missing"
            },
        ));
    }
    if !d["deep"].is_null() {
        out.push_str(&format!("\n--deep: {}\n", d["deep"]));
    }
    for f in d["findings"].as_array().into_iter().flatten() {
        out.push_str(&format!("\nwarning: {}\n", f.as_str().unwrap_or("")));
    }
    out
}
