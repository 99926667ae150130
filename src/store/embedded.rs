//! Embedded implementation of the store stage: with no CouchDB configured, cozyform keeps the same
//! databases, documents, `_rev`s and design docs that CouchDB 3.x would hold in ONE SQLite file next
//! to the config (e.g. `<config dir>/.cozyform/store.sqlite`).
//!
//! Why SQLite: it is crash-safe with no server to run. The file is opened in WAL mode with
//! `synchronous=FULL`, so a committed write survives a power loss, and every write (a single doc,
//! a whole `_bulk_docs`, an index creation) runs in one atomic transaction: a crash leaves either
//! all of it or none of it. Two tables: `dbs(name)` and `docs(db, id, rev, deleted, body)`, where
//! `body` is the JSON document exactly as `get_doc` returns it (`_id` and `_rev` first, then the
//! fields in the order given). Text columns compare with SQLite's BINARY collation, i.e. byte order,
//! which is the order used for `_all_dbs` and `_all_docs`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use md5::{Digest, Md5};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{BulkResult, PathSelector, RequestCounter, StoreError, StoreResult};

/// Version of the schema below, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dbs (name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS docs (
    db TEXT NOT NULL,
    id TEXT NOT NULL,
    rev TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    PRIMARY KEY (db, id)
) WITHOUT ROWID;
";

/// Top-level `_` members CouchDB accepts in a document body; any other one is a 400.
const SPECIAL_MEMBERS: &[&str] = &[
    "_id",
    "_rev",
    "_deleted",
    "_attachments",
    "_revisions",
    "_revs_info",
    "_conflicts",
    "_deleted_conflicts",
    "_local_seq",
];

/// CouchDB's system databases, the only names allowed to start with `_`.
const SYSTEM_DBS: &[&str] = &["_users", "_replicator", "_global_changes"];

/// The CouchDB-shaped store kept in one SQLite file. See the module docs.
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    counter: RequestCounter,
}

/// Converts rusqlite errors into [`StoreError::Embedded`] naming the file.
trait AtPath<T> {
    fn at(self, path: &Path) -> StoreResult<T>;
}

impl<T> AtPath<T> for rusqlite::Result<T> {
    fn at(self, path: &Path) -> StoreResult<T> {
        self.map_err(|e| embedded_error(path, e))
    }
}

