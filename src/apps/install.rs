//! The app executor: installs, updates and uninstalls apps as cozy-stack's installer does.
//!
//! # Order of the steps, and why
//! Before anything is written, the code of every (source, version) the plan installs is fetched once
//! into a cache for the run, and checked against its sha256: a registry that is down or a checksum
//! mismatch fails those apps with nothing written at all. Then, instance by instance (concurrently,
//! bounded), app by app:
//!
//! Install, update and repair:
//! 1. the code, under `<fs_root>/<domain>/.cozy_apps/<slug>/<version>[-<sha256>]/` (konnectors:
//!    `.cozy_konnectors`), every file brotli-compressed with a `.br` suffix, written into a `tmp…`
//!    folder next to it and renamed into place (a folder that exists is complete: it is kept);
//! 2. the permission doc (`io.cozy.permissions`, found by `source_id`; a new one gets an id derived
//!    from the instance and the app, so a retry can never create a second one);
//! 3. the triggers of the manifest's `services` (webapps), with derived ids; triggers of services
//!    that went away or changed are deleted (cozy-stack's `diffServices`);
//! 4. the app doc, last, with `state: "ready"`: until it is written the next plan still sees the app
//!    missing (or at its old version) and does it again, each step above finding its work done. An
//!    update keeps `created_at`;
//! 5. code folders of other versions of the app, once the doc points at the new one.
//!
//! A failure in steps 1–4 of an install or a repair writes the app doc with `state: "errored"` and
//! the `error`; the next plan shows it as a repair. (cozy-stack itself keeps `errored` in memory
//! only and writes no doc; the issue asked for the persisted state, so that the failure is visible.)
//! A failure of an update leaves the app doc as it was: the app keeps working at its old version, as
//! with cozy-stack, and the next plan shows the update again.
//!
//! Uninstall: the triggers, the permission docs, the code folder, then the app doc last, so that a
//! crash midway leaves an app doc the next plan uninstalls again.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::fetch::{Code, fetch_code};
use super::plan::{AppChange, AppOp};
use super::{AppKind, CodeSource, Resolved, instance_store, perms};
use crate::apply::{ApplyOptions, ApplyReport};
use crate::clusters::Stores;
use crate::fsops;
use crate::layout;
use crate::plan::{Action, Plan};
use crate::store::{Store, StoreError};

const CONFLICT_RETRIES: usize = 8;
/// brotli quality of the code files (andybalholm/brotli's default, as cozy-stack uses).
const BROTLI_QUALITY: u32 = 6;
/// cozy-stack does not create a trigger for a service with this trigger (called programmatically).
const NO_TRIGGER: &str = "@at 2000-01-01T00:00:00.000Z";

/// What happened to one app.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppOutcome {
    pub domain: String,
    pub kind: AppKind,
    pub slug: String,
    pub op: AppOp,
    pub version: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
}

fn now() -> String {
    layout::rfc3339_nano(&chrono::Local::now())
}

