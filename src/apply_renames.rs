//! Apply stage, renames: the executor side of [`crate::plan_renames`]. Runs before the rest of an
//! instance's update (see [`crate::apply`]), because the instance doc is written last: it is the
//! commit point that the next plan looks at.
//!
//! # Order of the steps, and why
//! Rename of an instance (`renamed_from`):
//! 1. `rename(2)` of `<fs_root>/<old>` to `<fs_root>/<new>` (atomic on one filesystem; the parent
//!    directory is then fsynced). Skipped when `<old>` is gone and `<new>` exists: an earlier apply
//!    did it. Refused when both exist.
//! 2. the default-directory renames below, inside `<fs_root>/<new>`;
//! 3. (in [`crate::apply`]) the instance doc: `domain` = new, `old_domain` = old, `prefix` kept (set
//!    explicitly on a legacy doc that had none), and every other change, in one write.
//!
//! A crash after 1 or 2 leaves the doc at the old domain, so the next plan shows the rename again,
//! with "the folder was already moved", and apply goes on from there. After 3 the rename is done and
//! the plan is empty, even while `renamed_from` stays in the file. The databases never move: they are
//! named after the `prefix`, which does not change.
//!
//! Default directory renamed on a locale change (`rename_default_dirs`), in cozy-stack's own order
//! (`vfsafero.UpdateDirDoc`: disk, then `MoveDir` for the descendants, then the doc itself):
//! 1. `rename(2)` of `<instance folder>/<old name>` to `<new name>` (skipped when already done);
//! 2. the `path` of every descendant directory (mango `_find` on `dir-by-path`, pages of 256, as
//!    cozy-stack's `MoveDir`; files have no `path`);
//! 3. the directory doc: `name`, `path`, `updated_at` (and `cozyMetadata.updatedAt`);
//! 4. (in [`crate::apply`]) the instance doc's `locale`, last.
//!
//! Until 4, the plan still sees the locale change. A crash after 1 or 2 leaves the doc at the old
//! path: the next plan shows the rename again, and apply skips the disk step and updates the
//! descendants still under the old path. A crash after 3 leaves the doc at the new path: the next
//! plan only changes the locale.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::fsops;
use crate::layout;
use crate::plan::{DirRename, Existing, InstancePlan};
use crate::store::{PathSelector, Store, StoreError};

/// Page size of the descendant query (cozy-stack's `MoveDir` uses 256).
const MOVE_PAGE: usize = 256;
const CONFLICT_RETRIES: usize = 8;

/// Moves the folder and renames the default directories an instance's plan asks for.
pub async fn apply_moves(store: &Store, fs_root: &Path, ip: &InstancePlan, ex: &Existing) -> Result<()> {
    if let Some(r) = &ip.rename
        && r.move_folder
    {
        move_instance_folder(fs_root, &r.from, &ip.domain)?;
    }
    for dr in &ip.dir_renames {
        rename_default_dir(store, fs_root, &ip.domain, &ex.db_prefix, dr)
            .await
            .with_context(|| format!("renaming {} to {}", dr.from, dr.to))?;
    }
    Ok(())
}

