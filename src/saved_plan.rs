//! Saved plans (`plan --out FILE`, `apply FILE`): the file format, what a plan was computed from
//! (its *basis*), and the staleness check the executor runs under the apply lock.
//!
//! A saved plan records everything the plan was computed from: the `_rev` of every instance doc read,
//! the `_rev` of every settings doc read, a digest of the database names under each instance prefix,
//! the config file's sha256, the cozyform version and the *state serial*. The state serial lives in
//! the `_local/cozyform-state` doc of `global/instances` (never listed by cozy-stack, like the lock):
//! every apply increments it under the lock before changing anything, and records the saved plan it
//! applied. So a saved plan is stale after any apply — its own included, whatever it changed (a
//! folder on disk leaves no `_rev` behind) — and it can never be applied twice (Terraform #24078).
//!
//! The file holds no secret: creates carry no generated secret (the executor generates them at
//! apply time), and store credentials are not recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::actual::{Actual, Observed};
use crate::commands::user_error;
use crate::layout;
use crate::plan::Plan;
use crate::render_json::PlanDocument;
use crate::store::{Store, StoreError};
use crate::targeting::Targets;

/// The format of saved plan files. Minor versions only add fields.
pub const FORMAT_VERSION: &str = "1.1";
/// The `kind` member of every saved plan file.
pub const KIND: &str = "cozyform-saved-plan";
/// The doc holding the state serial, in `global/instances`.
pub const STATE_DOC_ID: &str = "_local/cozyform-state";
/// Largest saved plan file read.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// A saved plan file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "cozyform saved plan",
    description = "A plan saved by `cozyform plan --out FILE`, applied by `cozyform apply FILE`. JSON. It holds no secret. `checksum` is the sha256 (hex) of the compact JSON serialization of the document without its `checksum` member, members in file order: a file edited by hand is refused. A saved plan is applied only by the cozyform version that wrote it, and only while its `basis` still matches the store."
)]
pub struct SavedPlan {
    /// Always "cozyform-saved-plan".
    pub kind: String,
    /// The format of this file, "1.1" (1.1 adds `basis.folders` and `basis.default_dirs`).
    pub format_version: String,
    /// The cozyform version that computed the plan; apply refuses a plan from another version.
    pub cozyform_version: String,
    /// Random id of this plan; recorded in `_local/cozyform-state` when applied.
    pub plan_id: String,
    /// When the plan was computed (RFC 3339).
    pub created_at: String,
    /// The configuration file the plan was computed from.
    pub config: SavedConfig,
    /// How the actual state was read.
    pub read: SavedRead,
    /// What the plan was computed from; apply refuses the plan when it no longer matches.
    pub basis: Basis,
    /// The plan, as `plan --json` prints it (schema: `cozyform schema plan`).
    pub plan: PlanDocument,
    /// The plan as the executor needs it. Internal to the cozyform version that wrote it.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub internal: Plan,
    /// sha256 (hex) of the compact JSON of this document without `checksum`, members in file order.
    pub checksum: String,
}

/// The configuration a plan was computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SavedConfig {
    /// The path given with `-c` (for messages only).
    pub path: String,
    /// sha256 (hex) of the file's bytes.
    pub sha256: String,
}

/// Read options that change the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SavedRead {
    /// `--deep`.
    pub deep: bool,
    /// The `--target` patterns; empty for a whole plan.
    pub targets: Vec<String>,
}

/// What a plan was computed from. With targets, only the targeted instances' entries are recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Basis {
    /// The state serial (`_local/cozyform-state`), incremented by every apply; 0 when none ran.
    pub state_serial: u64,
    /// Every instance doc read from `global/instances`, by id.
    pub instance_docs: BTreeMap<String, DocRev>,
    /// Settings docs read, by domain: their `_rev`, null when missing.
    pub settings_docs: BTreeMap<String, Option<String>>,
    /// The databases under each instance prefix (escaped, as in database names), including the
    /// prefixes of instances to create.
    pub databases: BTreeMap<String, DbDigest>,
    /// The instance folders renames read (format 1.1): the old and the new folder of each rename,
    /// by domain.
    #[serde(default)]
    pub folders: BTreeMap<String, FolderBasis>,
    /// The default directories a locale change renames (format 1.1), by the domain of the instance
    /// doc (the old domain during a rename).
    #[serde(default)]
    pub default_dirs: BTreeMap<String, Vec<DirBasis>>,
}

