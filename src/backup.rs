//! Safe destroys (executor side): the destroy limit, the archive written before an instance is
//! destroyed, and `cozyform restore`.
//!
//! # The archive
//! One `<domain>-<UTC time>.tar.gz` per destroyed instance, in `backup_dir`, mode 0600 (it holds
//! the instance doc with its secrets, as a restore needs them):
//! - `instance.json`: the instance doc of `global/instances` (without `_rev`);
//! - `databases/<n>.json`: `{"name": <database>, "docs": [...]}` for every database of the
//!   instance's prefix, every doc including design docs (mango indexes and views), without `_rev`;
//! - `files/…`: the instance folder, files and directories (symlinks kept as symlinks);
//! - `manifest.json`, last: format, domain, prefix, time, and the sha256 and size of every other
//!   entry.
//!
//! It is written to `<name>.partial`, synced, then read back in full: every entry's sha256 must
//! match the manifest and every database its doc count. Only then is it renamed to its final name,
//! a `<name>.sha256` written next to it, and the destroy allowed to go on. A failed backup fails
//! the destroy of that instance before anything is deleted.
//!
//! Limits: the databases' docs are held in memory (one database at a time while writing, all of
//! them while verifying or restoring; file contents are streamed); attachments are not included
//! (cozy-stack keeps file contents on disk, which the archive includes).
//!
//! # Restore
//! Refused when an instance doc already claims the domain. Order, as for a create: the databases
//! and their docs, the layout's indexes and views, the folder, then the instance doc last — a
//! crash leaves no instance doc, and restoring again completes the work (docs already there are
//! kept).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fsops;
use crate::layout;
use crate::store::{Store, StoreError};

/// The destroy limit and the backup directory, from the config (flags override them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Safety {
    /// A plan destroying more instances than this needs the number typed (or `--max-destroy`).
    pub max_destroy: u64,
    pub backup_dir: Option<PathBuf>,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_destroy: 1,
            backup_dir: None,
        }
    }
}

const FORMAT: &str = "cozyform-instance-backup";
const VERSION: u32 = 1;
const PAGE: usize = 1000;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub domain: String,
    pub prefix: String,
    pub created_at: String,
    /// Database name -> number of docs.
    pub databases: BTreeMap<String, usize>,
    /// Entry path -> (sha256 hex, size).
    pub entries: BTreeMap<String, (String, u64)>,
}

fn append(
    tar: &mut tar::Builder<impl Write>,
    entries: &mut BTreeMap<String, (String, u64)>,
    path: &str,
    data: &[u8],
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, path, data)
        .with_context(|| format!("writing {path} to the archive"))?;
    entries.insert(path.to_string(), (hex::encode(Sha256::digest(data)), data.len() as u64));
    Ok(())
}

