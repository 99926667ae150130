//! Fidelity tests: cozyform must write EXACTLY what cozy-stack writes when it creates an instance.
//!
//! These tests apply a config with three instances, read everything back from the store and the
//! filesystem, and compare it field by field with the reference data model of cozy-stack at commit
//! `db1163854f06` (`couchdb.IndexViewsVersion = 38`). The expected values are copied here as
//! literals, so that these tests do not depend on cozyform's own `layout` module (which they check)
//! nor on any file outside the repository.
//!
//! Deliberate, documented deviations of cozyform that these tests accept:
//! - ids of the instance doc, the Administrative/Photos dir docs and the myself contact are chosen by
//!   the client (32 lowercase hex, the format of CouchDB's default uuids) instead of by CouchDB;
//! - the order of the writes (dir docs before the instance doc) is not observable here.
//!
//! Reference sections are cited as §n of the cozy-stack layout reference.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine;
use cozyform::store::Store;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const ALICE: &str = "alice.example.com";
const BOB: &str = "bob.example.com";
const CAROL: &str = "carol.example.com";
const DOMAINS: [&str; 3] = [ALICE, BOB, CAROL];

/// §2.1 test vector.
const ALICE_PREFIX: &str = "cozy0d88385e5e731af27c0f1c0a312135b9";
/// `"cozy" + hex(sha256("bob.example.com"))[..32]`.
const BOB_PREFIX: &str = "cozy04ae651611d6c1e8568bac4f569add3c";
/// `"cozy" + hex(sha256("carol.example.com"))[..32]`.
const CAROL_PREFIX: &str = "cozy305d663343aad7127afa9c0b49a749fb";

const ALICE_EMAIL: &str = "alice@example.com";
const ALICE_NAME: &str = "Alice Martin";
const ALICE_TZ: &str = "Europe/Paris";
const ALICE_CONTEXT: &str = "dev";
const ALICE_UUID: &str = "c0ffee00-1234-4abc-8def-000000000001";
const ALICE_ALIASES: [&str; 2] = ["alice.example.net", "alice.example.org"];
const CAROL_EMAIL: &str = "carol@example.org";
const CAROL_PHONE: &str = "+33 6 00 00 00 00";

/// alice: every option; bob: nothing (locale defaults to "en"); carol: an email, a phone and a locale
/// cozy-stack does not translate (§4.3: only en and fr are loaded, so "de" gets English names).
const CONFIG: &str = r#"
[instances."alice.example.com"]
locale = "fr"
email = "alice@example.com"
public_name = "Alice Martin"
tz = "Europe/Paris"
context = "dev"
disk_quota = "5GB"
domain_aliases = ["alice.example.net", "alice.example.org"]
uuid = "c0ffee00-1234-4abc-8def-000000000001"
settings = { offer = "premium" }

[instances."bob.example.com"]

[instances."carol.example.com"]
locale = "de"
email = "carol@example.org"
phone = "+33 6 00 00 00 00"
"#;

/// §2.3: the 16 databases of an instance right after creation (logical names, for alice's prefix).
const ALICE_DBS: [&str; 16] = [
    "cozy0d88385e5e731af27c0f1c0a312135b9/com-bitwarden-ciphers",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-apps",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-contacts",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-files",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-files-versions",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-jobs",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-konnectors",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-nextcloud-migrations",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-notifications",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-oauth-clients",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-permissions",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-sessions-logins",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-settings",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-shared",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-sharings",
    "cozy0d88385e5e731af27c0f1c0a312135b9/io-cozy-triggers",
];

/// §3.3: mango indexes of `global/instances` (ddoc, fields).
const GLOBAL_INDEXES: [(&str, &[&str]); 3] = [
    ("by-oidcid", &["oidc_id"]),
    ("by-olddomain", &["old_domain"]),
    ("by-orgdomain", &["org_domain"]),
];

