//! GETs of the apps stage (registry versions, tarballs), with retries: every one is idempotent, so a
//! connection error, a timeout, a 5xx or a 429 is retried with bounded exponential backoff and
//! jitter (`crate::retry`; a `Retry-After` is honoured, capped). Each attempt has its own timeout.
//! Messages name the URL with its credentials removed.
use std::time::Duration;

use super::registry::{client, error_chain};
pub use crate::retry::RetryPolicy;
use crate::retry::{Verdict, retry};

/// The apps stage's GETs' retry policy: 4 attempts, 250 ms, 500 ms, 1 s apart (plus jitter), within
/// 60 s; a `Retry-After` is honoured up to 5 s.
pub const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(5),
    max_total: Duration::from_secs(60),
};

/// `url` with its user name and password removed, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL: cut anything that looks like credentials.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(a)) if a > s => format!("{}{}", &url[..s + 3], &url[a + 1..]),
            _ => url.to_string(),
        },
    }
}

/// What a GET ended with: the status and body of the last answer (any status but a retryable one
/// that had attempts left), or an error message naming the URL (credentials removed).
pub async fn get(url: &str, timeout: Duration, policy: RetryPolicy) -> Result<(u16, Vec<u8>), String> {
    let ((result, _), attempts) = retry(
        &policy,
        |_| get_once(url, timeout),
        |(result, retry_after)| match result {
            Ok((status, _)) if !(*status == 429 || (500..600).contains(status)) => Verdict::Done,
            _ => Verdict::Retry {
                retry_after: *retry_after,
            },
        },
    )
    .await;
    result.map_err(|e| {
        if attempts > 1 {
            format!("{e} (after {attempts} attempts)")
        } else {
            e
        }
    })
}

/// One attempt; also returns the answer's `Retry-After`, if any.
async fn get_once(url: &str, timeout: Duration) -> (Result<(u16, Vec<u8>), String>, Option<Duration>) {
    let shown = redact(url);
    let resp = match client().get(url).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return (Err(format!("{shown}: {}", error_chain(&e.without_url()))), None),
    };
    let status = resp.status().as_u16();
    let retry_after = crate::retry::retry_after(resp.headers());
    match resp.bytes().await {
        Ok(b) => (Ok((status, b.to_vec())), retry_after),
        Err(e) => (Err(format!("{shown}: {}", error_chain(&e.without_url()))), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_credentials() {
        assert_eq!(
            redact("https://bob:s3cret@reg.example/path/?q=1"),
            "https://reg.example/path/?q=1"
        );
        assert_eq!(redact("https://reg.example/x"), "https://reg.example/x");
        assert_eq!(redact("not a url://a:b@c"), "not a url://c");
    }
}
