//! Apply stage: the executor. It carries out a plan against the store and the filesystem, produces
//! everything the pure planner may not (ids, secrets, the time) and reports what it did, also when
//! some of it failed.
//!
//! # Order of the steps, and why
//! Every step is idempotent (client-chosen ids, "exists" tolerated), and the order makes a crash at
//! any point leave a state that the next plan recognizes and repairs:
//!
//! Create:
//! 0. a create mark, `_local/cozyform-create-<prefix>` in `global/instances` (deleted after step 4):
//!    it tells the leftovers of an interrupted create (steps 1–3) from a create cozy-stack has
//!    under way, so that only cozyform's own leftovers are ever removed (see `crate::orphans`);
//! 1. the 16 databases (concurrently), then the settings doc and the "myself" contact (each one PUT);
//! 2. the 22 mango indexes and 13 views (concurrently; views PUT without a read, as the databases
//!    are new — a conflict falls back to read-compare-write);
//! 3. the root, trash, Administrative and Photos directory docs, in one `_bulk_docs`;
//! 4. the instance doc in `global/instances`, PUT with a client-chosen id — from here on, the plan
//!    sees the instance. A crash before this point leaves no instance doc, so the next plan creates
//!    it again and steps 1–3 find their work done. Because the id is derived from the domain, a
//!    retry, a crash between the request and its answer, or a second operator can never produce a
//!    second instance doc for one domain: they get a conflict instead.
//! 5. the folders on disk (`<fs_root>/<domain>`, `.cozy_trash`, Administrative, Photos) — last, so
//!    a missing folder marks an unfinished creation, which the next plan repairs;
//! 6. a final update of the instance doc, which ends at rev 2 as cozy-stack's does.
//!
//! Update: renames first (`renamed_from`'s folder move, default directories of a locale change; see
//! [`crate::apply_renames`]), then repairs, then the instance doc (the commit point of a rename or
//! a locale change), then the settings doc and the folders.
//!
//! Destroy keeps `deleting: true` on the instance doc from its first step until the doc itself is
//! deleted (cozy-stack resets it just before deleting the databases): a crash midway leaves an
//! instance that cozy-stack answers 404 for and that the next plan shows as a deletion to finish.
//! Then: every database of the prefix (listed again at apply time), the folder, the instance doc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use rand::RngCore;
use serde_json::{Map, Value, json};

use crate::clusters::Stores;
use crate::desired::{Desired, DesiredInstance};
use crate::fsops;
use crate::layout;
use crate::plan::{Action, Change, CreateSpec, DocKind, Existing, InstancePlan, Plan, Repair};
use crate::store::{Store, StoreError};

/// How many times a write is retried after a 409 (re-read, re-check, retry).
const CONFLICT_RETRIES: usize = 8;

/// Options of a run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub fs_root: PathBuf,
    /// Set (by Ctrl-C) to stop starting new instances; work under way finishes.
    pub cancel: Arc<AtomicBool>,
    /// When set, each destroy first writes a verified archive there (see [`crate::backup`]).
    pub backup_dir: Option<PathBuf>,
}

impl ApplyOptions {
    pub fn new(parallelism: usize, fs_root: PathBuf) -> Self {
        ApplyOptions {
            parallelism,
            fs_root,
            cancel: Arc::new(AtomicBool::new(false)),
            backup_dir: None,
        }
    }
}

/// What happened to one instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceOutcome {
    pub domain: String,
    pub action: Action,
    pub ok: bool,
    pub error: Option<String>,
    /// For a created instance: `https://<domain>/?registerToken=<hex>`. A secret, shown once.
    pub registration_link: Option<String>,
    /// For a destroyed instance with a backup dir: the archive written before the destroy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// For a rename (`renamed_from`): the domain the instance had.
    pub renamed_from: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub global_error: Option<String>,
    pub outcomes: Vec<InstanceOutcome>,
    /// Leftovers (see [`crate::orphans`]) removed, and the errors of those that could not be.
    pub leftovers_removed: usize,
    pub leftover_errors: Vec<String>,
    /// Set when the lock could not be released at the end (the message says how to release it).
    pub lock_error: Option<String>,
    /// What happened to each app change (see [`crate::apps::install`]).
    pub apps: Vec<crate::apps::install::AppOutcome>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.ok).count()
            + usize::from(self.global_error.is_some())
            + self.leftover_errors.len()
            + usize::from(self.lock_error.is_some())
            + self.apps.iter().filter(|o| !o.ok).count()
    }
    pub fn count(&self, action: Action) -> usize {
        self.outcomes.iter().filter(|o| o.ok && o.action == action).count()
    }
}