/// Appendix A, verbatim: `<doctype>  <body of PUT /<db>/_design/<name>>`.
const APPENDIX_A: &str = r#"
io.cozy.files  {"_id":"_design/disk-usage","language":"javascript","views":{"disk-usage":{"map":"\nfunction(doc) {\n  if (doc.type === 'file') {\n    emit(doc.dir_id, +doc.size);\n  }\n}\n","reduce":"_sum"}}}
io.cozy.files.versions  {"_id":"_design/old-versions-disk-usage","language":"javascript","views":{"old-versions-disk-usage":{"map":"\nfunction(doc) {\n  emit(doc._id, +doc.size);\n}\n","reduce":"_sum"}}}
io.cozy.files  {"_id":"_design/not-synchronized-on","language":"javascript","views":{"not-synchronized-on":{"map":"\nfunction(doc) {\n  if (doc.type === \"directory\" && isArray(doc.not_synchronized_on)) {\n    for (var i = 0; i < doc.not_synchronized_on.length; i++) {\n      emit([doc.not_synchronized_on[i].type, doc.not_synchronized_on[i].id]);\n    }\n  }\n}","reduce":"_count"}}}
io.cozy.files  {"_id":"_design/referenced-by","language":"javascript","views":{"referenced-by":{"map":"\nfunction(doc) {\n  if (isArray(doc.referenced_by)) {\n    for (var i = 0; i < doc.referenced_by.length; i++) {\n      emit([doc.referenced_by[i].type, doc.referenced_by[i].id]);\n    }\n  }\n}","reduce":"_count"}}}
io.cozy.files  {"_id":"_design/referenced-by-sorted-by-datetime","language":"javascript","views":{"referenced-by-sorted-by-datetime":{"map":"\nfunction(doc) {\n  if (isArray(doc.referenced_by)) {\n    for (var i = 0; i < doc.referenced_by.length; i++) {\n      var datetime = (doc.metadata && doc.metadata.datetime) || '';\n      emit([doc.referenced_by[i].type, doc.referenced_by[i].id, datetime]);\n    }\n  }\n}","reduce":"_count"}}}
io.cozy.files  {"_id":"_design/by-parent-type-name","language":"javascript","views":{"by-parent-type-name":{"map":"\nfunction(doc) {\n  emit([doc.dir_id, doc.type, doc.name])\n}","reduce":"_count"}}}
io.cozy.permissions  {"_id":"_design/byToken","language":"javascript","views":{"byToken":{"map":"\nfunction(doc) {\n  if (doc.type && doc.type.slice(0, 5) === \"share\" && doc.codes) {\n    Object.keys(doc.codes).forEach(function(k) {\n      emit(doc.codes[k]);\n    })\n  }\n}"}}}
io.cozy.permissions  {"_id":"_design/by-short-code","language":"javascript","views":{"by-short-code":{"map":"\nfunction(doc) {\n\tif(doc.shortcodes) {\n\t\tfor(var idx in doc.shortcodes) {\n\t\t\temit(doc.shortcodes[idx], idx);\n\t\t}\n\t}\n}"}}}
io.cozy.permissions  {"_id":"_design/byDoc","language":"javascript","views":{"byDoc":{"map":"\nfunction(doc) {\n  if (doc.type === \"share\" && doc.permissions) {\n    Object.keys(doc.permissions).forEach(function(k) {\n      var p = doc.permissions[k];\n      var selector = p.selector || \"_id\";\n      for (var i=0; i<p.values.length; i++) {\n        emit([p.type, selector, p.values[i]], p.verbs);\n      }\n    });\n  }\n}"}}}
io.cozy.permissions  {"_id":"_design/permissions-by-doctype","language":"javascript","views":{"permissions-by-doctype":{"map":"\nfunction(doc) {\n  if (doc.permissions) {\n    Object.keys(doc.permissions).forEach(function(k) {\n\t  emit([doc.permissions[k].type, doc.type]);\n\t});\n  }\n}\n"}}}
io.cozy.shared  {"_id":"_design/shared-docs-by-sharingid","language":"javascript","views":{"shared-docs-by-sharingid":{"map":"\nfunction(doc) {\n  if (doc.infos) {\n    Object.keys(doc.infos).forEach(function(k) {\n      emit(k, doc._id);\n    });\n  }\n}"}}}
io.cozy.sharings  {"_id":"_design/sharings-by-doctype","language":"javascript","views":{"sharings-by-doctype":{"map":"\nfunction(doc) {\n\tif (isArray(doc.rules)) {\n\t\tfor (var i = 0; i < doc.rules.length; i++) {\n\t\t\tif (!doc.rules[i].local) {\n\t\t\t\temit(doc.rules[i].doctype, doc._id);\n\t\t\t}\n\t\t}\n\t}\n}"}}}
io.cozy.contacts  {"_id":"_design/contacts-by-email","language":"javascript","views":{"contacts-by-email":{"map":"\nfunction(doc) {\n\tif (isArray(doc.email)) {\n\t\tfor (var i = 0; i < doc.email.length; i++) {\n\t\t\temit(doc.email[i].address, doc._id);\n\t\t}\n\t}\n}\n"}}}
instances  {"_id":"_design/domain-and-aliases","language":"javascript","views":{"domain-and-aliases":{"map":"\nfunction(doc) {\n  emit(doc.domain);\n  if (isArray(doc.domain_aliases)) {\n    for (var i = 0; i < doc.domain_aliases.length; i++) {\n      emit(doc.domain_aliases[i]);\n    }\n  }\n}\n"}}}
"#;

/// Appendix B, verbatim: `<doctype>  <body of POST /<db>/_index>`.
const APPENDIX_B: &str = r#"
io.cozy.permissions  {"ddoc":"by-source-and-type","index":{"fields":["source_id","type"]}}
io.cozy.files  {"ddoc":"dir-children","index":{"fields":["dir_id","_id"]}}
io.cozy.files  {"ddoc":"dir-by-path","index":{"fields":["path"]}}
io.cozy.files  {"ddoc":"by-mime-updated-at","index":{"fields":["mime","trashed","updated_at"]}}
io.cozy.files  {"ddoc":"with-conflicts","index":{"fields":["_conflicts"]}}
io.cozy.files  {"ddoc":"by-sharing-status","index":{"fields":["metadata.sharing.status"]}}
io.cozy.files  {"ddoc":"by-dir-id-updated-at","index":{"fields":["dir_id","updated_at"]}}
io.cozy.jobs  {"ddoc":"by-worker-and-state","index":{"fields":["worker","state"]}}
io.cozy.jobs  {"ddoc":"by-trigger-id","index":{"fields":["trigger_id","queued_at"]}}
io.cozy.jobs  {"ddoc":"by-queued-at","index":{"fields":["queued_at"]}}
io.cozy.triggers  {"ddoc":"by-worker-and-type","index":{"fields":["worker","type"]}}
io.cozy.oauth.clients  {"ddoc":"by-client-name","index":{"fields":["client_name"]}}
io.cozy.oauth.clients  {"ddoc":"by-notification-platform","index":{"fields":["notification_platform"]}}
io.cozy.oauth.clients  {"ddoc":"connected-user-clients","index":{"fields":["client_kind","client_name"],"partial_filter_selector":{"$and":[{"client_kind":{"$in":["browser","desktop","mobile"]}},{"pending":{"$exists":false}}]}}}
io.cozy.sessions.logins  {"ddoc":"by-os-browser-ip","index":{"fields":["os","browser","ip"]}}
io.cozy.notifications  {"ddoc":"by-source-id","index":{"fields":["source_id","created_at"]}}
io.cozy.contacts  {"ddoc":"by-me","index":{"fields":["me"]}}
com.bitwarden.ciphers  {"ddoc":"by-folder-id","index":{"fields":["folder_id"]}}
com.bitwarden.ciphers  {"ddoc":"by-organization-id","index":{"fields":["organization_id"]}}
io.cozy.contacts  {"ddoc":"by-groups","index":{"fields":["relationships.groups.data"]}}
io.cozy.sharings  {"ddoc":"active","index":{"fields":["active"]}}
io.cozy.nextcloud.migrations  {"ddoc":"by-status","index":{"fields":["status"]}}
"#;

