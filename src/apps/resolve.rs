//! Resolution of declared sources to concrete versions, before planning: the registry's `latest` of a
//! channel (or the pinned version), the manifest of a local folder, or the manifest inside a tarball.
//! Each distinct source is resolved once for the whole fleet, concurrently, and once per run (the
//! plan re-computed under the apply lock sees the versions the operator approved).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use futures::StreamExt;
use serde_json::Value;

use super::fetch::{self, code_digest, download, manifest_in_tar};
use super::{AppKind, AppSource, CodeSource, DesiredApp, Resolved, registry};

type ResolveCache = Mutex<HashMap<String, Result<Resolved, String>>>;

fn cache() -> &'static ResolveCache {
    static C: OnceLock<ResolveCache> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Resolves every distinct source among `apps`, by [`DesiredApp::resolve_key`].
pub async fn resolve_all(apps: &[&DesiredApp], parallelism: usize) -> BTreeMap<String, Result<Resolved, String>> {
    let mut distinct: BTreeMap<String, &DesiredApp> = BTreeMap::new();
    for a in apps {
        distinct.entry(a.resolve_key()).or_insert(a);
    }
    let results: Vec<(String, Result<Resolved, String>)> =
        futures::stream::iter(distinct.into_iter().map(|(key, app)| async move {
            if let Some(r) = cache().lock().expect("cache lock").get(&key) {
                return (key, r.clone());
            }
            let r = resolve_one(app).await;
            cache().lock().expect("cache lock").insert(key.clone(), r.clone());
            (key, r)
        }))
        .buffer_unordered(parallelism.clamp(1, 16))
        .collect()
        .await;
    results.into_iter().collect()
}

fn manifest_version(manifest: &Value) -> Result<String, String> {
    match manifest.get("version").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err("the manifest has no version".into()),
    }
}

/// The `checksum` a manifest carries itself (cozy-stack decodes the doc's `checksum` from it when
/// no fetcher sets one), or "".
fn manifest_checksum(manifest: &Value) -> String {
    manifest
        .get("checksum")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// cozy-stack refuses a manifest whose `type` is not the app's.
fn check_manifest(kind: AppKind, manifest: &Value) -> Result<(), String> {
    if !manifest.is_object() {
        return Err(format!("the {} is not a JSON object", kind.manifest_name()));
    }
    // cozy-stack cannot decode such permissions: the manifest is refused (`ErrBadManifest`).
    super::perms::parse(manifest.get("permissions")).map_err(|e| format!("bad manifest: {e}"))?;
    match manifest.get("type").and_then(Value::as_str) {
        Some(t) if t != kind.manifest_type() => Err(format!(
            "the manifest has type {t:?}, but it is declared as a {}",
            kind.label()
        )),
        _ => Ok(()),
    }
}

/// Resolves one source.
pub async fn resolve_one(app: &DesiredApp) -> Result<Resolved, String> {
    let kind = app.kind;
    let r = match &app.source {
        AppSource::Registry { slug, channel, version } => {
            let v = registry::get_version(&app.registries, slug, channel, version.as_deref()).await?;
            let sha = (!v.sha256.is_empty()).then(|| v.sha256.to_lowercase());
            let (manifest, prefix) = match v.manifest {
                Some(m) if !m.is_null() => (m, v.tar_prefix.clone()),
                _ => {
                    // No manifest in the answer: read it from the tarball.
                    let bytes = download(&v.url, sha.as_deref()).await?;
                    let (m, p) = manifest_in_tar(&bytes, kind.manifest_name())?;
                    (
                        m,
                        if v.tar_prefix.is_empty() {
                            p
                        } else {
                            v.tar_prefix.clone()
                        },
                    )
                }
            };
            Resolved {
                version: v.version,
                // As the registry spells it (cozy-stack's `SetChecksum(v.Sha256)`).
                checksum: v.sha256.clone(),
                manifest,
                code: CodeSource::Tarball {
                    url: v.url,
                    sha256: sha,
                    prefix,
                },
            }
        }
        AppSource::File { path } => {
            let code = fetch::read_dir_code(path)?;
            let name = kind.manifest_name();
            let Some((_, m)) = code.iter().find(|(n, _)| n == name) else {
                return Err(format!("{} holds no {name}", path.display()));
            };
            let manifest: Value =
                serde_json::from_slice(m).map_err(|e| format!("{}/{name} is not valid JSON: {e}", path.display()))?;
            // cozy-stack appends 10 random letters to the version of a file:// app, so that every
            // install is new; cozyform appends 10 hex digits of the folder's digest instead, so that
            // the version changes exactly when the code does.
            let digest = code_digest(&code);
            Resolved {
                version: format!("{}-{}", manifest_version(&manifest)?, &digest[..10]),
                checksum: manifest_checksum(&manifest),
                manifest,
                code: CodeSource::Dir { path: path.clone() },
            }
        }
        AppSource::Http { url, sha256 } => {
            let bytes = download(url, sha256.as_deref()).await?;
            let (manifest, prefix) = manifest_in_tar(&bytes, kind.manifest_name())?;
            Resolved {
                version: manifest_version(&manifest)?,
                // cozy-stack's HTTP fetcher checks the `#sha256` but never sets the checksum: the
                // doc keeps the manifest's (usually none), and the code folder is `<version>`.
                checksum: manifest_checksum(&manifest),
                manifest,
                code: CodeSource::Tarball {
                    url: url.clone(),
                    sha256: sha256.clone(),
                    prefix,
                },
            }
        }
    };
    check_manifest(kind, &r.manifest)?;
    Ok(r)
}