fn embedded_error(path: &Path, message: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn http_error(method: &str, url: String, status: u16, reason: impl Into<String>) -> StoreError {
    StoreError::Http {
        method: method.into(),
        url,
        status,
        reason: reason.into(),
    }
}

fn conflict(db: &str, id: &str) -> StoreError {
    StoreError::Conflict {
        db: db.into(),
        id: id.into(),
    }
}

/// Result of writing one doc: its new rev, or an update conflict.
enum Written {
    Rev(String),
    Conflict,
}

impl EmbeddedStore {
    /// Opens (creating the parent directories, the file and the schema if missing) the store at `path`.
    pub fn open(path: &Path) -> StoreResult<EmbeddedStore> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| embedded_error(path, format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut conn = Connection::open(path).at(path)?;
        conn.busy_timeout(Duration::from_secs(30)).at(path)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .at(path)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(embedded_error(
                path,
                format!("cannot enable WAL mode (journal_mode is {mode})"),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL").at(path)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at(path)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).at(path)?;
        if version > SCHEMA_VERSION {
            return Err(embedded_error(
                path,
                format!("schema version {version} was written by a newer cozyform (this one knows {SCHEMA_VERSION})"),
            ));
        }
        tx.execute_batch(SCHEMA).at(path)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).at(path)?;
        tx.commit().at(path)?;
        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            counter: RequestCounter::default(),
        })
    }

    /// `embedded store <path>`.
    pub fn describe(&self) -> String {
        format!("embedded store {}", self.path.display())
    }

    /// Operations made so far (one per method call).
    pub fn counter(&self) -> &RequestCounter {
        &self.counter
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction (dropping one rolls it back).
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a transaction (a consistent snapshot for reads), committed only if `f` succeeds.
    fn run<T>(&self, mode: TransactionBehavior, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(mode).at(&self.path)?;
        let out = f(&tx)?;
        tx.commit().at(&self.path)?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.run(TransactionBehavior::Deferred, f)
    }

    fn write<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.run(TransactionBehavior::Immediate, f)
    }

    /// Checks that the file is usable.
    pub async fn ping(&self) -> StoreResult<()> {
        self.counter.inc();
        self.read(|c| {
            c.query_row("SELECT count(*) FROM dbs", [], |r| r.get::<_, i64>(0))
                .at(&self.path)
                .map(|_| ())
        })
    }

    /// Database names in `[start, end]` (inclusive, byte order).
    pub async fn all_dbs(&self, start: &str, end: &str) -> StoreResult<Vec<String>> {
        self.counter.inc();
        self.read(|c| {
            let mut st = c
                .prepare("SELECT name FROM dbs WHERE name >= ?1 AND name <= ?2 ORDER BY name")
                .at(&self.path)?;
            let rows = st.query_map(params![start, end], |r| r.get(0)).at(&self.path)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().at(&self.path)
        })
    }

    /// [`EmbeddedStore::all_dbs`], in pages of 2,000 names.
    pub async fn all_dbs_each(
        &self,
        start: &str,
        end: &str,
        f: &mut (dyn FnMut(Vec<String>) + Send),
    ) -> StoreResult<()> {
        const PAGE: usize = 2000;
        let mut after: Option<String> = None;
        loop {
            self.counter.inc();
            let page: Vec<String> = self.read(|c| {
                // Two forms so that SQLite seeks with the index (an `OR` would scan from `start`).
                let (sql, from) = match &after {
                    None => (
                        "SELECT name FROM dbs WHERE name >= ?1 AND name <= ?2 ORDER BY name LIMIT ?3",
                        start,
                    ),
                    Some(a) => (
                        "SELECT name FROM dbs WHERE name > ?1 AND name <= ?2 ORDER BY name LIMIT ?3",
                        a.as_str(),
                    ),
                };
                let mut st = c.prepare_cached(sql).at(&self.path)?;
                let rows = st
                    .query_map(params![from, end, PAGE as i64], |r| r.get(0))
                    .at(&self.path)?;
                rows.collect::<rusqlite::Result<Vec<String>>>().at(&self.path)
            })?;
            let n = page.len();
            after = page.last().cloned();
            f(page);
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Creates a database. `Ok(false)` when it already existed.
    pub async fn create_db(&self, db: &str) -> StoreResult<bool> {
        self.counter.inc();
        check_db_name("PUT", db)?;
        self.write(|c| {
            Ok(c.execute("INSERT OR IGNORE INTO dbs (name) VALUES (?1)", [db])
                .at(&self.path)?
                == 1)
        })
    }

    /// Deletes a database and all its docs. `Ok(false)` when it did not exist.
    pub async fn delete_db(&self, db: &str) -> StoreResult<bool> {
        self.counter.inc();
        check_db_name("DELETE", db)?;
        self.write(|c| {
            c.execute("DELETE FROM docs WHERE db = ?1", [db]).at(&self.path)?;
            Ok(c.execute("DELETE FROM dbs WHERE name = ?1", [db]).at(&self.path)? == 1)
        })
    }

    /// Whether a database exists.
    pub async fn db_exists(&self, db: &str) -> StoreResult<bool> {
        self.counter.inc();
        check_db_name("HEAD", db)?;
        self.read(|c| self.has_db(c, db))
    }

    /// One document, or `None` when it (or its database) does not exist or is deleted.
    pub async fn get_doc(&self, db: &str, id: &str) -> StoreResult<Option<Value>> {
        self.counter.inc();
        check_db_name("GET", db)?;
        self.read(|c| self.load(c, db, id))
    }

    /// Several documents of one database, in the order of `ids`; `None` for missing or deleted ones.
    pub async fn get_docs(&self, db: &str, ids: &[String]) -> StoreResult<Vec<Option<Value>>> {
        self.counter.inc();
        check_db_name("POST", db)?;
        self.read(|c| ids.iter().map(|id| self.load(c, db, id)).collect())
    }

    /// Up to `limit` live docs with an id greater than `after`, in `_all_docs` (byte) order, design
    /// docs included and `_local/` docs excluded. A missing database gives an empty page.
    pub async fn all_docs_page(&self, db: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Value>> {
        self.counter.inc();
        check_db_name("GET", db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT body FROM docs WHERE db = ?1 AND id > ?2 AND deleted = 0 AND substr(id, 1, 7) <> '_local/' \
                     ORDER BY id LIMIT ?3",
                )
                .at(&self.path)?;
            let rows = st
                .query_map(params![db, after.unwrap_or(""), limit], |r| r.get::<_, String>(0))
                .at(&self.path)?;
            rows.map(|b| self.parse_body(&b.at(&self.path)?)).collect()
        })
    }

    /// Creates or updates a document; `_rev` must be the current one, or absent for a new (or
    /// deleted) doc. Returns the new rev, or [`StoreError::Conflict`].
    pub async fn put_doc(&self, db: &str, doc: &Value) -> StoreResult<String> {
        self.counter.inc();
        check_db_name("PUT", db)?;
        let obj = doc
            .as_object()
            .ok_or_else(|| http_error("PUT", db.into(), 400, "Document must be a JSON object"))?;
        let id = match obj.get("_id") {
            Some(Value::String(id)) => id.as_str(),
            _ => return Err(http_error("PUT", db.into(), 400, "Document must have a string _id")),
        };
        self.write(|c| {
            self.require_db(c, "PUT", &format!("{db}/{id}"), db)?;
            match self.write_doc(c, "PUT", db, id, obj)? {
                Written::Rev(rev) => Ok(rev),
                Written::Conflict => Err(conflict(db, id)),
            }
        })
    }

    /// Deletes a document at `rev` (a tombstone with a new rev; `_local/` docs are removed). A missing
    /// or already deleted doc, or a missing database, is `Ok(())`; a stale rev is `Conflict`.
    pub async fn delete_doc(&self, db: &str, id: &str, rev: &str) -> StoreResult<()> {
        self.counter.inc();
        check_db_name("DELETE", db)?;
        self.write(|c| {
            match self.current(c, db, id)? {
                None | Some((_, true)) => return Ok(()),
                Some(_) => {}
            }
            let mut tombstone = Map::new();
            tombstone.insert("_id".into(), id.into());
            tombstone.insert("_rev".into(), rev.into());
            tombstone.insert("_deleted".into(), true.into());
            match self.write_doc(c, "DELETE", db, id, &tombstone)? {
                Written::Rev(_) => Ok(()),
                Written::Conflict => Err(conflict(db, id)),
            }
        })
    }

    /// `_bulk_docs`: each doc written as by [`Self::put_doc`] (docs without `_id` get a random one),
    /// results in order, all in one transaction. A malformed doc fails the whole request, like CouchDB.
    pub async fn bulk_docs(&self, db: &str, docs: &[Value]) -> StoreResult<Vec<BulkResult>> {
        self.counter.inc();
        check_db_name("POST", db)?;
        let url = format!("{db}/_bulk_docs");
        self.write(|c| {
            self.require_db(c, "POST", &url, db)?;
            let mut results = Vec::with_capacity(docs.len());
            for doc in docs {
                let mut obj = doc
                    .as_object()
                    .cloned()
                    .ok_or_else(|| http_error("POST", url.clone(), 400, "Document must be a JSON object"))?;
                let id = match obj.get("_id") {
                    Some(Value::String(id)) => id.clone(),
                    None => {
                        let id = hex::encode(rand::random::<[u8; 16]>());
                        obj.insert("_id".into(), id.clone().into());
                        id
                    }
                    Some(_) => return Err(http_error("POST", url.clone(), 400, "Document id must be a string")),
                };
                let result = match self.write_doc(c, "POST", db, &id, &obj)? {
                    Written::Rev(rev) => BulkResult {
                        id,
                        rev: Some(rev),
                        error: None,
                    },
                    Written::Conflict => BulkResult {
                        id,
                        rev: None,
                        error: Some("conflict".into()),
                    },
                };
                results.push(result);
            }
            Ok(results)
        })
    }

    /// `POST /db/_index`: adds (or replaces, by name) the mango view in design doc `_design/<ddoc>`,
    /// like CouchDB; the same definition again changes nothing (no new rev).
    pub async fn create_index(&self, db: &str, body: &Value) -> StoreResult<()> {
        self.counter.inc();
        check_db_name("POST", db)?;
        let url = format!("{db}/_index");
        let (ddoc_id, name, view) = parse_index(&url, body)?;
        self.write(|c| {
            self.require_db(c, "POST", &url, db)?;
            let old = self.load(c, db, &ddoc_id)?.and_then(|d| d.as_object().cloned());
            let mut ddoc = old.clone().unwrap_or_else(|| {
                let mut m = Map::new();
                m.insert("_id".into(), ddoc_id.clone().into());
                m.insert("language".into(), "query".into());
                m
            });
            if !ddoc.get("views").is_some_and(Value::is_object) {
                ddoc.insert("views".into(), json!({}));
            }
            if let Some(Value::Object(views)) = ddoc.get_mut("views") {
                views.insert(name, view);
            }
            if old.as_ref() == Some(&ddoc) {
                return Ok(());
            }
            match self.write_doc(c, "POST", db, &ddoc_id, &ddoc)? {
                Written::Rev(_) => Ok(()),
                Written::Conflict => Err(conflict(db, &ddoc_id)),
            }
        })
    }

    /// Live docs of `db` selected on their `path` string, sorted by path (byte order). `Under` is an
    /// exact prefix match here (CouchDB's collation needs the caller's re-check; this store does not).
    pub async fn find_by_path(&self, db: &str, sel: PathSelector<'_>) -> StoreResult<Vec<Value>> {
        self.counter.inc();
        check_db_name("POST", db)?;
        self.read(|c| {
            let bodies: Vec<String> = match sel {
                PathSelector::Eq(p) => {
                    let mut st = c
                        .prepare(
                            "SELECT body FROM docs WHERE db = ?1 AND deleted = 0 \
                             AND json_extract(body, '$.path') = ?2 ORDER BY id",
                        )
                        .at(&self.path)?;
                    st.query_map(params![db, p], |r| r.get::<_, String>(0))
                        .at(&self.path)?
                        .collect::<rusqlite::Result<_>>()
                        .at(&self.path)?
                }
                PathSelector::Under { prefix, after, limit } => {
                    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                    let mut st = c
                        .prepare(
                            "SELECT body FROM docs WHERE db = ?1 AND deleted = 0 \
                             AND substr(json_extract(body, '$.path'), 1, length(?2)) = ?2 \
                             AND json_extract(body, '$.path') > ?3 \
                             ORDER BY json_extract(body, '$.path') LIMIT ?4",
                        )
                        .at(&self.path)?;
                    st.query_map(params![db, prefix, after.unwrap_or(prefix), limit], |r| {
                        r.get::<_, String>(0)
                    })
                    .at(&self.path)?
                    .collect::<rusqlite::Result<_>>()
                    .at(&self.path)?
                }
            };
            bodies.iter().map(|b| self.parse_body(b)).collect()
        })
    }

    /// `GET /db/_index`: the `_all_docs` special index, then one `json` entry per view of each
    /// `language: "query"` design doc (by ddoc id, then view name). A missing database gives `[]`.
    pub async fn list_indexes(&self, db: &str) -> StoreResult<Vec<Value>> {
        self.counter.inc();
        check_db_name("GET", db)?;
        self.read(|c| {
            if !self.has_db(c, db)? {
                return Ok(Vec::new());
            }
            let mut out = vec![json!({
                "ddoc": null, "name": "_all_docs", "type": "special", "def": {"fields": [{"_id": "asc"}]}
            })];
            let mut st = c
                .prepare(
                    "SELECT id, body FROM docs WHERE db = ?1 AND id >= '_design/' AND id < '_design0' AND deleted = 0 \
                     ORDER BY id",
                )
                .at(&self.path)?;
            let rows = st
                .query_map([db], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .at(&self.path)?;
            for row in rows {
                let (id, body) = row.at(&self.path)?;
                let ddoc = self.parse_body(&body)?;
                if ddoc.get("language").and_then(Value::as_str) != Some("query") {
                    continue;
                }
                let Some(views) = ddoc.get("views").and_then(Value::as_object) else {
                    continue;
                };
                let mut names: Vec<&String> = views.keys().collect();
                names.sort();
                for name in names {
                    if let Some(def) = index_def(&views[name]) {
                        out.push(json!({"ddoc": id, "name": name, "type": "json", "def": def}));
                    }
                }
            }
            Ok(out)
        })
    }

    // ---- internals ------------------------------------------------------------------------------

    fn has_db(&self, c: &Connection, db: &str) -> StoreResult<bool> {
        c.query_row("SELECT 1 FROM dbs WHERE name = ?1", [db], |_| Ok(()))
            .optional()
            .at(&self.path)
            .map(|r| r.is_some())
    }

    fn require_db(&self, c: &Connection, method: &str, url: &str, db: &str) -> StoreResult<()> {
        if self.has_db(c, db)? {
            Ok(())
        } else {
            Err(http_error(method, url.into(), 404, "Database does not exist."))
        }
    }

    /// Current `(rev, deleted)` of a doc, if any row exists.
    fn current(&self, c: &Connection, db: &str, id: &str) -> StoreResult<Option<(String, bool)>> {
        c.query_row(
            "SELECT rev, deleted FROM docs WHERE db = ?1 AND id = ?2",
            [db, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .at(&self.path)
    }

    /// The live doc, or `None`.
    fn load(&self, c: &Connection, db: &str, id: &str) -> StoreResult<Option<Value>> {
        let body: Option<String> = c
            .query_row(
                "SELECT body FROM docs WHERE db = ?1 AND id = ?2 AND deleted = 0",
                [db, id],
                |r| r.get(0),
            )
            .optional()
            .at(&self.path)?;
        body.map(|b| self.parse_body(&b)).transpose()
    }

    fn parse_body(&self, body: &str) -> StoreResult<Value> {
        serde_json::from_str(body).map_err(|e| embedded_error(&self.path, format!("corrupt document body: {e}")))
    }

    /// Writes one doc (the database must exist) with CouchDB's rev rules.
    fn write_doc(
        &self,
        c: &Connection,
        method: &str,
        db: &str,
        id: &str,
        doc: &Map<String, Value>,
    ) -> StoreResult<Written> {
        let bad = |reason: String| http_error(method, format!("{db}/{id}"), 400, reason);
        check_doc_id(id).map_err(|r| bad(r.into()))?;
        if let Some(k) = doc
            .keys()
            .find(|k| k.starts_with('_') && !SPECIAL_MEMBERS.contains(&k.as_str()))
        {
            return Err(bad(format!("Bad special document member: {k}")));
        }
        let given_rev = match doc.get("_rev") {
            None | Some(Value::Null) => None,
            Some(Value::String(r)) if valid_rev(r) => Some(r.as_str()),
            Some(_) => return Err(bad("Invalid rev format".into())),
        };
        let deleted = match doc.get("_deleted") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("_deleted must be a boolean".into())),
        };
        let current = self.current(c, db, id)?;
        let mut body = Map::new();
        body.insert("_id".into(), id.into());
        body.insert("_rev".into(), Value::Null); // placeholder, keeps `_rev` second
        for (k, v) in doc {
            if !k.starts_with('_') || k == "_attachments" {
                body.insert(k.clone(), v.clone());
            }
        }
        let rev = if id.starts_with("_local/") {
            let cur = current.map(|(r, _)| r);
            if given_rev != cur.as_deref() {
                return Ok(Written::Conflict);
            }
            if deleted {
                c.execute("DELETE FROM docs WHERE db = ?1 AND id = ?2", [db, id])
                    .at(&self.path)?;
                return Ok(Written::Rev("0-0".into()));
            }
            let n = cur
                .and_then(|r| r.strip_prefix("0-").and_then(|n| n.parse::<u64>().ok()))
                .unwrap_or(0);
            format!("0-{}", n + 1)
        } else {
            let prev = match (current, given_rev) {
                (None, None) => None,
                (Some((cur, _)), Some(r)) if cur == r => Some(cur),
                (Some((cur, true)), None) => Some(cur),
                _ => return Ok(Written::Conflict),
            };
            next_rev(prev.as_deref(), deleted, &body)
        };
        body.insert("_rev".into(), rev.clone().into());
        if deleted {
            body.insert("_deleted".into(), true.into());
        }
        let text = Value::Object(body).to_string();
        c.execute(
            "INSERT INTO docs (db, id, rev, deleted, body) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (db, id) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted, body = excluded.body",
            params![db, id, rev, deleted, text],
        )
        .at(&self.path)?;
        Ok(Written::Rev(rev))
    }
}

/// CouchDB's rule: `^[a-z][a-z0-9_$()+/-]*$`, plus the system databases.
fn check_db_name(method: &str, db: &str) -> StoreResult<()> {
    let mut chars = db.chars();
    let ok = SYSTEM_DBS.contains(&db)
        || (chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+/-".contains(c)));
    if ok {
        return Ok(());
    }
    Err(http_error(
        method,
        db.into(),
        400,
        format!(
            "Name: '{db}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, \
             and / are allowed. Must begin with a letter."
        ),
    ))
}

/// CouchDB's `validate_docid`.
fn check_doc_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("Document id must not be empty");
    }
    if id == "_design/" || id == "_local/" {
        return Err("Illegal document id");
    }
    if id.starts_with('_') && !id.starts_with("_design/") && !id.starts_with("_local/") {
        return Err("Only reserved document ids may start with underscore.");
    }
    Ok(())
}

/// `<digits>-<something>`.
fn valid_rev(rev: &str) -> bool {
    rev.split_once('-')
        .is_some_and(|(g, h)| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty())
}

/// `<gen+1>-<md5(prev rev, deleted, canonical body)>`, like CouchDB's deterministic revs.
fn next_rev(prev: Option<&str>, deleted: bool, body: &Map<String, Value>) -> String {
    let generation = prev
        .and_then(|p| p.split_once('-'))
        .and_then(|(g, _)| g.parse::<u64>().ok())
        .unwrap_or(0);
    let mut content = Map::new();
    for (k, v) in body {
        if k != "_id" && k != "_rev" {
            content.insert(k.clone(), v.clone());
        }
    }
    let mut text = String::new();
    canonical(&Value::Object(content), &mut text);
    let mut h = Md5::new();
    h.update(prev.unwrap_or("").as_bytes());
    h.update([0, u8::from(deleted), 0]);
    h.update(text.as_bytes());
    format!("{}-{}", generation + 1, hex::encode(h.finalize()))
}

/// JSON with object keys sorted, recursively (array order kept).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `"f"` or `{"f": "asc"|"desc"}` → `(f, dir)`.
fn normalize_fields(fields: &[Value]) -> Option<Vec<(String, String)>> {
    fields
        .iter()
        .map(|f| match f {
            Value::String(s) => Some((s.clone(), "asc".to_string())),
            Value::Object(o) if o.len() == 1 => {
                let (k, d) = o.iter().next()?;
                matches!(d.as_str(), Some("asc" | "desc")).then(|| (k.clone(), d.as_str().unwrap_or("asc").to_string()))
            }
            _ => None,
        })
        .collect()
}

/// Parses a `POST /db/_index` body into `(ddoc id, view name, view)`, the view shaped like mango's.
fn parse_index(url: &str, body: &Value) -> StoreResult<(String, String, Value)> {
    let bad = |reason: &str| http_error("POST", url.into(), 400, reason);
    match body.get("type").map(Value::as_str) {
        None | Some(Some("json")) => {}
        _ => return Err(bad("Only json indexes are supported by the embedded store")),
    }
    let index = body
        .get("index")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("Missing required key: index"))?;
    let fields = index
        .get("fields")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| bad("Index fields must be a non-empty array"))?;
    let normalized = normalize_fields(fields).ok_or_else(|| bad("Invalid index field"))?;
    let pfs = match index.get("partial_filter_selector") {
        None => None,
        Some(Value::Object(o)) => Some(o.clone()),
        Some(_) => return Err(bad("partial_filter_selector must be an object")),
    };
    let mut key = String::new();
    canonical(
        &json!({"fields": normalized, "partial_filter_selector": pfs.clone().unwrap_or_default()}),
        &mut key,
    );
    let gen_name = hex::encode(Sha256::digest(key.as_bytes()))[..40].to_string();
    let name = match body.get("name") {
        None => gen_name.clone(),
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        Some(_) => return Err(bad("Index name must be a non-empty string")),
    };
    let ddoc = match body.get("ddoc") {
        None => format!("_design/{gen_name}"),
        Some(Value::String(d)) if d.starts_with("_design/") && d.len() > 8 => d.clone(),
        Some(Value::String(d)) if !d.is_empty() && !d.starts_with('_') => format!("_design/{d}"),
        Some(_) => return Err(bad("Invalid ddoc name")),
    };
    let map_fields: Map<String, Value> = normalized.into_iter().map(|(f, d)| (f, Value::String(d))).collect();
    let mut def = Map::new();
    def.insert("fields".into(), Value::Array(fields.clone()));
    if let Some(p) = &pfs {
        def.insert("partial_filter_selector".into(), Value::Object(p.clone()));
    }
    let view = json!({
        "map": {"fields": map_fields, "partial_filter_selector": pfs.unwrap_or_default()},
        "reduce": "_count",
        "options": {"def": def},
    });
    Ok((ddoc, name, view))
}

