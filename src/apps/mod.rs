//! Apps stage: webapps and konnectors declared per instance (cozy-stack's `io.cozy.apps` and
//! `io.cozy.konnectors`).
//!
//! It plugs into the pipeline at three points:
//! - before planning, [`gather`] does the I/O the pure planner may not: it reads the installed apps
//!   of every instance that manages apps (one bulk read per database, bounded concurrency) and
//!   resolves each distinct declared source once for the whole fleet ([`resolve`]). Both results
//!   travel in [`Actual::apps`](crate::actual::Actual) as data;
//! - [`plan::plan_apps`] (pure) compares them and yields the app changes of each instance;
//! - [`install::apply_apps`] (the executor) downloads each needed code once, then installs, updates
//!   and uninstalls, instance by instance, as cozy-stack's installer does.
//!
//! Mirrors cozy-stack `model/app` (installer, webapp, konnector, fetchers), `model/permission`
//! (`createAppSet`) and `pkg/registry` at commit db1163854f06 (2026-07).

pub mod actual;
pub mod fetch;
pub mod http;
pub mod install;
pub mod json;
pub mod manifest;
pub mod perms;
pub mod plan;
pub mod registry;
pub mod render;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actual::Actual;
use crate::clusters::Stores;
use crate::desired::Desired;
use crate::store::Store;

/// A webapp or a konnector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    Webapp,
    Konnector,
}

impl AppKind {
    /// The doctype (and database) of the app docs.
    pub fn doctype(self) -> &'static str {
        match self {
            AppKind::Webapp => "io.cozy.apps",
            AppKind::Konnector => "io.cozy.konnectors",
        }
    }
    /// The manifest file name in the app's code.
    pub fn manifest_name(self) -> &'static str {
        match self {
            AppKind::Webapp => "manifest.webapp",
            AppKind::Konnector => "manifest.konnector",
        }
    }
    /// The folder of the code under the instance folder.
    pub fn code_dir(self) -> &'static str {
        match self {
            AppKind::Webapp => ".cozy_apps",
            AppKind::Konnector => ".cozy_konnectors",
        }
    }
    /// The permission doc `type`.
    pub fn permission_type(self) -> &'static str {
        match self {
            AppKind::Webapp => "app",
            AppKind::Konnector => "konnector",
        }
    }
    /// The manifest `type` cozy-stack expects.
    pub fn manifest_type(self) -> &'static str {
        match self {
            AppKind::Webapp => "webapp",
            AppKind::Konnector => "konnector",
        }
    }
    /// `app` or `konnector`, as the plan shows it.
    pub fn label(self) -> &'static str {
        match self {
            AppKind::Webapp => "app",
            AppKind::Konnector => "konnector",
        }
    }
    /// The app doc id: `io.cozy.apps/<slug>`.
    pub fn doc_id(self, slug: &str) -> String {
        format!("{}/{slug}", self.doctype())
    }
}

/// Where an app comes from (cozy-stack's supported source schemes, minus git).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case")]
pub enum AppSource {
    /// `registry://<slug>/<channel>[/<version>]`.
    Registry {
        slug: String,
        channel: String,
        version: Option<String>,
    },
    /// `file:///abs/dir`: a directory holding the manifest.
    File { path: PathBuf },
    /// `http(s)://…tar(.gz)[#sha256]`.
    Http { url: String, sha256: Option<String> },
}

impl AppSource {
    /// The source URL written in the app doc's `source`.
    pub fn url(&self) -> String {
        match self {
            AppSource::Registry {
                slug,
                channel,
                version: None,
            } => format!("registry://{slug}/{channel}"),
            AppSource::Registry {
                slug,
                channel,
                version: Some(v),
            } => format!("registry://{slug}/{channel}/{v}"),
            // Escaped as Go's `url.URL.String()` escapes the path (a space is `%20`).
            AppSource::File { path } => url::Url::from_file_path(path)
                .map(|u| u.to_string())
                .unwrap_or_else(|()| format!("file://{}", path.display())),
            AppSource::Http { url, sha256: None } => url.clone(),
            AppSource::Http { url, sha256: Some(s) } => format!("{url}#{s}"),
        }
    }
}

/// One declared app of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredApp {
    pub kind: AppKind,
    pub slug: String,
    pub source: AppSource,
    /// The registries to ask, in order (`[registries]` of the instance's context, or `default`).
    pub registries: Vec<String>,
}