/// Every doc of a database, design docs included, without `_rev`.
async fn all_docs(store: &Store, db: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .all_docs_page(db, after.as_deref(), PAGE)
            .await
            .with_context(|| format!("reading {db}"))?;
        let n = page.len();
        after = page.last().and_then(|d| d["_id"].as_str()).map(str::to_string);
        out.extend(page.into_iter().map(|mut d| {
            if let Some(m) = d.as_object_mut() {
                m.remove("_rev");
            }
            d
        }));
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// Writes, verifies and publishes the archive of one instance; returns its path.
pub async fn backup_instance(
    global: &Store,
    store: &Store,
    fs_root: &Path,
    backup_dir: &Path,
    instance_id: &str,
    domain: &str,
    db_prefix: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(backup_dir).with_context(|| format!("creating {}", backup_dir.display()))?;
    let mut instance = global
        .get_doc(layout::GLOBAL_INSTANCES_DB, instance_id)
        .await
        .context("reading the instance doc")?
        .ok_or_else(|| anyhow!("the instance doc of {domain} disappeared"))?;
    let resumed = instance.get("deleting").and_then(Value::as_bool) == Some(true);
    // An archive a killed run left half-written is never published: remove it.
    for (path, partial) in archives_of(backup_dir, domain) {
        if partial {
            let _ = std::fs::remove_file(path);
        }
    }
    if resumed {
        // The deletion was started by an earlier run, which wrote its archive first (its databases
        // may be partly deleted by now): that complete archive is the backup, not a new one.
        let mut done: Vec<PathBuf> = archives_of(backup_dir, domain)
            .into_iter()
            .filter(|(_, partial)| !partial)
            .map(|(p, _)| p)
            .collect();
        done.sort();
        while let Some(last) = done.pop() {
            if read_archive(&last).is_ok_and(|a| a.manifest.domain == domain) {
                return Ok(last);
            }
        }
    }
    if let Some(m) = instance.as_object_mut() {
        m.remove("_rev");
        // A backup of an instance whose deletion was under way restores a live instance.
        m.remove("deleting");
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = format!("{domain}-{stamp}.tar.gz");
    let final_path = backup_dir.join(&name);
    let partial = backup_dir.join(format!("{name}.partial"));

    let file = open_private(&partial)?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    tar.follow_symlinks(false);
    let mut entries = BTreeMap::new();
    append(&mut tar, &mut entries, "instance.json", &serde_json::to_vec(&instance)?)?;
    let esc = layout::escaped_db_prefix(db_prefix);
    let dbs = store
        .all_dbs(&format!("{esc}/"), &format!("{esc}0"))
        .await
        .context("listing the instance's databases")?;
    let mut databases = BTreeMap::new();
    for (n, db) in dbs.iter().enumerate() {
        let docs = all_docs(store, db).await?;
        databases.insert(db.clone(), docs.len());
        let body = serde_json::to_vec(&json!({ "name": db, "docs": docs }))?;
        append(&mut tar, &mut entries, &format!("databases/{n}.json"), &body)?;
    }
    let dir = fsops::instance_dir(fs_root, domain)?;
    if fsops::probe(fs_root, domain).root {
        append_files(&mut tar, &mut entries, &dir, Path::new("files"))?;
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        domain: domain.into(),
        prefix: db_prefix.into(),
        created_at: layout::rfc3339_nano(&chrono::Local::now()),
        databases,
        entries,
    };
    let mut h = tar::Header::new_gnu();
    let m = serde_json::to_vec_pretty(&manifest)?;
    h.set_size(m.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    tar.append_data(&mut h, "manifest.json", m.as_slice())?;
    let gz = tar.into_inner().context("finishing the archive")?;
    let file = gz.finish().context("finishing the archive")?;
    file.sync_all().context("syncing the archive")?;
    drop(file);

    let verified = read_archive(&partial).with_context(|| format!("verifying {}", partial.display()))?;
    if verified.manifest.domain != domain || verified.databases.len() != dbs.len() {
        bail!(
            "verifying {}: the archive does not hold what was written",
            partial.display()
        );
    }
    let sum = hex::encode(Sha256::digest(std::fs::read(&partial)?));
    std::fs::rename(&partial, &final_path).with_context(|| format!("renaming to {}", final_path.display()))?;
    std::fs::write(backup_dir.join(format!("{name}.sha256")), format!("{sum}  {name}\n"))?;
    if let Ok(d) = std::fs::File::open(backup_dir) {
        let _ = d.sync_all();
    }
    Ok(final_path)
}

/// Archives of `domain` in `dir` (`<domain>-<time>.tar.gz`), and whether each is a `.partial`.
fn archives_of(dir: &Path, domain: &str) -> Vec<(PathBuf, bool)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let start = format!("{domain}-");
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let stamp = name.strip_prefix(&start)?;
            // The time starts with a digit and has no dot before the extension.
            if !stamp.starts_with(|c: char| c.is_ascii_digit()) || stamp[..stamp.find('.')?].contains('-') {
                return None;
            }
            if name.ends_with(".tar.gz.partial") {
                Some((e.path(), true))
            } else if name.ends_with(".tar.gz") {
                Some((e.path(), false))
            } else {
                None
            }
        })
        .collect()
}