/// The state of one instance folder `<fs_root>/<domain>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FolderBasis {
    /// It is a real directory.
    pub root: bool,
    /// Its `.cozy_trash` is a real directory.
    pub trash: bool,
    /// It is a symbolic link.
    pub symlink: bool,
}

impl From<crate::fsops::FsState> for FolderBasis {
    fn from(f: crate::fsops::FsState) -> Self {
        FolderBasis {
            root: f.root,
            trash: f.trash,
            symlink: f.symlink,
        }
    }
}

impl FolderBasis {
    fn describe(&self) -> &'static str {
        match (self.symlink, self.root, self.trash) {
            (true, _, _) => "a symbolic link",
            (false, true, true) => "present",
            (false, true, false) => "present without .cozy_trash",
            (false, false, _) => "missing",
        }
    }
}

/// A default directory a locale change renames: the doc at its old path, and whether its new path
/// was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirBasis {
    /// `administrative` or `photos`.
    pub kind: String,
    pub from_path: String,
    pub to_path: String,
    /// The directory doc at `from_path`, null when there was none.
    pub id: Option<String>,
    pub rev: Option<String>,
    /// Whether a doc had the path `to_path`.
    pub target_taken: bool,
}

/// One instance doc's revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocRev {
    /// The domain it declares, when known.
    pub domain: Option<String>,
    pub rev: String,
}

/// A digest of the database names under one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DbDigest {
    /// The instance the prefix belongs to, when known (for messages).
    pub domain: Option<String>,
    /// How many databases.
    pub count: usize,
    /// sha256 (hex) of the sorted names, one per line.
    pub sha256: String,
}

impl DbDigest {
    fn same(&self, other: &DbDigest) -> bool {
        self.count == other.count && self.sha256 == other.sha256
    }
}

/// The last apply, as recorded in `_local/cozyform-state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    pub serial: u64,
    pub last_apply_at: Option<String>,
    pub last_apply_by: Option<String>,
    /// The saved plan the last apply applied, if it was one.
    pub last_plan_id: Option<String>,
}

/// The JSON Schema of saved plan files.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(SavedPlan)).expect("schema serializes")
}

/// The checksum of a saved plan document: sha256 of its compact JSON without `checksum`.
pub fn checksum(doc: &Value) -> String {
    let mut d = doc.clone();
    if let Some(o) = d.as_object_mut() {
        o.remove("checksum");
    }
    hex::encode(Sha256::digest(serde_json::to_vec(&d).expect("JSON serializes")))
}

/// Reads the state serial doc (default when absent, or when `global/instances` does not exist).
pub async fn read_state(store: &Store) -> Result<StateDoc> {
    let doc = store
        .get_doc(layout::GLOBAL_INSTANCES_DB, STATE_DOC_ID)
        .await
        .context("reading the state serial")?;
    Ok(doc.and_then(|d| serde_json::from_value(d).ok()).unwrap_or_default())
}