/// The current time as cozy-stack writes it (RFC 3339 with nanoseconds, local offset).
fn now() -> String {
    layout::rfc3339_nano(&chrono::Local::now())
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Applies a plan with one store for everything (no clusters).
pub async fn apply(store: &Store, desired: &Desired, plan: &Plan, opts: &ApplyOptions) -> ApplyReport {
    apply_in(&Stores::single(store.clone()), desired, plan, opts).await
}

/// Applies a plan. Instances are independent: one failing does not stop the others. Instance docs
/// go to the main store, an instance's databases to its cluster (`stores.for_cluster`).
pub async fn apply_in(stores: &Stores, desired: &Desired, plan: &Plan, opts: &ApplyOptions) -> ApplyReport {
    let store = &stores.main;
    let mut report = ApplyReport::default();
    let work: Vec<&InstancePlan> = plan
        .instances
        .iter()
        .filter(|i| !matches!(i.action, Action::NoOp | Action::Unmanaged))
        .collect();
    let needs_global =
        plan.create_global_db || !plan.global.is_empty() || work.iter().any(|i| i.action == Action::Create);
    // Once the store stops answering (retries exhausted), no new instance is started: each would
    // only wait for its own retries to fail.
    let unreachable = AtomicBool::new(false);
    if needs_global && let Err(e) = ensure_global(store).await {
        unreachable.store(store_unreachable(&e), Ordering::SeqCst);
        report.global_error = Some(format!("{e:#}"));
        // Without the global database nothing can be created; updates may still go on.
    }
    let global_failed = report.global_error.is_some();
    crate::progress::stage(work.len() as u64, "applying");
    let unreachable = &unreachable;
    let results: Vec<InstanceOutcome> = futures::stream::iter(work.into_iter().map(|ip| {
        let desired_inst = desired.instances.get(&ip.domain);
        async move {
            let mut link = None;
            let mut backup = None;
            let result = if opts.cancel.load(Ordering::SeqCst) {
                Err(anyhow!("not started: the run was interrupted"))
            } else if unreachable.load(Ordering::SeqCst) {
                Err(anyhow!("not started: the store stopped answering earlier in this run"))
            } else if global_failed && ip.action == Action::Create {
                Err(anyhow!("not created: global/instances could not be prepared"))
            } else {
                crate::progress::message(format!("{} {}", verb(ip.action), ip.domain));
                let r = apply_one(stores, desired_inst, ip, opts, &mut link, &mut backup).await;
                if let Err(e) = &r
                    && store_unreachable(e)
                {
                    unreachable.store(true, Ordering::SeqCst);
                }
                r
            };
            crate::progress::inc();
            InstanceOutcome {
                domain: ip.domain.clone(),
                action: ip.action,
                ok: result.is_ok(),
                error: result.err().map(|e| format!("{e:#}")),
                registration_link: link,
                backup,
                renamed_from: ip.rename.as_ref().map(|r| r.from.clone()),
            }
        }
    }))
    .buffer_unordered(opts.parallelism.max(1))
    .collect()
    .await;
    report.outcomes = results;
    report.outcomes.sort_by(|a, b| a.domain.cmp(&b.domain));
    // Leftovers last: each is checked again before it is removed (crate::orphans).
    for o in &plan.orphans {
        if opts.cancel.load(Ordering::SeqCst) {
            report
                .leftover_errors
                .push(format!("{}: not removed: the run was interrupted", o.describe()));
            continue;
        }
        match crate::orphans::remove(stores, &opts.fs_root, o).await {
            Ok(()) => report.leftovers_removed += 1,
            Err(e) => report.leftover_errors.push(format!("{}: {e:#}", o.describe())),
        }
    }
    report
}

/// The operation under way, for the progress bar.
fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "creating",
        Action::Update => "updating",
        Action::Repair => "repairing",
        Action::Destroy => "destroying",
        Action::NoOp | Action::Unmanaged => "checking",
    }
}

