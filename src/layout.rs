//! The cozy-stack data layout, as data: doctypes, database names, mango indexes, views, fixed ids,
//! localized directory names and the builders of the documents cozy-stack writes.
//!
//! Mirrors cozy-stack at commit `db1163854f06` (2026-07-02), `couchdb.IndexViewsVersion = 38`.
//! Nothing else in cozyform hard-codes a doctype name, an index or a field encoding: when cozy-stack
//! changes its layout, this module (and its generated tables below) is the one place to update.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The cozy-stack commit this layout mirrors.
pub const COZY_STACK_COMMIT: &str = "db1163854f06";
/// `couchdb.IndexViewsVersion` at that commit. Writing it tells cozy-stack every index and view exists.
pub const INDEXES_VERSION: i64 = 38;
/// Logical name of the global instances database (doctype `instances`, prefix `global`).
pub const GLOBAL_INSTANCES_DB: &str = "global/instances";
/// The doctype of instance documents.
pub const INSTANCES_DOCTYPE: &str = "instances";
/// Locale used when none is declared (`consts.DefaultLocale`).
pub const DEFAULT_LOCALE: &str = "en";
/// Locales whose translations cozy-stack loads (`consts.SupportedLocales`).
pub const SUPPORTED_LOCALES: &[&str] = &["en", "fr"];

pub const FILES: &str = "io.cozy.files";
pub const SETTINGS: &str = "io.cozy.settings";
pub const CONTACTS: &str = "io.cozy.contacts";

/// Fixed id of the root directory doc.
pub const ROOT_DIR_ID: &str = "io.cozy.files.root-dir";
/// Fixed id of the trash directory doc.
pub const TRASH_DIR_ID: &str = "io.cozy.files.trash-dir";
/// Name (and path component) of the trash directory.
pub const TRASH_DIR_NAME: &str = ".cozy_trash";
/// Id of the instance settings doc in `io.cozy.settings`.
pub const SETTINGS_DOC_ID: &str = "io.cozy.settings.instance";
/// The Administrative directory is referenced by this app.
pub const ADMINISTRATIVE_APP_REF: &str = "io.cozy.apps/administrative";

/// The databases `lifecycle.Create` creates explicitly, in its order (11).
pub const CREATED_DOCTYPES: &[&str] = &[
    "io.cozy.files",
    "io.cozy.apps",
    "io.cozy.konnectors",
    "io.cozy.oauth.clients",
    "io.cozy.jobs",
    "io.cozy.triggers",
    "io.cozy.permissions",
    "io.cozy.sharings",
    "com.bitwarden.ciphers",
    "io.cozy.sessions.logins",
    "io.cozy.notifications",
];

/// Every database an instance has right after creation (16): the 11 above plus the 5 created as side
/// effects (settings doc, myself contact, and the views/indexes of shared, files.versions and
/// nextcloud.migrations).
pub const INSTANCE_DOCTYPES: &[&str] = &[
    "io.cozy.files",
    "io.cozy.apps",
    "io.cozy.konnectors",
    "io.cozy.oauth.clients",
    "io.cozy.jobs",
    "io.cozy.triggers",
    "io.cozy.permissions",
    "io.cozy.sharings",
    "com.bitwarden.ciphers",
    "io.cozy.sessions.logins",
    "io.cozy.notifications",
    "io.cozy.settings",
    "io.cozy.contacts",
    "io.cozy.shared",
    "io.cozy.files.versions",
    "io.cozy.nextcloud.migrations",
];

/// Predefined blocking reason codes (model/instance/tos.go and friends).
pub const BLOCKING_REASONS: &[&str] = &["LOGIN_FAILED", "PAYMENT_FAILED", "IMPORTING", "MOVING", "UNKNOWN"];

/// Instance doc keys holding secrets. They are never rendered, logged or saved in a plan.
pub const SECRET_KEYS: &[&str] = &[
    "register_token",
    "session_secret",
    "oauth_secret",
    "cli_secret",
    "passphrase_hash",
    "passphrase_reset_token",
];

