//! Several CouchDB clusters (`[[couchdb.clusters]]`), against two real test servers: the main one
//! (`global/instances`, cluster 0) and a second one (cluster 1). Each instance's databases must be
//! on the cluster its `couch_cluster` names, and nowhere else.

mod common;

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::Value;

struct Fleet {
    ws: Workspace,
    second: TestCouch,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            ws: Workspace::new(Backend::Couch),
            second: TestCouch::start(),
        }
    }

    fn main_url(&self) -> &str {
        &self.ws.couch.as_ref().unwrap().url
    }

    /// Writes the config: main server = cluster 0, second server = cluster 1.
    fn write(&self, creation: (bool, bool), body: &str) {
        let cfg = format!(
            "[couchdb]\nurl = \"{}\"\n\n[[couchdb.clusters]]\nurl = \"{}\"\ninstance_creation = {}\n\n[[couchdb.clusters]]\nurl = \"{}\"\ninstance_creation = {}\n\n[storage]\nfs_root = \"fs\"\n\n{body}",
            self.main_url(),
            self.main_url(),
            creation.0,
            self.second.url,
            creation.1
        );
        std::fs::write(self.ws.config_path(), cfg).unwrap();
    }

    fn instance_doc(&self, domain: &str) -> Value {
        block_on(
            self.ws
                .store()
                .get_doc(GLOBAL_INSTANCES_DB, &layout::derived_id("instance", domain)),
        )
        .unwrap()
        .expect("instance doc")
    }

    /// Number of the instance's layout databases on (main, second).
    fn dbs(&self, domain: &str) -> (usize, usize) {
        let esc = layout::escaped_db_prefix(&instance_prefix(domain));
        let count = |s: cozyform::store::Store| {
            block_on(s.all_dbs(&format!("{esc}/"), &format!("{esc}0")))
                .unwrap()
                .len()
        };
        (count(self.ws.store()), count(self.second.store()))
    }
}

#[test]
fn instances_go_to_the_declared_or_least_loaded_cluster_and_plans_converge() {
    let f = Fleet::new();
    // Placement in domain order: a → 1 (declared); b → 0 (loads 0/1); c → 0 (tie 1/1, lowest index);
    // d → 1 (loads 2/1).
    f.write(
        (true, true),
        "[instances.\"a.example\"]\ncouch_cluster = 1\n[instances.\"b.example\"]\n[instances.\"c.example\"]\n[instances.\"d.example\"]\n",
    );
    let out = f.ws.cmd().args(["plan"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("couch_cluster"), "the placement is shown: {stdout}");
    f.ws.apply_ok();

    let n = layout::INSTANCE_DOCTYPES.len();
    for (domain, cluster) in [("a.example", 1), ("b.example", 0), ("c.example", 0), ("d.example", 1)] {
        let doc = f.instance_doc(domain);
        match cluster {
            0 => assert!(
                doc.get("couch_cluster").is_none(),
                "0 is omitted, as cozy-stack does: {doc}"
            ),
            c => assert_eq!(doc["couch_cluster"], c, "{domain}: {doc}"),
        }
        let (on_main, on_second) = f.dbs(domain);
        let want = if cluster == 0 { (n, 0) } else { (0, n) };
        assert_eq!((on_main, on_second), want, "{domain}: databases on (main, second)");
    }
    // The settings doc of an instance on cluster 1 is there.
    let settings_db = db_name(&instance_prefix("a.example"), layout::SETTINGS);
    assert!(
        block_on(f.second.store().get_doc(&settings_db, layout::SETTINGS_DOC_ID))
            .unwrap()
            .is_some()
    );
    f.ws.assert_no_changes();

    // A database deleted on cluster 1 is repaired there.
    let files = db_name(&instance_prefix("a.example"), layout::FILES);
    assert!(block_on(f.second.store().delete_db(&files)).unwrap());
    let (code, out, _) = f.ws.plan();
    assert_eq!(code, 2, "{out}");
    f.ws.apply_ok();
    assert_eq!(f.dbs("a.example"), (0, n));
    f.ws.assert_no_changes();

    // Destroying an instance on cluster 1 deletes its databases there.
    f.write(
        (true, true),
        "[instances.\"a.example\"]\nstate = \"absent\"\n[instances.\"b.example\"]\n[instances.\"c.example\"]\n[instances.\"d.example\"]\n",
    );
    f.ws.apply_ok();
    assert_eq!(f.dbs("a.example"), (0, 0));
    f.ws.assert_no_changes();
}

#[test]
fn moving_an_instance_between_clusters_is_refused() {
    let f = Fleet::new();
    f.write((true, true), "[instances.\"a.example\"]\ncouch_cluster = 1\n");
    f.ws.apply_ok();
    f.write((true, true), "[instances.\"a.example\"]\ncouch_cluster = 0\n");
    let (code, out, err) = f.ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("does not move instances between clusters"), "{err}");
    let out = f.ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(
        f.dbs("a.example"),
        (0, layout::INSTANCE_DOCTYPES.len()),
        "nothing moved"
    );
}