/// The `def` of a mango view as `GET /db/_index` shows it, or `None` if it is not a mango json view.
fn index_def(view: &Value) -> Option<Value> {
    let fields: Vec<(String, String)> = match view.pointer("/options/def/fields").and_then(Value::as_array) {
        Some(f) => normalize_fields(f)?,
        None => view
            .pointer("/map/fields")?
            .as_object()?
            .iter()
            .map(|(k, d)| Some((k.clone(), d.as_str()?.to_string())))
            .collect::<Option<_>>()?,
    };
    let mut def = Map::new();
    def.insert(
        "fields".into(),
        fields.into_iter().map(|(f, d)| json!({ f: d })).collect(),
    );
    let pfs = view
        .pointer("/options/def/partial_filter_selector")
        .or_else(|| view.pointer("/map/partial_filter_selector"));
    if let Some(p) = pfs.filter(|p| p.as_object().is_some_and(|o| !o.is_empty())) {
        def.insert("partial_filter_selector".into(), p.clone());
    }
    Some(Value::Object(def))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> EmbeddedStore {
        EmbeddedStore::open(&dir.path().join(".cozyform/store.sqlite")).unwrap()
    }

    async fn store_with_db(db: &str) -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        assert!(s.create_db(db).await.unwrap());
        (dir, s)
    }

    fn rev_of(doc: &Value) -> String {
        doc["_rev"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn databases_create_delete_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        s.ping().await.unwrap();
        assert!(s.describe().starts_with("embedded store ") && s.describe().ends_with("store.sqlite"));
        for db in [
            "global/instances",
            "cozy0d88/io-cozy-files",
            "cozy0d88/io-cozy-apps",
            "cozyff/io-cozy-files",
            "other",
        ] {
            assert!(s.create_db(db).await.unwrap());
        }
        assert!(!s.create_db("other").await.unwrap());
        assert!(matches!(
            s.create_db("Bad").await,
            Err(StoreError::Http { status: 400, .. })
        ));
        assert!(
            s.create_db("9x").await.is_err() && s.create_db("").await.is_err() && s.create_db("a b").await.is_err()
        );
        assert!(s.db_exists("other").await.unwrap() && !s.db_exists("nope").await.unwrap());
        let all = s.all_dbs("cozy", "cozy\u{fff0}").await.unwrap();
        assert_eq!(
            all,
            [
                "cozy0d88/io-cozy-apps",
                "cozy0d88/io-cozy-files",
                "cozyff/io-cozy-files"
            ]
        );
        assert_eq!(s.all_dbs("cozy0d88/", "cozy0d880").await.unwrap().len(), 2);
        assert_eq!(
            s.all_dbs("global/instances", "global/instances").await.unwrap(),
            ["global/instances"]
        );
        s.put_doc("other", &json!({"_id": "a"})).await.unwrap();
        assert!(s.delete_db("other").await.unwrap());
        assert!(!s.delete_db("other").await.unwrap());
        assert!(s.create_db("other").await.unwrap());
        assert_eq!(
            s.get_doc("other", "a").await.unwrap(),
            None,
            "docs go with their database"
        );
        assert_eq!(s.all_dbs("a", "z").await.unwrap().len(), 5);
        assert_eq!(s.counter().get(), 22);
    }

    #[tokio::test]
    async fn put_get_update_conflict() {
        let (_dir, s) = store_with_db("db").await;
        let rev1 = s
            .put_doc("db", &json!({"z": 1, "_id": "doc", "a": {"y": 2, "b": 3}}))
            .await
            .unwrap();
        assert!(rev1.starts_with("1-") && rev1.len() == 34 && rev1[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        let doc = s.get_doc("db", "doc").await.unwrap().unwrap();
        assert_eq!(
            doc.to_string(),
            format!(r#"{{"_id":"doc","_rev":"{rev1}","z":1,"a":{{"y":2,"b":3}}}}"#)
        );
        let rev2 = s
            .put_doc("db", &json!({"_id": "doc", "_rev": rev1, "z": 2}))
            .await
            .unwrap();
        assert!(rev2.starts_with("2-"));
        assert_eq!(
            s.get_doc("db", "doc").await.unwrap().unwrap(),
            json!({"_id": "doc", "_rev": rev2, "z": 2})
        );
        let stale = s.put_doc("db", &json!({"_id": "doc", "_rev": rev1, "z": 3})).await;
        assert!(matches!(stale, Err(StoreError::Conflict { ref db, ref id }) if db == "db" && id == "doc"));
        assert!(matches!(
            s.put_doc("db", &json!({"_id": "doc"})).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            s.put_doc("db", &json!({"_id": "new", "_rev": rev2})).await,
            Err(StoreError::Conflict { .. })
        ));
        let missing = s.put_doc("nodb", &json!({"_id": "doc"})).await;
        assert!(
            matches!(missing, Err(StoreError::Http { ref method, ref url, status: 404, ref reason })
                if method == "PUT" && url == "nodb/doc" && reason == "Database does not exist.")
        );
        for bad in [
            json!([1]),
            json!({"a": 1}),
            json!({"_id": 3}),
            json!({"_id": ""}),
            json!({"_id": "_foo"}),
            json!({"_id": "x", "_bad": 1}),
            json!({"_id": "x", "_rev": "nope"}),
            json!({"_id": "x", "_deleted": "y"}),
        ] {
            assert!(
                matches!(s.put_doc("db", &bad).await, Err(StoreError::Http { status: 400, .. })),
                "{bad}"
            );
        }
        assert_eq!(s.get_doc("nodb", "doc").await.unwrap(), None);
        assert_eq!(s.get_doc("db", "nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn delete_then_recreate_without_rev() {
        let (_dir, s) = store_with_db("db").await;
        let rev1 = s.put_doc("db", &json!({"_id": "d", "v": 1})).await.unwrap();
        let rev2 = s
            .put_doc("db", &json!({"_id": "d", "_rev": rev1, "v": 2}))
            .await
            .unwrap();
        assert!(matches!(
            s.delete_doc("db", "d", &rev1).await,
            Err(StoreError::Conflict { .. })
        ));
        s.delete_doc("db", "d", &rev2).await.unwrap();
        assert_eq!(s.get_doc("db", "d").await.unwrap(), None);
        s.delete_doc("db", "d", &rev2).await.unwrap();
        s.delete_doc("db", "never", "1-abc").await.unwrap();
        s.delete_doc("nodb", "d", "1-abc").await.unwrap();
        let rev4 = s.put_doc("db", &json!({"_id": "d", "v": 4})).await.unwrap();
        assert!(
            rev4.starts_with("4-"),
            "generation continues after the tombstone: {rev4}"
        );
        assert_eq!(s.get_doc("db", "d").await.unwrap().unwrap()["v"], 4);
    }

    #[tokio::test]
    async fn local_and_design_docs() {
        let (_dir, s) = store_with_db("db").await;
        assert_eq!(
            s.put_doc("db", &json!({"_id": "_local/lock", "by": "me"}))
                .await
                .unwrap(),
            "0-1"
        );
        assert!(matches!(
            s.put_doc("db", &json!({"_id": "_local/lock"})).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(
            s.put_doc("db", &json!({"_id": "_local/lock", "_rev": "0-1"}))
                .await
                .unwrap(),
            "0-2"
        );
        assert_eq!(
            s.get_doc("db", "_local/lock").await.unwrap().unwrap(),
            json!({"_id": "_local/lock", "_rev": "0-2"})
        );
        s.put_doc("db", &json!({"_id": "_design/v", "language": "javascript"}))
            .await
            .unwrap();
        s.put_doc("db", &json!({"_id": "a"})).await.unwrap();
        s.put_doc("db", &json!({"_id": "z"})).await.unwrap();
        let ids: Vec<Value> = s
            .all_docs_page("db", None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d["_id"].clone())
            .collect();
        assert_eq!(ids, [json!("_design/v"), json!("a"), json!("z")]);
        s.delete_doc("db", "_local/lock", "0-2").await.unwrap();
        assert_eq!(s.get_doc("db", "_local/lock").await.unwrap(), None);
        assert_eq!(s.put_doc("db", &json!({"_id": "_local/lock"})).await.unwrap(), "0-1");
    }

    #[tokio::test]
    async fn bulk_docs_with_a_conflict_in_the_middle() {
        let (_dir, s) = store_with_db("db").await;
        let rev1 = s.put_doc("db", &json!({"_id": "b", "v": 1})).await.unwrap();
        let rev2 = s
            .put_doc("db", &json!({"_id": "b", "_rev": rev1, "v": 2}))
            .await
            .unwrap();
        let docs = [
            json!({"_id": "a"}),
            json!({"_id": "b", "_rev": rev1, "v": 3}),
            json!({"v": "anon"}),
        ];
        let res = s.bulk_docs("db", &docs).await.unwrap();
        assert_eq!(res.len(), 3);
        assert_eq!((res[0].id.as_str(), res[0].error.as_deref()), ("a", None));
        assert!(res[0].rev.as_deref().unwrap().starts_with("1-"));
        assert_eq!(
            res[1],
            BulkResult {
                id: "b".into(),
                rev: None,
                error: Some("conflict".into())
            }
        );
        assert!(res[2].id.len() == 32 && res[2].id.bytes().all(|b| b.is_ascii_hexdigit()) && res[2].rev.is_some());
        assert_eq!(rev_of(&s.get_doc("db", "b").await.unwrap().unwrap()), rev2);
        assert_eq!(s.get_doc("db", &res[2].id).await.unwrap().unwrap()["v"], "anon");
        // A malformed doc rejects the whole request and writes nothing.
        assert!(s.bulk_docs("db", &[json!({"_id": "c"}), json!(1)]).await.is_err());
        assert_eq!(s.get_doc("db", "c").await.unwrap(), None);
        assert!(matches!(
            s.bulk_docs("nodb", &docs).await,
            Err(StoreError::Http { status: 404, .. })
        ));
    }

    #[tokio::test]
    async fn get_docs_in_order() {
        let (_dir, s) = store_with_db("db").await;
        for id in ["x", "y", "gone"] {
            s.put_doc("db", &json!({"_id": id})).await.unwrap();
        }
        let gone = rev_of(&s.get_doc("db", "gone").await.unwrap().unwrap());
        s.delete_doc("db", "gone", &gone).await.unwrap();
        let ids: Vec<String> = ["y", "nope", "x", "gone"].map(String::from).into();
        let docs = s.get_docs("db", &ids).await.unwrap();
        let got: Vec<Option<&str>> = docs
            .iter()
            .map(|d| d.as_ref().map(|d| d["_id"].as_str().unwrap()))
            .collect();
        assert_eq!(got, [Some("y"), None, Some("x"), None]);
        assert_eq!(s.get_docs("nodb", &ids).await.unwrap(), vec![None; 4]);
    }

    #[tokio::test]
    async fn all_docs_pagination() {
        let (_dir, s) = store_with_db("db").await;
        for id in ["e", "a", "d", "c", "b", "io.cozy.apps/drive"] {
            s.put_doc("db", &json!({"_id": id})).await.unwrap();
        }
        let d = rev_of(&s.get_doc("db", "d").await.unwrap().unwrap());
        s.delete_doc("db", "d", &d).await.unwrap();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s.all_docs_page("db", after.as_deref(), 2).await.unwrap();
            seen.extend(page.iter().map(|d| d["_id"].as_str().unwrap().to_string()));
            if page.len() < 2 {
                break;
            }
            after = seen.last().cloned();
        }
        assert_eq!(seen, ["a", "b", "c", "e", "io.cozy.apps/drive"]);
        assert!(s.all_docs_page("nodb", None, 10).await.unwrap().is_empty());
        assert!(s.all_docs_page("db", None, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn indexes_are_idempotent_and_listed_like_couchdb() {
        let (_dir, s) = store_with_db("db").await;
        assert!(s.list_indexes("nodb").await.unwrap().is_empty());
        let body = json!({"ddoc": "by-dir", "index": {"fields": ["dir_id", "name"]}});
        s.create_index("db", &body).await.unwrap();
        let rev = rev_of(&s.get_doc("db", "_design/by-dir").await.unwrap().unwrap());
        s.create_index("db", &body).await.unwrap();
        let ddoc = s.get_doc("db", "_design/by-dir").await.unwrap().unwrap();
        assert_eq!(rev_of(&ddoc), rev, "same definition, same rev");
        let (name, view) = ddoc["views"].as_object().unwrap().iter().next().unwrap();
        assert!(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(ddoc["language"], "query");
        assert_eq!(
            view,
            &json!({"map": {"fields": {"dir_id": "asc", "name": "asc"}, "partial_filter_selector": {}},
                    "reduce": "_count", "options": {"def": {"fields": ["dir_id", "name"]}}})
        );
        let pfs = json!({"$and": [{"client_kind": {"$in": ["browser"]}}, {"pending": {"$exists": false}}]});
        s.create_index(
            "db",
            &json!({"ddoc": "_design/clients", "index": {"fields": ["client_kind"], "partial_filter_selector": pfs}}),
        )
        .await
        .unwrap();
        s.put_doc(
            "db",
            &json!({"_id": "_design/js", "language": "javascript", "views": {}}),
        )
        .await
        .unwrap();
        let list = s.list_indexes("db").await.unwrap();
        assert_eq!(
            list,
            [
                json!({"ddoc": null, "name": "_all_docs", "type": "special", "def": {"fields": [{"_id": "asc"}]}}),
                json!({"ddoc": "_design/by-dir", "name": name, "type": "json",
                       "def": {"fields": [{"dir_id": "asc"}, {"name": "asc"}]}}),
                json!({"ddoc": "_design/clients", "name": list[2]["name"], "type": "json",
                       "def": {"fields": [{"client_kind": "asc"}], "partial_filter_selector": pfs}}),
            ]
        );
        // A different definition in the same ddoc adds a view, as CouchDB does.
        s.create_index(
            "db",
            &json!({"ddoc": "by-dir", "index": {"fields": ["name", "dir_id"]}}),
        )
        .await
        .unwrap();
        let ddoc = s.get_doc("db", "_design/by-dir").await.unwrap().unwrap();
        assert!(rev_of(&ddoc).starts_with("2-") && ddoc["views"].as_object().unwrap().len() == 2);
        assert!(matches!(
            s.create_index("nodb", &body).await,
            Err(StoreError::Http { status: 404, .. })
        ));
        for bad in [
            json!({}),
            json!({"index": {"fields": []}}),
            json!({"index": {"fields": [1]}}),
            json!({"ddoc": 1, "index": {"fields": ["a"]}}),
        ] {
            assert!(
                matches!(
                    s.create_index("db", &bad).await,
                    Err(StoreError::Http { status: 400, .. })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn data_persists_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let rev = {
            let s = open(&dir);
            s.create_db("global/instances").await.unwrap();
            s.put_doc("global/instances", &json!({"_id": "i1", "domain": "a.example"}))
                .await
                .unwrap()
        };
        let s = open(&dir);
        assert_eq!(s.all_dbs("a", "z").await.unwrap(), ["global/instances"]);
        let doc = s.get_doc("global/instances", "i1").await.unwrap().unwrap();
        assert_eq!(doc, json!({"_id": "i1", "_rev": rev, "domain": "a.example"}));
        let journal: String = s.lock().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(journal, "wal");
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: T) {}
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        send(s.put_doc("db", &Value::Null));
        send(s.bulk_docs("db", &[]));
        send(s.list_indexes("db"));
    }
}
