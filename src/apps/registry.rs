//! The apps registry client (cozy-stack `pkg/registry`): `GET <registry>/registry/<slug>/<channel>/latest`
//! or `GET <registry>/registry/<slug>/<version>`, registries tried in order, a 404 moving on to the next.
//! Each GET is retried on connection errors, timeouts, 5xx and 429 ([`super::http`]).

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::http::{self, redact};

/// Timeout of a registry request (cozy-stack: 5 s for versions; cozyform is more patient).
pub const REGISTRY_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout of a tarball download (cozy-stack: 60 s).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A release of an app, as the registry describes it (`registry.Version`).
#[derive(Debug, Clone, Deserialize)]
pub struct Version {
    #[serde(default)]
    pub slug: String,
    pub version: String,
    pub url: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub manifest: Option<Value>,
    #[serde(default)]
    pub tar_prefix: String,
}

/// The HTTP client shared by the registry and the downloads.
pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("cozyform/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds")
    })
}

/// Asks the registries, in order, for a version of `slug`: the latest of `channel`, or `version`.
pub async fn get_version(
    registries: &[String],
    slug: &str,
    channel: &str,
    version: Option<&str>,
) -> Result<Version, String> {
    let segments: Vec<&str> = match version {
        Some(v) => vec!["registry", slug, v],
        None => vec!["registry", slug, channel, "latest"],
    };
    if registries.is_empty() {
        return Err("no registry is configured; add [registries] default = [\"https://…/\"]".into());
    }
    for reg in registries {
        let url = request_url(reg, &segments).map_err(|e| format!("the registry {} is not a URL: {e}", redact(reg)))?;
        let (reg_shown, url_shown) = (redact(reg), redact(&url));
        let (status, body) = http::get(&url, REGISTRY_TIMEOUT, http::RETRY)
            .await
            .map_err(|e| format!("the registry {reg_shown} is unreachable: {e}"))?;
        if status == 404 {
            continue;
        }
        if status != 200 {
            // cozy-stack shows the registry's `message`, when it sends one.
            let msg = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(format!(
                "the registry {reg_shown} answered {status} for {url_shown}{msg}"
            ));
        }
        let mut v: Version = serde_json::from_slice(&body)
            .map_err(|e| format!("the registry {reg_shown} sent a bad version for {url_shown}: {e}"))?;
        // A relative tarball URL is relative to the registry.
        if !v.url.contains("://") {
            v.url = url::Url::parse(&url)
                .and_then(|u| u.join(&v.url))
                .map(|u| u.to_string())
                .map_err(|e| format!("the registry {reg_shown} gave a bad url {:?}: {e}", redact(&v.url)))?;
        }
        return Ok(v);
    }
    let what = match version {
        Some(v) => format!("version {v} of {slug:?}"),
        None => format!("{slug:?} on channel {channel:?}"),
    };
    let shown: Vec<String> = registries.iter().map(|r| redact(r)).collect();
    Err(format!("{what} was not found in the registries {}", shown.join(", ")))
}

/// The URL of a registry request, as cozy-stack's `fetch` builds it: the registry's path joined
/// with `/registry/…` (each segment escaped, `url.PathEscape`), the registry's query and fragment
/// dropped (`ResolveReference` of an absolute path).
pub fn request_url(registry: &str, segments: &[&str]) -> Result<String, String> {
    let mut u = url::Url::parse(registry).map_err(|e| e.to_string())?;
    u.set_query(None);
    u.set_fragment(None);
    {
        let mut p = u.path_segments_mut().map_err(|_| "it cannot have a path".to_string())?;
        p.pop_if_empty();
        p.extend(segments);
    }
    Ok(u.to_string())
}

/// An error and its causes on one line (reqwest hides the useful part in the sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::request_url;

    #[test]
    fn request_urls_are_built_as_cozy_stack_builds_them() {
        let s = ["registry", "drive", "stable", "latest"];
        assert_eq!(
            request_url("https://r.example", &s).unwrap(),
            "https://r.example/registry/drive/stable/latest"
        );
        assert_eq!(
            request_url("https://r.example/space/?x=1#f", &s).unwrap(),
            "https://r.example/space/registry/drive/stable/latest"
        );
        assert_eq!(
            request_url("https://r.example/space", &["registry", "drive", "1.0.0+b 1"]).unwrap(),
            "https://r.example/space/registry/drive/1.0.0+b%201"
        );
    }
}
