//! Actual-state stage: reads what exists, in bulk, from the store and the filesystem.
//!
//! Requests, for N instances: `global/instances` `_all_docs?include_docs=true` in pages, one `_all_dbs`
//! range scan over every `cozy…` database in pages (plus one ranged call per legacy instance without a
//! `prefix`), then per instance only what the configuration needs: the settings doc when settings are
//! declared. `--deep` also reads the root/trash directory docs, the settings doc and every index and
//! view. Folders on disk are checked locally. Instance docs are kept without their secrets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use futures::StreamExt;
use serde_json::{Map, Value};

use crate::clusters::Stores;
use crate::dbset::{DbGrouper, DoctypeSet, PrefixDbs};
use crate::fsops::{self, FsState};
use crate::instance_doc::InstanceDoc;
use crate::layout;
use crate::store::{Store, StoreResult};

/// Page size of the `global/instances` scan.
pub const INSTANCES_PAGE: usize = 1000;

/// How much to read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Verify indexes, views, directory docs and settings docs of every instance.
    pub deep: bool,
    /// Concurrency of per-instance reads.
    pub parallelism: usize,
    /// Domains whose settings doc must be read (those that declare settings).
    pub settings_for: BTreeSet<String>,
    /// Extra instance folders to look at (`<fs_root>/<domain>`): the targets of renames.
    pub probe_folders: BTreeSet<String>,
    /// Instances (by the domain of their doc) whose default directories are renamed on a locale
    /// change, with the desired locale: when the doc's locale differs, their default dirs are read.
    pub default_dirs_for: BTreeMap<String, String>,
}

/// A default directory (Administrative, Photos) of an instance whose locale changes: where it is
/// under the old locale's name, and whether the new locale's name is already taken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefaultDirObs {
    /// `administrative` or `photos`.
    pub kind: String,
    /// `/<name in the old locale>`.
    pub from_path: String,
    /// `/<name in the new locale>`.
    pub to_path: String,
    /// The id of the directory doc at `from_path` (a directory under the root), if there is one.
    pub id: Option<String>,
    /// Whether a doc already has the path `to_path`.
    pub target_taken: bool,
    /// The `_rev` of the directory doc at `from_path` (for saved-plan staleness).
    pub rev: Option<String>,
}

/// A value that may not have been read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", content = "value", rename_all = "snake_case")]
pub enum Observed<T> {
    NotRead,
    Missing,
    Present(T),
}

/// The settings doc of an instance, boxed like [`ActualInstance::deep`]: read for few instances
/// of a large fleet, and every instance would pay for the space of a `Map` (72 bytes).
pub type SettingsObs = Observed<Box<Map<String, Value>>>;

/// What `--deep` found for one instance.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DeepState {
    pub root_dir: bool,
    pub trash_dir: bool,
    /// (doctype, ddoc) of mango indexes that are missing or differ.
    pub bad_indexes: Vec<(String, String)>,
    /// (doctype, name) of views that are missing or differ.
    pub bad_views: Vec<(String, String)>,
}

/// One instance as it exists.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActualInstance {
    pub id: String,
    pub rev: String,
    pub domain: String,
    /// `prefix`, or the domain for legacy docs (`DBPrefix()`).
    pub db_prefix: String,
    /// The instance doc without `_id`, `_rev` and secrets, in a compact form (a `Map` would take
    /// three times the memory for a large fleet).
    pub doc: InstanceDoc,
    /// Doctypes of the instance databases that exist (among the layout's), as a bitset.
    pub doctypes: DoctypeSet,
    /// Database names with the instance's prefix that are not layout databases (see
    /// [`ActualInstance::databases`] for all of them).
    pub other_databases: Vec<String>,
    pub fs: FsState,
    /// The settings doc without `_id`/`_rev`.
    pub settings: SettingsObs,
    pub deep: Option<Box<DeepState>>,
}

impl ActualInstance {
    pub fn deleting(&self) -> bool {
        self.doc.get_bool("deleting").unwrap_or(false)
    }

    /// Every database name with the instance's prefix, sorted: the layout ones of `doctypes` and
    /// `other_databases`.
    pub fn databases(&self) -> Vec<String> {
        crate::dbset::PrefixDbs {
            doctypes: self.doctypes,
            other: self.other_databases.clone(),
        }
        .names(&self.db_prefix)
    }

