//! The apps registry client (cozy-stack `pkg/registry`): `GET <registry>/registry/<slug>/<channel>/latest`
//! or `GET <registry>/registry/<slug>/<version>`, registries tried in order, a 404 moving on to the next.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

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
    let path = match version {
        Some(v) => format!("registry/{slug}/{v}"),
        None => format!("registry/{slug}/{channel}/latest"),
    };
    if registries.is_empty() {
        return Err("no registry is configured; add [registries] default = [\"https://…/\"]".into());
    }
    for reg in registries {
        let base = if reg.ends_with('/') {
            reg.clone()
        } else {
            format!("{reg}/")
        };
        let url = format!("{base}{path}");
        let resp = client()
            .get(&url)
            .timeout(REGISTRY_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("the registry {reg} is unreachable ({url}): {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        if status == 404 {
            continue;
        }
        if status != 200 {
            return Err(format!("the registry {reg} answered {status} for {url}"));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading {url}: {}", error_chain(&e)))?;
        let mut v: Version = serde_json::from_slice(&body)
            .map_err(|e| format!("the registry {reg} sent a bad version for {url}: {e}"))?;
        // A relative tarball URL is relative to the registry.
        if !v.url.contains("://") {
            v.url = url::Url::parse(&url)
                .and_then(|u| u.join(&v.url))
                .map(|u| u.to_string())
                .map_err(|e| format!("the registry {reg} gave a bad url {:?}: {e}", v.url))?;
        }
        return Ok(v);
    }
    let what = match version {
        Some(v) => format!("version {v} of {slug:?}"),
        None => format!("{slug:?} on channel {channel:?}"),
    };
    Err(format!(
        "{what} was not found in the registries {}",
        registries.join(", ")
    ))
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
