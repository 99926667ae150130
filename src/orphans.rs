//! Leftovers (actual-state reading and their removal by the executor): databases `cozy<hex>/…` and
//! folders `<fs_root>/<name>` that no instance doc claims.
//!
//! They appear when a create was interrupted before its instance doc was written (steps 1–3 of
//! the create, see [`crate::apply`]) and the instance was then removed from the configuration, or
//! when something else left them behind.
//!
//! # The rule: remove only what holds nothing but cozyform's own writes
//! A leftover is *removable* when it cannot hold anybody's data:
//! - a database set: cozyform's create mark for the prefix is in `global/instances` (see
//!   [`create_mark_id`]: written before a create's first step, deleted once its instance doc is
//!   written, never written by cozy-stack, whose own creates also make databases before the
//!   instance doc), and every database of the prefix holds only design docs, the settings doc, the
//!   root and trash directory docs, and the docs whose ids cozyform derives from that prefix (the
//!   Administrative and Photos directories, the "myself" contact) — exactly what an interrupted
//!   create writes. The prefix must have cozyform's (and cozy-stack's) shape, `cozy` + 32 hex.
//! - a folder: it holds only directories (no file, no symlink), at most [`MAX_FOLDER_ENTRIES`].
//!
//! Removable leftovers are shown by `plan` and removed by `apply` (with or without `prune`: nothing
//! of value can be lost). Anything else is only reported as a finding and left for a person to
//! look at: cozyform never deletes something that holds data it did not write. A leftover whose
//! prefix or folder is the one of a declared instance is not a leftover: the unfinished create of
//! an instance still to be created, or the folder a rename already moved (the planner drops it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clusters::Stores;
use crate::fsops;
use crate::layout;
use crate::store::{Store, StoreResult};

/// A folder with more entries than this is never removed automatically.
pub const MAX_FOLDER_ENTRIES: usize = 1000;

/// How many docs of a leftover database are looked at; more means it holds data.
const MAX_DOCS: usize = 200;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One leftover.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Orphan {
    /// Databases `<prefix>/…` without an instance doc.
    Databases {
        prefix: String,
        databases: Vec<String>,
        removable: bool,
        /// The `couch_cluster` whose server holds them (0: the main URL, or the first cluster).
        #[serde(default, skip_serializing_if = "is_zero")]
        cluster: u32,
    },
    /// `<fs_root>/<name>` without an instance doc.
    Folder { name: String, removable: bool },
}

impl Orphan {
    pub fn removable(&self) -> bool {
        match self {
            Orphan::Databases { removable, .. } | Orphan::Folder { removable, .. } => *removable,
        }
    }

    /// What it is, for people: `databases cozy…/* (16)` or `folder <name>`.
    pub fn describe(&self) -> String {
        match self {
            Orphan::Databases { prefix, databases, .. } => {
                format!("{} database(s) {prefix}/… without an instance doc", databases.len())
            }
            Orphan::Folder { name, .. } => format!("folder {name} in fs_root without an instance doc"),
        }
    }

    /// The message of the finding this leftover gives in the plan.
    pub fn finding_message(&self) -> String {
        if self.removable() {
            format!(
                "leftover {}, holding nothing but what cozyform writes (an interrupted create); apply removes it",
                self.describe()
            )
        } else {
            format!(
                "leftover {}; it holds data cozyform did not write, so it is left alone: look at it, and delete it by hand if it is not needed",
                self.describe()
            )
        }
    }
}

/// Id of the mark cozyform writes in `global/instances` before the first step of a create and
/// deletes once the instance doc is written. cozy-stack never writes it: a create that cozy-stack
/// has under way (its databases come before its instance doc) is never taken for a leftover.
pub fn create_mark_id(prefix: &str) -> String {
    format!("_local/cozyform-create-{prefix}")
}

async fn has_create_mark(store: &Store, prefix: &str) -> StoreResult<bool> {
    Ok(store
        .get_doc(layout::GLOBAL_INSTANCES_DB, &create_mark_id(prefix))
        .await?
        .is_some())
}