/// Applies the app changes of a plan, after the instances were applied (`report`): instances that
/// failed are skipped. Returns one outcome per app change acted on.
pub async fn apply_apps(stores: &Stores, plan: &Plan, opts: &ApplyOptions, report: &ApplyReport) -> Vec<AppOutcome> {
    let failed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.domain.as_str())
        .collect();
    // (domain, db prefix, cluster, changes)
    let mut work: Vec<(&str, String, u32, Vec<&AppChange>)> = Vec::new();
    let mut outcomes = Vec::new();
    for (domain, changes) in &plan.apps {
        let acting: Vec<&AppChange> = changes.iter().filter(|c| c.acts()).collect();
        if acting.is_empty() {
            continue;
        }
        let Some(ip) = plan.instances.iter().find(|i| &i.domain == domain) else {
            continue;
        };
        // A new instance is on the cluster the planner placed it on, as the executor created it.
        let (prefix, cluster) = match (&ip.create, &ip.existing) {
            (Some(c), _) => (c.prefix.clone(), c.couch_cluster),
            (None, Some(e)) => (e.db_prefix.clone(), e.couch_cluster),
            _ => continue,
        };
        if failed.contains(&domain.as_str()) || (report.global_error.is_some() && ip.action == Action::Create) {
            for c in acting {
                outcomes.push(outcome(domain, c, Err(anyhow!("not done: the instance itself failed"))));
            }
            continue;
        }
        work.push((domain.as_str(), prefix, cluster, acting));
    }

    // Every code once, before anything is written.
    let mut codes: Vec<&CodeSource> = Vec::new();
    for (_, _, _, changes) in &work {
        for c in changes {
            if let Some(t) = &c.target
                && c.op != AppOp::Uninstall
                && !codes.contains(&&t.code)
            {
                codes.push(&t.code);
            }
        }
    }
    let fetched: HashMap<&CodeSource, Result<Arc<Code>, String>> = futures::stream::iter(
        codes
            .into_iter()
            .map(|code| async move { (code, fetch_code(code).await) }),
    )
    .buffer_unordered(opts.parallelism.clamp(1, 8))
    .collect()
    .await;

    let fetched = &fetched;
    let results: Vec<Vec<AppOutcome>> =
        futures::stream::iter(work.into_iter().map(|(domain, prefix, cluster, changes)| async move {
            let store = instance_store(stores, cluster);
            let mut out = Vec::new();
            for c in changes {
                let r = if opts.cancel.load(Ordering::SeqCst) {
                    Err(anyhow!("not started: the run was interrupted"))
                } else {
                    apply_change(store, &opts.fs_root, domain, &prefix, c, fetched).await
                };
                out.push(outcome(domain, c, r));
            }
            out
        }))
        .buffer_unordered(opts.parallelism.max(1))
        .collect()
        .await;
    outcomes.extend(results.into_iter().flatten());
    outcomes.sort_by(|a, b| (&a.domain, a.kind, &a.slug).cmp(&(&b.domain, b.kind, &b.slug)));
    outcomes
}

fn outcome(domain: &str, c: &AppChange, r: Result<()>) -> AppOutcome {
    AppOutcome {
        domain: domain.to_string(),
        kind: c.kind,
        slug: c.slug.clone(),
        op: c.op,
        version: c.after_version.clone().or(c.before_version.clone()),
        ok: r.is_ok(),
        error: r.err().map(|e| format!("{e:#}")),
    }
}

async fn apply_change(
    store: &Store,
    fs_root: &Path,
    domain: &str,
    prefix: &str,
    c: &AppChange,
    fetched: &HashMap<&CodeSource, Result<Arc<Code>, String>>,
) -> Result<()> {
    match c.op {
        AppOp::Uninstall => uninstall(store, fs_root, domain, prefix, c.kind, &c.slug).await,
        AppOp::Install | AppOp::Update | AppOp::Repair => {
            let target = c
                .target
                .as_ref()
                .ok_or_else(|| anyhow!("nothing resolved to install"))?;
            let code = match fetched.get(&target.code) {
                Some(Ok(code)) => code.clone(),
                Some(Err(e)) => bail!("not installed, nothing was written: {e}"),
                None => bail!("not installed: the code was not fetched"),
            };
            match install(store, fs_root, domain, prefix, c, target, &code).await {
                Ok(()) => Ok(()),
                // A failed update leaves the working app as it was, as cozy-stack does (an
                // `errored` doc would take it down: cozy-stack answers 503 for any state but
                // ready/installed); the next plan shows the update again.
                Err(e) if c.op == AppOp::Update => Err(e),
                Err(e) => {
                    let msg = format!("{e:#}");
                    if let Err(e2) = mark_errored(store, prefix, c, target, &msg).await {
                        return Err(e.context(format!("and marking the app errored failed too: {e2:#}")));
                    }
                    Err(e)
                }
            }
        }
        AppOp::Unmanaged => Ok(()),
    }
}