/// Increments the state serial, recording who applied and which saved plan. Called under the lock,
/// before the executor changes anything, so that even an interrupted apply consumes its plan.
pub async fn record_apply(store: &Store, plan_id: Option<&str>, holder: &str) -> Result<u64> {
    for _ in 0..5 {
        let current = store
            .get_doc(layout::GLOBAL_INSTANCES_DB, STATE_DOC_ID)
            .await
            .context("reading the state serial")?;
        let serial = current
            .as_ref()
            .and_then(|d| d.get("serial"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            + 1;
        let mut doc = json!({
            "_id": STATE_DOC_ID,
            "serial": serial,
            "last_apply_at": layout::rfc3339_nano(&chrono::Local::now()),
            "last_apply_by": holder,
            "last_plan_id": plan_id,
        });
        if let Some(rev) = current.as_ref().and_then(|d| d.get("_rev")).and_then(Value::as_str) {
            doc["_rev"] = json!(rev);
        }
        match store.put_doc(layout::GLOBAL_INSTANCES_DB, &doc).await {
            Ok(_) => return Ok(serial),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).context("writing the state serial"),
        }
    }
    anyhow::bail!("the state serial doc kept changing while writing it")
}

fn digest(names: &[String]) -> DbDigest {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    DbDigest {
        domain: None,
        count: sorted.len(),
        sha256: hex::encode(Sha256::digest(sorted.join("\n").as_bytes())),
    }
}

/// Computes what `plan` was computed from: `actual` (read just before) plus the database listing and
/// the state serial, read now. `store` is `None` for an embedded store that does not exist yet.
pub async fn basis(store: Option<&Store>, actual: &Actual, plan: &Plan) -> Result<Basis> {
    let targets = Targets::parse(&plan.targets)?;
    let keep = |domain: Option<&str>| match &targets {
        None => true,
        Some(t) => domain.is_some_and(|d| t.matches(d)),
    };
    let mut b = Basis::default();
    let domain_of: BTreeMap<&str, &str> = actual
        .instances
        .iter()
        .map(|i| (i.id.as_str(), i.domain.as_str()))
        .collect();
    for (id, rev) in &actual.revs {
        let domain = domain_of.get(id.as_str()).copied();
        if keep(domain) {
            b.instance_docs.insert(
                id.clone(),
                DocRev {
                    domain: domain.map(str::to_string),
                    rev: rev.clone(),
                },
            );
        }
    }
    for i in &actual.instances {
        if !matches!(i.settings, Observed::NotRead) && keep(Some(&i.domain)) {
            b.settings_docs
                .insert(i.domain.clone(), actual.settings_revs.get(&i.domain).cloned());
        }
    }
    // The listing is read again here rather than taken from `actual`, which lists only what belongs
    // to an instance doc: a database created under a prefix no doc names yet matters too.
    let names = match store {
        Some(store) => {
            b.state_serial = read_state(store).await?.serial;
            store
                .all_dbs("cozy", "cozy\u{fff0}")
                .await
                .context("listing the databases")?
        }
        None => Vec::new(),
    };
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in names {
        if let Some((p, _)) = n.split_once('/') {
            groups.entry(p.to_string()).or_default().push(n);
        }
    }
    let mut label: BTreeMap<String, String> = BTreeMap::new();
    for i in &actual.instances {
        let esc = layout::escaped_db_prefix(&i.db_prefix);
        groups.entry(esc.clone()).or_insert_with(|| i.databases.clone());
        label.insert(esc, i.domain.clone());
    }
    for i in &plan.instances {
        if let Some(c) = &i.create {
            let esc = layout::escaped_db_prefix(&c.prefix);
            groups.entry(esc.clone()).or_default();
            label.entry(esc).or_insert_with(|| c.domain.clone());
        }
    }
    for (prefix, names) in groups {
        let domain = label.get(&prefix).cloned();
        if keep(domain.as_deref()) {
            let mut d = digest(&names);
            d.domain = domain;
            b.databases.insert(prefix, d);
        }
    }
    // Renames: the old folder (probed with its instance) and the new one (probed for the rename).
    let by_domain = actual.by_domain();
    for i in &plan.instances {
        let Some(r) = &i.rename else { continue };
        if !keep(Some(&i.domain)) {
            continue;
        }
        if let Some(h) = by_domain.get(r.from.as_str()) {
            b.folders.insert(r.from.clone(), h.fs.into());
        }
        b.folders.insert(
            i.domain.clone(),
            actual.folders.get(&i.domain).copied().unwrap_or_default().into(),
        );
    }
    // Default directories, as read for the plan's locale changes (read with the same options under
    // the lock, so the same set).
    for (domain, obs) in &actual.default_dirs {
        b.default_dirs.insert(
            domain.clone(),
            obs.iter()
                .map(|o| DirBasis {
                    kind: o.kind.clone(),
                    from_path: o.from_path.clone(),
                    to_path: o.to_path.clone(),
                    id: o.id.clone(),
                    rev: o.rev.clone(),
                    target_taken: o.target_taken,
                })
                .collect(),
        );
    }
    Ok(b)
}

impl SavedPlan {
    /// A saved plan of `plan`, computed from `basis` and the config.
    pub fn new(plan: &Plan, basis: Basis, config_path: &Path, config_hash: &str, deep: bool) -> SavedPlan {
        SavedPlan {
            kind: KIND.into(),
            format_version: FORMAT_VERSION.into(),
            cozyform_version: env!("CARGO_PKG_VERSION").into(),
            plan_id: hex::encode(rand::random::<[u8; 16]>()),
            created_at: layout::rfc3339_nano(&chrono::Local::now()),
            config: SavedConfig {
                path: config_path.display().to_string(),
                sha256: config_hash.into(),
            },
            read: SavedRead {
                deep,
                targets: plan.targets.clone(),
            },
            basis,
            plan: PlanDocument::new(plan),
            internal: plan.clone(),
            checksum: String::new(),
        }
    }

    /// The file's text, with its checksum.
    pub fn to_file_text(&self) -> String {
        let mut v = serde_json::to_value(self).expect("a saved plan serializes");
        let sum = checksum(&v);
        v["checksum"] = Value::String(sum);
        let mut s = serde_json::to_string_pretty(&v).expect("JSON serializes");
        s.push('\n');
        s
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::atomic_file::write(path, self.to_file_text().as_bytes())
            .with_context(|| format!("writing the saved plan {}", path.display()))
    }

    /// Reads a saved plan file, refusing one that is not a saved plan, has an unknown format, was
    /// modified after it was written, or was written by another cozyform version.
    pub fn read(path: &Path) -> Result<SavedPlan> {
        let shown = path.display();
        let meta = std::fs::metadata(path).with_context(|| format!("reading the saved plan {shown}"))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(user_error(
                format!("{shown} is {} bytes: too large for a saved plan", meta.len()),
                "pass the file written by `cozyform plan --out`",
            ));
        }
        let text = std::fs::read(path).with_context(|| format!("reading the saved plan {shown}"))?;
        let not_a_plan = |why: String| {
            user_error(
                format!("{shown} is not a cozyform saved plan: {why}"),
                "pass the file written by `cozyform plan --out FILE`",
            )
        };
        let v: Value = serde_json::from_slice(&text).map_err(|e| not_a_plan(format!("{e}")))?;
        if v.get("kind").and_then(Value::as_str) != Some(KIND) {
            return Err(not_a_plan(format!("its \"kind\" is not {KIND:?}")));
        }
        let format = v.get("format_version").and_then(Value::as_str).unwrap_or("");
        if format.split('.').next() != FORMAT_VERSION.split('.').next() {
            return Err(user_error(
                format!("{shown} has the saved plan format {format:?}; this cozyform reads {FORMAT_VERSION}"),
                "compute the plan again with this cozyform: cozyform plan --out FILE",
            ));
        }
        let recorded = v.get("checksum").and_then(Value::as_str).unwrap_or("");
        if recorded != checksum(&v) {
            return Err(user_error(
                format!(
                    "the saved plan {shown} was modified after cozyform wrote it (its checksum does not match); nothing was applied"
                ),
                "a saved plan is applied exactly as written: compute it again with cozyform plan --out FILE",
            ));
        }
        let saved: SavedPlan = serde_json::from_value(v).map_err(|e| not_a_plan(format!("{e}")))?;
        if saved.cozyform_version != env!("CARGO_PKG_VERSION") {
            return Err(user_error(
                format!(
                    "the saved plan {shown} is stale: it was computed by cozyform {}, and this is cozyform {}; nothing was applied",
                    saved.cozyform_version,
                    env!("CARGO_PKG_VERSION")
                ),
                "compute the plan again with this version: cozyform plan --out FILE",
            ));
        }
        Ok(saved)
    }

    /// Refuses the plan when the config file changed since it was saved.
    pub fn check_config(&self, path: &Path, hash: &str) -> Result<()> {
        if self.config.sha256 == hash {
            return Ok(());
        }
        Err(user_error(
            format!(
                "the saved plan is stale: the configuration file changed since it was saved ({} had sha256 {}, {} has {}); nothing was applied",
                self.config.path,
                &self.config.sha256[..self.config.sha256.len().min(12)],
                path.display(),
                &hash[..hash.len().min(12)]
            ),
            "compute the plan again: cozyform plan --out FILE",
        ))
    }

    /// What changed between the recorded basis and `now` (computed under the lock from the same
    /// plan's targets and creates), one line each; empty when the plan is still fresh.
    pub fn stale_reasons(&self, now: &Basis, state: &StateDoc) -> Vec<String> {
        let was = &self.basis;
        let mut out = Vec::new();
        if was.state_serial != now.state_serial {
            let when = format!(
                "{} by {}",
                state.last_apply_at.as_deref().unwrap_or("?"),
                state.last_apply_by.as_deref().unwrap_or("?")
            );
            if state.last_plan_id.as_deref() == Some(self.plan_id.as_str()) {
                out.push(format!(
                    "this saved plan was already applied ({when}); a saved plan can be applied only once"
                ));
            } else {
                out.push(format!(
                    "another apply ran since the plan was saved (the last one {when}; state serial {} → {})",
                    was.state_serial, now.state_serial
                ));
            }
        }
        let ids: BTreeSet<&String> = was.instance_docs.keys().chain(now.instance_docs.keys()).collect();
        for id in ids {
            let name = |d: &DocRev| {
                d.domain
                    .clone()
                    .unwrap_or_else(|| "an instance without a domain".into())
            };
            match (was.instance_docs.get(id), now.instance_docs.get(id)) {
                (Some(a), Some(b)) if a.rev != b.rev => out.push(format!(
                    "the instance doc of {} ({id}) changed: _rev {} → {}",
                    name(b),
                    a.rev,
                    b.rev
                )),
                (Some(a), None) => out.push(format!("the instance doc of {} ({id}) was deleted", name(a))),
                (None, Some(b)) => out.push(format!("an instance doc for {} ({id}) was created", name(b))),
                _ => {}
            }
        }
        let domains: BTreeSet<&String> = was.settings_docs.keys().chain(now.settings_docs.keys()).collect();
        for d in domains {
            // A settings doc not read counts as missing: the instance did not exist, or declared no
            // setting (then the config changed too).
            let rev = |b: &Basis| b.settings_docs.get(d).cloned().flatten();
            match (rev(was), rev(now)) {
                (Some(a), Some(b)) if a != b => out.push(format!("the settings doc of {d} changed: _rev {a} → {b}")),
                (None, Some(_)) => out.push(format!("the settings doc of {d} was created")),
                (Some(_), None) => out.push(format!("the settings doc of {d} was deleted")),
                _ => {}
            }
        }
        let prefixes: BTreeSet<&String> = was.databases.keys().chain(now.databases.keys()).collect();
        for p in prefixes {
            let label = |d: &DbDigest| match &d.domain {
                Some(dom) => format!("{dom} ({p})"),
                None => format!("the prefix {p}, which no instance doc names"),
            };
            match (was.databases.get(p), now.databases.get(p)) {
                (Some(a), Some(b)) if !a.same(b) => out.push(format!(
                    "databases of {} were created or removed: {} → {} databases",
                    label(b),
                    a.count,
                    b.count
                )),
                (Some(a), None) => out.push(format!("the databases of {} were removed", label(a))),
                (None, Some(b)) => out.push(format!(
                    "databases of {} were created: {} database(s)",
                    label(b),
                    b.count
                )),
                _ => {}
            }
        }
        let folders: BTreeSet<&String> = was.folders.keys().chain(now.folders.keys()).collect();
        for d in folders {
            match (was.folders.get(d), now.folders.get(d)) {
                (Some(a), Some(b)) if a != b => out.push(format!(
                    "the folder of {d} changed: {} → {}",
                    a.describe(),
                    b.describe()
                )),
                (Some(_), None) | (None, Some(_)) => {
                    out.push(format!("the folder of {d} is no longer part of a rename, or is now"))
                }
                _ => {}
            }
        }
        let domains: BTreeSet<&String> = was.default_dirs.keys().chain(now.default_dirs.keys()).collect();
        for d in domains {
            let none = Vec::new();
            let (a, b) = (
                was.default_dirs.get(d).unwrap_or(&none),
                now.default_dirs.get(d).unwrap_or(&none),
            );
            if a == b {
                continue;
            }
            let kinds: BTreeSet<&String> = a.iter().chain(b).map(|x| &x.kind).collect();
            for k in kinds {
                let (x, y) = (a.iter().find(|o| &o.kind == k), b.iter().find(|o| &o.kind == k));
                match (x, y) {
                    (Some(x), Some(y)) if x == y => {}
                    (Some(x), Some(y)) if x.id != y.id => out.push(format!(
                        "the default directory {} of {d} changed: {} → {}",
                        x.from_path,
                        x.id.as_deref().map_or("none".to_string(), |i| format!("doc {i}")),
                        y.id.as_deref().map_or("none".to_string(), |i| format!("doc {i}"))
                    )),
                    (Some(x), Some(y)) if x.rev != y.rev => out.push(format!(
                        "the directory doc {} of {d} ({}) changed: _rev {} → {}",
                        x.from_path,
                        x.id.as_deref().unwrap_or("?"),
                        x.rev.as_deref().unwrap_or("none"),
                        y.rev.as_deref().unwrap_or("none")
                    )),
                    (Some(x), Some(y)) if x.target_taken != y.target_taken => out.push(format!(
                        "{} of {d} is {} taken",
                        y.to_path,
                        if y.target_taken { "now" } else { "no longer" }
                    )),
                    _ => out.push(format!("the default directories of {d} changed ({k})")),
                }
            }
        }
        out
    }
}

