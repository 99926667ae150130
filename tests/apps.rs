//! Apps and konnectors: plan and apply install, update, repair and uninstall them, against a real
//! apps registry served over HTTP on loopback (static JSON and tarballs built here from the fixture
//! apps in tests/fixtures/apps), on the test CouchDB server and on the embedded store.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{Backend, Workspace, block_on};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// A tiny static HTTP server: the apps registry and the tarballs.

#[derive(Default)]
struct Routes {
    files: HashMap<String, (u16, Vec<u8>)>,
    hits: HashMap<String, usize>,
    /// Answers to give before the file: a status each (503, 429...).
    failures: HashMap<String, Vec<u16>>,
}

struct Registry {
    base: String,
    routes: Arc<Mutex<Routes>>,
}

fn serve(stream: TcpStream, routes: Arc<Mutex<Routes>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = {
        let mut r = routes.lock().unwrap();
        *r.hits.entry(path.clone()).or_default() += 1;
        match r.failures.get_mut(&path).filter(|f| !f.is_empty()) {
            Some(f) => (f.remove(0), b"{\"message\":\"try again\"}".to_vec()),
            None => r
                .files
                .get(&path)
                .cloned()
                .unwrap_or((404, b"{\"message\":\"not found\"}".to_vec())),
        }
    };
    let mut s = stream;
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(&body);
}

impl Registry {
    fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let r2 = routes.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let r = r2.clone();
                std::thread::spawn(move || serve(s, r));
            }
        });
        Registry { base, routes }
    }

    fn put(&self, path: &str, status: u16, body: Vec<u8>) {
        self.routes
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), (status, body));
    }

    fn fail_first(&self, path: &str, statuses: &[u16]) {
        self.routes
            .lock()
            .unwrap()
            .failures
            .insert(path.to_string(), statuses.to_vec());
    }

    fn hits(&self, path: &str) -> usize {
        self.routes.lock().unwrap().hits.get(path).copied().unwrap_or(0)
    }

    /// Publishes a tarball of a fixture app (manifest version replaced, `extra` merged in the
    /// manifest) at `/files/<slug>-<version>.tar.gz`; returns (url path, sha256, manifest).
    fn publish_tarball(&self, fixture: &str, version: &str, extra: Value) -> (String, String, Value) {
        let (tgz, manifest) = tarball(fixture, version, extra);
        let sha = sha256(&tgz);
        let path = format!("/files/{fixture}-{version}.tar.gz");
        self.put(&path, 200, tgz);
        (path, sha, manifest)
    }

    /// Publishes a registry release and makes it the latest of `channel` (when given).
    fn release(&self, fixture: &str, version: &str, channel: Option<&str>, extra: Value) -> String {
        let (path, sha, manifest) = self.publish_tarball(fixture, version, extra);
        let v = json!({
            "slug": fixture, "version": version, "url": format!("{}{}", self.base.trim_end_matches('/'), path),
            "sha256": sha, "created_at": "2026-01-01T00:00:00Z", "size": "1", "manifest": manifest, "tar_prefix": "",
        });
        let body = serde_json::to_vec(&v).unwrap();
        self.put(&format!("/registry/{fixture}/{version}"), 200, body.clone());
        if let Some(c) = channel {
            self.put(&format!("/registry/{fixture}/{c}/latest"), 200, body);
        }
        sha
    }
}

fn fixture_dir(name: &str) -> PathBuf {
    common::repo_root().join("tests/fixtures/apps").join(name)
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn manifest_name(fixture: &str) -> &'static str {
    if fixture == "ameli" {
        "manifest.konnector"
    } else {
        "manifest.webapp"
    }
}

/// The fixture's files with its manifest at `version` (and `extra` keys).
fn app_files(fixture: &str, version: &str, extra: Value) -> (Vec<(String, Vec<u8>)>, Value) {
    let mut files = files_of(&fixture_dir(fixture));
    let mut manifest = Value::Null;
    for (name, content) in files.iter_mut() {
        if name == manifest_name(fixture) {
            let mut m: Value = serde_json::from_slice(content).unwrap();
            m["version"] = json!(version);
            for (k, v) in extra.as_object().cloned().unwrap_or_default() {
                m[k] = v;
            }
            *content = serde_json::to_vec_pretty(&m).unwrap();
            manifest = m;
        }
    }
    (files, manifest)
}