/// The folder of an app's code: `<fs_root>/<domain>/.cozy_apps/<slug>`, refusing symbolic links.
fn slug_dir(fs_root: &Path, domain: &str, kind: AppKind, slug: &str) -> Result<PathBuf> {
    let inst = fsops::instance_dir(fs_root, domain)?;
    if fsops::probe(fs_root, domain).symlink {
        bail!("{} is a symbolic link; refusing to write through it", inst.display());
    }
    if !super::valid_slug(slug) {
        bail!("invalid slug {slug:?}");
    }
    let apps = inst.join(kind.code_dir());
    for p in [&apps, &apps.join(slug)] {
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!("{} is a symbolic link; refusing to write through it", p.display());
        }
    }
    Ok(apps.join(slug))
}

/// `<version>-<sha256>`, or `<version>` without a checksum (cozy-stack's copier).
pub fn version_dir(version: &str, checksum: &str) -> Result<String> {
    if version.is_empty() || version.contains('/') || version.contains('\\') || version.starts_with('.') {
        bail!("the version {version:?} cannot name a folder");
    }
    Ok(if checksum.is_empty() {
        version.to_string()
    } else {
        format!("{version}-{checksum}")
    })
}

fn write_code(dir: &Path, target_name: &str, code: &Code) -> Result<()> {
    let target = dir.join(target_name);
    if target.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("tmp{}", hex::encode(rand::random::<[u8; 8]>())));
    let write_all = || -> Result<()> {
        // afero.TempDir makes it 0700, and the rename keeps that mode for the version folder.
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        for (name, content) in code {
            let path = tmp.join(format!("{name}.br"));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = brotli::CompressorWriter::new(file, 64 * 1024, BROTLI_QUALITY, 22);
            w.write_all(content)
                .with_context(|| format!("writing {}", path.display()))?;
            w.flush().with_context(|| format!("writing {}", path.display()))?;
            let file = w.into_inner();
            file.sync_all().with_context(|| format!("writing {}", path.display()))?;
        }
        std::fs::rename(&tmp, &target).with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))
    };
    let r = write_all();
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    r
}

async fn get(store: &Store, db: &str, id: &str) -> Result<Option<Value>> {
    store
        .get_doc(db, id)
        .await
        .with_context(|| format!("reading {db}/{id}"))
}

/// PUTs `doc` at the current rev of its id (re-read on conflict).
async fn put_current(store: &Store, db: &str, mut doc: Value) -> Result<()> {
    let id = doc["_id"].as_str().unwrap_or_default().to_string();
    for _ in 0..CONFLICT_RETRIES {
        match store.put_doc(db, &doc).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {
                let cur = get(store, db, &id).await?;
                let m = doc.as_object_mut().expect("docs are objects");
                match cur.and_then(|c| c.get("_rev").cloned()) {
                    Some(rev) => m.insert("_rev".into(), rev),
                    None => m.remove("_rev"),
                };
            }
            Err(e) => return Err(e).with_context(|| format!("writing {db}/{id}")),
        }
    }
    bail!("writing {db}/{id}: it kept changing under us")
}

async fn delete_if_present(store: &Store, db: &str, id: &str) -> Result<()> {
    for _ in 0..CONFLICT_RETRIES {
        let Some(doc) = get(store, db, id).await? else {
            return Ok(());
        };
        let rev = doc.get("_rev").and_then(Value::as_str).unwrap_or_default();
        match store.delete_doc(db, id, rev).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).with_context(|| format!("deleting {db}/{id}")),
        }
    }
    bail!("deleting {db}/{id}: it kept changing under us")
}

