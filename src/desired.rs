//! The desired state: what the configuration file declares, validated and normalized
//! (output of the config stage, input of the planner). No I/O here.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the actual state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A CouchDB server (`[couchdb] url`), credentials already split out of the URL.
    Couch {
        url: String,
        user: Option<String>,
        password: Option<String>,
    },
    /// The embedded store: an SQLite file next to the config.
    Embedded { path: PathBuf },
}

/// Whether an instance must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Present,
    Absent,
}

/// One declared instance. `None` means "not declared": the field is left alone on update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredInstance {
    /// Normalized domain (IDNA Unicode, lowercased, port kept).
    pub domain: String,
    pub state: InstanceState,
    pub prevent_destroy: bool,
    pub locale: Option<String>,
    pub context: Option<String>,
    pub uuid: Option<String>,
    /// Bytes; `Some(0)` means explicitly unlimited (the field is removed).
    pub disk_quota: Option<u64>,
    pub domain_aliases: Option<Vec<String>>,
    pub blocked: Option<bool>,
    pub blocking_reason: Option<String>,
    /// Keys of the settings doc (`email`, `public_name`, `phone`, `tz` and the extra `settings`),
    /// string values.
    pub settings: BTreeMap<String, String>,
    /// `renamed_from`: the (normalized) domain the instance is renamed from.
    pub renamed_from: Option<String>,
    /// Rename the default directories when the locale changes.
    pub rename_default_dirs: bool,
    /// The apps and konnectors it manages; `None`: its apps are neither read nor touched.
    pub apps: Option<crate::apps::DesiredApps>,
}

impl DesiredInstance {
    pub fn new(domain: impl Into<String>) -> Self {
        DesiredInstance {
            domain: domain.into(),
            state: InstanceState::Present,
            prevent_destroy: false,
            locale: None,
            context: None,
            uuid: None,
            disk_quota: None,
            domain_aliases: None,
            blocked: None,
            blocking_reason: None,
            settings: BTreeMap::new(),
            renamed_from: None,
            rename_default_dirs: false,
            apps: None,
        }
    }

    /// The settings doc key for the contact's email, if declared.
    pub fn email(&self) -> Option<&str> {
        self.settings.get("email").map(String::as_str)
    }

    pub fn public_name(&self) -> Option<&str> {
        self.settings.get("public_name").map(String::as_str)
    }
}

/// Everything the planner and executor need from the configuration.
#[derive(Debug, Clone)]
pub struct Desired {
    pub config_path: PathBuf,
    /// sha256 of the config file's bytes, hex.
    pub config_hash: String,
    pub prune: bool,
    pub store: StoreTarget,
    /// Absolute; instance folders are `<fs_root>/<domain>`.
    pub fs_root: PathBuf,
    /// Keyed by normalized domain.
    pub instances: BTreeMap<String, DesiredInstance>,
}