/// Whether a prefix has the shape cozyform and cozy-stack give prefixes.
pub fn is_derived_prefix(p: &str) -> bool {
    p.strip_prefix("cozy")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Ids of the docs an interrupted create may have written in the databases of `prefix`.
fn own_ids(prefix: &str) -> BTreeSet<String> {
    [
        layout::SETTINGS_DOC_ID.to_string(),
        layout::ROOT_DIR_ID.to_string(),
        layout::TRASH_DIR_ID.to_string(),
        layout::derived_id("dir-administrative", prefix),
        layout::derived_id("dir-photos", prefix),
        layout::derived_id("contact-myself", prefix),
    ]
    .into_iter()
    .collect()
}

/// Whether a database holds only cozyform's own docs for `prefix`.
async fn holds_only_own_docs(store: &Store, db: &str, prefix: &str) -> StoreResult<bool> {
    let own = own_ids(prefix);
    let docs = store.all_docs_page(db, None, MAX_DOCS).await?;
    if docs.len() >= MAX_DOCS {
        return Ok(false);
    }
    Ok(docs.iter().all(|d| {
        let id = d.get("_id").and_then(Value::as_str).unwrap_or("");
        id.starts_with("_design/") || own.contains(id)
    }))
}

/// Database leftovers among `dbs_by_prefix` (escaped prefix → database names) of the server of
/// `cluster`: prefixes no instance doc claims (`claimed` holds escaped prefixes). Create marks are
/// read from `global` (the main store), the databases from `store`.
pub async fn find_database_orphans(
    global: &Store,
    store: &Store,
    cluster: u32,
    dbs_by_prefix: &BTreeMap<String, Vec<String>>,
    claimed: &BTreeSet<String>,
) -> StoreResult<Vec<Orphan>> {
    let mut out = Vec::new();
    for (prefix, dbs) in dbs_by_prefix {
        if claimed.contains(prefix) || !prefix.starts_with("cozy") {
            continue;
        }
        let mut removable = is_derived_prefix(prefix) && has_create_mark(global, prefix).await?;
        if removable {
            for db in dbs {
                if !holds_only_own_docs(store, db, prefix).await? {
                    removable = false;
                    break;
                }
            }
        }
        let mut databases = dbs.clone();
        databases.sort();
        out.push(Orphan::Databases {
            prefix: prefix.clone(),
            databases,
            removable,
            cluster,
        });
    }
    Ok(out)
}

/// Whether a folder holds only directories (no file, no symlink), within the entry bound.
fn only_empty_dirs(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in rd {
            let Ok(e) = e else { return false };
            seen += 1;
            if seen > MAX_FOLDER_ENTRIES {
                return false;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                _ => return false,
            }
        }
    }
    true
}

/// Folder leftovers in `fs_root`: directories named like a domain that no instance doc claims.
/// Hidden entries, files and symlinks are not instance folders and are ignored.
pub fn find_folder_orphans(fs_root: &Path, claimed_domains: &BTreeSet<String>) -> Vec<Orphan> {
    let Ok(rd) = std::fs::read_dir(fs_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || claimed_domains.contains(&name) || fsops::instance_dir(fs_root, &name).is_err() {
            continue;
        }
        if !matches!(e.file_type(), Ok(t) if t.is_dir()) {
            continue;
        }
        if crate::domain::validate_domain(&name).ok().as_deref() != Some(name.as_str()) {
            continue;
        }
        out.push(Orphan::Folder {
            removable: only_empty_dirs(&e.path()),
            name,
        });
    }
    out.sort();
    out
}

/// Removes a removable leftover, checking again (at apply time, under the lock) that it still is
/// one: a database set is listed again and each database re-checked; a folder re-walked.
pub async fn remove(stores: &Stores, fs_root: &Path, orphan: &Orphan) -> anyhow::Result<()> {
    use anyhow::{Context, bail};
    let global = &stores.main;
    match orphan {
        Orphan::Databases { prefix, cluster, .. } => {
            let store = stores.for_cluster(*cluster);
            if !is_derived_prefix(prefix) || !has_create_mark(global, prefix).await? {
                bail!("{prefix} is not the leftover of a cozyform create; left alone");
            }
            let dbs = store
                .all_dbs(&format!("{prefix}/"), &format!("{prefix}0"))
                .await
                .with_context(|| format!("listing the databases {prefix}/…"))?;
            for db in &dbs {
                if !holds_only_own_docs(store, db, prefix)
                    .await
                    .with_context(|| format!("reading {db}"))?
                {
                    bail!("{db} now holds data cozyform did not write; left alone");
                }
            }
            for db in &dbs {
                store
                    .delete_db(db)
                    .await
                    .with_context(|| format!("deleting database {db}"))?;
            }
            // The mark last: a crash before this point leaves the leftover still recognized.
            let mark = create_mark_id(prefix);
            if let Some(doc) = global.get_doc(layout::GLOBAL_INSTANCES_DB, &mark).await? {
                let rev = doc.get("_rev").and_then(Value::as_str).unwrap_or_default();
                global.delete_doc(layout::GLOBAL_INSTANCES_DB, &mark, rev).await?;
            }
            Ok(())
        }
        Orphan::Folder { name, .. } => {
            let dir = fsops::instance_dir(fs_root, name)?;
            if !only_empty_dirs(&dir) {
                bail!("{} now holds files; left alone", dir.display());
            }
            fsops::remove_instance_dir(fs_root, name)?;
            Ok(())
        }
    }
}
