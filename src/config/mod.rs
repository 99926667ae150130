//! Config stage: reads `instances.toml`, validates it without any I/O beyond reading the file, and
//! produces the [`Desired`](crate::desired::Desired) state. Every error carries file, line and column.
//!
//! The types below document the file format and generate `schemas/instances.schema.json`
//! (schemars). The parser in [`parse`] walks the TOML document itself so that it can keep positions,
//! collect every error in one run and suggest the key the user meant.

pub mod diagnostics;
pub mod format;
pub mod parse;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use diagnostics::{ConfigError, Diagnostic, Severity};
pub use parse::{Loaded, load, load_str};

/// The configuration file of cozyform (`instances.toml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cozyform instances file")]
pub struct ConfigFile {
    /// When true, instances present in CouchDB but absent from this file are destroyed.
    #[serde(default)]
    pub prune: Option<bool>,
    /// The CouchDB server. Omit this table to use the embedded store next to the config file.
    #[serde(default)]
    pub couchdb: Option<CouchdbConfig>,
    /// Where instance folders live on disk.
    #[serde(default)]
    pub storage: Option<StorageConfig>,
    /// Values applied to every instance that does not set the key.
    #[serde(default)]
    pub defaults: Option<InstanceDefaults>,
    /// The instances, keyed by domain.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceConfig>,
    /// A plan destroying more instances than this needs the operator to type their number (or,
    /// with --auto-approve, `--max-destroy N`). Default 1.
    #[serde(default)]
    pub max_destroy: Option<u64>,
    /// Before destroying an instance, write a verified archive of it here (one `.tar.gz` per
    /// instance; `cozyform restore` brings it back). Relative to the config file.
    #[serde(default)]
    pub backup_dir: Option<String>,
    /// When true, apps installed on an instance but not declared for it are uninstalled (default
    /// false: they are reported and left alone). Also settable in `[defaults]` and per instance.
    #[serde(default)]
    pub apps_prune: Option<bool>,
    /// Apps registries by context name, each a list of URLs tried in order (cozy-stack's
    /// `registries`). An instance uses the list of its `context`, else `default`.
    #[serde(default)]
    pub registries: Option<BTreeMap<String, Vec<String>>>,
}

/// `[instances."<domain>".app.<slug>]` or `.konnector.<slug>`: where an app comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// `registry://<slug>[/<channel>[/<version>]]` (default `registry://<slug>/stable`),
    /// `file:///abs/dir` or `file://./dir` (relative to the config file; a folder holding
    /// manifest.webapp or manifest.konnector), or `http(s)://…tar.gz[#<sha256>]`.
    pub source: Option<String>,
    /// Pins a registry source to this version; without it, the channel's latest.
    pub version: Option<String>,
}

/// `[couchdb]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CouchdbConfig {
    /// URL of the CouchDB server, e.g. `http://127.0.0.1:5984/`. Credentials come from
    /// `COUCHDB_USER` / `COUCHDB_PASSWORD`, or `user:pass@` in the URL.
    pub url: String,
    /// Several CouchDB clusters, as cozy-stack's `couchdb.clusters`: each instance's databases live on
    /// the cluster its instance doc's `couch_cluster` names (an index into this list; absent = 0).
    /// `global/instances` stays on `url`. Without this list, everything is on `url`.
    #[serde(default)]
    pub clusters: Option<Vec<ClusterConfig>>,
}

/// `[[couchdb.clusters]]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// URL of the cluster; credentials as for `[couchdb] url`.
    pub url: String,
    /// Whether new instances may be placed on this cluster (default true, as in cozy-stack).
    #[serde(default)]
    pub instance_creation: Option<bool>,
}

/// `[storage]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Root of the instance folders (`<fs_root>/<domain>/`). Relative paths are relative to the
    /// config file. Default: `.cozyform/storage` next to the config file.
    pub fs_root: Option<String>,
}