fn open_private(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Adds a directory tree, file contents streamed from disk, hashing what is written.
fn append_files(
    tar: &mut tar::Builder<impl Write>,
    entries: &mut BTreeMap<String, (String, u64)>,
    dir: &Path,
    name: &Path,
) -> Result<()> {
    tar.append_dir(name, dir)
        .with_context(|| format!("archiving {}", dir.display()))?;
    let mut list: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    list.sort_by_key(|e| e.file_name());
    for e in list {
        let path = e.path();
        let entry_name = name.join(e.file_name());
        let t = e.file_type()?;
        if t.is_dir() {
            append_files(tar, entries, &path, &entry_name)?;
        } else if t.is_file() {
            let mut f = std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            let len = f.metadata()?.len();
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&f.metadata()?);
            h.set_size(len);
            h.set_cksum();
            let mut hashing = HashingReader {
                inner: &mut f,
                hash: Sha256::new(),
                n: 0,
            };
            tar.append_data(&mut h, &entry_name, &mut hashing)
                .with_context(|| format!("archiving {}", path.display()))?;
            entries.insert(
                entry_name.to_string_lossy().into_owned(),
                (hex::encode(hashing.hash.finalize()), hashing.n),
            );
        } else {
            tar.append_path_with_name(&path, &entry_name)
                .with_context(|| format!("archiving {}", path.display()))?;
        }
    }
    Ok(())
}

struct HashingReader<'a, R> {
    inner: &'a mut R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// An archive read back and checked.
pub struct Archive {
    pub manifest: Manifest,
    pub instance: Value,
    /// (database, docs).
    pub databases: Vec<(String, Vec<Value>)>,
}

/// Hashes an entry; keeps its bytes only when `keep` (JSON entries), streams file contents.
fn hash_reader(r: &mut impl Read, keep: bool) -> std::io::Result<(String, u64, Vec<u8>)> {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut buf = [0u8; 64 * 1024];
    let mut kept = Vec::new();
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        if keep {
            kept.extend_from_slice(&buf[..k]);
        }
    }
    Ok((hex::encode(h.finalize()), n, kept))
}

/// Reads an archive and checks every entry against the manifest. File contents are checked and
/// not kept.
pub fn read_archive(path: &Path) -> Result<Archive> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut json_entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for e in ar.entries().context("reading the archive")? {
        let mut e = e.context("reading the archive")?;
        let p = e.path()?.to_string_lossy().into_owned();
        if !e.header().entry_type().is_file() {
            continue;
        }
        if p == "manifest.json" {
            let mut b = Vec::new();
            e.read_to_end(&mut b)?;
            manifest = Some(serde_json::from_slice(&b).context("manifest.json")?);
            continue;
        }
        let keep = p == "instance.json" || p.starts_with("databases/");
        let (sum, n, kept) = hash_reader(&mut e, keep).with_context(|| format!("reading {p}"))?;
        if keep {
            json_entries.insert(p.clone(), kept);
        }
        seen.insert(p, (sum, n));
    }
    let manifest = manifest.ok_or_else(|| anyhow!("the archive has no manifest.json (not a cozyform backup?)"))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        bail!(
            "not a cozyform backup of a known version ({} {})",
            manifest.format,
            manifest.version
        );
    }
    if seen != manifest.entries {
        let bad: Vec<&String> = manifest
            .entries
            .keys()
            .chain(seen.keys())
            .filter(|k| seen.get(*k) != manifest.entries.get(*k))
            .collect();
        bail!("the archive is damaged: these entries differ from its manifest: {bad:?}");
    }
    let instance: Value = serde_json::from_slice(
        json_entries
            .get("instance.json")
            .ok_or_else(|| anyhow!("no instance.json"))?,
    )?;
    let mut databases = Vec::new();
    for (p, b) in &json_entries {
        if p.starts_with("databases/") {
            let v: Value = serde_json::from_slice(b).with_context(|| p.clone())?;
            let name = v["name"].as_str().ok_or_else(|| anyhow!("{p}: no name"))?.to_string();
            let docs = v["docs"].as_array().cloned().unwrap_or_default();
            if manifest.databases.get(&name) != Some(&docs.len()) {
                bail!("the archive is damaged: {name} does not hold the docs its manifest counts");
            }
            databases.push((name, docs));
        }
    }
    if databases.len() != manifest.databases.len() {
        bail!("the archive is damaged: databases missing");
    }
    Ok(Archive {
        manifest,
        instance,
        databases,
    })
}