    pub fn aliases(&self) -> Vec<String> {
        self.doc
            .get_array("domain_aliases")
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// Something wrong in the actual state that the plan reports instead of acting on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// The domain concerned, when known.
    pub domain: Option<String>,
    pub doc_id: Option<String>,
    pub message: String,
}

/// The actual state.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Actual {
    pub global_db: bool,
    /// Design docs of `global/instances` that are missing or differ (view and index names).
    pub global_missing: Vec<String>,
    /// Sorted by domain; one entry per domain (duplicates go to findings).
    pub instances: Vec<ActualInstance>,
    pub findings: Vec<Finding>,
    /// Domains claimed by more than one instance doc.
    pub ambiguous: BTreeSet<String>,
    /// `_rev` of each instance doc by id, and the database names seen, for saved-plan staleness.
    pub revs: BTreeMap<String, String>,
    /// Databases and folders no instance doc claims (see [`crate::orphans`]).
    pub orphans: Vec<crate::orphans::Orphan>,
    /// Installed apps and resolved app sources (read by [`crate::apps::gather`]).
    pub apps: crate::apps::AppsActual,
    /// `_rev` of each settings doc read and present, by domain, for saved-plan staleness.
    pub settings_revs: BTreeMap<String, String>,
    /// The folders of [`ReadOptions::probe_folders`], by domain.
    pub folders: BTreeMap<String, FsState>,
    /// Default directories of the instances of [`ReadOptions::default_dirs_for`] whose locale
    /// differs, by the domain of their doc.
    pub default_dirs: BTreeMap<String, Vec<DefaultDirObs>>,
}

impl Actual {
    pub fn by_domain(&self) -> HashMap<&str, &ActualInstance> {
        self.instances.iter().map(|i| (i.domain.as_str(), i)).collect()
    }
}

/// Removes `_id`, `_rev` and secrets from a doc.
pub fn redact(doc: &Value) -> Map<String, Value> {
    let mut m = doc.as_object().cloned().unwrap_or_default();
    m.remove("_id");
    m.remove("_rev");
    for k in layout::SECRET_KEYS {
        m.remove(*k);
    }
    m
}

/// [`redact`] of a compact doc, in place (the fields keep the order `redact` gives them).
fn redact_owned(mut doc: InstanceDoc) -> InstanceDoc {
    doc.remove_all(&["_id", "_rev"]);
    doc.remove_all(layout::SECRET_KEYS);
    doc
}

/// Reads every instance doc of `global/instances`, design docs skipped.
pub async fn read_instance_docs(store: &Store) -> StoreResult<Vec<Value>> {
    read_instance_docs_as(store, |mut d| {
        drop_secrets(&mut d);
        if let Some(m) = d.as_object_mut() {
            // Rebuilt at its exact size: the map kept the capacity of the secrets.
            *m = std::mem::take(m).into_iter().collect();
        }
        d
    })
    .await
}

/// [`read_instance_docs`] in the compact form that the actual state keeps (each doc converted
/// as its page arrives: a fleet's docs are never all held as `Value`s), calling `on_doc` with each
/// doc as soon as its page has been read (the plan starts the settings reads it needs from there,
/// while the rest is still being read).
pub async fn read_instance_docs_compact_each(
    store: &Store,
    mut on_doc: impl FnMut(&Value),
) -> StoreResult<Vec<InstanceDoc>> {
    read_instance_docs_as(store, |mut d| {
        drop_secrets(&mut d);
        on_doc(&d);
        InstanceDoc::from_value(d)
    })
    .await
}

/// Removes the secrets of an instance doc: they are never used, and dropping them at once halves
/// the memory a large fleet's docs take while the rest is read.
fn drop_secrets(doc: &mut Value) {
    if let Some(m) = doc.as_object_mut() {
        for k in layout::SECRET_KEYS {
            m.remove(*k);
        }
    }
}

