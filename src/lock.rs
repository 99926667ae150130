//! The apply lock: a `_local` doc in `global/instances` (cozy-stack never lists `_local` docs), in
//! CouchDB or in the embedded store. Part of the executor's I/O.
//!
//! Taking it is one PUT without `_rev`: CouchDB answers 409 when the doc exists, so two operators
//! can never both hold it. Releasing deletes it only when it still carries our id.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::layout;
use crate::store::{Store, StoreError};

/// Id of the lock doc in `global/instances`.
pub const LOCK_DOC_ID: &str = "_local/cozyform-lock";

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    /// `user@host`.
    pub holder: String,
    pub pid: u32,
    pub operation: String,
    /// RFC 3339.
    pub created_at: String,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ID: {}\n  Holder: {} (pid {})\n  Operation: {}\n  Since: {}",
            self.id, self.holder, self.pid, self.operation, self.created_at
        )
    }
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("the state is locked by another cozyform run:\n  {0}")]
pub struct Locked(pub LockInfo);

fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host}")
}

/// Reads the current lock, if any.
pub async fn current(store: &Store) -> Result<Option<LockInfo>> {
    let doc = store
        .get_doc(layout::GLOBAL_INSTANCES_DB, LOCK_DOC_ID)
        .await
        .context("reading the lock")?;
    Ok(doc.and_then(|d| serde_json::from_value(d.get("lock").cloned().unwrap_or(Value::Null)).ok()))
}

/// Takes the lock, waiting up to `wait`. Creates `global/instances` if needed (cozy-stack creates it
/// at every start anyway).
pub async fn acquire(store: &Store, operation: &str, wait: Duration) -> Result<LockInfo> {
    store
        .create_db(layout::GLOBAL_INSTANCES_DB)
        .await
        .context("creating global/instances")?;
    let info = LockInfo {
        id: hex::encode(rand::random::<[u8; 16]>()),
        holder: whoami(),
        pid: std::process::id(),
        operation: operation.into(),
        created_at: layout::rfc3339_nano(&chrono::Local::now()),
    };
    let doc = json!({ "_id": LOCK_DOC_ID, "lock": info });
    let started = Instant::now();
    loop {
        match store.put_doc(layout::GLOBAL_INSTANCES_DB, &doc).await {
            Ok(_) => return Ok(info),
            Err(StoreError::Conflict { .. }) => {
                if started.elapsed() >= wait {
                    let held = current(store).await?;
                    match held {
                        Some(h) => return Err(Locked(h).into()),
                        None => continue, // released meanwhile: try again at once
                    }
                }
                tokio::time::sleep(
                    Duration::from_millis(250)
                        .min(wait.saturating_sub(started.elapsed()).max(Duration::from_millis(10))),
                )
                .await;
            }
            Err(e) => return Err(e).context("taking the lock"),
        }
    }
}

/// Releases the lock if it is still ours.
pub async fn release(store: &Store, info: &LockInfo) -> Result<()> {
    force_unlock(store, &info.id).await.map(|_| ())
}

/// Deletes the lock only when its id is exactly `id`. Returns the released lock.
pub async fn force_unlock(store: &Store, id: &str) -> Result<LockInfo> {
    for _ in 0..5 {
        let Some(doc) = store
            .get_doc(layout::GLOBAL_INSTANCES_DB, LOCK_DOC_ID)
            .await
            .context("reading the lock")?
        else {
            bail!("no lock is held");
        };
        let info: LockInfo = serde_json::from_value(doc.get("lock").cloned().unwrap_or(Value::Null))
            .context("the lock doc is malformed")?;
        if info.id != id {
            bail!(
                "the lock held has the ID {}, not {id}; nothing was released\n  {info}",
                info.id
            );
        }
        let rev = doc.get("_rev").and_then(Value::as_str).unwrap_or_default();
        match store.delete_doc(layout::GLOBAL_INSTANCES_DB, LOCK_DOC_ID, rev).await {
            Ok(()) => return Ok(info),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).context("releasing the lock"),
        }
    }
    bail!("the lock kept changing while releasing it")
}

/// Parses a duration such as `0s`, `30s`, `5m`, `1h`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s or 5m"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::embedded::EmbeddedStore::open(&dir.path().join("s.sqlite")).unwrap();
        (dir, Store::Embedded(Arc::new(s)))
    }

    #[tokio::test]
    async fn a_second_acquire_fails_with_the_holder() {
        let (_d, s) = store();
        let first = acquire(&s, "apply", Duration::ZERO).await.unwrap();
        let err = acquire(&s, "apply", Duration::from_millis(300)).await.unwrap_err();
        let locked = err.downcast_ref::<Locked>().expect("a Locked error");
        assert_eq!(locked.0, first);
        release(&s, &first).await.unwrap();
        let again = acquire(&s, "apply", Duration::ZERO).await.unwrap();
        assert_ne!(again.id, first.id);
    }

    #[tokio::test]
    async fn force_unlock_needs_the_exact_id() {
        let (_d, s) = store();
        let held = acquire(&s, "apply", Duration::ZERO).await.unwrap();
        assert!(force_unlock(&s, "0123").await.is_err());
        assert!(current(&s).await.unwrap().is_some());
        force_unlock(&s, &held.id).await.unwrap();
        assert!(current(&s).await.unwrap().is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
    }
}