/// The permission docs of an app (`type` and `source_id`), as index `by-source-and-type` finds them.
async fn permission_docs(store: &Store, prefix: &str, kind: AppKind, slug: &str) -> Result<Vec<Value>> {
    let db = layout::db_name(prefix, "io.cozy.permissions");
    let source_id = kind.doc_id(slug);
    let docs = super::actual::all_docs(store, &db)
        .await
        .with_context(|| format!("reading {db}"))?;
    Ok(docs
        .into_iter()
        .filter(|d| {
            d.get("source_id").and_then(Value::as_str) == Some(source_id.as_str())
                && d.get("type").and_then(Value::as_str) == Some(kind.permission_type())
        })
        .collect())
}

/// The `cozyMetadata` of `metadata.NewWithApp(slug, version, "1")`: the version is left out when
/// empty.
fn app_metadata(slug: &str, version: &str, t: &str) -> Value {
    let mut md = json!({
        "doctypeVersion": "1",
        "metadataVersion": 1,
        "createdAt": t,
        "createdByApp": slug,
        "createdByAppVersion": version,
        "updatedAt": t,
        "updatedByApps": [{"slug": slug, "date": t, "version": version}],
    });
    if version.is_empty() {
        md.as_object_mut().expect("object").remove("createdByAppVersion");
        md["updatedByApps"][0]
            .as_object_mut()
            .expect("object")
            .remove("version");
    }
    md
}

/// The permission doc cozy-stack creates (`createAppSet`, a `permission.Permission`): `permissions`
/// is left out when the set is empty (`omitempty`).
pub fn permission_doc(id: &str, kind: AppKind, slug: &str, version: &str, perms: &Value, t: &str) -> Value {
    let mut doc = json!({
        "_id": id,
        "type": kind.permission_type(),
        "source_id": kind.doc_id(slug),
        "permissions": perms,
        "cozyMetadata": app_metadata(slug, version, t),
    });
    if perms.as_object().is_some_and(Map::is_empty) || perms.is_null() {
        doc.as_object_mut().expect("object").remove("permissions");
    }
    doc
}

/// Creates the permission doc, or, on an update, rewrites it as cozy-stack's `UpdateWebappSet` /
/// `UpdateKonnectorSet` do: the new manifest's rules merged with what the doc has beyond the old
/// manifest's ([`perms::updated_set`]), and `cozyMetadata.updatedAt` moved.
/// `old_manifest_perms` is `Some` on an update (the current app doc's `permissions`).
async fn upsert_permission(
    store: &Store,
    prefix: &str,
    kind: AppKind,
    slug: &str,
    version: &str,
    manifest: &Value,
    old_manifest_perms: Option<Option<&Value>>,
) -> Result<()> {
    let db = layout::db_name(prefix, "io.cozy.permissions");
    let new_set = perms::parse(manifest.get("permissions")).map_err(|e| anyhow!("bad manifest: {e}"))?;
    let existing = permission_docs(store, prefix, kind, slug).await?;
    match existing.into_iter().next() {
        Some(mut doc) => {
            let set = match old_manifest_perms {
                Some(old) => {
                    let old = perms::parse(old).unwrap_or_default();
                    let have = perms::parse(doc.get("permissions")).unwrap_or_default();
                    perms::updated_set(&old, &have, &new_set)
                }
                // A permission doc left by an install that did not finish: it is this install's.
                None => new_set,
            };
            let t = now();
            let m = doc.as_object_mut().expect("docs are objects");
            if set.is_empty() {
                m.remove("permissions");
            } else {
                m.insert("permissions".into(), perms::to_json(&set));
            }
            match m.get_mut("cozyMetadata").and_then(Value::as_object_mut) {
                Some(md) => {
                    md.insert("updatedAt".into(), json!(t));
                }
                None => {
                    m.insert("cozyMetadata".into(), app_metadata(slug, "", &t));
                }
            }
            put_current(store, &db, doc).await
        }
        None => {
            let id = layout::derived_id("app-permission", &format!("{prefix}/{}", kind.doc_id(slug)));
            let doc = permission_doc(&id, kind, slug, version, &perms::to_json(&new_set), &now());
            put_current(store, &db, doc).await
        }
    }
}