/// Pages through `global/instances`, design docs skipped, each doc given to `convert` at once.
async fn read_instance_docs_as<T>(store: &Store, mut convert: impl FnMut(Value) -> T) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .all_docs_page(layout::GLOBAL_INSTANCES_DB, after.as_deref(), INSTANCES_PAGE)
            .await?;
        let n = page.len();
        after = page
            .last()
            .and_then(|d| d.get("_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        out.extend(
            page.into_iter()
                .filter(|d| {
                    !d.get("_id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .starts_with("_design/")
                })
                .map(&mut convert),
        );
        if n < INSTANCES_PAGE {
            return Ok(out);
        }
    }
}

/// Reads the actual state from one store (no clusters).
pub async fn read_actual(store: &Store, fs_root: &Path, opts: &ReadOptions) -> anyhow::Result<Actual> {
    read_actual_in(&Stores::single(store.clone()), fs_root, opts).await
}

/// Reads the actual state: `global/instances` from the main store, the databases of each instance
/// from its cluster (one ranged `_all_dbs` scan per cluster, all concurrently).
pub async fn read_actual_in(stores: &Stores, fs_root: &Path, opts: &ReadOptions) -> anyhow::Result<Actual> {
    use anyhow::Context;
    let store = &stores.main;
    let started = std::time::Instant::now();
    let mut actual = Actual {
        global_db: store
            .db_exists(layout::GLOBAL_INSTANCES_DB)
            .await
            .with_context(|| format!("reading {}", store.describe()))?,
        ..Default::default()
    };
    for d in &opts.probe_folders {
        actual.folders.insert(d.clone(), fsops::probe(fs_root, d));
    }
    if !actual.global_db {
        return Ok(actual);
    }
    // Names are grouped page by page: a fleet has millions of databases.
    let scans = futures::future::try_join_all(stores.instance_stores().into_iter().map(|s| async move {
        let mut g = DbGrouper::default();
        s.all_dbs_each("cozy", "cozy\u{fff0}", &mut |page| g.add_page(page))
            .await
            .map(|_| g.by_prefix)
    }));
    // Without --deep, the settings docs the config needs are read as soon as their instance doc
    // is: on another task, while the database lists are still being read and the docs processed.
    // (With --deep they are read with the rest of each instance, once its databases are known.)
    let early = !opts.deep && !opts.settings_for.is_empty();
    let (tx, rx) = futures::channel::mpsc::unbounded::<(String, String, Store)>();
    let early_reads = early.then(|| {
        crate::progress::stage(
            opts.settings_for.len() as u64,
            "reading global/instances, the database lists and the declared settings docs",
        );
        AbortOnDrop(tokio::spawn(read_settings_early(rx, opts.parallelism)))
    });
    let docs = async move {
        let tx = tx;
        read_instance_docs_compact_each(store, |doc| {
            let Some((obj, domain)) = doc.as_object().and_then(|o| Some((o, o.get("domain")?.as_str()?))) else {
                return;
            };
            if early && opts.settings_for.contains(domain) {
                let prefix = doc_db_prefix(doc, domain);
                let store = stores.for_instance(obj).clone();
                // Never fails: the receiver lives until every doc has been read.
                let _ = tx.unbounded_send((domain.to_string(), prefix, store));
            }
        })
        .await
    };
    let (docs, dbs, global) = tokio::try_join!(docs, scans, read_global_design(store),)
        .context("reading global/instances and the database lists")?;
    actual.global_missing = global;
    crate::progress::timing("read: bulk requests", started);

    // One map per instance store (each cluster, or the main store alone).
    let dbs_by_prefix: Vec<HashMap<String, PrefixDbs>> = dbs;

    // Prefixes and folders claimed by any instance doc, even a broken one: never leftovers.
    let mut claimed_prefixes = BTreeSet::new();
    let mut claimed_domains = BTreeSet::new();
    for doc in &docs {
        for key in ["prefix", "domain"] {
            if let Some(p) = doc.get_str(key).filter(|p| !p.is_empty()) {
                claimed_prefixes.insert(layout::escaped_db_prefix(p));
            }
        }
        if let Some(d) = doc.get_str("domain") {
            claimed_domains.insert(d.to_string());
        }
    }
    // Only the unclaimed prefixes are copied out (a few, normally none), one set per server.
    for (cluster, (by_prefix, cluster_store)) in dbs_by_prefix.iter().zip(stores.instance_stores()).enumerate() {
        // An escaped prefix escapes to itself: `names` rebuilds the full names from it.
        let unclaimed: BTreeMap<String, Vec<String>> = by_prefix
            .iter()
            .filter(|(p, _)| !claimed_prefixes.contains(*p) && p.starts_with("cozy"))
            .map(|(p, v)| (p.clone(), v.names(p)))
            .collect();
        if unclaimed.is_empty() {
            continue;
        }
        let found =
            crate::orphans::find_database_orphans(store, cluster_store, cluster as u32, &unclaimed, &claimed_prefixes)
                .await
                .context("reading leftover databases")?;
        actual.orphans.extend(found);
    }
    actual
        .orphans
        .extend(crate::orphans::find_folder_orphans(fs_root, &claimed_domains));
    // Freed before the per-instance records are built, which reuse their memory.
    drop((claimed_prefixes, claimed_domains));
    // Every doc with a domain, then sorted by domain (stable: docs keep their order within a domain);
    // one flat vector rather than a map of vectors, for the memory of a large fleet.
    let mut found: Vec<ActualInstance> = Vec::with_capacity(docs.len());
    // Prefixes claimed by more than one doc: their database lists are copied, the others moved.
    let shared_prefixes: std::collections::HashSet<String> = {
        let mut seen: HashMap<&str, u32> = HashMap::with_capacity(docs.len());
        for d in &docs {
            if let Some(p) = d.get_str("prefix") {
                *seen.entry(p).or_default() += 1;
            }
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(p, _)| p.to_string())
            .collect()
    };
    let mut dbs_by_prefix = dbs_by_prefix;
    for doc in docs {
        let id = doc.get_str("_id").unwrap_or_default().to_string();
        let rev = doc.get_str("_rev").unwrap_or_default().to_string();
        actual.revs.insert(id.clone(), rev.clone());
        let Some(domain) = doc.get_str("domain").filter(|d| !d.is_empty()) else {
            actual.findings.push(Finding {
                domain: None,
                doc_id: Some(id),
                message: "instance doc without a domain; left alone".into(),
            });
            continue;
        };
        let domain = domain.to_string();
        let mut problems = Vec::new();
        let db_prefix = doc_db_prefix(&doc, &domain);
        if let Some(other) = doc.get("prefix").filter(|p| !p.is_null() && !p.is_string()) {
            problems.push(format!("prefix has the wrong type ({other})"));
        }
        if let Err(e) = layout::read_disk_quota(&doc) {
            problems.push(e);
        }
        if doc.get("locale").is_some_and(|l| !l.is_string()) {
            problems.push("locale is not a string".into());
        }
        for p in problems {
            actual.findings.push(Finding {
                domain: Some(domain.clone()),
                doc_id: Some(id.clone()),
                message: p,
            });
        }
        let esc = layout::escaped_db_prefix(&db_prefix);
        let cluster = crate::clusters::couch_cluster_of(&doc);
        // The scanned list of the instance's store, unless its cluster falls back to main.
        let scanned = if stores.clusters.is_empty() {
            dbs_by_prefix.first_mut()
        } else if stores.is_configured(cluster) {
            dbs_by_prefix.get_mut(cluster as usize)
        } else {
            None
        };
        let scanned_some = scanned.is_some();
        let databases = match scanned.and_then(|m| m.get_mut(&esc)) {
            Some(v) if shared_prefixes.contains(&db_prefix) => v.clone(),
            Some(v) => std::mem::take(v),
            None if !esc.starts_with("cozy") || !scanned_some => PrefixDbs::from_names(
                stores
                    .for_cluster(cluster)
                    .all_dbs(&format!("{esc}/"), &format!("{esc}0"))
                    .await?,
            ),
            None => PrefixDbs::default(),
        };
        // Probed below, on a blocking thread, while the per-instance requests run.
        let fs = FsState::default();
        found.push(ActualInstance {
            id,
            rev,
            domain,
            db_prefix,
            doc: redact_owned(doc),
            doctypes: databases.doctypes,
            other_databases: databases.other,
            fs,
            settings: Observed::NotRead,
            deep: None,
        });
    }
    drop(dbs_by_prefix);
    // Rebuilt with full nodes: inserted in id order, one at a time, they were half empty.
    actual.revs = std::mem::take(&mut actual.revs).into_iter().collect();
    found.sort_by(|a, b| a.domain.cmp(&b.domain));
    for list in found.chunk_by(|a, b| a.domain == b.domain) {
        if list.len() > 1 {
            let domain = list[0].domain.clone();
            let ids: Vec<String> = list.iter().map(|i| i.id.clone()).collect();
            actual.findings.push(Finding {
                domain: Some(domain.clone()),
                doc_id: None,
                message: format!(
                    "{} instance docs claim this domain ({}); cozyform will not act on it until one is removed",
                    ids.len(),
                    ids.join(", ")
                ),
            });
            actual.ambiguous.insert(domain);
        }
    }
    if !actual.ambiguous.is_empty() {
        found.retain(|i| !actual.ambiguous.contains(&i.domain));
    }
    actual.instances = found;

    // Per-instance reads, concurrently and bounded.
    crate::progress::timing("read: instance docs processed, folders probed", started);
    let deep = opts.deep;
    crate::progress::message(format!("read {} instance docs", actual.instances.len()));
    // With --deep, every instance is read here, its settings doc included; without, the declared
    // settings docs were requested early (above) and nothing else is read per instance.
    let wanted: Vec<usize> = if deep {
        (0..actual.instances.len()).collect()
    } else {
        Vec::new()
    };
    type Extras = (SettingsObs, Option<Box<DeepState>>, Option<String>);
    if !wanted.is_empty() {
        crate::progress::stage(wanted.len() as u64, "verifying databases, indexes and views (--deep)");
    }
    let probe_root = fs_root.to_path_buf();
    let probe_domains: Vec<String> = actual.instances.iter().map(|i| i.domain.clone()).collect();
    let probes = tokio::task::spawn_blocking(move || {
        probe_domains
            .iter()
            .map(|d| fsops::probe(&probe_root, d))
            .collect::<Vec<FsState>>()
    });
    let reads = async {
        futures::stream::iter(wanted.into_iter().map(|n| {
            let inst = &actual.instances[n];
            let store = stores.for_instance(&inst.doc).clone();
            async move {
                let r = read_instance_extras(&store, inst, deep).await;
                crate::progress::inc();
                (n, r)
            }
        }))
        .buffer_unordered(opts.parallelism.max(1))
        .collect::<Vec<(usize, StoreResult<Extras>)>>()
        .await
    };
    let (probes, results) = tokio::join!(probes, reads);
    if let Some(task) = early_reads {
        let mut read: HashMap<(String, String), StoreResult<Option<Value>>> = task
            .join()
            .await
            .context("reading the settings docs")?
            .into_iter()
            .map(|(domain, prefix, r)| ((domain, prefix), r))
            .collect();
        for inst in actual.instances.iter_mut() {
            if read.is_empty() {
                break;
            }
            if !opts.settings_for.contains(&inst.domain) {
                continue;
            }
            let Some(r) = read.remove(&(inst.domain.clone(), inst.db_prefix.clone())) else {
                continue;
            };
            let doc = r.with_context(|| format!("reading the databases of {}", inst.domain))?;
            let (settings, rev) = settings_observed(inst.doctypes.contains(layout::SETTINGS), doc);
            if let Some(rev) = rev {
                actual.settings_revs.insert(inst.domain.clone(), rev);
            }
            inst.settings = settings;
        }
    }
    for (inst, fs) in actual
        .instances
        .iter_mut()
        .zip(probes.context("probing the instance folders")?)
    {
        inst.fs = fs;
    }
    for (n, r) in results {
        let (settings, deep_state, settings_rev) =
            r.with_context(|| format!("reading the databases of {}", actual.instances[n].domain))?;
        if let Some(rev) = settings_rev {
            actual.settings_revs.insert(actual.instances[n].domain.clone(), rev);
        }
        actual.instances[n].settings = settings;
        actual.instances[n].deep = deep_state;
    }

    // Default directories of instances whose locale changes with rename_default_dirs.
    let wanted: Vec<(usize, String)> = actual
        .instances
        .iter()
        .enumerate()
        .filter_map(|(n, i)| {
            let want = opts.default_dirs_for.get(&i.domain)?;
            let have = i.doc.get_str("locale").unwrap_or("");
            (have != want && i.doctypes.contains(layout::FILES)).then(|| (n, want.clone()))
        })
        .collect();
    let results: Vec<(usize, StoreResult<Vec<DefaultDirObs>>)> =
        futures::stream::iter(wanted.into_iter().map(|(n, locale)| {
            let inst = &actual.instances[n];
            let store = stores.for_instance(&inst.doc).clone();
            async move { (n, read_default_dirs(&store, inst, &locale).await) }
        }))
        .buffer_unordered(opts.parallelism.max(1))
        .collect()
        .await;
    for (n, r) in results {
        let domain = actual.instances[n].domain.clone();
        let obs = r.with_context(|| format!("reading the default directories of {domain}"))?;
        actual.default_dirs.insert(domain, obs);
    }
    crate::progress::timing("read: per-instance reads", started);
    Ok(actual)
}

