//! GETs of the apps stage (registry versions, tarballs), with retries: every one is idempotent, so a
//! connection error, a timeout, a 5xx or a 429 is retried with bounded exponential backoff and
//! jitter (a 429's `Retry-After` is honoured, capped). Each attempt has its own timeout. Messages
//! name the URL with its credentials removed.

use std::time::{Duration, Instant};

use super::registry::{client, error_chain};

/// Retry policy of the apps stage's GETs.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time (plus up to half of it as jitter).
    pub base_delay: Duration,
    /// Longest single delay.
    pub max_delay: Duration,
    /// No new attempt starts after this much time.
    pub max_total: Duration,
}

/// The default policy: 4 attempts, 250 ms, 500 ms, 1 s apart (plus jitter), within 60 s.
pub const RETRY: Retry = Retry {
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
pub async fn get(url: &str, timeout: Duration, policy: Retry) -> Result<(u16, Vec<u8>), String> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (result, retry_after) = get_once(url, timeout).await;
        let retryable = match &result {
            Ok((status, _)) => *status == 429 || (500..600).contains(status),
            Err(_) => true,
        };
        if !retryable || attempt >= policy.max_attempts || started.elapsed() >= policy.max_total {
            return result.map_err(|e| {
                if attempt > 1 {
                    format!("{e} (after {attempt} attempts)")
                } else {
                    e
                }
            });
        }
        let exp = policy
            .base_delay
            .saturating_mul(1 << (attempt - 1).min(8))
            .min(policy.max_delay);
        let jitter = Duration::from_millis(rand::random_range(0..=exp.as_millis() as u64 / 2));
        let delay = retry_after
            .map(|r| r.min(policy.max_delay))
            .unwrap_or(exp + jitter)
            .min(policy.max_total.saturating_sub(started.elapsed()));
        tokio::time::sleep(delay).await;
    }
}

/// One attempt; also returns a `Retry-After` in seconds, if any.
async fn get_once(url: &str, timeout: Duration) -> (Result<(u16, Vec<u8>), String>, Option<Duration>) {
    let shown = redact(url);
    let resp = match client().get(url).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) => return (Err(format!("{shown}: {}", error_chain(&e.without_url()))), None),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
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