/// A service as cozy-stack serializes it in the app doc.
fn service_entry(v: &Value, trigger_id: &str) -> Value {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    json!({"type": s("type"), "file": s("file"), "debounce": s("debounce"), "trigger": s("trigger"), "trigger_id": trigger_id})
}

fn same_service(a: &Value, b: &Value) -> bool {
    ["type", "file", "trigger", "debounce"]
        .iter()
        .all(|k| a.get(*k).and_then(Value::as_str).unwrap_or("") == b.get(*k).and_then(Value::as_str).unwrap_or(""))
}

/// The trigger doc of a service (`CreateServiceTrigger`).
pub fn trigger_doc(
    id: &str,
    domain: &str,
    prefix: &str,
    slug: &str,
    name: &str,
    service: &Value,
    t: &str,
) -> Option<Value> {
    let opts = service.get("trigger").and_then(Value::as_str).unwrap_or("");
    let mut parts = opts.splitn(2, ' ');
    let typ = parts.next().unwrap_or("").trim();
    let args = parts.next().unwrap_or("").trim();
    if typ.is_empty() || opts == NO_TRIGGER {
        return None;
    }
    Some(json!({
        "_id": id,
        "domain": domain,
        "prefix": prefix,
        "type": typ,
        "worker": "service",
        "arguments": args,
        "debounce": service.get("debounce").and_then(Value::as_str).unwrap_or(""),
        "options": null,
        // A Go map[string]string: keys sorted.
        "message": {"name": name, "slug": slug},
        "cozyMetadata": app_metadata(slug, "", t),
    }))
}