/// The default directories of `inst` that have different names in its current locale and in
/// `new_locale`: the doc at the old name, and whether the new name is taken.
pub async fn read_default_dirs(
    store: &Store,
    inst: &ActualInstance,
    new_locale: &str,
) -> StoreResult<Vec<DefaultDirObs>> {
    use crate::store::PathSelector;
    let old_locale = inst.doc.get_str("locale").unwrap_or("");
    let (old, new) = (
        layout::default_dir_names(old_locale),
        layout::default_dir_names(new_locale),
    );
    let files_db = layout::db_name(&inst.db_prefix, layout::FILES);
    let mut out = Vec::new();
    for (kind, from, to) in [
        ("administrative", old.administrative, new.administrative),
        ("photos", old.photos, new.photos),
    ] {
        if from == to {
            continue;
        }
        let (from_path, to_path) = (format!("/{from}"), format!("/{to}"));
        let at_from = store.find_by_path(&files_db, PathSelector::Eq(&from_path)).await?;
        let dir = at_from.iter().find(|d| {
            d.get("type").and_then(Value::as_str) == Some("directory")
                && d.get("dir_id").and_then(Value::as_str) == Some(layout::ROOT_DIR_ID)
                && d.get("path").and_then(Value::as_str) == Some(from_path.as_str())
        });
        let id = dir
            .and_then(|d| d.get("_id").and_then(Value::as_str))
            .map(str::to_string);
        let rev = dir
            .and_then(|d| d.get("_rev").and_then(Value::as_str))
            .map(str::to_string);
        let at_to = store.find_by_path(&files_db, PathSelector::Eq(&to_path)).await?;
        let target_taken = at_to
            .iter()
            .any(|d| d.get("path").and_then(Value::as_str) == Some(to_path.as_str()));
        out.push(DefaultDirObs {
            kind: kind.into(),
            from_path,
            to_path,
            id,
            target_taken,
            rev,
        });
    }
    Ok(out)
}