impl DesiredApp {
    /// The key of this app's resolution: apps with the same key resolve to the same version.
    pub fn resolve_key(&self) -> String {
        match &self.source {
            AppSource::Registry { .. } => format!(
                "{}|{}|{}",
                self.kind.label(),
                self.source.url(),
                self.registries.join(" ")
            ),
            _ => format!("{}|{}", self.kind.label(), self.source.url()),
        }
    }
}

/// The apps an instance manages. Present on an instance when the configuration declares apps for
/// it (a list, an app table, or `apps_prune`); absent, its apps are neither read nor touched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredApps {
    /// Uninstall the installed apps that are not declared.
    pub prune: bool,
    /// Sorted by (kind, slug), one entry per (kind, slug).
    pub list: Vec<DesiredApp>,
}

/// Where the code of a resolved app is fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum CodeSource {
    /// A tarball (gzip or plain), checked against `sha256` when given; files under `prefix` are
    /// taken with the prefix removed.
    Tarball {
        url: String,
        sha256: Option<String>,
        prefix: String,
    },
    /// A local directory.
    Dir { path: PathBuf },
}

/// A declared source resolved to one concrete version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub version: String,
    /// The sha256 written in the doc's `checksum` (the registry's, or the `#fragment`), or "".
    pub checksum: String,
    /// The manifest as received.
    pub manifest: Value,
    pub code: CodeSource,
}

impl Resolved {
    /// The manifest's `permissions` as cozy-stack writes them, or `{}`.
    pub fn permissions(&self) -> Value {
        permissions_of(&self.manifest)
    }
}

/// `permissions` of a manifest or app doc, re-encoded as cozy-stack writes them ([`perms`]),
/// `{}` when absent.
pub fn permissions_of(doc: &Value) -> Value {
    match doc.get("permissions") {
        Some(v @ Value::Object(_)) => perms::normalize(Some(v)),
        _ => Value::Object(Default::default()),
    }
}

/// One app as installed on an instance (from its doc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstalledApp {
    pub kind: AppKind,
    pub slug: String,
    pub source: String,
    pub version: String,
    pub checksum: String,
    pub state: String,
    pub error: Option<String>,
    pub permissions: Value,
}

/// What the apps stage read before planning.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppsActual {
    /// Installed apps of each instance whose apps were read, sorted by (kind, slug).
    pub installed: BTreeMap<String, Vec<InstalledApp>>,
    /// Resolution of each distinct declared source, by [`DesiredApp::resolve_key`]; `Err` holds the
    /// message.
    pub resolved: BTreeMap<String, Result<Resolved, String>>,
}

/// The store holding the databases of an instance on cluster `couch_cluster` (its instance doc's
/// field, or where the planner placed a new instance). Every access to an instance's `io.cozy.apps`,
/// `io.cozy.konnectors`, `io.cozy.permissions` and `io.cozy.triggers` goes through here.
pub fn instance_store(stores: &Stores, couch_cluster: u32) -> &Store {
    stores.for_cluster(couch_cluster)
}

/// Reads the installed apps of every instance that manages apps and resolves every declared
/// source, into `actual.apps`. With no store (an embedded store not created yet), only resolves.
pub async fn gather(
    store: Option<&Stores>,
    desired: &Desired,
    actual: &mut Actual,
    parallelism: usize,
) -> anyhow::Result<()> {
    let wanted: Vec<&DesiredApp> = desired
        .instances
        .values()
        .filter(|i| i.state == crate::desired::InstanceState::Present)
        .filter_map(|i| i.apps.as_ref())
        .flat_map(|a| a.list.iter())
        .collect();
    let resolved = resolve::resolve_all(&wanted, parallelism).await;
    let installed = match store {
        Some(s) => actual::read_installed(s, desired, actual, parallelism).await?,
        None => BTreeMap::new(),
    };
    actual.apps = AppsActual { installed, resolved };
    Ok(())
}

/// A fixed-length lowercase hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Whether a slug is valid for cozy-stack (`^[a-z0-9\-]+$`).
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::AppSource;

    #[test]
    fn source_urls_are_written_as_cozy_stack_writes_them() {
        let f = AppSource::File {
            path: "/srv/my apps/tool".into(),
        };
        assert_eq!(f.url(), "file:///srv/my%20apps/tool");
        let r = AppSource::Registry {
            slug: "drive".into(),
            channel: "beta".into(),
            version: Some("1.0.0".into()),
        };
        assert_eq!(r.url(), "registry://drive/beta/1.0.0");
    }
}