/// A disk quota: a humanized size (`"5GB"` = 5e9 bytes, `"5GiB"` = 5·2³⁰) or a number of bytes.
/// `0` means unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DiskQuota {
    Human(String),
    Bytes(u64),
}

/// `[defaults]`: every key an instance can set, except those that identify one instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceDefaults {
    /// Locale of the instance (`en`, `fr`, …). cozy-stack translates only `en` and `fr`.
    pub locale: Option<String>,
    /// Email of the owner (settings doc `email`, and the "myself" contact).
    pub email: Option<String>,
    /// Public name of the owner (settings doc `public_name`).
    pub public_name: Option<String>,
    /// Phone number (settings doc `phone`).
    pub phone: Option<String>,
    /// Time zone (settings doc `tz`), e.g. `Europe/Paris`.
    pub tz: Option<String>,
    /// Context name (instance `context`).
    pub context: Option<String>,
    pub disk_quota: Option<DiskQuota>,
    /// Extra keys of the settings doc; string values. Merged with the instance's own `settings`.
    pub settings: Option<BTreeMap<String, String>>,
    /// Whether the instance is blocked.
    pub blocked: Option<bool>,
    /// Reason code: LOGIN_FAILED, PAYMENT_FAILED, IMPORTING, MOVING, UNKNOWN, or a custom string.
    pub blocking_reason: Option<String>,
    /// Any plan that would destroy the instance fails.
    pub prevent_destroy: Option<bool>,
    /// When the locale changes, also rename the default directories (Administrative, Photos) from
    /// the old locale's name to the new one, if they still have the old default name. Default false.
    pub rename_default_dirs: Option<bool>,
    /// Webapps of every instance that does not set `apps`: bare slugs, installed from
    /// `registry://<slug>/stable`.
    pub apps: Option<Vec<String>>,
    /// Uninstall the apps that are not declared (default false).
    pub apps_prune: Option<bool>,
    /// Webapps of the default list with a source or a pinned version, by slug: declared on every
    /// instance that does not set `apps` (or names the slug in it, or in `apps_add`), unless
    /// removed by its `apps_remove` or overridden by its own `app.<slug>`.
    pub app: Option<BTreeMap<String, AppConfig>>,
    /// Konnectors of every instance that manages apps, by slug, unless overridden by its own
    /// `konnector.<slug>`.
    pub konnector: Option<BTreeMap<String, AppConfig>>,
}

/// Whether an instance must exist.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateConfig {
    Present,
    Absent,
}

/// `[instances."<domain>"]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// `present` (default) or `absent`: destroy the instance if it exists.
    pub state: Option<StateConfig>,
    /// The domain this instance had: apply renames that instance (keeping its databases, moving its
    /// folder, setting `old_domain` so cozy-stack redirects the old domain with a 308) instead of
    /// destroying one instance and creating another. A no-op once done; it may stay in the file.
    pub renamed_from: Option<String>,
    pub locale: Option<String>,
    pub email: Option<String>,
    pub public_name: Option<String>,
    pub phone: Option<String>,
    pub tz: Option<String>,
    pub context: Option<String>,
    pub disk_quota: Option<DiskQuota>,
    /// Extra domains of the instance; unique across every instance.
    pub domain_aliases: Option<Vec<String>>,
    /// cloudery/manager id (instance `uuid`).
    pub uuid: Option<String>,
    pub settings: Option<BTreeMap<String, String>>,
    pub blocked: Option<bool>,
    pub blocking_reason: Option<String>,
    pub prevent_destroy: Option<bool>,
    pub rename_default_dirs: Option<bool>,
    /// Webapps (bare slugs) of this instance; replaces `[defaults] apps`.
    pub apps: Option<Vec<String>>,
    /// Webapps added to the default list.
    pub apps_add: Option<Vec<String>>,
    /// Webapps removed from the default list.
    pub apps_remove: Option<Vec<String>>,
    /// Uninstall the apps that are not declared (default false).
    pub apps_prune: Option<bool>,
    /// Webapps with a source or a pinned version, by slug; each is also declared.
    pub app: Option<BTreeMap<String, AppConfig>>,
    /// Konnectors by slug.
    pub konnector: Option<BTreeMap<String, AppConfig>>,
    /// Index of the `[[couchdb.clusters]]` entry holding the instance's databases. On creation,
    /// the instance goes there (the cluster must have `instance_creation = true`); when absent, the
    /// least-loaded cluster with `instance_creation = true` is chosen. An existing instance is never
    /// moved: a different value is a plan error.
    pub couch_cluster: Option<u32>,
}

