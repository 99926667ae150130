//! Retries of requests that are safe to repeat, with bounded exponential backoff and jitter: ONE
//! policy type and ONE loop for every HTTP client of cozyform (the store's CouchDB client in
//! `store/couch.rs`, the apps stage's GETs in `apps/http.rs`). The callers decide what is worth
//! another attempt ([`Verdict`]); this module decides how long to wait and when to give up.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often and how long a request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time (plus up to half of it as jitter).
    pub base_delay: Duration,
    /// Cap of the exponential part of one delay, and of a server's `Retry-After`. The jitter comes on
    /// top of the capped backoff (so one delay is at most 1.5 × this), so that clients that all reached
    /// the cap do not retry in step.
    pub max_delay: Duration,
    /// No new attempt starts after this much time, and no delay runs past it.
    pub max_total: Duration,
}

/// What a caller makes of one attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Final: a success, or a failure that repeating the request would not cure.
    Done,
    /// Worth another attempt (connection error, timeout, 5xx, 429...); `retry_after` is the server's
    /// `Retry-After`, when it sent one.
    Retry { retry_after: Option<Duration> },
}

/// The wait after failed attempt number `attempt` (1 for the first): `base_delay × 2^(attempt−1)`,
/// capped at `max_delay`, plus a random jitter of up to half of that; a server's `Retry-After`
/// replaces it, capped at `max_delay`. (The loop also cuts it to what is left of `max_total`.)
pub fn delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    delay_with_jitter(policy, attempt, retry_after, |max_ms| rand::random_range(0..=max_ms))
}

/// [`delay`] with the jitter drawn by `jitter` (given the largest jitter in milliseconds).
fn delay_with_jitter(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: impl FnOnce(u64) -> u64,
) -> Duration {
    if let Some(r) = retry_after {
        return r.min(policy.max_delay);
    }
    let exp = policy
        .base_delay
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(policy.max_delay);
    let max_jitter = u64::try_from(exp.as_millis() / 2).unwrap_or(u64::MAX);
    exp + Duration::from_millis(jitter(max_jitter).min(max_jitter))
}

/// A server's `Retry-After`, when given in seconds (the HTTP-date form is ignored: the backoff applies).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Runs `attempt` (given the attempt number, from 1) until `classify` says [`Verdict::Done`], the
/// policy's attempts are spent or its `max_total` has passed, waiting [`delay`] between attempts.
/// Returns the last outcome (which may be a retryable failure, when the policy gave up) and the
/// number of attempts made.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F, classify: impl Fn(&T) -> Verdict) -> (T, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = T>,
{
    let started = Instant::now();
    let mut n = 0u32;
    loop {
        n += 1;
        let outcome = attempt(n).await;
        let retry_after = match classify(&outcome) {
            Verdict::Done => return (outcome, n),
            Verdict::Retry { retry_after } => retry_after,
        };
        if n >= policy.max_attempts || started.elapsed() >= policy.max_total {
            return (outcome, n);
        }
        let wait = delay(policy, n, retry_after).min(policy.max_total.saturating_sub(started.elapsed()));
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_total: Duration::from_secs(20),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_doubles_from_the_base_without_jitter() {
        let d: Vec<_> = (1..=4).map(|a| delay_with_jitter(&P, a, None, |_| 0)).collect();
        assert_eq!(d, [ms(100), ms(200), ms(400), ms(800)]);
    }

    #[test]
    fn jitter_adds_at_most_half_of_the_backoff() {
        let mut offered = Vec::new();
        let d = delay_with_jitter(&P, 3, None, |max| {
            offered.push(max);
            max
        });
        assert_eq!(offered, [200]);
        assert_eq!(d, ms(600));
        // A jitter source that overshoots is clamped.
        assert_eq!(delay_with_jitter(&P, 3, None, |_| u64::MAX), ms(600));
    }

    #[test]
    fn random_delays_stay_within_backoff_and_one_and_a_half_times_it() {
        for attempt in 1..=6 {
            let exp = ms(100 * (1 << (attempt - 1))).min(P.max_delay);
            for _ in 0..200 {
                let d = delay(&P, attempt, None);
                assert!(d >= exp && d <= exp + exp / 2, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn backoff_is_capped_at_max_delay_before_jitter() {
        assert_eq!(delay_with_jitter(&P, 5, None, |_| 0), P.max_delay);
        assert_eq!(delay_with_jitter(&P, 5, None, |m| m), ms(1500));
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert_eq!(delay_with_jitter(&P, u32::MAX, None, |_| 0), P.max_delay);
        let no_cap = RetryPolicy {
            max_delay: Duration::MAX,
            ..P
        };
        assert_eq!(
            delay_with_jitter(&no_cap, 100, None, |_| 0),
            ms(100 * 256),
            "the exponent stops at 8"
        );
    }

    #[test]
    fn attempt_zero_is_treated_as_the_first() {
        assert_eq!(delay_with_jitter(&P, 0, None, |_| 0), ms(100));
    }

    #[test]
    fn retry_after_replaces_the_backoff_and_is_capped() {
        assert_eq!(
            delay_with_jitter(&P, 1, Some(ms(700)), |m| m),
            ms(700),
            "no jitter on Retry-After"
        );
        assert_eq!(delay_with_jitter(&P, 4, Some(Duration::ZERO), |m| m), Duration::ZERO);
        assert_eq!(delay(&P, 1, Some(Duration::from_secs(3600))), P.max_delay);
    }

    #[test]
    fn retry_after_header_in_seconds_is_read_and_a_date_is_ignored() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
    }

    /// A policy whose waits are all zero: the loop is tested without sleeping.
    const NO_WAIT: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_total: Duration::from_secs(3600),
    };

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn retry_stops_at_the_first_final_outcome() {
        let (out, n) = run(retry(
            &NO_WAIT,
            |a| async move { if a < 3 { Err(a) } else { Ok(a) } },
            |r: &Result<u32, u32>| match r {
                Ok(_) => Verdict::Done,
                Err(_) => Verdict::Retry { retry_after: None },
            },
        ));
        assert_eq!((out, n), (Ok(3), 3));
    }

    #[test]
    fn retry_gives_up_after_max_attempts_with_the_last_outcome() {
        let mut seen = Vec::new();
        let (out, n) = run(retry(
            &NO_WAIT,
            |a| {
                seen.push(a);
                async move { a }
            },
            |_| Verdict::Retry {
                retry_after: Some(Duration::from_secs(3600)),
            },
        ));
        assert_eq!((out, n), (4, 4));
        assert_eq!(seen, [1, 2, 3, 4], "attempts are numbered from 1");
    }

    #[test]
    fn retry_makes_one_attempt_when_the_first_is_final_or_no_time_is_left() {
        let (_, n) = run(retry(&NO_WAIT, |_| async {}, |_| Verdict::Done));
        assert_eq!(n, 1);
        let no_time = RetryPolicy {
            max_total: Duration::ZERO,
            ..NO_WAIT
        };
        let (_, n) = run(retry(&no_time, |_| async {}, |_| Verdict::Retry { retry_after: None }));
        assert_eq!(n, 1);
    }
}