/// Whether an error comes from a store that stopped answering (after the client's retries).
fn store_unreachable(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<StoreError>().is_some_and(StoreError::is_retryable))
}

/// Applies one instance's plan. `link` receives the registration link as soon as the instance doc
/// holding its token is written, so that it is shown even when a later step fails.
async fn apply_one(
    stores: &Stores,
    want: Option<&DesiredInstance>,
    ip: &InstancePlan,
    opts: &ApplyOptions,
    link: &mut Option<String>,
    backup: &mut Option<String>,
) -> Result<()> {
    match ip.action {
        Action::Create => {
            let spec = ip.create.as_ref().ok_or_else(|| anyhow!("create without a spec"))?;
            let dbs = stores.for_cluster(spec.couch_cluster);
            create_instance(&stores.main, dbs, &opts.fs_root, spec, link).await
        }
        Action::Update | Action::Repair => {
            let ex = ip
                .existing
                .as_ref()
                .ok_or_else(|| anyhow!("update of an instance that was not read"))?;
            let dbs = stores.for_cluster(ex.couch_cluster);
            // Folder move and default-directory renames first: the instance doc is written last.
            // (The default directories live in the instance's files database, on its cluster.)
            crate::apply_renames::apply_moves(dbs, &opts.fs_root, ip, ex).await?;
            update_instance(
                &stores.main,
                dbs,
                &opts.fs_root,
                want,
                ex,
                &ip.domain,
                &ip.changes,
                &ip.repairs,
            )
            .await
        }
        Action::Destroy => {
            let ex = ip
                .existing
                .as_ref()
                .ok_or_else(|| anyhow!("destroy of an instance that was not read"))?;
            let dbs = stores.for_cluster(ex.couch_cluster);
            if let Some(dir) = &opts.backup_dir {
                // Before anything is deleted; a failed backup fails this destroy.
                let path = crate::backup::backup_instance(
                    &stores.main,
                    dbs,
                    &opts.fs_root,
                    dir,
                    &ex.id,
                    &ip.domain,
                    &ex.db_prefix,
                )
                .await
                .context("backing up the instance before destroying it; nothing was deleted")?;
                *backup = Some(path.display().to_string());
            }
            destroy_instance(&stores.main, dbs, &opts.fs_root, ex, &ip.domain).await
        }
        Action::NoOp | Action::Unmanaged => Ok(()),
    }
}

/// Creates `global/instances` if needed and defines its view and indexes (`InitGlobalDB`).
pub async fn ensure_global(store: &Store) -> Result<()> {
    let db = layout::GLOBAL_INSTANCES_DB;
    store.create_db(db).await.context("creating global/instances")?;
    for v in layout::global_views() {
        define_view(store, db, v).await?;
    }
    for i in layout::global_indexes() {
        store
            .create_index(db, &i.request())
            .await
            .with_context(|| format!("defining index {} of {db}", i.ddoc))?;
    }
    Ok(())
}

/// PUTs a view's design doc unless an identical one exists.
async fn define_view(store: &Store, db: &str, v: &layout::ViewDef) -> Result<()> {
    let id = format!("_design/{}", v.name);
    for _ in 0..CONFLICT_RETRIES {
        let existing = store
            .get_doc(db, &id)
            .await
            .with_context(|| format!("reading {db}/{id}"))?;
        let mut doc = v.design_doc();
        match &existing {
            Some(e) if v.matches(e) => return Ok(()),
            Some(e) => {
                doc["_rev"] = e.get("_rev").cloned().unwrap_or(Value::Null);
            }
            None => {}
        }
        match store.put_doc(db, &doc).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).with_context(|| format!("defining view {db}/{id}")),
        }
    }
    bail!("defining view {db}/{id}: it kept changing under us")
}

/// PUTs a view's design doc in a database just created, where it is normally missing: one request
/// instead of a read and a write. A conflict (the doc exists: a retried creation) falls back to
/// [`define_view`].
async fn put_new_view(store: &Store, db: &str, v: &layout::ViewDef) -> Result<()> {
    match store.put_doc(db, &v.design_doc()).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict { .. }) => define_view(store, db, v).await,
        Err(e) => Err(e).with_context(|| format!("defining view {db}/_design/{}", v.name)),
    }
}