/// Keys of the top-level table, in canonical order.
pub const TOP_KEYS: &[&str] = &[
    "prune",
    "apps_prune",
    "max_destroy",
    "backup_dir",
    "couchdb",
    "storage",
    "registries",
    "defaults",
    "instances",
];
/// Keys of `app.<slug>` and `konnector.<slug>` tables.
pub const APP_KEYS: &[&str] = &["source", "version"];
pub const COUCHDB_KEYS: &[&str] = &["url", "clusters"];
pub const CLUSTER_KEYS: &[&str] = &["url", "instance_creation"];
pub const STORAGE_KEYS: &[&str] = &["fs_root"];
/// Keys of an instance table, in canonical order.
pub const INSTANCE_KEYS: &[&str] = &[
    "state",
    "renamed_from",
    "locale",
    "email",
    "public_name",
    "phone",
    "tz",
    "context",
    "disk_quota",
    "domain_aliases",
    "uuid",
    "settings",
    "blocked",
    "blocking_reason",
    "prevent_destroy",
    "rename_default_dirs",
    "apps",
    "apps_add",
    "apps_remove",
    "apps_prune",
    "app",
    "konnector",
    "couch_cluster",
];
/// Keys of `[defaults]`.
pub const DEFAULT_KEYS: &[&str] = &[
    "locale",
    "email",
    "public_name",
    "phone",
    "tz",
    "context",
    "disk_quota",
    "settings",
    "blocked",
    "blocking_reason",
    "prevent_destroy",
    "rename_default_dirs",
    "apps",
    "apps_prune",
    "app",
    "konnector",
];
/// Instance keys stored in the settings doc rather than the instance doc.
pub const SETTINGS_DOC_KEYS: &[&str] = &["email", "public_name", "phone", "tz"];
/// Keys cozy-stack moves out of the settings doc onto the instance: never valid under `settings`.
pub const SETTINGS_RESERVED: &[&str] = &[
    "_id",
    "_rev",
    "context",
    "locale",
    "uuid",
    "oidc_id",
    "tos",
    "tos_latest",
    "auth_mode",
    "auto_update",
    "onboarding_finished",
    "sponsorships",
    "feature_sets",
];

/// The JSON Schema of the config file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ConfigFile)).expect("schema serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(schema: &serde_json::Value, def: Option<&str>) -> Vec<String> {
        let node = match def {
            None => schema,
            Some(d) => &schema["$defs"][d],
        };
        let mut keys: Vec<String> = node["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn parser_key_lists_match_the_schema_types() {
        let schema = json_schema();
        assert_eq!(props(&schema, None), sorted(TOP_KEYS));
        assert_eq!(props(&schema, Some("InstanceConfig")), sorted(INSTANCE_KEYS));
        assert_eq!(props(&schema, Some("InstanceDefaults")), sorted(DEFAULT_KEYS));
        assert_eq!(props(&schema, Some("CouchdbConfig")), sorted(COUCHDB_KEYS));
        assert_eq!(props(&schema, Some("StorageConfig")), sorted(STORAGE_KEYS));
        assert_eq!(props(&schema, Some("ClusterConfig")), sorted(CLUSTER_KEYS));
        assert_eq!(props(&schema, Some("AppConfig")), sorted(APP_KEYS));
    }
}