/// Field order of the Go `Instance` struct; CouchDB ignores order, but we write docs the way the
/// stack serializes them so diffs against a stack-written doc stay readable.
pub const INSTANCE_FIELD_ORDER: &[&str] = &[
    "_id",
    "_rev",
    "domain",
    "domain_aliases",
    "org_domain",
    "org_id",
    "old_domain",
    "prefix",
    "locale",
    "uuid",
    "oidc_id",
    "franceconnect_id",
    "context",
    "sponsorships",
    "tos",
    "tos_latest",
    "auth_mode",
    "magic_link",
    "deleting",
    "moved",
    "blocked",
    "blocking_reason",
    "no_auto_update",
    "onboarding_finished",
    "password_defined",
    "disk_quota",
    "indexes_version",
    "common_settings_version",
    "swift_cluster",
    "couch_cluster",
    "passphrase_hash",
    "passphrase_reset_token",
    "passphrase_reset_time",
    "register_token",
    "session_secret",
    "oauth_secret",
    "cli_secret",
    "feature_flags",
    "feature_sets",
    "last_activity_from_deleted_oauth_clients",
];

/// Sizes in bytes of the random secrets written at creation.
pub const REGISTER_TOKEN_LEN: usize = 16;
pub const SESSION_SECRET_LEN: usize = 64;
pub const OAUTH_SECRET_LEN: usize = 128;
pub const CLI_SECRET_LEN: usize = 128;

/// A map/reduce view; each lives in its own design doc named like the view.
#[derive(Debug, Clone, Copy)]
pub struct ViewDef {
    pub doctype: &'static str,
    pub name: &'static str,
    pub map: &'static str,
    pub reduce: Option<&'static str>,
}

/// A mango index created with `POST /<db>/_index` and only a `ddoc` name.
#[derive(Debug, Clone, Copy)]
pub struct IndexDef {
    pub doctype: &'static str,
    pub ddoc: &'static str,
    pub fields: &'static [&'static str],
    pub partial_filter_selector: Option<&'static str>,
}

impl ViewDef {
    /// Body of `PUT /<db>/_design/<name>`, exactly as cozy-stack sends it.
    pub fn design_doc(&self) -> Value {
        let mut view = Map::new();
        view.insert("map".into(), Value::String(self.map.into()));
        if let Some(r) = self.reduce {
            view.insert("reduce".into(), Value::String(r.into()));
        }
        json!({
            "_id": format!("_design/{}", self.name),
            "language": "javascript",
            "views": { self.name: Value::Object(view) },
        })
    }

    /// Whether an existing design doc defines this view exactly (cozy-stack's `reflect.DeepEqual` on
    /// the map string, including leading newlines and tabs).
    pub fn matches(&self, ddoc: &Value) -> bool {
        let Some(view) = ddoc.get("views").and_then(|v| v.get(self.name)) else {
            return false;
        };
        ddoc.get("language").and_then(Value::as_str).unwrap_or("javascript") == "javascript"
            && view.get("map").and_then(Value::as_str) == Some(self.map)
            && view.get("reduce").and_then(Value::as_str) == self.reduce
    }
}

impl IndexDef {
    /// Body of `POST /<db>/_index`, exactly as cozy-stack sends it.
    pub fn request(&self) -> Value {
        let mut index = Map::new();
        index.insert("fields".into(), json!(self.fields));
        if let Some(pfs) = self.partial_filter_selector {
            index.insert(
                "partial_filter_selector".into(),
                serde_json::from_str(pfs).expect("layout partial filter selectors are valid JSON"),
            );
        }
        json!({ "ddoc": self.ddoc, "index": Value::Object(index) })
    }

    pub fn partial_filter(&self) -> Option<Value> {
        self.partial_filter_selector
            .map(|p| serde_json::from_str(p).expect("layout partial filter selectors are valid JSON"))
    }
}

/// Views of a per-instance doctype (the global `instances` view excluded).
pub fn instance_views() -> impl Iterator<Item = &'static ViewDef> {
    VIEWS.iter().filter(|v| v.doctype != INSTANCES_DOCTYPE)
}

/// Mango indexes of a per-instance doctype (the global ones excluded).
pub fn instance_indexes() -> impl Iterator<Item = &'static IndexDef> {
    INDEXES.iter().filter(|i| i.doctype != INSTANCES_DOCTYPE)
}

/// Design docs (views) and mango indexes of `global/instances`, defined by `InitGlobalDB`.
pub fn global_views() -> impl Iterator<Item = &'static ViewDef> {
    VIEWS.iter().filter(|v| v.doctype == INSTANCES_DOCTYPE)
}