/// Defines every index and view of the given doctypes in their databases, concurrently. `fresh`:
/// the databases were just created, so views are PUT without reading them first.
pub(crate) async fn define_design(store: &Store, db_prefix: &str, doctypes: &[&str], fresh: bool) -> Result<()> {
    let mut tasks = Vec::new();
    for i in layout::instance_indexes().filter(|i| doctypes.contains(&i.doctype)) {
        let db = layout::db_name(db_prefix, i.doctype);
        tasks.push(futures::future::Either::Left(async move {
            store
                .create_index(&db, &i.request())
                .await
                .with_context(|| format!("defining index {}/_design/{}", db, i.ddoc))
        }));
    }
    for v in layout::instance_views().filter(|v| doctypes.contains(&v.doctype)) {
        let db = layout::db_name(db_prefix, v.doctype);
        tasks.push(futures::future::Either::Right(async move {
            if fresh {
                put_new_view(store, &db, v).await
            } else {
                define_view(store, &db, v).await
            }
        }));
    }
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    Ok(())
}

async fn create_dbs(store: &Store, db_prefix: &str, doctypes: &[&str]) -> Result<()> {
    let results = futures::future::join_all(doctypes.iter().map(|dt| {
        let db = layout::db_name(db_prefix, dt);
        async move {
            store
                .create_db(&db)
                .await
                .with_context(|| format!("creating database {db}"))
        }
    }))
    .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Creates or completes a doc that must exist with at least these keys: PUT when missing; when
/// present, set the given keys (re-read and retry on conflict).
async fn upsert_keys(store: &Store, db: &str, id: &str, base: Value, set: &[(String, Option<Value>)]) -> Result<()> {
    for _ in 0..CONFLICT_RETRIES {
        let current = store
            .get_doc(db, id)
            .await
            .with_context(|| format!("reading {db}/{id}"))?;
        let doc = match current {
            None => {
                let mut d = base.clone();
                let m = d.as_object_mut().expect("docs are objects");
                m.insert("_id".into(), json!(id));
                apply_patch(m, set);
                d
            }
            Some(mut d) => {
                let m = d.as_object_mut().ok_or_else(|| anyhow!("{db}/{id} is not an object"))?;
                if !apply_patch(m, set) {
                    return Ok(());
                }
                d
            }
        };
        match store.put_doc(db, &doc).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).with_context(|| format!("writing {db}/{id}")),
        }
    }
    bail!("writing {db}/{id}: it kept changing under us (409 after {CONFLICT_RETRIES} re-reads)")
}