/// The staleness check `apply FILE` runs under the lock.
#[derive(Debug, Clone)]
pub struct SavedGuard {
    pub saved: SavedPlan,
    /// How to read the actual state again: the recorded `--deep` and targets.
    pub read: crate::cli::ReadArgs,
}

impl SavedGuard {
    /// The reasons the plan is stale, given the state read under the lock.
    pub async fn check(&self, store: &Store, actual: &Actual) -> Result<Vec<String>> {
        self.check_store(Some(store), actual).await
    }

    /// [`Self::check`], also with no store (an embedded store that does not exist yet).
    pub async fn check_store(&self, store: Option<&Store>, actual: &Actual) -> Result<Vec<String>> {
        let now = basis(store, actual, &self.saved.internal).await?;
        let state = match store {
            Some(s) => read_state(s).await?,
            None => StateDoc::default(),
        };
        Ok(self.saved.stale_reasons(&now, &state))
    }
}

/// The error for a stale saved plan.
pub fn stale_error(path: &Path, reasons: &[String]) -> anyhow::Error {
    const SHOWN: usize = 20;
    let mut msg = format!("the saved plan {} is stale; nothing was applied:", path.display());
    for r in reasons.iter().take(SHOWN) {
        msg.push_str("\n  - ");
        msg.push_str(r);
    }
    if reasons.len() > SHOWN {
        msg.push_str(&format!("\n  - … and {} more", reasons.len() - SHOWN));
    }
    user_error(
        msg,
        "compute the plan again (cozyform plan --out FILE), review it, and apply the new file",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_only_the_checksum_member() {
        let a = json!({"kind": KIND, "x": 1, "checksum": "abc"});
        let b = json!({"kind": KIND, "x": 1, "checksum": "def"});
        let c = json!({"kind": KIND, "x": 2, "checksum": "abc"});
        assert_eq!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&a), checksum(&c));
    }

    #[test]
    fn a_saved_plan_round_trips_through_its_file_text() {
        let p = Plan::default();
        let s = SavedPlan::new(&p, Basis::default(), Path::new("instances.toml"), "00ff", false);
        let text = s.to_file_text();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["checksum"].as_str().unwrap(), checksum(&v));
        let back: SavedPlan = serde_json::from_value(v).unwrap();
        assert_eq!(back.internal, p);
        assert_eq!(back.basis, Basis::default());
    }

    #[test]
    fn stale_reasons_name_what_changed() {
        let p = Plan::default();
        let mut was = Basis::default();
        was.instance_docs.insert(
            "a".into(),
            DocRev {
                domain: Some("a.test".into()),
                rev: "1-x".into(),
            },
        );
        was.settings_docs.insert("a.test".into(), Some("1-s".into()));
        let s = SavedPlan::new(&p, was.clone(), Path::new("i.toml"), "00", false);
        assert!(s.stale_reasons(&was, &StateDoc::default()).is_empty());
        let mut now = was.clone();
        now.instance_docs.get_mut("a").unwrap().rev = "2-y".into();
        now.settings_docs.insert("a.test".into(), Some("2-s".into()));
        now.state_serial = 1;
        let state = StateDoc {
            serial: 1,
            last_plan_id: Some(s.plan_id.clone()),
            ..Default::default()
        };
        let r = s.stale_reasons(&now, &state);
        assert!(r[0].contains("already applied"), "{r:?}");
        assert!(
            r.iter()
                .any(|l| l.contains("instance doc of a.test (a) changed: _rev 1-x → 2-y")),
            "{r:?}"
        );
        assert!(r.iter().any(|l| l.contains("settings doc of a.test changed")), "{r:?}");
    }
}