/// Creates the triggers of the new services and deletes those of services gone or changed; returns
/// the `services` value of the app doc (with `trigger_id`s), or null.
async fn sync_triggers(
    store: &Store,
    domain: &str,
    prefix: &str,
    slug: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<Value> {
    let db = layout::db_name(prefix, "io.cozy.triggers");
    let empty = Map::new();
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let Some(new_services) = new.and_then(Value::as_object) else {
        for s in old.values() {
            if let Some(id) = s.get("trigger_id").and_then(Value::as_str).filter(|i| !i.is_empty()) {
                delete_if_present(store, &db, id).await?;
            }
        }
        return Ok(Value::Null);
    };
    let mut kept_ids = Vec::new();
    let mut out = Map::new();
    let t = now();
    for (name, svc) in new_services {
        let reuse = old
            .get(name)
            .filter(|o| same_service(o, svc))
            .and_then(|o| o.get("trigger_id").and_then(Value::as_str))
            .filter(|i| !i.is_empty())
            .map(str::to_string);
        let trigger_id = match reuse {
            Some(id) => {
                kept_ids.push(id.clone());
                id
            }
            None => {
                let seed = format!("{prefix}/{slug}/{name}/{}", service_entry(svc, ""));
                let id = layout::derived_id("app-service-trigger", &seed);
                match trigger_doc(&id, domain, prefix, slug, name, svc, &t) {
                    Some(doc) => {
                        match store.put_doc(&db, &doc).await {
                            Ok(_) | Err(StoreError::Conflict { .. }) => {}
                            Err(e) => return Err(e).with_context(|| format!("writing trigger {db}/{id}")),
                        }
                        kept_ids.push(id.clone());
                        id
                    }
                    None => String::new(),
                }
            }
        };
        out.insert(name.clone(), service_entry(svc, &trigger_id));
    }
    for s in old.values() {
        if let Some(id) = s.get("trigger_id").and_then(Value::as_str).filter(|i| !i.is_empty())
            && !kept_ids.iter().any(|k| k == id)
        {
            delete_if_present(store, &db, id).await?;
        }
    }
    Ok(Value::Object(out))
}

/// The app doc: the manifest as received, plus cozy-stack's overrides and defaults, encoded as
/// cozy-stack's `MarshalJSON` does ([`super::manifest`]): sorted keys, re-encoded typed fields.
/// `current` is the doc being replaced, if any: a konnector whose new manifest has no `parameters`
/// keeps the current ones (`KonnManifest.ReadManifest`).
#[allow(clippy::too_many_arguments)]
pub fn app_doc(
    kind: AppKind,
    slug: &str,
    source: &str,
    target: &Resolved,
    state: &str,
    created_at: &str,
    updated_at: &str,
    services: Value,
    current: Option<&Value>,
) -> Value {
    use super::manifest as mf;
    let mut m = target.manifest.as_object().cloned().unwrap_or_default();
    m.remove("_rev");
    m.insert("_id".into(), json!(kind.doc_id(slug)));
    m.insert("slug".into(), json!(slug));
    m.insert("source".into(), json!(source));
    m.insert("state".into(), json!(state));
    m.insert("version".into(), json!(target.version));
    // An update clears it (`SetAvailableVersion("")`); an install keeps the manifest's.
    if current.is_some()
        || m.get("available_version")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        m.remove("available_version");
    }
    m.insert("checksum".into(), json!(target.checksum));
    m.insert("created_at".into(), json!(created_at));
    m.insert("updated_at".into(), json!(updated_at));
    m.remove("error");
    m.insert("permissions".into(), target.permissions());
    // Values of typed Go structs: written as built here, not re-sorted.
    let typed: &[&str] = match kind {
        AppKind::Webapp => {
            let get = |k: &str| target.manifest.get(k);
            m.insert("terms".into(), mf::terms(get("terms")));
            m.insert("intents".into(), mf::intents(get("intents")));
            m.insert("routes".into(), mf::routes(get("routes")));
            let services = match services {
                Value::Object(o) => {
                    let mut e: Vec<(String, Value)> = o.into_iter().collect();
                    e.sort_by(|a, b| a.0.cmp(&b.0));
                    Value::Object(e.into_iter().collect())
                }
                v => v,
            };
            m.insert("services".into(), services);
            m.insert("locales".into(), get("locales").cloned().unwrap_or(Value::Null));
            m.insert("notifications".into(), mf::notifications(get("notifications")));
            &["permissions", "terms", "intents", "routes", "services", "notifications"]
        }
        AppKind::Konnector => {
            let params = match m.get("parameters") {
                Some(p @ Value::Object(_)) => Some(p.clone()),
                _ => current
                    .and_then(|c| c.get("parameters"))
                    .filter(|p| p.is_object())
                    .cloned(),
            };
            match params {
                Some(p) => m.insert("parameters".into(), p),
                None => m.remove("parameters"),
            };
            &["permissions"]
        }
    };
    let mut entries: Vec<(String, Value)> = m.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Map::new();
    for (k, mut v) in entries {
        if !typed.contains(&k.as_str()) {
            mf::sort_keys(&mut v);
        }
        out.insert(k, v);
    }
    Value::Object(out)
}