/// Brings an instance back from an archive. Refused when the domain already has an instance doc.
pub async fn restore(stores: &crate::clusters::Stores, fs_root: &Path, archive_path: &Path) -> Result<String> {
    let global = &stores.main;
    let archive = read_archive(archive_path).with_context(|| format!("reading {}", archive_path.display()))?;
    let domain = archive.manifest.domain.clone();
    let id = archive.instance["_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the archived instance doc has no _id"))?
        .to_string();
    crate::apply::ensure_global(global).await?;
    // The databases go back to the server of the archived doc's `couch_cluster`.
    let store = match archive.instance.as_object() {
        Some(doc) => stores.for_instance(doc),
        None => global,
    };
    let docs = crate::actual::read_instance_docs(global)
        .await
        .context("reading global/instances")?;
    if let Some(d) = docs
        .iter()
        .find(|d| d["domain"].as_str() == Some(domain.as_str()) || d["_id"].as_str() == Some(id.as_str()))
    {
        bail!(
            "an instance doc for {domain} already exists ({}); restore refuses to overwrite it",
            d["_id"].as_str().unwrap_or("?")
        );
    }
    let esc = layout::escaped_db_prefix(&archive.manifest.prefix);
    // 1. Databases and their docs (docs already there from an interrupted restore are kept).
    for (db, docs) in &archive.databases {
        if !db.starts_with(&format!("{esc}/")) {
            bail!("the archive names a database {db} outside the instance's prefix");
        }
        store
            .create_db(db)
            .await
            .with_context(|| format!("creating database {db}"))?;
        for chunk in docs.chunks(500) {
            crate::apply::bulk_create(store, db, chunk).await?;
        }
    }
    // 2. The layout's indexes and views (the embedded store keeps indexes apart from docs).
    let doctypes: Vec<&str> = layout::INSTANCE_DOCTYPES
        .iter()
        .copied()
        .filter(|dt| {
            archive
                .databases
                .iter()
                .any(|(db, _)| *db == layout::db_name(&archive.manifest.prefix, dt))
        })
        .collect();
    crate::apply::define_design(store, &archive.manifest.prefix, &doctypes, false).await?;
    // 3. The folder.
    restore_files(archive_path, fs_root, &domain)?;
    // 4. The instance doc, last.
    match global.put_doc(layout::GLOBAL_INSTANCES_DB, &archive.instance).await {
        Ok(_) => Ok(domain),
        Err(StoreError::Conflict { .. }) => bail!("an instance doc for {domain} appeared during the restore"),
        Err(e) => Err(e).context("writing the instance doc"),
    }
}

fn restore_files(archive_path: &Path, fs_root: &Path, domain: &str) -> Result<()> {
    let dest = fsops::instance_dir(fs_root, domain)?;
    if fsops::probe(fs_root, domain).symlink {
        bail!("{} is a symbolic link; refusing to restore through it", dest.display());
    }
    std::fs::create_dir_all(fs_root).with_context(|| format!("creating {}", fs_root.display()))?;
    let file = std::fs::File::open(archive_path)?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut any = false;
    for e in ar.entries()? {
        let mut e = e?;
        let p = e.path()?.into_owned();
        let Ok(rel) = p.strip_prefix("files") else {
            continue;
        };
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            bail!("the archive holds an unsafe path {}", p.display());
        }
        // Only directories and regular files: a symlink or hard link from an archive could make
        // a later entry write outside the instance folder.
        let kind = e.header().entry_type();
        if !(kind.is_dir() || kind.is_file()) {
            continue;
        }
        let target = dest.join(rel);
        if rel.as_os_str().is_empty() {
            std::fs::create_dir_all(&dest)?;
            any = true;
            continue;
        }
        // `unpack` refuses nothing by itself: the path was checked above, and parents are
        // created by the walk order (directories come before their content).
        e.unpack(&target)
            .with_context(|| format!("restoring {}", target.display()))?;
        any = true;
    }
    if !any {
        fsops::ensure_dirs(fs_root, domain, &[layout::TRASH_DIR_NAME])?;
    }
    Ok(())
}