pub fn global_indexes() -> impl Iterator<Item = &'static IndexDef> {
    INDEXES.iter().filter(|i| i.doctype == INSTANCES_DOCTYPE)
}

/// `"cozy" + hex(sha256(domain))[..32]`; the domain must already be validated (Unicode, lowercased).
pub fn instance_prefix(domain: &str) -> String {
    let digest = Sha256::digest(domain.as_bytes());
    format!("cozy{}", &hex::encode(digest)[..32])
}

/// `EscapeCouchdbName`: `.` and `:` become `-`, then lowercase.
pub fn escape_couchdb_name(name: &str) -> String {
    name.replace(['.', ':'], "-").to_lowercase()
}

/// Logical database name of a doctype for a db prefix (`DBPrefix()`: prefix, or domain for legacy docs).
pub fn db_name(db_prefix: &str, doctype: &str) -> String {
    escape_couchdb_name(&format!("{db_prefix}/{doctype}"))
}

/// The escaped prefix every database of an instance starts with, followed by `/`.
pub fn escaped_db_prefix(db_prefix: &str) -> String {
    escape_couchdb_name(db_prefix)
}

/// Localized names of the Administrative and Photos directories. Only `en` and `fr` translations are
/// loaded by cozy-stack, so every other locale gets the English names.
pub fn default_dir_names(locale: &str) -> DefaultDirNames {
    match locale {
        "fr" => DefaultDirNames {
            administrative: "Administratif",
            photos: "Photos",
        },
        _ => DefaultDirNames {
            administrative: "Administrative",
            photos: "Photos",
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultDirNames {
    pub administrative: &'static str,
    pub photos: &'static str,
}

/// Values of an instance doc at creation, apart from the id and secrets.
#[derive(Debug, Clone, Default)]
pub struct NewInstance<'a> {
    pub domain: &'a str,
    pub domain_aliases: &'a [String],
    pub prefix: &'a str,
    pub locale: &'a str,
    pub uuid: Option<&'a str>,
    pub context: Option<&'a str>,
    pub blocked: bool,
    pub blocking_reason: Option<&'a str>,
    pub disk_quota: u64,
}

/// Secrets generated by the executor for a new instance, raw bytes.
#[derive(Clone)]
pub struct InstanceSecrets {
    pub register_token: Vec<u8>,
    pub session_secret: Vec<u8>,
    pub oauth_secret: Vec<u8>,
    pub cli_secret: Vec<u8>,
}

impl std::fmt::Debug for InstanceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceSecrets(<redacted>)")
    }
}

/// Standard padded base64, the encoding of Go `[]byte` fields.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The instance doc as `lifecycle.Create` writes it (no passphrase): Go struct order, omitempty
/// respected, `disk_quota` as a JSON string, secrets as padded base64.
pub fn instance_doc(id: &str, new: &NewInstance<'_>, secrets: &InstanceSecrets) -> Value {
    let mut m = Map::new();
    m.insert("_id".into(), json!(id));
    m.insert("domain".into(), json!(new.domain));
    if !new.domain_aliases.is_empty() {
        m.insert("domain_aliases".into(), json!(new.domain_aliases));
    }
    m.insert("prefix".into(), json!(new.prefix));
    m.insert("locale".into(), json!(new.locale));
    if let Some(u) = new.uuid.filter(|u| !u.is_empty()) {
        m.insert("uuid".into(), json!(u));
    }
    if let Some(c) = new.context.filter(|c| !c.is_empty()) {
        m.insert("context".into(), json!(c));
    }
    if new.blocked {
        m.insert("blocked".into(), json!(true));
        if let Some(r) = new.blocking_reason.filter(|r| !r.is_empty()) {
            m.insert("blocking_reason".into(), json!(r));
        }
    }
    m.insert("password_defined".into(), json!(false));
    if new.disk_quota > 0 {
        m.insert("disk_quota".into(), json!(new.disk_quota.to_string()));
    }
    m.insert("indexes_version".into(), json!(INDEXES_VERSION));
    m.insert("register_token".into(), json!(b64(&secrets.register_token)));
    m.insert("session_secret".into(), json!(b64(&secrets.session_secret)));
    m.insert("oauth_secret".into(), json!(b64(&secrets.oauth_secret)));
    m.insert("cli_secret".into(), json!(b64(&secrets.cli_secret)));
    Value::Object(m)
}