async fn install(
    store: &Store,
    fs_root: &Path,
    domain: &str,
    prefix: &str,
    c: &AppChange,
    target: &Resolved,
    code: &Code,
) -> Result<()> {
    let kind = c.kind;
    let slug = c.slug.as_str();
    let db = layout::db_name(prefix, kind.doctype());
    let id = kind.doc_id(slug);
    let current = get(store, &db, &id).await?;

    // 1. The code.
    let dir = slug_dir(fs_root, domain, kind, slug)?;
    // cozy-stack's file fetcher names the folder without a checksum, whatever the manifest says.
    let dir_sum = match target.code {
        CodeSource::Dir { .. } => "",
        CodeSource::Tarball { .. } => target.checksum.as_str(),
    };
    let vdir = version_dir(&target.version, dir_sum)?;
    let inst = fsops::instance_dir(fs_root, domain)?;
    if !inst.is_dir() {
        bail!("{} does not exist; the instance must be repaired first", inst.display());
    }
    let dir2 = dir.clone();
    let vdir2 = vdir.clone();
    let code2 = code.clone();
    tokio::task::spawn_blocking(move || write_code(&dir2, &vdir2, &code2))
        .await
        .context("writing the code")??;

    // 2. The permission doc.
    let old_perms = current.as_ref().map(|d| d.get("permissions"));
    upsert_permission(store, prefix, kind, slug, &target.version, &target.manifest, old_perms).await?;

    // 3. Triggers of the services.
    let services = match kind {
        AppKind::Webapp => {
            let old = current.as_ref().and_then(|d| d.get("services"));
            sync_triggers(store, domain, prefix, slug, old, target.manifest.get("services")).await?
        }
        AppKind::Konnector => Value::Null,
    };

    // 4. The app doc.
    let t = now();
    let created_at = current
        .as_ref()
        .and_then(|d| d.get("created_at"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| t.clone());
    // An app installed deactivated stays so (`endState` of the installer).
    let state = match current.as_ref().and_then(|d| d.get("state")).and_then(Value::as_str) {
        Some("installed") => "installed",
        _ => "ready",
    };
    let mut doc = app_doc(
        kind,
        slug,
        &c.source,
        target,
        state,
        &created_at,
        &t,
        services,
        current.as_ref(),
    );
    if let Some(rev) = current.as_ref().and_then(|d| d.get("_rev")) {
        doc["_rev"] = rev.clone();
    }
    put_current(store, &db, doc).await?;

    // 5. Other versions' code.
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy() != vdir && e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Leaves the app doc in state `errored` with the error, after a failed install or repair.
async fn mark_errored(store: &Store, prefix: &str, c: &AppChange, target: &Resolved, error: &str) -> Result<()> {
    let db = layout::db_name(prefix, c.kind.doctype());
    let id = c.kind.doc_id(&c.slug);
    let t = now();
    let mut doc = match get(store, &db, &id).await? {
        Some(d) => d,
        None => app_doc(c.kind, &c.slug, &c.source, target, "errored", &t, &t, Value::Null, None),
    };
    let m = doc
        .as_object_mut()
        .ok_or_else(|| anyhow!("{db}/{id} is not an object"))?;
    m.insert("state".into(), json!("errored"));
    m.insert("error".into(), json!(error));
    m.insert("updated_at".into(), json!(t));
    put_current(store, &db, doc).await
}

async fn uninstall(store: &Store, fs_root: &Path, domain: &str, prefix: &str, kind: AppKind, slug: &str) -> Result<()> {
    let db = layout::db_name(prefix, kind.doctype());
    let id = kind.doc_id(slug);
    let current = get(store, &db, &id).await?;
    // 1. Triggers.
    if let Some(services) = current
        .as_ref()
        .and_then(|d| d.get("services"))
        .and_then(Value::as_object)
    {
        let tdb = layout::db_name(prefix, "io.cozy.triggers");
        for s in services.values() {
            if let Some(tid) = s.get("trigger_id").and_then(Value::as_str).filter(|i| !i.is_empty()) {
                delete_if_present(store, &tdb, tid).await?;
            }
        }
    }
    // 2. Permission docs.
    let pdb = layout::db_name(prefix, "io.cozy.permissions");
    for p in permission_docs(store, prefix, kind, slug).await? {
        if let Some(pid) = p.get("_id").and_then(Value::as_str) {
            delete_if_present(store, &pdb, pid).await?;
        }
    }
    // 3. Code.
    let dir = slug_dir(fs_root, domain, kind, slug)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    // 4. The app doc.
    delete_if_present(store, &db, &id).await
}

/// Summary of outcomes by op, for messages.
pub fn count(outcomes: &[AppOutcome]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.ok) {
        let k = match o.op {
            AppOp::Install => "installed",
            AppOp::Update | AppOp::Repair => "updated",
            AppOp::Uninstall => "uninstalled",
            AppOp::Unmanaged => continue,
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
