//! CouchDB implementation of the store stage, over couch_rs.
//!
//! couch_rs gives the HTTP client (auth header, timeout, connection pool) and `Client::req`; the
//! endpoints it lacks or gets wrong for cozy-stack's layout are called through `req` directly:
//! `_all_dbs` with key ranges, `_index`, raw design docs, `_all_docs` with `keys`, `_bulk_docs` with
//! per-doc results, and doc ids containing `/` (couch_rs form-encodes ids, so a space becomes `+`).
//!
//! Every request has a timeout. Requests that are safe to repeat (all of ours: reads, PUTs with a
//! known id and rev, `_index`, database creation and deletion) are retried with exponential backoff
//! and jitter on connection errors, timeouts, 5xx and 429, within a bounded total.

use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{BulkResult, PathSelector, RequestCounter, StoreError, StoreResult};
use crate::retry::Verdict;

/// Everything but unreserved characters is escaped; `/` in db names and doc ids becomes `%2F`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Page size for `_all_dbs` and `_all_docs` scans.
pub const PAGE_SIZE: usize = 2000;

pub use crate::retry::RetryPolicy;

/// Retry policy for idempotent requests: 6 attempts, 100 ms, 200 ms, ... 1.6 s apart (plus jitter),
/// within 20 s; a `Retry-After` (429, 503) is honoured up to 5 s.
pub const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(5),
    max_total: Duration::from_secs(20),
};

/// A CouchDB server.
pub struct CouchStore {
    client: couch_rs::Client,
    /// The server URL without credentials, for messages.
    url: String,
    counter: RequestCounter,
    retry: RetryPolicy,
    verbose: bool,
}

/// Escapes one path segment (a database name or a document id).
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

impl CouchStore {
    /// Builds the client; no request is made. `url` must not contain credentials.
    pub fn new(url: &str, user: Option<&str>, password: Option<&str>, timeout_secs: u64) -> StoreResult<Self> {
        let client = couch_rs::Client::new_with_timeout(url, user, password, Some(timeout_secs)).map_err(|e| {
            StoreError::Transport {
                method: "INIT".into(),
                url: url.into(),
                message: e.to_string(),
                retryable: false,
            }
        })?;
        Ok(CouchStore {
            client,
            url: url.trim_end_matches('/').to_string(),
            counter: RequestCounter::default(),
            retry: RETRY,
            verbose: std::env::var_os("COZYFORM_LOG_HTTP").is_some(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    pub fn describe(&self) -> String {
        format!("CouchDB at {}", self.url)
    }

    pub fn counter(&self) -> &RequestCounter {
        &self.counter
    }

    /// Sends one request, retrying when safe. Returns the status and the body parsed as JSON
    /// (`Value::Null` when empty or not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> StoreResult<(StatusCode, Value)> {
        let retryable = |status: StatusCode| status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        let (result, _) = crate::retry::retry(
            &self.retry,
            |_| self.call_once(method.clone(), path, query, body),
            |result| match result {
                Ok((status, _, retry_after)) if retryable(*status) => Verdict::Retry {
                    retry_after: *retry_after,
                },
                Ok(_) => Verdict::Done,
                Err(e) if e.is_retryable() => Verdict::Retry { retry_after: None },
                Err(_) => Verdict::Done,
            },
        )
        .await;
        match result? {
            (status, body, _) if retryable(status) => Err(self.http_error(&method, path, status, &body)),
            (status, body, _) => Ok((status, body)),
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> StoreResult<(StatusCode, Value, Option<Duration>)> {
        self.counter.inc();
        let started = Instant::now();
        let mut req = self.client.req(method.clone(), path, None);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(b).expect("JSON values serialize"));
        }
        let resp = req.send().await.map_err(|e| StoreError::Transport {
            method: method.to_string(),
            url: self.url_for(path),
            message: clean_reqwest_error(&e),
            retryable: true,
        })?;
        let status = resp.status();
        let retry_after = crate::retry::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| StoreError::Transport {
            method: method.to_string(),
            url: self.url_for(path),
            message: clean_reqwest_error(&e),
            retryable: true,
        })?;
        if self.verbose {
            crate::progress::log_line(&format!(
                "http: {method} {} {} {:?}",
                self.url_for(path),
                status.as_u16(),
                started.elapsed()
            ));
        }
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, value, retry_after))
    }