/// Reorders the known keys of an instance doc in Go struct order; unknown keys keep their relative
/// order after them.
pub fn canonical_instance_order(doc: Map<String, Value>) -> Map<String, Value> {
    let mut rest = doc;
    let mut out = Map::new();
    for key in INSTANCE_FIELD_ORDER {
        if let Some(v) = rest.remove(*key) {
            out.insert((*key).to_string(), v);
        }
    }
    for (k, v) in rest {
        out.insert(k, v);
    }
    out
}

/// `disk_quota` as stored: a JSON string of an int64 (`,string`). Legacy or hand-written numbers are
/// accepted on read.
pub fn read_disk_quota(doc: &(impl crate::instance_doc::DocFields + ?Sized)) -> Result<u64, String> {
    match doc.field("disk_quota").as_deref() {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map_err(|_| format!("disk_quota {s:?} is not an integer string")),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("disk_quota {n} is not a non-negative integer"))
            .and_then(|_| Err(format!("disk_quota is the number {n}; cozy-stack needs a JSON string"))),
        Some(other) => Err(format!("disk_quota has the wrong type: {other}")),
    }
}

/// The settings doc `io.cozy.settings.instance` at creation: a plain map, string values.
pub fn settings_doc(entries: &std::collections::BTreeMap<String, String>) -> Value {
    let mut m = Map::new();
    m.insert("_id".into(), json!(SETTINGS_DOC_ID));
    for (k, v) in entries {
        m.insert(k.clone(), json!(v));
    }
    Value::Object(m)
}

/// The "myself" contact (`contact.CreateMyself`).
pub fn myself_contact(id: &str, domain: &str, email: Option<&str>, public_name: Option<&str>) -> Value {
    let email = email.filter(|e| !e.is_empty());
    let public_name = public_name.filter(|p| !p.is_empty());
    let cozy_url = format!("https://{domain}");
    let mut m = Map::new();
    m.insert("_id".into(), json!(id));
    m.insert("me".into(), json!(true));
    if let Some(e) = email {
        m.insert("email".into(), json!([{ "address": e, "primary": true }]));
    }
    let fullname = public_name
        .map(str::to_string)
        .or_else(|| email.map(|e| e.split('@').next().unwrap_or("").to_string()));
    if let Some(f) = fullname.filter(|f| !f.is_empty()) {
        m.insert("fullname".into(), json!(f));
    }
    let display = public_name.map(str::to_string).or_else(|| email.map(str::to_string));
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        m.insert("displayName".into(), json!(d));
    }
    m.insert("cozy".into(), json!([{ "url": cozy_url, "primary": true }]));
    m.insert(
        "indexes".into(),
        json!({ "byFamilyNameGivenNameEmailCozyUrl": email.map(str::to_string).unwrap_or(cozy_url) }),
    );
    Value::Object(m)
}

/// The root directory doc (`InitIndex`): fixed id, no name, no dir_id, no cozyMetadata.
pub fn root_dir_doc(now: &str) -> Value {
    json!({
        "_id": ROOT_DIR_ID,
        "type": "directory",
        "created_at": now,
        "updated_at": now,
        "path": "/",
    })
}

/// The trash directory doc: fixed id, `.cozy_trash` under the root, no cozyMetadata.
pub fn trash_dir_doc(now: &str) -> Value {
    json!({
        "_id": TRASH_DIR_ID,
        "type": "directory",
        "name": TRASH_DIR_NAME,
        "dir_id": ROOT_DIR_ID,
        "created_at": now,
        "updated_at": now,
        "path": format!("/{TRASH_DIR_NAME}"),
    })
}

/// A default directory (Administrative or Photos) under the root, with cozyMetadata.
pub fn default_dir_doc(id: &str, name: &str, domain: &str, now: &str, administrative: bool) -> Value {
    let mut m = Map::new();
    m.insert("_id".into(), json!(id));
    m.insert("type".into(), json!("directory"));
    m.insert("name".into(), json!(name));
    m.insert("dir_id".into(), json!(ROOT_DIR_ID));
    m.insert("created_at".into(), json!(now));
    m.insert("updated_at".into(), json!(now));
    m.insert("path".into(), json!(format!("/{name}")));
    if administrative {
        m.insert(
            "referenced_by".into(),
            json!([{ "id": ADMINISTRATIVE_APP_REF, "type": "io.cozy.apps" }]),
        );
    }
    m.insert(
        "cozyMetadata".into(),
        json!({
            "doctypeVersion": "1",
            "metadataVersion": 1,
            "createdAt": now,
            "updatedAt": now,
            "createdOn": format!("https://{domain}/"),
        }),
    );
    Value::Object(m)
}