/// Sets (`Some`) or removes (`None`) keys of a doc. Returns whether anything changed, so that a
/// change already made (by an earlier try, or by someone else) is not written again.
fn apply_patch(m: &mut Map<String, Value>, set: &[(String, Option<Value>)]) -> bool {
    let mut changed = false;
    for (k, v) in set {
        if m.get(k) != v.as_ref() {
            changed = true;
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    changed
}

/// Ids of the Administrative and Photos dirs cozyform creates (see `layout::derived_id`).
fn default_dir_ids(prefix: &str) -> (String, String) {
    (
        layout::derived_id("dir-administrative", prefix),
        layout::derived_id("dir-photos", prefix),
    )
}

fn contact_id(prefix: &str) -> String {
    layout::derived_id("contact-myself", prefix)
}

async fn create_instance(
    global: &Store,
    store: &Store,
    fs_root: &Path,
    spec: &CreateSpec,
    link: &mut Option<String>,
) -> Result<()> {
    let domain = spec.domain.as_str();
    let prefix = spec.prefix.as_str();
    // Refuse a symlink before writing anything.
    fsops::instance_dir(fs_root, domain)?;
    if fsops::probe(fs_root, domain).symlink {
        bail!(
            "{} is a symbolic link; refusing to create the instance through it",
            fs_root.join(domain).display()
        );
    }

    // 0. The create mark: what steps 1–3 leave if the create is interrupted and the instance then
    // removed from the file is recognized as cozyform's leftover (crate::orphans).
    let mark = crate::orphans::create_mark_id(prefix);
    put_if_missing(
        global,
        layout::GLOBAL_INSTANCES_DB,
        &json!({ "_id": mark, "domain": domain }),
    )
    .await?;

    // 1. Databases, settings doc, myself contact.
    create_dbs(store, prefix, layout::INSTANCE_DOCTYPES).await?;
    let settings_db = layout::db_name(prefix, layout::SETTINGS);
    let entries: Vec<(String, Option<Value>)> =
        spec.settings.iter().map(|(k, v)| (k.clone(), Some(json!(v)))).collect();
    // In a database just created the doc is normally missing: PUT it at once; on a conflict (a
    // retried creation), complete the existing doc.
    match store.put_doc(&settings_db, &layout::settings_doc(&spec.settings)).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            upsert_keys(
                store,
                &settings_db,
                layout::SETTINGS_DOC_ID,
                layout::settings_doc(&BTreeMap::new()),
                &entries,
            )
            .await?
        }
        Err(e) => return Err(e).with_context(|| format!("writing {settings_db}/{}", layout::SETTINGS_DOC_ID)),
    }
    let contacts_db = layout::db_name(prefix, layout::CONTACTS);
    let cid = contact_id(prefix);
    let contact = layout::myself_contact(
        &cid,
        domain,
        spec.settings.get("email").map(String::as_str),
        spec.settings.get("public_name").map(String::as_str),
    );
    put_if_missing(store, &contacts_db, &contact).await?;

    // 2. Indexes and views.
    define_design(store, prefix, layout::INSTANCE_DOCTYPES, true).await?;

    // 3. Directory docs.
    let t = now();
    let names = layout::default_dir_names(&spec.locale);
    let (admin_id, photos_id) = default_dir_ids(prefix);
    let files_db = layout::db_name(prefix, layout::FILES);
    let dirs = vec![
        layout::root_dir_doc(&t),
        layout::trash_dir_doc(&t),
        layout::default_dir_doc(&admin_id, names.administrative, domain, &t, true),
        layout::default_dir_doc(&photos_id, names.photos, domain, &t, false),
    ];
    bulk_create(store, &files_db, &dirs).await?;

    // 4. The instance doc.
    let secrets = layout::InstanceSecrets {
        register_token: random_bytes(layout::REGISTER_TOKEN_LEN),
        session_secret: random_bytes(layout::SESSION_SECRET_LEN),
        oauth_secret: random_bytes(layout::OAUTH_SECRET_LEN),
        cli_secret: random_bytes(layout::CLI_SECRET_LEN),
    };
    let id = layout::derived_id("instance", domain);
    let new = layout::NewInstance {
        domain,
        domain_aliases: &spec.domain_aliases,
        prefix,
        locale: &spec.locale,
        uuid: spec.uuid.as_deref(),
        context: spec.context.as_deref(),
        blocked: spec.blocked,
        blocking_reason: spec.blocking_reason.as_deref(),
        disk_quota: spec.disk_quota,
    };
    let mut doc = layout::instance_doc(&id, &new, &secrets);
    if spec.couch_cluster != 0 {
        // omitempty in cozy-stack: only a non-zero cluster is written.
        doc["couch_cluster"] = json!(spec.couch_cluster);
        doc = Value::Object(layout::canonical_instance_order(
            doc.as_object().cloned().expect("docs are objects"),
        ));
    }
    let rev = match global.put_doc(layout::GLOBAL_INSTANCES_DB, &doc).await {
        Ok(rev) => rev,
        Err(StoreError::Conflict { .. }) => bail!(
            "an instance doc for {domain} appeared while cozyform was creating it (another apply running?); run plan again"
        ),
        Err(e) => return Err(e).context("writing the instance doc"),
    };
    *link = Some(format!(
        "https://{domain}/?registerToken={}",
        hex::encode(&secrets.register_token)
    ));
    // The instance doc now claims the prefix: the mark is no longer needed (a stale one is harmless).
    if let Ok(Some(m)) = global.get_doc(layout::GLOBAL_INSTANCES_DB, &mark).await {
        let rev = m.get("_rev").and_then(Value::as_str).unwrap_or_default();
        let _ = global.delete_doc(layout::GLOBAL_INSTANCES_DB, &mark, rev).await;
    }

    // 5. Folders on disk, last.
    fsops::ensure_dirs(
        fs_root,
        domain,
        &[layout::TRASH_DIR_NAME, names.administrative, names.photos],
    )?;

    // 6. Final update: the doc ends at rev 2, as after cozy-stack's creation.
    // A conflict means someone (cozy-stack, an operator) already wrote the doc after us: it is
    // past rev 1 then, and re-writing our version would undo their change.
    doc["_rev"] = json!(rev);
    match global.put_doc(layout::GLOBAL_INSTANCES_DB, &doc).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e).context("finishing the instance doc"),
    }

    Ok(())
}

