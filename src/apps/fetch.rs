//! Fetching app code: tarball downloads (checked against their sha256), tar/gzip unpacking and local
//! directories. Downloads are cached for the whole run: each (url, sha256) is fetched once however
//! many instances and plans use it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::CodeSource;
use super::http::{self, redact};
use super::registry::DOWNLOAD_TIMEOUT;

/// The files of an app: (relative path with `/`, content), sorted by path.
pub type Code = Vec<(String, Vec<u8>)>;

/// Largest tarball or file accepted.
pub const MAX_DOWNLOAD: usize = 512 * 1024 * 1024;

type Cache<T> = Mutex<HashMap<String, Result<Arc<T>, String>>>;

fn downloads() -> &'static Cache<Vec<u8>> {
    static C: OnceLock<Cache<Vec<u8>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn codes() -> &'static Cache<Code> {
    static C: OnceLock<Cache<Code>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Downloads `url` once per run and checks its sha256 when given.
pub async fn download(url: &str, sha256: Option<&str>) -> Result<Arc<Vec<u8>>, String> {
    let key = format!("{url}#{}", sha256.unwrap_or(""));
    if let Some(r) = downloads().lock().expect("cache lock").get(&key) {
        return r.clone();
    }
    let r = download_uncached(url, sha256).await.map(Arc::new);
    downloads().lock().expect("cache lock").insert(key, r.clone());
    r
}

async fn download_uncached(url: &str, sha256: Option<&str>) -> Result<Vec<u8>, String> {
    let shown = redact(url);
    let (status, body) = http::get(url, DOWNLOAD_TIMEOUT, http::RETRY)
        .await
        .map_err(|e| format!("cannot download {e}"))?;
    if status != 200 {
        return Err(format!("cannot download {shown}: the server answered {status}"));
    }
    if body.len() > MAX_DOWNLOAD {
        return Err(format!("{shown} is larger than {MAX_DOWNLOAD} bytes"));
    }
    if let Some(want) = sha256 {
        let got = super::sha256_hex(&body);
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!(
                "checksum mismatch for {shown}: expected sha256 {want}, got {got}; nothing was installed"
            ));
        }
    }
    Ok(body)
}

/// The code of a resolved app, fetched once per run.
pub async fn fetch_code(code: &CodeSource) -> Result<Arc<Code>, String> {
    let key = serde_json::to_string(code).expect("serializes");
    if let Some(r) = codes().lock().expect("cache lock").get(&key) {
        return r.clone();
    }
    let r = match code {
        CodeSource::Tarball { url, sha256, prefix } => match download(url, sha256.as_deref()).await {
            Ok(bytes) => unpack(&bytes, prefix).map_err(|e| format!("unpacking {}: {e}", redact(url))),
            Err(e) => Err(e),
        },
        CodeSource::Dir { path } => read_dir_code(path),
    }
    .map(Arc::new);
    codes().lock().expect("cache lock").insert(key, r.clone());
    r
}

/// Gunzips when the bytes are gzip (magic 1f 8b), as cozy-stack does for octet-stream answers.
fn tar_reader(bytes: &[u8]) -> Box<dyn Read + '_> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    }
}

/// A safe relative path inside the app (no `..`, no absolute path), with `/` separators.
fn clean_rel(name: &str) -> Option<String> {
    let p = Path::new(name);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Regular files of a tarball, with `prefix` removed.
pub fn unpack(bytes: &[u8], prefix: &str) -> Result<Code, String> {
    let mut ar = tar::Archive::new(tar_reader(bytes));
    let mut out = Vec::new();
    let prefix = clean_rel(prefix).map(|p| format!("{p}/")).unwrap_or_default();
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("bad archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let Some(mut name) = clean_rel(&raw) else {
            return Err(format!("the archive holds an unsafe path {raw:?}"));
        };
        if !prefix.is_empty() && name.starts_with(&prefix) {
            name = name[prefix.len()..].to_string();
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| format!("bad archive: {e}"))?;
        out.push((name, content));
    }
    if out.is_empty() {
        return Err("the archive holds no file".into());
    }
    out.sort();
    Ok(out)
}

/// Finds the manifest in a tarball: its parsed content and the prefix of its folder (`""` at the
/// root), as cozy-stack's HTTP fetcher does (the first regular file whose base name matches).
pub fn manifest_in_tar(bytes: &[u8], name: &str) -> Result<(Value, String), String> {
    let mut ar = tar::Archive::new(tar_reader(bytes));
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("bad archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let Some(clean) = clean_rel(&raw) else { continue };
        let (dir, base) = match clean.rsplit_once('/') {
            Some((d, b)) => (format!("{d}/"), b.to_string()),
            None => (String::new(), clean.clone()),
        };
        if base != name {
            continue;
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| format!("bad archive: {e}"))?;
        let v: Value = serde_json::from_slice(&content).map_err(|e| format!("{name} is not valid JSON: {e}"))?;
        return Ok((v, dir));
    }
    Err(format!("the archive holds no {name}"))
}

/// Every regular file under a directory, but those in `.git` folders (symbolic links are refused),
/// sorted.
pub fn read_dir_code(root: &Path) -> Result<Code, String> {
    fn walk(root: &Path, dir: &Path, out: &mut Code) -> Result<(), String> {
        let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in rd {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let p = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            if ft.is_symlink() {
                return Err(format!(
                    "{} is a symbolic link; app folders may not hold any",
                    p.display()
                ));
            } else if ft.is_dir() {
                // cozy-stack's file fetcher (`copyRec`) skips the `.git` folders.
                if entry.file_name() == ".git" {
                    continue;
                }
                walk(root, &p, out)?;
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).expect("under root");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let content = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                out.push((rel.join("/"), content));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// A digest of a whole code tree (paths and contents), to notice a changed local folder.
pub fn code_digest(code: &Code) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, content) in code {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    hex::encode(h.finalize())
}