/// The database prefix of an instance doc: its `prefix`, or its domain when it has none (very old
/// instances) or when `prefix` is not a string (reported as a finding).
fn doc_db_prefix(doc: &(impl crate::instance_doc::DocFields + ?Sized), domain: &str) -> String {
    match doc.field("prefix").as_deref() {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        _ => domain.to_string(),
    }
}

/// A settings doc read started early: the domain and prefix it was read for, and the answer.
type EarlySettings = (String, String, StoreResult<Option<Value>>);

/// Reads the settings docs sent on `rx` (domain, prefix, store), `parallelism` at a time, as they
/// arrive: the plan sends them while `global/instances` and `_all_dbs` are still being read.
async fn read_settings_early(
    rx: futures::channel::mpsc::UnboundedReceiver<(String, String, Store)>,
    parallelism: usize,
) -> Vec<EarlySettings> {
    rx.map(|(domain, prefix, store)| async move {
        let db = layout::db_name(&prefix, layout::SETTINGS);
        let r = store.get_doc(&db, layout::SETTINGS_DOC_ID).await;
        crate::progress::inc();
        (domain, prefix, r)
    })
    .buffer_unordered(parallelism.max(1))
    .collect()
    .await
}

/// What a settings read tells: the doc (secrets redacted) and its rev, or that it is missing.
/// `has_db` is whether `_all_dbs` lists the instance's settings database.
fn settings_observed(has_db: bool, doc: Option<Value>) -> (SettingsObs, Option<String>) {
    match doc {
        Some(d) if has_db => {
            let rev = d.get("_rev").and_then(Value::as_str).map(str::to_string);
            (Observed::Present(Box::new(redact(&d))), rev)
        }
        _ => (Observed::Missing, None),
    }
}

