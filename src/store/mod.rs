//! Store stage: the CouchDB-shaped storage behind cozyform. Two implementations with one contract:
//! [`couch::CouchStore`] (a real CouchDB 3.x server, through couch_rs) and
//! [`embedded::EmbeddedStore`] (an SQLite file next to the config, same databases, docs, `_rev`s and
//! design docs). Only this module and the filesystem layer talk to the outside world.
//!
//! Database names given to these methods are *logical* names (`global/instances`,
//! `cozy…/io-cozy-files`); each implementation escapes them as it needs. Document ids are raw
//! (`_design/x`, `io.cozy.apps/drive`, `_local/lock`).

pub mod couch;
pub mod embedded;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

/// Errors of the store layer. Messages name the request and never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A document update conflict (HTTP 409): the doc changed since it was read.
    #[error("document update conflict on {db}/{id}")]
    Conflict { db: String, id: String },
    /// An HTTP answer that is neither success nor an expected status.
    #[error("{method} {url} answered {status}: {reason}")]
    Http {
        method: String,
        url: String,
        status: u16,
        reason: String,
    },
    /// The server could not be reached, or the request timed out.
    #[error("{method} {url} failed: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
        retryable: bool,
    },
    /// The answer could not be decoded.
    #[error("{method} {url}: unexpected answer: {message}")]
    Decode {
        method: String,
        url: String,
        message: String,
    },
    /// The embedded store failed.
    #[error("embedded store {path}: {message}")]
    Embedded { path: String, message: String },
}

impl StoreError {
    /// Whether retrying the same idempotent request may succeed (connection errors, timeouts, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Transport { retryable, .. } => *retryable,
            StoreError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which docs [`Store::find_by_path`] returns, on the `path` field (directory docs of `io.cozy.files`;
/// file docs have no `path` in cozy-stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSelector<'a> {
    /// Docs whose `path` is exactly this one (cozy-stack's `DirByPath`).
    Eq(&'a str),
    /// Docs whose `path` starts with `prefix` and sorts after `after` (exclusive), sorted by path, at
    /// most `limit`: one page of cozy-stack's `MoveDir` query. CouchDB compares with its collation,
    /// so a page may hold docs that do not start with `prefix`: the caller checks the prefix again
    /// and pages on with the last path of the raw page.
    Under {
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    },
}

/// Outcome of one doc of a `_bulk_docs` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkResult {
    pub id: String,
    /// The new rev on success.
    pub rev: Option<String>,
    /// `conflict`, `forbidden`, … on failure.
    pub error: Option<String>,
}

/// Counts the requests a store makes (HTTP requests for CouchDB, operations for the embedded store).
#[derive(Debug, Default)]
pub struct RequestCounter(AtomicU64);

impl RequestCounter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The store behind a run: CouchDB or embedded. Cheap to clone.
#[derive(Clone)]
pub enum Store {
    Couch(Arc<couch::CouchStore>),
    Embedded(Arc<embedded::EmbeddedStore>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Couch($s) => $e,
            Store::Embedded($s) => $e,
        }
    };
}

impl Store {
    /// A short description for messages: the URL without credentials, or the file path.
    pub fn describe(&self) -> String {
        dispatch!(self, s => s.describe())
    }

    /// Number of requests made so far.
    pub fn requests(&self) -> u64 {
        dispatch!(self, s => s.counter().get())
    }

    /// Checks that the store answers (CouchDB: `GET /`).
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, s => s.ping().await)
    }

    /// Database names in `[start, end]` (inclusive, byte order), paginated internally.
    pub async fn all_dbs(&self, start: &str, end: &str) -> StoreResult<Vec<String>> {
        dispatch!(self, s => s.all_dbs(start, end).await)
    }

    /// Creates a database. `Ok(false)` when it already existed.
    pub async fn create_db(&self, db: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.create_db(db).await)
    }

    /// Deletes a database. `Ok(false)` when it did not exist.
    pub async fn delete_db(&self, db: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.delete_db(db).await)
    }

    /// Whether a database exists.
    pub async fn db_exists(&self, db: &str) -> StoreResult<bool> {
        dispatch!(self, s => s.db_exists(db).await)
    }

    /// One document, or `None` when it (or its database) does not exist or is deleted.
    pub async fn get_doc(&self, db: &str, id: &str) -> StoreResult<Option<Value>> {
        dispatch!(self, s => s.get_doc(db, id).await)
    }

    /// Several documents of one database in one request (`POST _all_docs` with `keys`,
    /// `include_docs=true`), in the order of `ids`. A missing database gives all `None`.
    pub async fn get_docs(&self, db: &str, ids: &[String]) -> StoreResult<Vec<Option<Value>>> {
        dispatch!(self, s => s.get_docs(db, ids).await)
    }

    /// One page of `_all_docs?include_docs=true` starting after `after` (exclusive), at most `limit`
    /// rows, design docs included. Returns the docs; fewer than `limit` means the end. A missing
    /// database gives an empty page.
    pub async fn all_docs_page(&self, db: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Value>> {
        dispatch!(self, s => s.all_docs_page(db, after, limit).await)
    }

    /// Creates or updates a document (`PUT /db/id`); the doc's `_rev` must be the current one, or
    /// absent for a new (or deleted) doc. Returns the new rev, or `StoreError::Conflict`.
    pub async fn put_doc(&self, db: &str, doc: &Value) -> StoreResult<String> {
        dispatch!(self, s => s.put_doc(db, doc).await)
    }

    /// Deletes a document at `rev`. A missing doc is `Ok(())`; a stale rev is `Conflict`.
    pub async fn delete_doc(&self, db: &str, id: &str, rev: &str) -> StoreResult<()> {
        dispatch!(self, s => s.delete_doc(db, id, rev).await)
    }

    /// `POST /db/_bulk_docs`: per-doc results in order.
    pub async fn bulk_docs(&self, db: &str, docs: &[Value]) -> StoreResult<Vec<BulkResult>> {
        dispatch!(self, s => s.bulk_docs(db, docs).await)
    }

    /// `POST /db/_index` with the given body (`{"ddoc":…,"index":{…}}`); idempotent.
    pub async fn create_index(&self, db: &str, body: &Value) -> StoreResult<()> {
        dispatch!(self, s => s.create_index(db, body).await)
    }

    /// Docs of `db` selected on their `path` (mango `_find` on the `dir-by-path` index for CouchDB).
    /// A missing database gives no docs.
    pub async fn find_by_path(&self, db: &str, sel: PathSelector<'_>) -> StoreResult<Vec<Value>> {
        dispatch!(self, s => s.find_by_path(db, sel).await)
    }

    /// `GET /db/_index`: the `indexes` array (`{ddoc, name, type, def}`), `_all_docs` special index
    /// included. A missing database gives an empty list.
    pub async fn list_indexes(&self, db: &str) -> StoreResult<Vec<Value>> {
        dispatch!(self, s => s.list_indexes(db).await)
    }
}