/// `(is a directory, is a symlink, exists)` without following links.
fn stat(p: &Path) -> (bool, bool, bool) {
    match std::fs::symlink_metadata(p) {
        Ok(m) => (m.is_dir(), m.file_type().is_symlink(), true),
        Err(_) => (false, false, false),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

/// Renames `from` to `to` (both absolute), idempotently: done when `from` is gone and `to` exists;
/// refused when both exist or either is a symlink. Returns whether it renamed.
fn rename_dir(from: &Path, to: &Path) -> Result<bool> {
    let (from_dir, from_link, from_exists) = stat(from);
    let (_, to_link, to_exists) = stat(to);
    if from_link || to_link {
        bail!("refusing to move {} to {}: symbolic link", from.display(), to.display());
    }
    match (from_exists, to_exists) {
        (false, _) => Ok(false),
        (true, true) => bail!(
            "both {} and {} exist; move one of them away, then run apply again",
            from.display(),
            to.display()
        ),
        (true, false) if !from_dir => bail!("{} is not a directory", from.display()),
        (true, false) => {
            std::fs::rename(from, to).with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
            if let Some(parent) = to.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
    }
}

/// Moves `<fs_root>/<from>` to `<fs_root>/<to>` with rename(2).
pub fn move_instance_folder(fs_root: &Path, from: &str, to: &str) -> Result<()> {
    let old = fsops::instance_dir(fs_root, from)?;
    let new = fsops::instance_dir(fs_root, to)?;
    rename_dir(&old, &new)?;
    Ok(())
}

/// Renames one default directory: disk, descendants, doc (see the module docs).
pub async fn rename_default_dir(
    store: &Store,
    fs_root: &Path,
    domain: &str,
    db_prefix: &str,
    dr: &DirRename,
) -> Result<()> {
    let files_db = layout::db_name(db_prefix, layout::FILES);
    // 1. Disk.
    let inst = fsops::instance_dir(fs_root, domain)?;
    if stat(&inst).0 {
        rename_dir(&inst.join(dr.from_name()), &inst.join(dr.to_name()))?;
    }
    // 2. Descendant directories.
    let prefix = format!("{}/", dr.from);
    let mut after: Option<String> = None;
    loop {
        let page = store
            .find_by_path(
                &files_db,
                PathSelector::Under {
                    prefix: &prefix,
                    after: after.as_deref(),
                    limit: MOVE_PAGE,
                },
            )
            .await
            .with_context(|| format!("listing the directories under {}", dr.from))?;
        let raw_len = page.len();
        let last = page
            .last()
            .and_then(|d| d.get("path"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let updates: Vec<Value> = page
            .into_iter()
            .filter(|d| d.get("type").and_then(Value::as_str) == Some("directory"))
            .filter_map(|mut d| {
                let path = d.get("path").and_then(Value::as_str)?.to_string();
                let rest = path.strip_prefix(&prefix)?;
                d["path"] = json!(format!("{}/{rest}", dr.to));
                Some(d)
            })
            .collect();
        if !updates.is_empty() {
            let results = store
                .bulk_docs(&files_db, &updates)
                .await
                .with_context(|| format!("updating the directories under {}", dr.from))?;
            if let Some(r) = results.iter().find(|r| r.error.is_some()) {
                bail!(
                    "updating the path of {}/{}: {}; run apply again to finish",
                    files_db,
                    r.id,
                    r.error.as_deref().unwrap_or("")
                );
            }
        }
        match last {
            Some(l) if raw_len >= MOVE_PAGE && Some(&l) != after.as_ref() => after = Some(l),
            _ => break,
        }
    }
    // 3. The directory doc.
    for _ in 0..CONFLICT_RETRIES {
        let mut doc = store
            .get_doc(&files_db, &dr.id)
            .await
            .with_context(|| format!("reading {files_db}/{}", dr.id))?
            .ok_or_else(|| anyhow!("the directory doc {} is gone", dr.id))?;
        match doc.get("path").and_then(Value::as_str) {
            Some(p) if p == dr.to => return Ok(()),
            Some(p) if p == dr.from => {}
            other => bail!(
                "the directory doc {} moved to {:?} meanwhile; run plan again",
                dr.id,
                other.unwrap_or("")
            ),
        }
        let now = layout::rfc3339_nano(&chrono::Local::now());
        doc["name"] = json!(dr.to_name());
        doc["path"] = json!(dr.to);
        doc["updated_at"] = json!(now);
        if let Some(meta) = doc.get_mut("cozyMetadata").and_then(Value::as_object_mut) {
            meta.insert("updatedAt".into(), json!(now));
        }
        match store.put_doc(&files_db, &doc).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).with_context(|| format!("writing {files_db}/{}", dr.id)),
        }
    }
    bail!("the directory doc {} kept changing under us", dr.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_move_is_idempotent_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        fsops::ensure_dirs(tmp.path(), "old.example", &[".cozy_trash"]).unwrap();
        std::fs::write(tmp.path().join("old.example/file"), b"x").unwrap();
        move_instance_folder(tmp.path(), "old.example", "new.example").unwrap();
        assert!(tmp.path().join("new.example/file").is_file());
        assert!(!tmp.path().join("old.example").exists());
        // Done already: a no-op.
        move_instance_folder(tmp.path(), "old.example", "new.example").unwrap();
        // Both exist: refused, nothing touched.
        fsops::ensure_dirs(tmp.path(), "old.example", &[]).unwrap();
        assert!(move_instance_folder(tmp.path(), "old.example", "new.example").is_err());
        assert!(tmp.path().join("new.example/file").is_file());
    }
}