#[test]
fn clusters_without_instance_creation_are_skipped_or_refused() {
    let f = Fleet::new();
    // Cluster 0 closed to creations: everything goes to 1.
    f.write((false, true), "[instances.\"a.example\"]\n[instances.\"b.example\"]\n");
    f.ws.apply_ok();
    assert_eq!(f.dbs("a.example").0, 0);
    assert_eq!(f.dbs("b.example").0, 0);
    // Declaring a closed cluster for a new instance is a plan error.
    f.write(
        (false, true),
        "[instances.\"a.example\"]\n[instances.\"b.example\"]\n[instances.\"c.example\"]\ncouch_cluster = 0\n",
    );
    let (code, _, err) = f.ws.plan();
    assert_eq!(code, 1);
    assert!(err.contains("instance_creation = false"), "{err}");
}

#[test]
fn couch_cluster_out_of_range_or_with_the_embedded_store_is_a_config_error() {
    let f = Fleet::new();
    f.write((true, true), "[instances.\"a.example\"]\ncouch_cluster = 2\n");
    let out = f.ws.cmd().args(["validate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("couch_cluster = 2") && err.contains(":16:17"), "{err}");

    let ws = Workspace::new(Backend::Embedded);
    ws.write_config("", "[instances.\"a.example\"]\ncouch_cluster = 0\n");
    let out = ws.cmd().args(["validate"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("embedded store has no clusters"), "{err}");
}

/// Every doc of one of the instance's databases on `store` (empty when the database is absent).
fn docs_on(store: cozyform::store::Store, domain: &str, doctype: &str) -> Vec<Value> {
    let db = db_name(&instance_prefix(domain), doctype);
    if !block_on(store.db_exists(&db)).unwrap() {
        return Vec::new();
    }
    block_on(store.all_docs_page(&db, None, 1000))
        .unwrap()
        .into_iter()
        .filter(|d| !d["_id"].as_str().unwrap().starts_with("_design/"))
        .collect()
}

/// A copy of an app fixture whose manifest version can be changed (a `file://` source).
fn app_copy(ws: &Workspace, fixture: &str, manifest: &str, version: &str) -> std::path::PathBuf {
    let dir = ws.path().join("src-apps").join(fixture);
    std::fs::create_dir_all(&dir).unwrap();
    let from = repo_root().join("tests/fixtures/apps").join(fixture);
    for e in std::fs::read_dir(&from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let path = dir.join(manifest);
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["version"] = Value::from(version);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    dir
}

fn apps_body(domain: &str, apps: &[(&str, &str, &std::path::Path)]) -> String {
    let mut s = format!("[instances.\"{domain}\"]\ncouch_cluster = 1\napps_prune = true\n");
    for (kind, slug, dir) in apps {
        s.push_str(&format!(
            "[instances.\"{domain}\".{kind}.{slug}]\nsource = \"file://{}\"\n",
            dir.display()
        ));
    }
    s
}

/// Apps of an instance on cluster 1 are installed, updated and uninstalled on cluster 1's server
/// (app docs, permissions), never on the main one, and plans converge; the instance is created in
/// the same apply as its apps.
#[test]
fn apps_of_an_instance_on_another_cluster_live_on_that_cluster() {
    let f = Fleet::new();
    let d = "a.example";
    let tool = app_copy(&f.ws, "mytool", "manifest.webapp", "0.1.0");
    let ameli = app_copy(&f.ws, "ameli", "manifest.konnector", "1.0.0");
    f.write(
        (true, true),
        &apps_body(d, &[("app", "mytool", &tool), ("konnector", "ameli", &ameli)]),
    );
    let (code, out, err) = f.ws.plan();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("+ app mytool 0.1.0"), "{out}");
    let out = f.ws.apply_ok();
    assert!(out.contains("Apps: 2 installed"), "{out}");
    assert_eq!(f.dbs(d), (0, layout::INSTANCE_DOCTYPES.len()));
    let app = |s: cozyform::store::Store| {
        docs_on(s, d, "io.cozy.apps")
            .into_iter()
            .find(|x| x["_id"] == "io.cozy.apps/mytool")
    };
    let on_second = app(f.second.store()).expect("app doc on cluster 1");
    assert_eq!(on_second["state"], "ready");
    // A file:// source's version carries a hash of the code, as cozy-stack writes it.
    assert!(
        on_second["version"].as_str().unwrap().starts_with("0.1.0"),
        "{on_second}"
    );
    assert!(app(f.ws.store()).is_none());
    let konn = docs_on(f.second.store(), d, "io.cozy.konnectors");
    assert_eq!(konn.len(), 1, "{konn:?}");
    let perms = |s: cozyform::store::Store| {
        docs_on(s, d, "io.cozy.permissions")
            .into_iter()
            .filter(|p| p["source_id"] == "io.cozy.apps/mytool")
            .count()
    };
    assert_eq!((perms(f.ws.store()), perms(f.second.store())), (0, 1));
    f.ws.assert_no_changes();

    // An update, read and written on cluster 1.
    app_copy(&f.ws, "mytool", "manifest.webapp", "0.2.0");
    let (code, out, _) = f.ws.plan();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("0.1.0") && out.contains("0.2.0"), "{out}");
    f.ws.apply_ok();
    let v = app(f.second.store()).unwrap()["version"].clone();
    assert!(v.as_str().unwrap().starts_with("0.2.0"), "{v}");
    assert!(app(f.ws.store()).is_none());
    f.ws.assert_no_changes();

    // Uninstall (apps_prune): mytool goes, with its permission doc; the konnector stays.
    f.write((true, true), &apps_body(d, &[("konnector", "ameli", &ameli)]));
    f.ws.apply_ok();
    assert!(app(f.second.store()).is_none());
    assert_eq!(perms(f.second.store()), 0);
    assert_eq!(docs_on(f.second.store(), d, "io.cozy.konnectors").len(), 1);
    f.ws.assert_no_changes();

    // A new instance without couch_cluster is placed by the planner (cluster 0 takes no new
    // instances here, so cluster 1), and its apps follow it there in the same apply.
    let body = format!(
        "{}[instances.\"b.example\"]\n[instances.\"b.example\".app.mytool]\nsource = \"file://{}\"\n",
        apps_body(d, &[("konnector", "ameli", &ameli)]),
        tool.display()
    );
    f.write((false, true), &body);
    f.ws.apply_ok();
    assert_eq!(f.instance_doc("b.example")["couch_cluster"], 1);
    let on = |s: cozyform::store::Store| docs_on(s, "b.example", "io.cozy.apps").len();
    assert_eq!((on(f.ws.store()), on(f.second.store())), (0, 1));
    f.ws.assert_no_changes();
}

/// `import` and `show` read an instance's databases on its cluster: the import of an instance on
/// cluster 1 (with its app) plans empty, and show lists its databases as present.
#[test]
fn import_and_show_read_instances_on_other_clusters() {
    let f = Fleet::new();
    let d = "a.example";
    let tool = app_copy(&f.ws, "mytool", "manifest.webapp", "0.1.0");
    f.write((true, true), &apps_body(d, &[("app", "mytool", &tool)]));
    f.ws.apply_ok();
    assert_eq!(f.dbs(d), (0, layout::INSTANCE_DOCTYPES.len()));

    f.write((true, true), "");
    let out = f.ws.cmd().args(["import", "--all", "--write"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("missing"), "{err}");
    let text = std::fs::read_to_string(f.ws.config_path()).unwrap();
    assert!(text.contains("[instances.\"a.example\"]"), "{text}");
    assert!(
        text.contains(&format!(
            "[instances.\"a.example\".app.mytool]\nsource = \"file://{}\"",
            tool.display()
        )),
        "{text}"
    );
    f.ws.assert_no_changes();

    let out = f.ws.cmd().args(["show", d]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let n = layout::INSTANCE_DOCTYPES.len();
    assert!(
        stdout.contains(&format!("databases: {n} of {n} present (on cluster 1)")),
        "{stdout}"
    );
    let out = f.ws.cmd().args(["show", d, "--json"]).output().unwrap();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["databases"]["cluster"], 1, "{j}");
    assert_eq!(j["databases"]["missing"], serde_json::json!([]), "{j}");
}