    fn url_for(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    fn http_error(&self, method: &Method, path: &str, status: StatusCode, body: &Value) -> StoreError {
        let reason = match (
            body.get("error").and_then(Value::as_str),
            body.get("reason").and_then(Value::as_str),
        ) {
            (Some(e), Some(r)) => format!("{e}: {r}"),
            (Some(e), None) => e.to_string(),
            _ => status.canonical_reason().unwrap_or("").to_string(),
        };
        StoreError::Http {
            method: method.to_string(),
            url: self.url_for(path),
            status: status.as_u16(),
            reason,
        }
    }

    fn decode_err(&self, method: &str, path: &str, message: impl Into<String>) -> StoreError {
        StoreError::Decode {
            method: method.into(),
            url: self.url_for(path),
            message: message.into(),
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        let (status, body) = self.call(Method::GET, "/", &[], None).await?;
        if !status.is_success() {
            return Err(self.http_error(&Method::GET, "/", status, &body));
        }
        if body.get("couchdb").is_none() {
            return Err(self.decode_err(
                "GET",
                "/",
                "this server does not answer like CouchDB (no \"couchdb\" key in GET /)",
            ));
        }
        Ok(())
    }

    pub async fn all_dbs(&self, start: &str, end: &str) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        self.all_dbs_each(start, end, &mut |page| out.extend(page)).await?;
        Ok(out)
    }

    /// [`CouchStore::all_dbs`], one page at a time.
    pub async fn all_dbs_each(
        &self,
        start: &str,
        end: &str,
        f: &mut (dyn FnMut(Vec<String>) + Send),
    ) -> StoreResult<()> {
        let mut from = start.to_string();
        let mut skip = 0usize;
        loop {
            let query = [
                ("start_key", json!(from).to_string()),
                ("end_key", json!(end).to_string()),
                ("limit", PAGE_SIZE.to_string()),
                ("skip", skip.to_string()),
            ];
            let (status, body) = self.call(Method::GET, "/_all_dbs", &query, None).await?;
            if !status.is_success() {
                return Err(self.http_error(&Method::GET, "/_all_dbs", status, &body));
            }
            let page: Vec<String> =
                serde_json::from_value(body).map_err(|e| self.decode_err("GET", "/_all_dbs", e.to_string()))?;
            let n = page.len();
            if let Some(last) = page.last() {
                from = last.clone();
                skip = 1;
            }
            f(page);
            if n < PAGE_SIZE {
                return Ok(());
            }
        }
    }

    /// A request whose success returns the body and whose `absent` status means "not there".
    async fn call_or_absent(&self, method: Method, path: &str, absent: StatusCode) -> StoreResult<Option<Value>> {
        let (status, body) = self.call(method.clone(), path, &[], None).await?;
        match status {
            s if s.is_success() => Ok(Some(body)),
            s if s == absent => Ok(None),
            s => Err(self.http_error(&method, path, s, &body)),
        }
    }

    pub async fn create_db(&self, db: &str) -> StoreResult<bool> {
        let path = format!("/{}", seg(db));
        Ok(self
            .call_or_absent(Method::PUT, &path, StatusCode::PRECONDITION_FAILED)
            .await?
            .is_some())
    }

    pub async fn delete_db(&self, db: &str) -> StoreResult<bool> {
        let path = format!("/{}", seg(db));
        Ok(self
            .call_or_absent(Method::DELETE, &path, StatusCode::NOT_FOUND)
            .await?
            .is_some())
    }

    pub async fn db_exists(&self, db: &str) -> StoreResult<bool> {
        let path = format!("/{}", seg(db));
        Ok(self
            .call_or_absent(Method::GET, &path, StatusCode::NOT_FOUND)
            .await?
            .is_some())
    }

    pub async fn get_doc(&self, db: &str, id: &str) -> StoreResult<Option<Value>> {
        let path = format!("/{}/{}", seg(db), seg(id));
        self.call_or_absent(Method::GET, &path, StatusCode::NOT_FOUND).await
    }

    pub async fn get_docs(&self, db: &str, ids: &[String]) -> StoreResult<Vec<Option<Value>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let path = format!("/{}/_all_docs", seg(db));
        let (status, body) = self
            .call(
                Method::POST,
                &path,
                &[("include_docs", "true".into())],
                Some(&json!({ "keys": ids })),
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(vec![None; ids.len()]);
        }
        if !status.is_success() {
            return Err(self.http_error(&Method::POST, &path, status, &body));
        }
        let rows = body
            .get("rows")
            .and_then(Value::as_array)
            .ok_or_else(|| self.decode_err("POST", &path, "no rows"))?;
        let mut by_id = std::collections::HashMap::new();
        for row in rows {
            if let (Some(id), Some(doc)) = (row.get("key").and_then(Value::as_str), row.get("doc"))
                && doc.is_object()
            {
                by_id.insert(id.to_string(), doc.clone());
            }
        }
        Ok(ids.iter().map(|id| by_id.remove(id)).collect())
    }