/// PUTs a doc whose id is fixed; an existing doc is kept.
async fn put_if_missing(store: &Store, db: &str, doc: &Value) -> Result<()> {
    match store.put_doc(db, doc).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("writing {db}/{}", doc["_id"].as_str().unwrap_or(""))),
    }
}

/// `_bulk_docs` of new docs with fixed ids; docs that already exist are kept.
pub(crate) async fn bulk_create(store: &Store, db: &str, docs: &[Value]) -> Result<()> {
    let results = store
        .bulk_docs(db, docs)
        .await
        .with_context(|| format!("writing to {db}"))?;
    for r in results {
        if let Some(e) = r.error
            && e != "conflict"
        {
            bail!("writing {db}/{}: {e}", r.id);
        }
    }
    Ok(())
}

fn instance_patch(changes: &[Change], kind: DocKind) -> Vec<(String, Option<Value>)> {
    changes
        .iter()
        .filter(|c| c.doc == kind)
        .map(|c| (c.key.clone(), c.after.clone()))
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn update_instance(
    global: &Store,
    store: &Store,
    fs_root: &Path,
    want: Option<&DesiredInstance>,
    ex: &Existing,
    domain: &str,
    changes: &[Change],
    repairs: &[Repair],
) -> Result<()> {
    let prefix = ex.db_prefix.as_str();
    // Repairs first: databases before the docs that live in them.
    let missing_dbs: Vec<&str> = repairs
        .iter()
        .filter_map(|r| match r {
            Repair::Database { doctype } => layout::INSTANCE_DOCTYPES.iter().copied().find(|d| d == doctype),
            _ => None,
        })
        .collect();
    if !missing_dbs.is_empty() {
        create_dbs(store, prefix, &missing_dbs).await?;
        define_design(store, prefix, &missing_dbs, false).await?;
    }
    let files_db = layout::db_name(prefix, layout::FILES);
    let t = now();
    let mut dir_docs = Vec::new();
    for r in repairs {
        match r {
            Repair::RootDir => dir_docs.push(layout::root_dir_doc(&t)),
            Repair::TrashDir => dir_docs.push(layout::trash_dir_doc(&t)),
            Repair::Index { doctype, ddoc } => {
                if let Some(i) = layout::instance_indexes().find(|i| i.doctype == doctype && i.ddoc == ddoc) {
                    let db = layout::db_name(prefix, doctype);
                    store
                        .create_index(&db, &i.request())
                        .await
                        .with_context(|| format!("defining index {db}/_design/{ddoc}"))?;
                }
            }
            Repair::View { doctype, name } => {
                if let Some(v) = layout::instance_views().find(|v| v.doctype == doctype && v.name == name) {
                    define_view(store, &layout::db_name(prefix, doctype), v).await?;
                }
            }
            Repair::MyselfContact => {
                let settings = want.map(|w| &w.settings);
                let email = settings.and_then(|s| s.get("email")).map(String::as_str);
                let name = settings.and_then(|s| s.get("public_name")).map(String::as_str);
                let contact = layout::myself_contact(&contact_id(prefix), domain, email, name);
                put_if_missing(store, &layout::db_name(prefix, layout::CONTACTS), &contact).await?;
            }
            _ => {}
        }
    }
    if !dir_docs.is_empty() {
        bulk_create(store, &files_db, &dir_docs).await?;
    }

    let inst_patch = instance_patch(changes, DocKind::Instance);
    if !inst_patch.is_empty() {
        // A rename changes `domain`: the doc still has the old one until this write.
        let current = changes
            .iter()
            .find(|c| c.doc == DocKind::Instance && c.key == "domain")
            .and_then(|c| c.before.as_ref()?.as_str())
            .unwrap_or(domain);
        update_instance_doc(global, &ex.id, current, &inst_patch).await?;
    }
    let settings_patch = instance_patch(changes, DocKind::Settings);
    if !settings_patch.is_empty() || repairs.contains(&Repair::SettingsDoc) {
        let db = layout::db_name(prefix, layout::SETTINGS);
        upsert_keys(
            store,
            &db,
            layout::SETTINGS_DOC_ID,
            layout::settings_doc(&BTreeMap::new()),
            &settings_patch,
        )
        .await?;
    }

    if repairs
        .iter()
        .any(|r| matches!(r, Repair::Folder | Repair::TrashFolder))
    {
        // Folders of the default dirs cozyform created; dirs made by cozy-stack have random ids and
        // are never recreated here (a second doc with the same path would break the stack).
        let (admin_id, photos_id) = default_dir_ids(prefix);
        let dirs = store
            .get_docs(&files_db, &[admin_id, photos_id])
            .await
            .with_context(|| format!("reading {files_db}"))?;
        let names: Vec<String> = dirs
            .iter()
            .flatten()
            .filter_map(|d| d.get("name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let mut subdirs: Vec<&str> = vec![layout::TRASH_DIR_NAME];
        subdirs.extend(names.iter().map(String::as_str));
        fsops::ensure_dirs(fs_root, domain, &subdirs)?;
    }
    Ok(())
}

/// Patches the instance doc: re-read, check the change still applies, write; again on conflict.
async fn update_instance_doc(store: &Store, id: &str, domain: &str, patch: &[(String, Option<Value>)]) -> Result<()> {
    let db = layout::GLOBAL_INSTANCES_DB;
    for _ in 0..CONFLICT_RETRIES {
        let doc = store
            .get_doc(db, id)
            .await
            .context("reading the instance doc")?
            .ok_or_else(|| anyhow!("the instance doc of {domain} disappeared"))?;
        let doc_domain = doc.get("domain").and_then(Value::as_str);
        // For a rename, an earlier try may have written the new domain already.
        let renamed_to = patch
            .iter()
            .find(|(k, _)| k == "domain")
            .and_then(|(_, v)| v.as_ref()?.as_str());
        if doc_domain != Some(domain) && (renamed_to.is_none() || doc_domain != renamed_to) {
            bail!("the instance doc {id} no longer belongs to {domain}; run plan again");
        }
        let mut m: Map<String, Value> = doc.as_object().cloned().unwrap_or_default();
        if !apply_patch(&mut m, patch) {
            return Ok(());
        }
        match store
            .put_doc(db, &Value::Object(layout::canonical_instance_order(m)))
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).context("writing the instance doc"),
        }
    }
    bail!("the instance doc of {domain} kept changing under us (409 after {CONFLICT_RETRIES} re-reads)")
}

async fn destroy_instance(global: &Store, store: &Store, fs_root: &Path, ex: &Existing, domain: &str) -> Result<()> {
    let db = layout::GLOBAL_INSTANCES_DB;
    // Refuse a symlinked folder before touching anything.
    let dir = fsops::instance_dir(fs_root, domain)?;
    if fsops::probe(fs_root, domain).symlink {
        bail!("{} is a symbolic link; refusing to destroy through it", dir.display());
    }
    // 1. Flag the instance as being deleted.
    update_instance_doc(global, &ex.id, domain, &[("deleting".into(), Some(json!(true)))])
        .await
        .context("flagging the instance as deleting")?;
    // 2. Every database of the prefix, listed now.
    let esc = layout::escaped_db_prefix(&ex.db_prefix);
    let dbs = store
        .all_dbs(&format!("{esc}/"), &format!("{esc}0"))
        .await
        .context("listing the instance's databases")?;
    let results = futures::future::join_all(dbs.iter().map(|name| async move {
        store
            .delete_db(name)
            .await
            .with_context(|| format!("deleting database {name}"))
    }))
    .await;
    for r in results {
        r?;
    }
    // 3. The folder.
    fsops::remove_instance_dir(fs_root, domain)?;
    // 4. The instance doc.
    for _ in 0..CONFLICT_RETRIES {
        let Some(doc) = global.get_doc(db, &ex.id).await.context("reading the instance doc")? else {
            return Ok(());
        };
        let rev = doc.get("_rev").and_then(Value::as_str).unwrap_or_default().to_string();
        match global.delete_doc(db, &ex.id, &rev).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).context("deleting the instance doc"),
        }
    }
    bail!("deleting the instance doc of {domain}: it kept changing under us")
}