// ---- helpers --------------------------------------------------------------------------------------

/// `(doctype, decoded JSON)` of each line of an appendix.
fn appendix(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (doctype, body) = l.split_once("  ").expect("appendix lines are `<doctype>  <json>`");
            (
                doctype.to_string(),
                serde_json::from_str(body.trim()).expect("appendix lines hold valid JSON"),
            )
        })
        .collect()
}

/// §2.2: `.` and `:` become `-`, then lowercase.
fn db_name(prefix: &str, doctype: &str) -> String {
    format!("{prefix}/{doctype}").replace(['.', ':'], "-").to_lowercase()
}

fn prefix_of(domain: &str) -> &'static str {
    match domain {
        ALICE => ALICE_PREFIX,
        BOB => BOB_PREFIX,
        CAROL => CAROL_PREFIX,
        _ => unreachable!(),
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn keys(doc: &Value) -> BTreeSet<&str> {
    doc.as_object()
        .expect("docs are objects")
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

fn without_rev(doc: &Value) -> Value {
    let mut m: Map<String, Value> = doc.as_object().expect("docs are objects").clone();
    m.remove("_rev");
    Value::Object(m)
}

/// Decodes standard padded base64 (Go's `[]byte` encoding), checking it is canonical.
fn std_b64(what: &str, s: &str, len: usize, bytes: usize) -> Vec<u8> {
    assert_eq!(s.len(), len, "{what}: {len} base64 chars expected, got {s:?}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("{what}: not standard padded base64 ({e}): {s:?}"));
    assert_eq!(raw.len(), bytes, "{what}: {bytes} bytes expected");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&raw),
        s,
        "{what}: not canonical base64"
    );
    raw
}

/// Go `time.RFC3339Nano` in the local offset (§4.1): `YYYY-MM-DDTHH:MM:SS[.frac]` then `Z` or
/// `±hh:mm`; the fraction has 1 to 9 digits and no trailing zero.
fn assert_rfc3339_nano(what: &str, v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what}: a string expected, got {v}"));
    let parsed =
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{what}: not RFC 3339 ({e}): {s:?}"));
    let b = s.as_bytes();
    assert!(b.len() >= 20, "{what}: too short: {s:?}");
    let shape_ok = b[..19].iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        _ => c.is_ascii_digit(),
    });
    assert!(shape_ok, "{what}: not `YYYY-MM-DDTHH:MM:SS…`: {s:?}");
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        assert!(
            (1..=9).contains(&digits),
            "{what}: fraction of 1 to 9 digits expected: {s:?}"
        );
        assert!(
            !frac[..digits].ends_with('0'),
            "{what}: RFC3339Nano trims trailing zeros: {s:?}"
        );
        rest = &frac[digits..];
    }
    let off_ok = rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':'
            && rest
                .bytes()
                .enumerate()
                .all(|(i, c)| i == 0 || i == 3 || c.is_ascii_digit()));
    assert!(off_ok, "{what}: offset `Z` or `±hh:mm` expected: {s:?}");
    // The server's local offset at that instant (Go writes UTC as `Z`, never `+00:00`).
    let local = parsed.with_timezone(&chrono::Local);
    let secs = chrono::Offset::fix(local.offset()).local_minus_utc();
    let want = if secs == 0 {
        "Z".to_string()
    } else {
        format!(
            "{}{:02}:{:02}",
            if secs < 0 { '-' } else { '+' },
            secs.abs() / 3600,
            (secs.abs() % 3600) / 60
        )
    };
    assert_eq!(rest, want, "{what}: the local offset expected: {s:?}");
}

/// A workspace with the three instances of [`CONFIG`] applied.
struct Fixture {
    ws: Workspace,
    stdout: String,
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl Fixture {
    fn new(backend: Backend) -> Fixture {
        let ws = Workspace::new(backend);
        ws.write_config("", CONFIG);
        let stdout = ws.apply_ok();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = ws.store();
        Fixture { ws, stdout, rt, store }
    }

    fn all_dbs(&self, start: &str, end: &str) -> Vec<String> {
        self.rt.block_on(self.store.all_dbs(start, end)).unwrap()
    }

    fn get_doc(&self, db: &str, id: &str) -> Option<Value> {
        self.rt.block_on(self.store.get_doc(db, id)).unwrap()
    }

    fn list_indexes(&self, db: &str) -> Vec<Value> {
        self.rt.block_on(self.store.list_indexes(db)).unwrap()
    }

    /// Every doc of a database (design docs included), through `_all_docs` pages.
    fn all_docs(&self, db: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let after = out.last().and_then(|d| d["_id"].as_str()).map(str::to_string);
            let page = self
                .rt
                .block_on(self.store.all_docs_page(db, after.as_deref(), 100))
                .unwrap();
            let n = page.len();
            out.extend(page);
            if n < 100 {
                return out;
            }
        }
    }