    pub async fn all_docs_page(&self, db: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<Value>> {
        let path = format!("/{}/_all_docs", seg(db));
        let mut query = vec![("include_docs", "true".to_string()), ("limit", limit.to_string())];
        if let Some(a) = after {
            query.push(("start_key", json!(a).to_string()));
            query.push(("skip", "1".into()));
        }
        let (status, body) = self.call(Method::GET, &path, &query, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(self.http_error(&Method::GET, &path, status, &body));
        }
        let rows = body
            .get("rows")
            .and_then(Value::as_array)
            .ok_or_else(|| self.decode_err("GET", &path, "no rows"))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get("doc").filter(|d| d.is_object()).cloned())
            .collect())
    }

    pub async fn put_doc(&self, db: &str, doc: &Value) -> StoreResult<String> {
        let id = doc
            .get("_id")
            .and_then(Value::as_str)
            .ok_or_else(|| self.decode_err("PUT", db, "document without _id"))?;
        let path = format!("/{}/{}", seg(db), seg(id));
        let (status, body) = self.call(Method::PUT, &path, &[], Some(doc)).await?;
        match status {
            s if s.is_success() => body
                .get("rev")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| self.decode_err("PUT", &path, "no rev in the answer")),
            StatusCode::CONFLICT => Err(StoreError::Conflict {
                db: db.into(),
                id: id.into(),
            }),
            s => Err(self.http_error(&Method::PUT, &path, s, &body)),
        }
    }

    pub async fn delete_doc(&self, db: &str, id: &str, rev: &str) -> StoreResult<()> {
        let path = format!("/{}/{}", seg(db), seg(id));
        let (status, body) = self
            .call(Method::DELETE, &path, &[("rev", rev.to_string())], None)
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            StatusCode::CONFLICT => Err(StoreError::Conflict {
                db: db.into(),
                id: id.into(),
            }),
            s => Err(self.http_error(&Method::DELETE, &path, s, &body)),
        }
    }

    pub async fn bulk_docs(&self, db: &str, docs: &[Value]) -> StoreResult<Vec<BulkResult>> {
        let path = format!("/{}/_bulk_docs", seg(db));
        let (status, body) = self
            .call(Method::POST, &path, &[], Some(&json!({ "docs": docs })))
            .await?;
        if !status.is_success() {
            return Err(self.http_error(&Method::POST, &path, status, &body));
        }
        let rows = body
            .as_array()
            .ok_or_else(|| self.decode_err("POST", &path, "not an array"))?;
        Ok(rows
            .iter()
            .map(|r| BulkResult {
                id: r.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                rev: r.get("rev").and_then(Value::as_str).map(str::to_string),
                error: r.get("error").and_then(Value::as_str).map(str::to_string),
            })
            .collect())
    }

    pub async fn create_index(&self, db: &str, body: &Value) -> StoreResult<()> {
        let path = format!("/{}/_index", seg(db));
        let (status, resp) = self.call(Method::POST, &path, &[], Some(body)).await?;
        if !status.is_success() {
            return Err(self.http_error(&Method::POST, &path, status, &resp));
        }
        Ok(())
    }

    /// `POST /db/_find` on the `dir-by-path` index, as cozy-stack's `DirByPath` and `MoveDir` do
    /// (`$gt`/`$lt` bounds with `\u{fff0}`, sorted by path).
    pub async fn find_by_path(&self, db: &str, sel: PathSelector<'_>) -> StoreResult<Vec<Value>> {
        let body = match sel {
            PathSelector::Eq(p) => json!({
                "selector": { "path": p },
                "use_index": "dir-by-path",
                "limit": 100,
            }),
            PathSelector::Under { prefix, after, limit } => {
                let start = match after {
                    Some(a) if a > prefix => a,
                    _ => prefix,
                };
                json!({
                    "selector": { "$and": [
                        { "path": { "$gt": start } },
                        { "path": { "$lt": format!("{prefix}\u{fff0}") } },
                    ]},
                    "use_index": "dir-by-path",
                    "sort": [{ "path": "asc" }],
                    "limit": limit,
                })
            }
        };
        let path = format!("/{}/_find", seg(db));
        let (status, resp) = self.call(Method::POST, &path, &[], Some(&body)).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(self.http_error(&Method::POST, &path, status, &resp));
        }
        Ok(resp.get("docs").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    pub async fn list_indexes(&self, db: &str) -> StoreResult<Vec<Value>> {
        let path = format!("/{}/_index", seg(db));
        let (status, body) = self.call(Method::GET, &path, &[], None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(self.http_error(&Method::GET, &path, status, &body));
        }
        Ok(body
            .get("indexes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

/// A reqwest error message without the URL (which reqwest may print with credentials) but with its
/// causes.
fn clean_reqwest_error(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_string());
    } else if e.is_connect() {
        parts.push("could not connect".to_string());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push("request failed".to_string());
    }
    parts.join(": ")
}