/// A client-chosen document id in CouchDB's default format (32 lowercase hex), derived from a seed.
///
/// cozy-stack lets CouchDB generate these ids with a POST. cozyform chooses them itself and PUTs the
/// doc, so that a crash between the request and its answer can never lead to a second document: a
/// retry PUTs the same id and gets a conflict instead of a duplicate. Nothing in cozy-stack depends on
/// the value of these ids.
pub fn derived_id(kind: &str, seed: &str) -> String {
    let digest = Sha256::digest(format!("cozyform:{kind}:{seed}").as_bytes());
    hex::encode(&digest[..16])
}

/// Go `time.RFC3339Nano` of a local time: trailing zeros of the fraction trimmed, offset `Z` or `±hh:mm`.
pub fn rfc3339_nano<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::{Offset, Timelike};
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    let frac = if nanos == 0 {
        String::new()
    } else {
        let s = format!("{nanos:09}");
        format!(".{}", s.trim_end_matches('0'))
    };
    let secs = t.offset().fix().local_minus_utc();
    let off = if secs == 0 {
        "Z".to_string()
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.abs();
        format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    };
    format!("{base}{frac}{off}")
}

include!("layout_tables.rs");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_reference_vectors() {
        assert_eq!(
            instance_prefix("cozy.localhost:8080"),
            "cozy1a4e1aabf424a194d7daf946d7b1337d"
        );
        assert_eq!(
            instance_prefix("alice.cozy.tools:8080"),
            "cozy7d3d5947e7f3b0c674d1b8644646348e"
        );
        assert_eq!(
            instance_prefix("bob.cozy.tools:8080"),
            "cozybf682065ca3c7d64f2dafc6cc12fe702"
        );
        assert_eq!(
            instance_prefix("alice.example.com"),
            "cozy0d88385e5e731af27c0f1c0a312135b9"
        );
    }

    #[test]
    fn db_names_are_escaped_like_cozy_stack() {
        assert_eq!(
            db_name("cozy1a4e1aabf424a194d7daf946d7b1337d", "io.cozy.files"),
            "cozy1a4e1aabf424a194d7daf946d7b1337d/io-cozy-files"
        );
        assert_eq!(
            db_name("cozy.localhost:8080", "io.cozy.files"),
            "cozy-localhost-8080/io-cozy-files"
        );
        assert_eq!(
            db_name("secrets", "io.cozy.account_types"),
            "secrets/io-cozy-account_types"
        );
        assert_eq!(escape_couchdb_name(GLOBAL_INSTANCES_DB), "global/instances");
    }

    #[test]
    fn layout_counts_match_the_reference() {
        assert_eq!(INSTANCE_DOCTYPES.len(), 16);
        assert_eq!(instance_indexes().count(), 22);
        assert_eq!(instance_views().count(), 13);
        assert_eq!(global_views().count(), 1);
        assert_eq!(global_indexes().count(), 3);
        for i in instance_indexes() {
            assert!(INSTANCE_DOCTYPES.contains(&i.doctype), "{}", i.doctype);
        }
        for v in instance_views() {
            assert!(INSTANCE_DOCTYPES.contains(&v.doctype), "{}", v.doctype);
        }
    }

    #[test]
    fn rfc3339_nano_trims_zeros() {
        use chrono::TimeZone;
        let tz = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let t = tz.with_ymd_and_hms(2026, 7, 2, 16, 21, 15).unwrap() + chrono::Duration::nanoseconds(123_450_000);
        assert_eq!(rfc3339_nano(&t), "2026-07-02T16:21:15.12345+02:00");
        let u = chrono::Utc.with_ymd_and_hms(2026, 7, 2, 16, 21, 15).unwrap();
        assert_eq!(rfc3339_nano(&u), "2026-07-02T16:21:15Z");
    }

    #[test]
    fn secrets_have_padded_base64_lengths() {
        assert_eq!(b64(&[0u8; 16]).len(), 24);
        assert_eq!(b64(&[0u8; 64]).len(), 88);
        assert_eq!(b64(&[0u8; 128]).len(), 172);
    }
}