    /// The docs of a database that are not design docs.
    fn normal_docs(&self, db: &str) -> Vec<Value> {
        self.all_docs(db)
            .into_iter()
            .filter(|d| !d["_id"].as_str().unwrap_or("").starts_with("_design/"))
            .collect()
    }

    /// The ids of the design docs of a database.
    fn design_ids(&self, db: &str) -> BTreeSet<String> {
        self.all_docs(db)
            .iter()
            .filter_map(|d| d["_id"].as_str())
            .filter(|id| id.starts_with("_design/"))
            .map(str::to_string)
            .collect()
    }

    /// The instance docs of `global/instances`, by domain; exactly one per domain, nothing else.
    fn instance_docs(&self) -> BTreeMap<String, Value> {
        let docs = self.normal_docs("global/instances");
        let mut by_domain = BTreeMap::new();
        for d in docs {
            let domain = d["domain"]
                .as_str()
                .expect("instance docs have a string domain")
                .to_string();
            assert!(
                by_domain.insert(domain.clone(), d).is_none(),
                "two instance docs for {domain}"
            );
        }
        assert_eq!(
            by_domain.keys().map(String::as_str).collect::<Vec<_>>(),
            DOMAINS.to_vec()
        );
        by_domain
    }
}

// ---- checks ---------------------------------------------------------------------------------------