fn tarball(fixture: &str, version: &str, extra: Value) -> (Vec<u8>, Value) {
    let (files, manifest) = app_files(fixture, version, extra);
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(enc);
    for (name, content) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, content.as_slice()).unwrap();
    }
    (b.into_inner().unwrap().finish().unwrap(), manifest)
}

fn sha256(b: &[u8]) -> String {
    cozyform::apps::sha256_hex(b)
}

fn brotli_decode(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(std::fs::File::open(path).unwrap(), 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers on the workspace.

fn prefix(domain: &str) -> String {
    cozyform::layout::instance_prefix(domain)
}

fn db(domain: &str, doctype: &str) -> String {
    cozyform::layout::db_name(&prefix(domain), doctype)
}

fn get(ws: &Workspace, domain: &str, doctype: &str, id: &str) -> Option<Value> {
    block_on(ws.store().get_doc(&db(domain, doctype), id)).unwrap()
}

fn all(ws: &Workspace, domain: &str, doctype: &str) -> Vec<Value> {
    block_on(ws.store().all_docs_page(&db(domain, doctype), None, 1000))
        .unwrap()
        .into_iter()
        .filter(|d| !d["_id"].as_str().unwrap().starts_with("_design/"))
        .collect()
}

fn perms_of(ws: &Workspace, domain: &str, source_id: &str) -> Vec<Value> {
    all(ws, domain, "io.cozy.permissions")
        .into_iter()
        .filter(|d| d["source_id"] == json!(source_id))
        .collect()
}

fn run(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let out = ws.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn code_dir(ws: &Workspace, domain: &str, kind_dir: &str, slug: &str) -> PathBuf {
    ws.fs_root().join(domain).join(kind_dir).join(slug)
}

/// The single version folder of an app's code.
fn version_dirs(ws: &Workspace, domain: &str, kind_dir: &str, slug: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(code_dir(ws, domain, kind_dir, slug))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------

/// Install from registry, file and tarball sources; konnectors; a pin; fidelity of docs and files;
/// one download per (source, version); plan empty; a channel move updates (permissions shown,
/// created_at kept); apps_prune off then on.
#[test]
fn apps_install_update_and_prune_against_a_registry() {
    let reg = Registry::start();
    // Typed fields cozy-stack re-encodes (model/app/webapp.go MarshalJSON, permission.Set).
    let drive_extra = json!({
        "permissions": {
            "files": {"type": "io.cozy.files", "description": "Required to access the files", "verbs": ["PUT", "GET", "GET"], "title": "dropped"},
            "notes": {"type": "io.cozy.notes", "verbs": ["ALL"], "values": []},
        },
        "terms": {"version": "2", "url": "https://terms.example", "id": "dropped"},
        "intents": [{"href": "/open", "action": "OPEN", "type": ["io.cozy.files"], "data": "dropped"}],
        "routes": {"/public": {"folder": "/public", "public": true}, "/": {"folder": "/", "index": "index.html"}},
        "notifications": {"share": {"description": "Shares", "collapsible": false, "stateful": true, "templates": {}}},
        "locales": {"fr": {"name": "Drive", "long": "b", "a": "c"}},
    });
    let drive_sha = reg.release("drive", "1.0.0", Some("stable"), drive_extra);
    reg.release("mytool", "0.9.0", Some("beta"), json!({}));
    reg.release("mytool", "0.8.0", None, json!({}));
    let (ameli_path, ameli_sha, _) = reg.publish_tarball("ameli", "1.2.0", json!({}));
    let ameli_url = format!("{}{}", reg.base.trim_end_matches('/'), ameli_path);
    let ws = Workspace::new(Backend::Couch);
    let mytool_dir = fixture_dir("mytool");
    let body = format!(
        r#"
[registries]
default = ["{reg}"]

[defaults]
apps = ["drive"]

[instances."a.example"]
[instances."a.example".app.mytool]
source = "file://{mytool}"
[instances."a.example".konnector.ameli]
source = "{ameli_url}#{ameli_sha}"

[instances."b.example"]
[instances."b.example".app.beta]
source = "registry://mytool/beta"
version = "0.8.0"
"#,
        reg = reg.base,
        mytool = mytool_dir.display(),
    );
    ws.write_config("", &body);

    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("+ app drive 1.0.0 (registry://drive/stable)"), "{out}");
    assert!(out.contains("+ konnector ameli 1.2.0"), "{out}");
    assert!(out.contains("+ app mytool 0.1.0-"), "{out}");
    assert!(out.contains("+ app beta 0.8.0 (registry://mytool/beta/0.8.0)"), "{out}");
    assert!(
        out.contains("Apps: 5 to install, 0 to update, 0 to uninstall."),
        "{out}"
    );

    assert_eq!(reg.hits(&ameli_path), 1, "plan reads the tarball's manifest");
    let out = ws.apply_ok();
    assert!(
        out.contains("Apps: 5 installed, 0 updated, 0 uninstalled, 0 failed."),
        "{out}"
    );
    // Each (source, version) downloaded once, for both instances.
    assert_eq!(reg.hits("/files/drive-1.0.0.tar.gz"), 1);
    assert_eq!(
        reg.hits(&ameli_path),
        2,
        "apply downloads once: its plan's copy is installed"
    );
    ws.assert_no_changes();

    // Fidelity: the app doc.
    let d = get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").expect("drive doc");
    assert_eq!(d["slug"], "drive");
    assert_eq!(d["source"], "registry://drive/stable");
    assert_eq!(d["state"], "ready");
    assert_eq!(d["version"], "1.0.0");
    assert_eq!(d["checksum"], json!(drive_sha));
    assert_eq!(d["name"], "Drive");
    assert_eq!(d["editor"], "Cozy");
    let enc = |v: &Value| serde_json::to_string(v).unwrap();
    // permission.Set: rules in the manifest's order, {type, description?, verbs?, selector?,
    // values?}, verbs de-duplicated in GET..DELETE order, ALL and empty fields left out.
    assert_eq!(
        enc(&d["permissions"]),
        r#"{"files":{"type":"io.cozy.files","description":"Required to access the files","verbs":["GET","PUT"]},"notes":{"type":"io.cozy.notes"}}"#
    );
    assert_eq!(enc(&d["terms"]), r#"{"url":"https://terms.example","version":"2"}"#);
    assert_eq!(
        enc(&d["routes"]),
        r#"{"/":{"folder":"/","index":"index.html","public":false},"/public":{"folder":"/public","index":"","public":true}}"#
    );
    assert_eq!(
        enc(&d["intents"]),
        r#"[{"action":"OPEN","type":["io.cozy.files"],"href":"/open"}]"#
    );
    assert_eq!(
        enc(&d["notifications"]),
        r#"{"share":{"description":"Shares","stateful":true}}"#
    );
    assert_eq!(enc(&d["locales"]), r#"{"fr":{"a":"c","long":"b","name":"Drive"}}"#);
    // Go writes the doc's map with its keys sorted.
    let keys: Vec<&String> = d.as_object().unwrap().keys().filter(|k| !k.starts_with('_')).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(d.get("error").is_none() && d.get("available_version").is_none());
    assert!(d["created_at"].as_str().unwrap().starts_with("20"));
    let created_at = d["created_at"].clone();
    // Services: a trigger for the one with a trigger, none for the other.
    let tid = d["services"]["thumbnails"]["trigger_id"].as_str().unwrap().to_string();
    assert_eq!(tid.len(), 32);
    assert_eq!(d["services"]["manual"]["trigger_id"], "");
    let t = get(&ws, "a.example", "io.cozy.triggers", &tid).expect("trigger");
    assert_eq!(t["type"], "@event");
    assert_eq!(t["worker"], "service");
    assert_eq!(t["arguments"], "io.cozy.files:CREATED");
    assert_eq!(enc(&t["message"]), r#"{"name":"thumbnails","slug":"drive"}"#);
    assert_eq!(t["debounce"], "");
    assert_eq!(t["options"], Value::Null);
    assert!(t.get("couch_cluster").is_none() && t.get("current_state").is_none());
    assert!(t["cozyMetadata"].get("createdByAppVersion").is_none());
    assert_eq!(t["domain"], "a.example");
    assert_eq!(t["prefix"], json!(prefix("a.example")));
    assert_eq!(t["cozyMetadata"]["createdByApp"], "drive");
    // The permission doc.
    let p = perms_of(&ws, "a.example", "io.cozy.apps/drive");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["type"], "app");
    assert_eq!(p[0]["permissions"], d["permissions"]);
    let md = &p[0]["cozyMetadata"];
    assert_eq!(
        (md["doctypeVersion"].clone(), md["metadataVersion"].clone()),
        (json!("1"), json!(1))
    );
    assert_eq!(
        (md["createdByApp"].clone(), md["createdByAppVersion"].clone()),
        (json!("drive"), json!("1.0.0"))
    );
    assert_eq!(md["updatedByApps"][0]["slug"], "drive");
    // The code: brotli files in <slug>/<version>-<sha256>/.
    assert_eq!(
        version_dirs(&ws, "a.example", ".cozy_apps", "drive"),
        vec![format!("1.0.0-{drive_sha}")]
    );
    let vdir = code_dir(&ws, "a.example", ".cozy_apps", "drive").join(format!("1.0.0-{drive_sha}"));
    assert_eq!(
        brotli_decode(&vdir.join("index.html.br")),
        std::fs::read(fixture_dir("drive").join("index.html")).unwrap()
    );
    assert!(vdir.join("services/thumbnails.js.br").is_file());
    // Every regular file of the tarball is copied, the manifest too.
    assert!(vdir.join("manifest.webapp.br").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // cozy-stack's copier: the version folder is afero.TempDir's 0700, renamed into place.
        assert_eq!(std::fs::metadata(&vdir).unwrap().permissions().mode() & 0o777, 0o700);
    }
    assert!(!vdir.join("index.html").exists());
    // The konnector from a tarball.
    let k = get(&ws, "a.example", "io.cozy.konnectors", "io.cozy.konnectors/ameli").expect("ameli doc");
    assert_eq!(
        (k["state"].clone(), k["version"].clone()),
        (json!("ready"), json!("1.2.0"))
    );
    // cozy-stack's HTTP fetcher checks the #sha256 but does not record it: no checksum, and the
    // code folder is <version>.
    assert_eq!(k["checksum"], "");
    assert_eq!(k["language"], "node");
    assert_eq!(k["source"], json!(format!("{ameli_url}#{ameli_sha}")));
    let kp = perms_of(&ws, "a.example", "io.cozy.konnectors/ameli");
    assert_eq!(kp.len(), 1);
    assert_eq!(kp[0]["type"], "konnector");
    assert_eq!(
        version_dirs(&ws, "a.example", ".cozy_konnectors", "ameli"),
        vec!["1.2.0".to_string()]
    );
    assert!(k.get("parameters").is_none());
    // The file source: version with 10 hex digits of the folder's digest, no checksum.
    let m = get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/mytool").expect("mytool doc");
    assert_eq!(m["checksum"], "");
    assert!(m["version"].as_str().unwrap().starts_with("0.1.0-"));
    // An empty permission set: `permissions` is left out of the permission doc (omitempty).
    let mp = perms_of(&ws, "a.example", "io.cozy.apps/mytool");
    assert_eq!(mp.len(), 1);
    assert!(mp[0].get("permissions").is_none(), "{}", mp[0]);
    assert_eq!(m["permissions"], json!({}));
    assert_eq!(m["source"], json!(format!("file://{}", mytool_dir.display())));
    // The pin.
    let b = get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/beta").expect("beta doc");
    assert_eq!(b["version"], "0.8.0");

    // An app installed deactivated (state "installed") stays so through an update.
    let mut bd = get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap();
    bd["state"] = json!("installed");
    block_on(ws.store().put_doc(&db("b.example", "io.cozy.apps"), &bd)).unwrap();

    // A channel move: stable now gives 1.1.0, which asks for more rights.
    reg.release(
        "drive",
        "1.1.0",
        Some("stable"),
        json!({"permissions": {"files": {"type": "io.cozy.files", "description": "Required to access the files"}, "contacts": {"type": "io.cozy.contacts", "verbs": ["GET"]}}, "services": null}),
    );
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("~ app drive 1.0.0 -> 1.1.0"), "{out}");
    assert!(out.contains("+ permission contacts: io.cozy.contacts GET"), "{out}");
    let json_out = run(&ws, &["plan", "--json"]).1;
    let doc: Value = serde_json::from_str(&json_out).unwrap();
    let upd: Vec<&Value> = doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["op"] == "update")
        .collect();
    assert_eq!(upd.len(), 2, "{json_out}");
    assert_eq!(upd[0]["before_version"], "1.0.0");
    assert_eq!(upd[0]["after_version"], "1.1.0");
    assert_eq!(doc["app_summary"]["update"], 2);
    // Through a saved plan: `plan --out`, then `apply FILE`.
    let saved = ws.path().join("update.cfplan");
    let (code, out, err) = run(&ws, &["plan", "--out", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = run(&ws, &["apply", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Apps: 0 installed, 2 updated"), "{out}");
    ws.assert_no_changes();
    let d2 = get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap();
    assert_eq!(d2["version"], "1.1.0");
    assert_eq!(d2["created_at"], created_at, "an update keeps created_at");
    assert_ne!(d2["updated_at"], d["updated_at"]);
    assert_eq!(d2["services"], Value::Null);
    assert!(
        get(&ws, "a.example", "io.cozy.triggers", &tid).is_none(),
        "the old service's trigger is deleted"
    );
    let p2 = perms_of(&ws, "a.example", "io.cozy.apps/drive");
    assert_eq!(p2.len(), 1);
    assert_eq!(p2[0]["_id"], p[0]["_id"], "the permission doc is updated in place");
    // cozy-stack's update merges `permission.Diff(old manifest, doc)` into the new rules; the doc
    // was not altered, so Diff is the old set whole: `notes`, gone from the manifest, stays, first.
    assert_eq!(
        enc(&p2[0]["permissions"]),
        r#"{"notes":{"type":"io.cozy.notes"},"files":{"type":"io.cozy.files","description":"Required to access the files"},"contacts":{"type":"io.cozy.contacts","verbs":["GET"]}}"#
    );
    assert_eq!(
        enc(&d2["permissions"]),
        r#"{"files":{"type":"io.cozy.files","description":"Required to access the files"},"contacts":{"type":"io.cozy.contacts","verbs":["GET"]}}"#
    );
    assert_ne!(p2[0]["cozyMetadata"]["updatedAt"], p[0]["cozyMetadata"]["updatedAt"]);
    assert_eq!(p2[0]["cozyMetadata"]["createdAt"], p[0]["cozyMetadata"]["createdAt"]);
    let dirs = version_dirs(&ws, "a.example", ".cozy_apps", "drive");
    assert_eq!(dirs.len(), 1, "the old version's code is removed: {dirs:?}");
    assert!(dirs[0].starts_with("1.1.0-"));

    assert_eq!(
        get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap()["state"],
        "installed"
    );

    // A konnector whose new manifest has no parameters keeps those of its doc.
    let mut kd = get(&ws, "a.example", "io.cozy.konnectors", "io.cozy.konnectors/ameli").unwrap();
    kd["parameters"] = json!({"mode": "fast"});
    block_on(ws.store().put_doc(&db("a.example", "io.cozy.konnectors"), &kd)).unwrap();
    let (ameli13, ameli13_sha, _) = reg.publish_tarball("ameli", "1.3.0", json!({}));
    let body = body.replace(
        &format!("{ameli_url}#{ameli_sha}"),
        &format!("{}{ameli13}#{ameli13_sha}", reg.base.trim_end_matches('/')),
    );
    ws.write_config("", &body);
    ws.apply_ok();
    ws.assert_no_changes();
    let kd = get(&ws, "a.example", "io.cozy.konnectors", "io.cozy.konnectors/ameli").unwrap();
    assert_eq!(kd["version"], "1.3.0");
    assert_eq!(kd["parameters"], json!({"mode": "fast"}));

    // An app a user installed, not declared: reported and left alone...
    let store = ws.store();
    block_on(store.put_doc(
        &db("b.example", "io.cozy.apps"),
        &json!({"_id": "io.cozy.apps/store", "slug": "store", "state": "ready", "version": "1.0.0", "source": "registry://store/stable", "permissions": {}}),
    ))
    .unwrap();
    let (code, out, _) = ws.plan();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("app store 1.0.0 is installed but not declared; left alone"),
        "{out}"
    );
    ws.apply_ok();
    assert!(get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/store").is_some());
    // ...and uninstalled with apps_prune; with it goes the declared-then-removed app's code,
    // permission doc and triggers.
    ws.write_config(
        "apps_prune = true",
        &body.replace("[instances.\"b.example\"]\n", "[instances.\"b.example\"]\napps = []\n"),
    );
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("- app store 1.0.0"), "{out}");
    assert!(out.contains("- app drive 1.1.0"), "{out}");
    ws.apply_ok();
    ws.assert_no_changes();
    assert!(get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/store").is_none());
    assert!(get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/drive").is_none());
    assert!(perms_of(&ws, "b.example", "io.cozy.apps/drive").is_empty());
    assert!(!code_dir(&ws, "b.example", ".cozy_apps", "drive").exists());
    assert!(get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/beta").is_some());
}

/// A checksum mismatch and a registry that is down: a clear error, and nothing written. A failed
/// install leaves the app `errored`, the next plan repairs it, and other instances go on.
#[test]
fn apps_failures_are_clear_and_leave_nothing_half_written() {
    let reg = Registry::start();
    reg.release("drive", "1.0.0", Some("stable"), json!({}));
    let ws = Workspace::new(Backend::Couch);
    let header = format!("[registries]\ndefault = [\"{}\"]\n", reg.base);
    ws.write_config(
        "",
        &format!("{header}[instances.\"a.example\"]\n[instances.\"b.example\"]\n"),
    );
    ws.apply_ok();

    // The registry announces a sha256 the tarball does not have.
    let mut v: Value =
        serde_json::from_slice(&reg.routes.lock().unwrap().files["/registry/drive/stable/latest"].1).unwrap();
    v["sha256"] = json!("0".repeat(64));
    reg.put("/registry/drive/stable/latest", 200, serde_json::to_vec(&v).unwrap());
    ws.write_config(
        "",
        &format!("{header}[instances.\"a.example\"]\napps = [\"drive\"]\n[instances.\"b.example\"]\n"),
    );
    let (code, out, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(out.contains("nothing was written"), "{out}");
    assert!(get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").is_none());
    assert!(perms_of(&ws, "a.example", "io.cozy.apps/drive").is_empty());
    assert!(!ws.fs_root().join("a.example/.cozy_apps").exists());

    // A tarball source whose #sha256 does not match: the plan itself says so.
    let (path, _, _) = reg.publish_tarball("ameli", "1.2.0", json!({}));
    ws.write_config(
        "",
        &format!(
            "{header}[instances.\"a.example\"]\n[instances.\"a.example\".konnector.ameli]\nsource = \"{}{}#{}\"\n",
            reg.base.trim_end_matches('/'),
            path,
            "a".repeat(64)
        ),
    );
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("checksum mismatch"), "{err}");

    // A registry that is down: plan and apply fail, naming it; nothing is written.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/", dead.local_addr().unwrap());
    drop(dead);
    ws.write_config(
        "",
        &format!("[registries]\ndefault = [\"{dead_url}\"]\n[instances.\"a.example\"]\napps = [\"drive\"]\n[instances.\"c.example\"]\napps = [\"drive\"]\n"),
    );
    let (code, out, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("unreachable") && err.contains(&dead_url), "{err}");
    assert!(err.contains("declared by 2 instances"), "{err}");
    assert!(get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").is_none());
    assert!(
        !ws.fs_root().join("c.example").exists(),
        "nothing is created from a plan with errors"
    );

    // A failed install (the code cannot be written): errored, repaired next time; b goes on.
    reg.release("drive", "1.0.0", Some("stable"), json!({}));
    ws.write_config(
        "",
        &format!(
            "{header}[instances.\"a.example\"]\napps = [\"drive\"]\n[instances.\"b.example\"]\napps = [\"drive\"]\n"
        ),
    );
    std::fs::write(ws.fs_root().join("a.example/.cozy_apps"), b"not a folder").unwrap();
    let (code, out, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let a = get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").expect("errored doc");
    assert_eq!(a["state"], "errored");
    assert!(a["error"].as_str().unwrap().contains(".cozy_apps"), "{a}");
    assert_eq!(
        get(&ws, "b.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap()["state"],
        "ready"
    );
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(out.contains("! app drive errored:"), "{out}");
    std::fs::remove_file(ws.fs_root().join("a.example/.cozy_apps")).unwrap();
    ws.apply_ok();
    ws.assert_no_changes();
    let a = get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap();
    assert_eq!(a["state"], "ready");
    assert!(a.get("error").is_none());

    // A failed update leaves the working app as it was (cozy-stack answers 503 for an errored
    // app); the next plan shows the update again.
    let sha = reg.release("drive", "1.1.0", Some("stable"), json!({}));
    let blocker = code_dir(&ws, "a.example", ".cozy_apps", "drive").join(format!("1.1.0-{sha}"));
    std::fs::write(&blocker, b"in the way").unwrap();
    let (code, out, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let a2 = get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap();
    assert_eq!(
        (a2["state"].clone(), a2["version"].clone()),
        (json!("ready"), json!("1.0.0"))
    );
    assert!(a2.get("error").is_none());
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(out.contains("~ app drive 1.0.0 -> 1.1.0"), "{out}");
    std::fs::remove_file(&blocker).unwrap();
    ws.apply_ok();
    ws.assert_no_changes();
    assert_eq!(
        get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap()["version"],
        "1.1.0"
    );
}

/// The embedded store: plan → apply (instances created with their apps) → plan empty.
#[test]
fn apps_on_the_embedded_store() {
    let reg = Registry::start();
    reg.release("drive", "1.0.0", Some("stable"), json!({}));
    let ws = Workspace::new(Backend::Embedded);
    ws.write_config(
        "",
        &format!(
            "[registries]\ndefault = [\"{}\"]\n[defaults]\napps = [\"drive\"]\n[instances.\"b.example\"]\n[instances.\"a.example\"]\n[instances.\"a.example\".app.mytool]\nsource = \"file://{}\"\n",
            reg.base,
            fixture_dir("mytool").display()
        ),
    );
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(out.contains("+ app drive 1.0.0"), "{out}");
    assert!(out.contains("Apps: 3 to install"), "{out}");
    // --target restricts the app changes too.
    let (code, out, _) = run(&ws, &["plan", "--target", "a.example"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Apps: 2 to install") && !out.contains("b.example"),
        "{out}"
    );
    ws.apply_ok();
    ws.assert_no_changes();
    assert_eq!(
        get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap()["state"],
        "ready"
    );
    assert_eq!(
        get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/mytool").unwrap()["state"],
        "ready"
    );
    assert!(ws.fs_root().join("a.example/.cozy_apps/mytool").is_dir());
}

/// `import` declares the installed apps and konnectors (registry sources pinned to the installed
/// version, file:// and tarball sources as they are, `apps = []` against `[defaults] apps`), warns
/// about an app it cannot declare (a git source) and keeps it with `apps_prune = false`: right after
/// `import --all --write`, plan is empty although the registry's stable channel has moved on.
#[test]
fn import_declares_installed_apps_and_plan_is_empty() {
    let reg = Registry::start();
    reg.release("drive", "1.0.0", Some("stable"), json!({}));
    reg.release("mytool", "0.8.0", None, json!({}));
    let (ameli_path, ameli_sha, _) = reg.publish_tarball("ameli", "1.2.0", json!({}));
    let ameli_url = format!("{}{}", reg.base.trim_end_matches('/'), ameli_path);
    let ws = Workspace::new(Backend::Couch);
    let top = format!(
        "apps_prune = true\n[registries]\ndefault = [\"{}\"]\n[defaults]\napps = [\"drive\"]\n",
        reg.base
    );
    let body = format!(
        r#"
[instances."a.example"]
locale = "fr"
[instances."a.example".app.mytool]
source = "file://{mytool}"
[instances."a.example".konnector.ameli]
source = "{ameli_url}#{ameli_sha}"

[instances."b.example"]
[instances."b.example".app.beta]
source = "registry://mytool/beta"
version = "0.8.0"
"#,
        mytool = fixture_dir("mytool").display(),
    );
    ws.write_config(&top, &body);
    let out = ws.apply_ok();
    assert!(out.contains("Apps: 5 installed"), "{out}");
    ws.assert_no_changes();
    // An app installed by other means, from a source cozyform cannot declare.
    block_on(ws.store().put_doc(
        &db("a.example", "io.cozy.apps"),
        &json!({"_id": "io.cozy.apps/gitapp", "slug": "gitapp", "source": "git://h/gitapp.git",
                "version": "3.0.0", "state": "ready", "permissions": {}}),
    ))
    .unwrap();
    // The channel moves on: an unpinned declaration would update drive.
    reg.release("drive", "1.1.0", Some("stable"), json!({}));

    // A fresh config with the same top and no instance.
    ws.write_config(&top, "");
    assert_eq!(run(&ws, &["fmt"]).0, 0);
    let (code, out, err) = run(&ws, &["import", "--all", "--write"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("a.example: app gitapp not declared") && err.contains("git://h/gitapp.git"),
        "{err}"
    );
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    assert!(
        text.contains(
            "[instances.\"a.example\".app.drive]\nsource = \"registry://drive/stable\"\nversion = \"1.0.0\"\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "[instances.\"a.example\".app.mytool]\nsource = \"file://{}\"\n",
            fixture_dir("mytool").display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "[instances.\"a.example\".konnector.ameli]\nsource = \"{ameli_url}#{ameli_sha}\"\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("[instances.\"b.example\".app.beta]\nsource = \"registry://mytool/beta/0.8.0\"\n"),
        "{text}"
    );
    assert!(text.contains("apps = []\napps_prune = false\n"), "{text}");
    ws.assert_no_changes();
    let (code, out, err) = run(&ws, &["fmt", "--check"]);
    assert_eq!(code, 0, "import writes in fmt's layout:\n{out}\n{err}");

    // Without [registries], registry apps cannot be declared: a warning, the others are.
    ws.write_config("", "");
    let (code, out, err) = run(&ws, &["import", "--all"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("b.example: app beta not declared: it comes from registry://mytool/beta/0.8.0, but the config has no [registries]"),
        "{err}"
    );
    assert!(out.contains("[instances.\"a.example\".konnector.ameli]"), "{out}");
    assert!(!out.contains("app.drive]"), "{out}");
}

/// Registry requests and downloads are retried on 5xx and 429 (bounded, with backoff); a registry
/// that keeps failing gives a clear error naming it without its credentials.
#[test]
fn apps_registry_and_downloads_are_retried() {
    let reg = Registry::start();
    reg.release("drive", "1.0.0", Some("stable"), json!({}));
    reg.fail_first("/registry/drive/stable/latest", &[503, 429]);
    reg.fail_first("/files/drive-1.0.0.tar.gz", &[502]);
    let ws = Workspace::new(Backend::Embedded);
    // Credentials in the registry URL are used, and never shown.
    let base = reg.base.replace("http://", "http://bob:s3cret@");
    ws.write_config(
        "",
        &format!("[registries]\ndefault = [\"{base}\"]\n[instances.\"a.example\"]\napps = [\"drive\"]\n"),
    );
    let out = ws.apply_ok();
    assert!(out.contains("Apps: 1 installed"), "{out}");
    assert_eq!(reg.hits("/registry/drive/stable/latest"), 3);
    assert_eq!(reg.hits("/files/drive-1.0.0.tar.gz"), 2);
    ws.assert_no_changes();
    assert_eq!(
        get(&ws, "a.example", "io.cozy.apps", "io.cozy.apps/drive").unwrap()["state"],
        "ready"
    );

    // A registry that keeps answering 503: a bounded number of attempts, then a clear error.
    reg.fail_first("/registry/notes/stable/latest", &[503; 10]);
    ws.write_config(
        "",
        &format!("[registries]\ndefault = [\"{base}\"]\n[instances.\"a.example\"]\napps = [\"drive\", \"notes\"]\n"),
    );
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(reg.hits("/registry/notes/stable/latest"), 4, "4 attempts in all");
    assert!(err.contains("answered 503") && err.contains("try again"), "{err}");
    assert!(err.contains(&reg.base), "the registry is named: {err}");
    assert!(!err.contains("s3cret") && !out.contains("s3cret"), "{out}\n{err}");
}