async fn read_instance_extras(
    store: &Store,
    inst: &ActualInstance,
    deep: bool,
) -> StoreResult<(SettingsObs, Option<Box<DeepState>>, Option<String>)> {
    let settings_db = layout::db_name(&inst.db_prefix, layout::SETTINGS);
    let has_db = inst.doctypes.contains(layout::SETTINGS);
    let doc = if has_db {
        store.get_doc(&settings_db, layout::SETTINGS_DOC_ID).await?
    } else {
        None
    };
    let (settings, settings_rev) = settings_observed(has_db, doc);
    if !deep {
        return Ok((settings, None, settings_rev));
    }
    let mut state = DeepState::default();
    let files_db = layout::db_name(&inst.db_prefix, layout::FILES);
    let dirs = store
        .get_docs(
            &files_db,
            &[layout::ROOT_DIR_ID.to_string(), layout::TRASH_DIR_ID.to_string()],
        )
        .await?;
    state.root_dir = dirs[0].is_some();
    state.trash_dir = dirs[1].is_some();
    let doctypes: BTreeSet<&str> = layout::instance_indexes()
        .map(|i| i.doctype)
        .chain(layout::instance_views().map(|v| v.doctype))
        .collect();
    for dt in doctypes {
        let db = layout::db_name(&inst.db_prefix, dt);
        let (bad_idx, bad_views) = check_design(store, &db, dt).await?;
        state
            .bad_indexes
            .extend(bad_idx.into_iter().map(|d| (dt.to_string(), d)));
        state
            .bad_views
            .extend(bad_views.into_iter().map(|v| (dt.to_string(), v)));
    }
    Ok((settings, Some(Box::new(state)), settings_rev))
}