/// §1.3, §2.1, §10.3, §10.12: the instance doc in `global/instances`.
fn instance_doc(f: &Fixture) {
    let docs = f.instance_docs();
    for (domain, doc) in &docs {
        let id = doc["_id"].as_str().unwrap();
        assert!(
            is_lower_hex(id, 32),
            "{domain}: _id must be 32 lowercase hex (a CouchDB uuid), got {id:?}"
        );
        assert_ne!(id, domain, "{domain}: the domain is not the id (§1.2)");
        let rev = doc["_rev"].as_str().unwrap();
        assert!(
            rev.starts_with("2-"),
            "{domain}: the instance doc ends at rev 2 (§0.13, §10.12), got {rev}"
        );
        // The prefix: "cozy" + hex(sha256(domain))[..32] (§2.1).
        let computed = format!("cozy{}", &hex::encode(Sha256::digest(domain.as_bytes()))[..32]);
        assert_eq!(computed, prefix_of(domain), "test literal");
        assert_eq!(doc["prefix"], json!(prefix_of(domain)), "{domain}: prefix");
        assert_eq!(doc["domain"], json!(domain));
        // `password_defined` has no omitempty: false without a passphrase (§1.3, §0.9).
        assert_eq!(doc["password_defined"], json!(false), "{domain}: password_defined");
        assert_eq!(doc["indexes_version"], json!(38), "{domain}: indexes_version");
        // Secrets: standard padded base64 of 16/64/128/128 random bytes (§0.4, §1.3).
        std_b64(
            &format!("{domain} register_token"),
            doc["register_token"].as_str().unwrap(),
            24,
            16,
        );
        std_b64(
            &format!("{domain} session_secret"),
            doc["session_secret"].as_str().unwrap(),
            88,
            64,
        );
        std_b64(
            &format!("{domain} oauth_secret"),
            doc["oauth_secret"].as_str().unwrap(),
            172,
            128,
        );
        std_b64(
            &format!("{domain} cli_secret"),
            doc["cli_secret"].as_str().unwrap(),
            172,
            128,
        );
        for k in ["session_secret", "oauth_secret", "cli_secret"] {
            assert_ne!(doc[k], doc["register_token"], "{domain}: {k} is its own random value");
        }
        assert_ne!(doc["oauth_secret"], doc["cli_secret"], "{domain}: independent secrets");
    }
    // Secrets are random per instance.
    let tokens: BTreeSet<&str> = docs.values().map(|d| d["register_token"].as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 3, "register tokens must differ between instances");
    let ids: BTreeSet<&str> = docs.values().map(|d| d["_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "instance ids must differ");

    const SECRETS: [&str; 4] = ["register_token", "session_secret", "oauth_secret", "cli_secret"];
    let base = [
        "_id",
        "_rev",
        "domain",
        "prefix",
        "locale",
        "password_defined",
        "indexes_version",
    ];

    let alice = &docs[ALICE];
    let mut want: Vec<&str> = base.to_vec();
    want.extend(["domain_aliases", "uuid", "context", "disk_quota"]);
    want.extend(SECRETS);
    assert_eq!(keys(alice), set(&want), "alice: exact key set of the instance doc");
    assert_eq!(alice["locale"], json!("fr"));
    assert_eq!(alice["context"], json!(ALICE_CONTEXT));
    assert_eq!(alice["uuid"], json!(ALICE_UUID));
    assert_eq!(alice["domain_aliases"], json!(ALICE_ALIASES));
    // int64 with `,string`: a JSON string of the byte count; "5GB" is 5e9 (§1.3, §10.3, §6.1).
    assert_eq!(
        alice["disk_quota"],
        json!("5000000000"),
        "alice: disk_quota must be the JSON string \"5000000000\""
    );

    // Omitted when empty: no context, uuid, aliases, disk_quota, couch_cluster, auth_mode, … (§1.3).
    let mut want: Vec<&str> = base.to_vec();
    want.extend(SECRETS);
    for d in [BOB, CAROL] {
        assert_eq!(keys(&docs[d]), set(&want), "{d}: exact key set of the instance doc");
    }
    // Default locale "en" (§0.2); other locales are stored as given, not validated (§9).
    assert_eq!(docs[BOB]["locale"], json!("en"));
    assert_eq!(docs[CAROL]["locale"], json!("de"));
}

/// §7: the registration link shows the register token as lowercase hex, 32 chars.
fn registration_link(f: &Fixture) {
    let docs = f.instance_docs();
    for domain in DOMAINS {
        let needle = format!("https://{domain}/?registerToken=");
        let mut found = f.stdout.match_indices(&needle).map(|(i, _)| {
            let rest = &f.stdout[i + needle.len()..];
            rest[..rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len())].to_string()
        });
        let token = found
            .next()
            .unwrap_or_else(|| panic!("no registration link for {domain} in:\n{}", f.stdout));
        assert!(found.next().is_none(), "one link per instance");
        assert!(
            is_lower_hex(&token, 32),
            "{domain}: the token must be 32 lowercase hex, got {token:?}"
        );
        let raw = std_b64(
            "register_token",
            docs[domain]["register_token"].as_str().unwrap(),
            24,
            16,
        );
        assert_eq!(
            token,
            hex::encode(raw),
            "{domain}: link token = hex(base64-decode(register_token))"
        );
    }
}

/// §3.3 and Appendix A: what `InitGlobalDB` defines in `global/instances`.
fn global_design_docs(f: &Fixture) {
    let db = "global/instances";
    let (_, want) = appendix(APPENDIX_A)
        .into_iter()
        .find(|(dt, _)| dt == "instances")
        .expect("appendix A");
    let got = f
        .get_doc(db, "_design/domain-and-aliases")
        .expect("_design/domain-and-aliases");
    assert_eq!(
        without_rev(&got),
        want,
        "global/instances/_design/domain-and-aliases must match appendix A exactly"
    );

    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    for i in f.list_indexes(db).into_iter().filter(|i| i["type"] == json!("json")) {
        got.insert(i["ddoc"].as_str().unwrap().to_string(), i["def"].clone());
    }
    let want: BTreeMap<String, Value> = GLOBAL_INDEXES
        .iter()
        .map(|(ddoc, fields)| {
            let fields: Vec<Value> = fields.iter().map(|f| json!({ *f: "asc" })).collect();
            (format!("_design/{ddoc}"), json!({ "fields": fields }))
        })
        .collect();
    assert_eq!(got, want, "mango indexes of global/instances");
    for ddoc in want.keys() {
        let d = f.get_doc(db, ddoc).unwrap_or_else(|| panic!("{ddoc}"));
        assert_eq!(d["language"], json!("query"), "{ddoc} is a mango index ddoc");
    }
    // "4 design docs live in this DB" (§1.4).
    let mut want_ids: BTreeSet<String> = want.keys().cloned().collect();
    want_ids.insert("_design/domain-and-aliases".into());
    assert_eq!(f.design_ids(db), want_ids, "design docs of global/instances");
}

/// §2.2, §2.3: exactly the 16 databases per instance, and no other database.
fn database_list(f: &Fixture) {
    let suffixes: Vec<&str> = ALICE_DBS
        .iter()
        .map(|n| n.strip_prefix(ALICE_PREFIX).unwrap())
        .collect();
    let mut everything: BTreeSet<String> = BTreeSet::from(["global/instances".to_string()]);
    for domain in DOMAINS {
        let prefix = prefix_of(domain);
        let want: Vec<String> = suffixes.iter().map(|s| format!("{prefix}{s}")).collect();
        let got = f.all_dbs(&format!("{prefix}/"), &format!("{prefix}0"));
        assert_eq!(got, want, "{domain}: the databases of the instance");
        everything.extend(want);
    }
    // Nothing else: no database named after the domain, no bookkeeping database.
    let got: BTreeSet<String> = f.all_dbs("a", "{").into_iter().collect();
    assert_eq!(got, everything, "every database on the server");
}

/// §3.1, Appendix B: the 22 mango indexes, per database, and nothing else.
fn mango_indexes(f: &Fixture) {
    let specs = appendix(APPENDIX_B);
    assert_eq!(specs.len(), 22);
    for domain in DOMAINS {
        let prefix = prefix_of(domain);
        let mut want: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (doctype, body) in &specs {
            let ddoc = format!("_design/{}", body["ddoc"].as_str().unwrap());
            let index = body["index"].as_object().unwrap();
            let fields: Vec<Value> = index["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| json!({ f.as_str().unwrap(): "asc" }))
                .collect();
            let mut def = json!({ "fields": fields });
            if let Some(pfs) = index.get("partial_filter_selector") {
                def["partial_filter_selector"] = pfs.clone();
            }
            want.entry(db_name(prefix, doctype)).or_default().insert(ddoc, def);
        }
        for db in ALICE_DBS.iter().map(|n| n.replacen(ALICE_PREFIX, prefix, 1)) {
            let mut got: BTreeMap<String, Value> = BTreeMap::new();
            for i in f.list_indexes(&db) {
                if i["type"] == json!("special") {
                    continue;
                }
                assert_eq!(i["type"], json!("json"), "{db}: {i}");
                let ddoc = i["ddoc"].as_str().unwrap().to_string();
                assert!(
                    got.insert(ddoc.clone(), i["def"].clone()).is_none(),
                    "{db}: two indexes in {ddoc}"
                );
            }
            let want_db = want.remove(&db).unwrap_or_default();
            assert_eq!(got, want_db, "{domain}: mango indexes of {db}");
            for ddoc in want_db.keys() {
                let d = f.get_doc(&db, ddoc).unwrap_or_else(|| panic!("{db}/{ddoc}"));
                assert_eq!(d["language"], json!("query"), "{db}/{ddoc} is a mango index ddoc");
            }
        }
        assert!(want.is_empty(), "indexes in databases that do not exist: {want:?}");
    }
}

/// §3.2, Appendix A: the 13 view design docs, byte-exact, and no other design doc.
fn views(f: &Fixture) {
    let views: Vec<(String, Value)> = appendix(APPENDIX_A)
        .into_iter()
        .filter(|(dt, _)| dt != "instances")
        .collect();
    assert_eq!(views.len(), 13);
    let mango: Vec<(String, String)> = appendix(APPENDIX_B)
        .into_iter()
        .map(|(dt, b)| (dt, format!("_design/{}", b["ddoc"].as_str().unwrap())))
        .collect();
    for domain in DOMAINS {
        let prefix = prefix_of(domain);
        for (doctype, want) in &views {
            let db = db_name(prefix, doctype);
            let id = want["_id"].as_str().unwrap();
            let got = f
                .get_doc(&db, id)
                .unwrap_or_else(|| panic!("{domain}: missing view {db}/{id}"));
            assert_eq!(
                without_rev(&got),
                *want,
                "{domain}: {db}/{id} must match appendix A exactly"
            );
            assert_eq!(got["language"], json!("javascript"));
        }
        for db in ALICE_DBS.iter().map(|n| n.replacen(ALICE_PREFIX, prefix, 1)) {
            let mut want: BTreeSet<String> = BTreeSet::new();
            for (dt, v) in &views {
                if db_name(prefix, dt) == db {
                    want.insert(v["_id"].as_str().unwrap().to_string());
                }
            }
            for (dt, ddoc) in &mango {
                if db_name(prefix, dt) == db {
                    want.insert(ddoc.clone());
                }
            }
            assert_eq!(f.design_ids(&db), want, "{domain}: design docs of {db}");
        }
    }
}

/// §4.1, §4.2, §4.3, §10.8: the four directory docs of `io.cozy.files`.
fn directory_docs(f: &Fixture) {
    for (domain, admin_name) in [
        (ALICE, "Administratif"),
        (BOB, "Administrative"),
        (CAROL, "Administrative"),
    ] {
        let db = db_name(prefix_of(domain), "io.cozy.files");
        let docs = f.normal_docs(&db);
        assert_eq!(
            docs.len(),
            4,
            "{domain}: root, trash, Administrative and Photos, nothing else: {docs:#?}"
        );
        let by_id = |id: &str| {
            docs.iter()
                .find(|d| d["_id"] == json!(id))
                .unwrap_or_else(|| panic!("{domain}: {id}"))
        };
        let by_name = |n: &str| {
            let found: Vec<&Value> = docs.iter().filter(|d| d["name"] == json!(n)).collect();
            assert_eq!(found.len(), 1, "{domain}: one dir named {n:?}: {docs:#?}");
            found[0]
        };
        for d in &docs {
            assert_eq!(d["type"], json!("directory"), "{domain}: {d}");
            assert!(
                d["_rev"].as_str().unwrap().starts_with("1-"),
                "{domain}: written once: {d}"
            );
            assert_rfc3339_nano(&format!("{domain} {} created_at", d["_id"]), &d["created_at"]);
            assert_rfc3339_nano(&format!("{domain} {} updated_at", d["_id"]), &d["updated_at"]);
        }

        let root = by_id("io.cozy.files.root-dir");
        assert_eq!(
            keys(root),
            set(&["_id", "_rev", "type", "created_at", "updated_at", "path"]),
            "{domain}: root"
        );
        assert_eq!(root["path"], json!("/"));

        let trash = by_id("io.cozy.files.trash-dir");
        let want = [
            "_id",
            "_rev",
            "type",
            "name",
            "dir_id",
            "created_at",
            "updated_at",
            "path",
        ];
        assert_eq!(keys(trash), set(&want), "{domain}: trash");
        assert_eq!(trash["name"], json!(".cozy_trash"));
        assert_eq!(trash["dir_id"], json!("io.cozy.files.root-dir"));
        assert_eq!(trash["path"], json!("/.cozy_trash"));

        for (name, administrative) in [(admin_name, true), ("Photos", false)] {
            let d = by_name(name);
            let what = format!("{domain} {name}");
            let id = d["_id"].as_str().unwrap();
            assert!(
                is_lower_hex(id, 32),
                "{what}: _id must be a 32 lowercase hex uuid, got {id:?}"
            );
            let mut want = vec![
                "_id",
                "_rev",
                "type",
                "name",
                "dir_id",
                "created_at",
                "updated_at",
                "path",
                "cozyMetadata",
            ];
            if administrative {
                want.push("referenced_by");
            }
            assert_eq!(keys(d), set(&want), "{what}: exact key set");
            assert_eq!(d["dir_id"], json!("io.cozy.files.root-dir"), "{what}");
            assert_eq!(d["path"], json!(format!("/{name}")), "{what}");
            if administrative {
                assert_eq!(
                    d["referenced_by"],
                    json!([{ "id": "io.cozy.apps/administrative", "type": "io.cozy.apps" }]),
                    "{what}: referenced_by"
                );
            }
            let meta = &d["cozyMetadata"];
            let want = [
                "doctypeVersion",
                "metadataVersion",
                "createdAt",
                "updatedAt",
                "createdOn",
            ];
            assert_eq!(keys(meta), set(&want), "{what}: cozyMetadata keys");
            assert_eq!(meta["doctypeVersion"], json!("1"), "{what}");
            assert_eq!(meta["metadataVersion"], json!(1), "{what}");
            assert_eq!(meta["createdOn"], json!(format!("https://{domain}/")), "{what}");
            assert_rfc3339_nano(&format!("{what} cozyMetadata.createdAt"), &meta["createdAt"]);
            assert_rfc3339_nano(&format!("{what} cozyMetadata.updatedAt"), &meta["updatedAt"]);
        }
        // The root keeps no referenced_by while the Administrative folder exists (§4.2, §10.8).
        assert!(root.get("referenced_by").is_none());
    }
}

/// §5.1, §10.10: the settings doc holds the settings keys only (no locale, context, uuid…).
fn settings_doc(f: &Fixture) {
    let get = |domain: &str| {
        f.get_doc(
            &db_name(prefix_of(domain), "io.cozy.settings"),
            "io.cozy.settings.instance",
        )
        .unwrap_or_else(|| panic!("{domain}: io.cozy.settings.instance"))
    };
    let alice = get(ALICE);
    assert_eq!(
        without_rev(&alice),
        json!({
            "_id": "io.cozy.settings.instance",
            "email": ALICE_EMAIL,
            "public_name": ALICE_NAME,
            "tz": ALICE_TZ,
            "offer": "premium",
        }),
        "alice: settings doc"
    );
    assert!(
        alice["_rev"].as_str().unwrap().starts_with("1-"),
        "alice: settings doc written once (PUT)"
    );
    let bob = get(BOB);
    assert_eq!(
        without_rev(&bob),
        json!({ "_id": "io.cozy.settings.instance" }),
        "bob: settings doc"
    );
    let carol = get(CAROL);
    assert_eq!(
        without_rev(&carol),
        json!({ "_id": "io.cozy.settings.instance", "email": CAROL_EMAIL, "phone": CAROL_PHONE }),
        "carol"
    );
    // The settings database holds that doc only.
    for domain in DOMAINS {
        let docs = f.normal_docs(&db_name(prefix_of(domain), "io.cozy.settings"));
        assert_eq!(docs.len(), 1, "{domain}: {docs:#?}");
    }
}

/// §5.2: the "myself" contact.
fn myself_contact(f: &Fixture) {
    let cases = [
        (
            ALICE,
            json!({
                "me": true,
                "email": [{ "address": ALICE_EMAIL, "primary": true }],
                "fullname": ALICE_NAME,
                "displayName": ALICE_NAME,
                "cozy": [{ "url": "https://alice.example.com", "primary": true }],
                "indexes": { "byFamilyNameGivenNameEmailCozyUrl": ALICE_EMAIL },
            }),
        ),
        (
            BOB,
            json!({
                "me": true,
                "cozy": [{ "url": "https://bob.example.com", "primary": true }],
                "indexes": { "byFamilyNameGivenNameEmailCozyUrl": "https://bob.example.com" },
            }),
        ),
        (
            // No public name: fullname = local part of the email, displayName = the email.
            CAROL,
            json!({
                "me": true,
                "email": [{ "address": CAROL_EMAIL, "primary": true }],
                "fullname": "carol",
                "displayName": CAROL_EMAIL,
                "cozy": [{ "url": "https://carol.example.com", "primary": true }],
                "indexes": { "byFamilyNameGivenNameEmailCozyUrl": CAROL_EMAIL },
            }),
        ),
    ];
    for (domain, want) in cases {
        let docs = f.normal_docs(&db_name(prefix_of(domain), "io.cozy.contacts"));
        assert_eq!(docs.len(), 1, "{domain}: exactly one contact: {docs:#?}");
        let doc = &docs[0];
        let id = doc["_id"].as_str().unwrap();
        assert!(
            is_lower_hex(id, 32),
            "{domain}: contact _id must be a 32 lowercase hex uuid, got {id:?}"
        );
        assert!(
            doc["_rev"].as_str().unwrap().starts_with("1-"),
            "{domain}: contact written once (POST)"
        );
        let mut got = without_rev(doc);
        got.as_object_mut().unwrap().remove("_id");
        assert_eq!(got, want, "{domain}: myself contact");
    }
}

/// Expected permission bits of a directory made with mode 0755 (cozy-stack's `MkdirAll(…, 0755)`),
/// under this process's umask.
#[cfg(unix)]
fn dir_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Umask:")
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
        })
        .unwrap_or(0o022);
    0o755 & !umask
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// §4.4, §10.4: `<fs_root>/<domain>/` (named after the domain, not the prefix) with `.cozy_trash`
/// and the localized Administrative and Photos folders, mode 0755, nothing else.
fn folders_on_disk(f: &Fixture) {
    let fs = f.ws.fs_root();
    assert_eq!(
        entries(&fs),
        DOMAINS.iter().map(|d| d.to_string()).collect(),
        "{}",
        fs.display()
    );
    for (domain, admin_name) in [
        (ALICE, "Administratif"),
        (BOB, "Administrative"),
        (CAROL, "Administrative"),
    ] {
        let dir = fs.join(domain);
        let want: BTreeSet<String> = [".cozy_trash", admin_name, "Photos"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(entries(&dir), want, "{}", dir.display());
        for p in [
            dir.clone(),
            dir.join(".cozy_trash"),
            dir.join(admin_name),
            dir.join("Photos"),
        ] {
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert!(
                m.is_dir() && !m.file_type().is_symlink(),
                "{} must be a real directory",
                p.display()
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(m.permissions().mode() & 0o7777, dir_mode(), "{}: mode", p.display());
            }
            if p != dir {
                assert!(entries(&p).is_empty(), "{} must be empty", p.display());
            }
        }
    }
}

// ---- tests ----------------------------------------------------------------------------------------

macro_rules! fidelity_tests {
    ($module:ident, $backend:expr, [$($(#[$attr:meta])* $check:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                $(#[$attr])*
                #[test]
                fn $check() {
                    super::$check(&Fixture::new($backend));
                }
            )*
        }
    };
}

fidelity_tests!(
    couch,
    Backend::Couch,
    [
        instance_doc,
        registration_link,
        global_design_docs,
        database_list,
        mango_indexes,
        views,
        directory_docs,
        settings_doc,
        myself_contact,
        folders_on_disk,
    ]
);

fidelity_tests!(
    embedded,
    Backend::Embedded,
    [
        instance_doc,
        registration_link,
        global_design_docs,
        database_list,
        mango_indexes,
        views,
        directory_docs,
        settings_doc,
        myself_contact,
        folders_on_disk,
    ]
);

/// §1.2, §1.4, §5.2: the lookups cozy-stack makes work on what cozyform wrote (CouchDB only): an
/// instance is found by its domain and by each alias through the `domain-and-aliases` view, and the
/// myself contact through `_find` with `use_index: "by-me"`.
fn stack_lookups(f: &Fixture) {
    let couch = f.ws.couch.as_ref().expect("a CouchDB workspace");
    let client = reqwest::Client::new();
    let get = |path: String| {
        let req = client
            .get(format!("{}{path}", couch.url))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD));
        f.rt.block_on(async {
            req.send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    const VIEW: &str = "global%2Finstances/_design/domain-and-aliases/_view/domain-and-aliases";
    let docs = f.instance_docs();
    for (key, domain) in [
        (ALICE, ALICE),
        (ALICE_ALIASES[0], ALICE),
        (ALICE_ALIASES[1], ALICE),
        (BOB, BOB),
        (CAROL, CAROL),
    ] {
        let body = get(format!("{VIEW}?key=%22{key}%22&include_docs=true&limit=1"));
        let rows = body["rows"].as_array().unwrap_or_else(|| panic!("{key}: {body}"));
        assert_eq!(rows.len(), 1, "{key}: {body}");
        assert_eq!(
            rows[0]["id"], docs[domain]["_id"],
            "{key} must resolve to the instance doc of {domain}"
        );
        assert_eq!(rows[0]["doc"]["domain"], json!(domain));
    }
    let body = get(format!("{VIEW}?key=%22nobody.example.com%22"));
    assert_eq!(body["rows"], json!([]), "{body}");
    for domain in DOMAINS {
        let db = db_name(prefix_of(domain), "io.cozy.contacts").replace('/', "%2F");
        let req = client
            .post(format!("{}{db}/_find", couch.url))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
            .json(&json!({ "selector": { "me": true }, "use_index": "by-me", "limit": 1 }));
        let body: Value = f.rt.block_on(async {
            req.send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let found = body["docs"].as_array().unwrap_or_else(|| panic!("{domain}: {body}"));
        assert_eq!(found.len(), 1, "{domain}: {body}");
        assert_eq!(found[0]["me"], json!(true));
        assert_eq!(found[0]["cozy"][0]["url"], json!(format!("https://{domain}")));
    }
}

#[test]
fn couch_stack_lookups() {
    stack_lookups(&Fixture::new(Backend::Couch));
}

/// The appendix literals above are the reference's, byte for byte once decoded: spot checks of
/// the strings cozy-stack compares exactly (leading newline, tabs, no trailing newline…).
#[test]
fn appendix_literals_are_well_formed() {
    let a = appendix(APPENDIX_A);
    assert_eq!(a.len(), 14);
    let b = appendix(APPENDIX_B);
    assert_eq!(b.len(), 22);
    let find = |name: &str| {
        a.iter()
            .find(|(_, v)| v["_id"] == json!(format!("_design/{name}")))
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(
        find("by-short-code")["views"]["by-short-code"]["map"],
        json!(
            "\nfunction(doc) {\n\tif(doc.shortcodes) {\n\t\tfor(var idx in doc.shortcodes) {\n\t\t\temit(doc.shortcodes[idx], idx);\n\t\t}\n\t}\n}"
        )
    );
    assert_eq!(find("disk-usage")["views"]["disk-usage"]["reduce"], json!("_sum"));
    assert!(find("byToken")["views"]["byToken"].get("reduce").is_none());
    for (_, v) in &a {
        let name = v["_id"].as_str().unwrap().strip_prefix("_design/").unwrap();
        assert_eq!(keys(v), set(&["_id", "language", "views"]));
        assert_eq!(v["language"], json!("javascript"));
        assert_eq!(
            v["views"].as_object().unwrap().keys().collect::<Vec<_>>(),
            vec![name],
            "view name = ddoc name"
        );
    }
    let pfs: Vec<&Value> = b
        .iter()
        .filter_map(|(_, v)| v["index"].get("partial_filter_selector"))
        .collect();
    assert_eq!(
        pfs,
        vec![&json!({"$and":[{"client_kind":{"$in":["browser","desktop","mobile"]}},{"pending":{"$exists":false}}]})]
    );
}
