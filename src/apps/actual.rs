//! Installed apps: every `io.cozy.apps` and `io.cozy.konnectors` doc of the instances that manage
//! apps, one paginated `_all_docs?include_docs=true` per database, instances read concurrently.

use std::collections::BTreeMap;

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;

use super::{AppKind, InstalledApp, instance_store, permissions_of};
use crate::actual::Actual;
use crate::clusters::{Stores, couch_cluster_of};
use crate::desired::Desired;
use crate::layout;
use crate::store::{Store, StoreResult};

/// Page size of the app doc scans.
pub const APPS_PAGE: usize = 500;

/// Every doc of a database, design docs skipped, in pages.
pub async fn all_docs(store: &Store, db: &str) -> StoreResult<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.all_docs_page(db, after.as_deref(), APPS_PAGE).await?;
        let n = page.len();
        after = page
            .last()
            .and_then(|d| d.get("_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        out.extend(page.into_iter().filter(|d| {
            !d.get("_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .starts_with("_design/")
        }));
        if n < APPS_PAGE {
            return Ok(out);
        }
    }
}

fn installed_of(kind: AppKind, doc: &Value) -> Option<InstalledApp> {
    let id = doc.get("_id").and_then(Value::as_str)?;
    let slug = doc
        .get("slug")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| id.strip_prefix(&format!("{}/", kind.doctype())).map(str::to_string))?;
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(InstalledApp {
        kind,
        slug,
        source: s("source"),
        version: s("version"),
        checksum: s("checksum"),
        state: s("state"),
        error: doc
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string),
        permissions: permissions_of(doc),
    })
}

/// The installed apps and konnectors of one instance (on cluster `couch_cluster`), sorted by
/// (kind, slug).
pub async fn read_instance_apps(
    stores: &Stores,
    couch_cluster: u32,
    db_prefix: &str,
) -> StoreResult<Vec<InstalledApp>> {
    let store = instance_store(stores, couch_cluster);
    let (apps_db, konns_db) = (
        layout::db_name(db_prefix, AppKind::Webapp.doctype()),
        layout::db_name(db_prefix, AppKind::Konnector.doctype()),
    );
    let (apps, konns) = tokio::try_join!(all_docs(store, &apps_db), all_docs(store, &konns_db))?;
    let mut out: Vec<InstalledApp> = apps
        .iter()
        .filter_map(|d| installed_of(AppKind::Webapp, d))
        .chain(konns.iter().filter_map(|d| installed_of(AppKind::Konnector, d)))
        .collect();
    out.sort_by(|a, b| (a.kind, &a.slug).cmp(&(b.kind, &b.slug)));
    Ok(out)
}

/// Reads the apps of every existing instance whose configuration manages apps.
pub async fn read_installed(
    stores: &Stores,
    desired: &Desired,
    actual: &Actual,
    parallelism: usize,
) -> anyhow::Result<BTreeMap<String, Vec<InstalledApp>>> {
    let wanted: Vec<(String, u32, String)> = actual
        .instances
        .iter()
        .filter(|i| desired.instances.get(&i.domain).is_some_and(|d| d.apps.is_some()))
        .map(|i| (i.domain.clone(), couch_cluster_of(&i.doc), i.db_prefix.clone()))
        .collect();
    let results: Vec<(String, StoreResult<Vec<InstalledApp>>)> =
        futures::stream::iter(wanted.into_iter().map(|(domain, cluster, prefix)| async move {
            let r = read_instance_apps(stores, cluster, &prefix).await;
            (domain, r)
        }))
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for (domain, r) in results {
        out.insert(
            domain.clone(),
            r.with_context(|| format!("reading the apps of {domain}"))?,
        );
    }
    Ok(out)
}