/// Indexes and views of one doctype that are missing or differ from the layout in `db`.
pub async fn check_design(store: &Store, db: &str, doctype: &str) -> StoreResult<(Vec<String>, Vec<String>)> {
    let want_idx: Vec<&layout::IndexDef> = layout::INDEXES.iter().filter(|i| i.doctype == doctype).collect();
    let want_views: Vec<&layout::ViewDef> = layout::VIEWS.iter().filter(|v| v.doctype == doctype).collect();
    let mut bad_idx = Vec::new();
    if !want_idx.is_empty() {
        let have = store.list_indexes(db).await?;
        for w in &want_idx {
            if !have.iter().any(|h| index_matches(h, w)) {
                bad_idx.push(w.ddoc.to_string());
            }
        }
    }
    let mut bad_views = Vec::new();
    if !want_views.is_empty() {
        let ids: Vec<String> = want_views.iter().map(|v| format!("_design/{}", v.name)).collect();
        let docs = store.get_docs(db, &ids).await?;
        for (v, d) in want_views.iter().zip(docs) {
            if !d.as_ref().is_some_and(|d| v.matches(d)) {
                bad_views.push(v.name.to_string());
            }
        }
    }
    Ok((bad_idx, bad_views))
}

/// Whether an entry of `GET /db/_index` is the index the layout defines.
pub fn index_matches(have: &Value, want: &layout::IndexDef) -> bool {
    let ddoc = have.get("ddoc").and_then(Value::as_str).unwrap_or("");
    if ddoc != format!("_design/{}", want.ddoc) {
        return false;
    }
    let fields: Vec<String> = have
        .pointer("/def/fields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| match f {
                    Value::Object(o) => o.keys().next().cloned(),
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let pfs = have
        .pointer("/def/partial_filter_selector")
        .cloned()
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()));
    fields == want.fields && pfs == want.partial_filter()
}

async fn read_global_design(store: &Store) -> StoreResult<Vec<String>> {
    let (bad_idx, bad_views) = check_design(store, layout::GLOBAL_INSTANCES_DB, layout::INSTANCES_DOCTYPE).await?;
    Ok(bad_views.into_iter().chain(bad_idx).collect())
}

/// A spawned task that is cancelled when its handle is dropped: an early return (an error
/// reading `global/instances`, say) stops the reads it started.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
