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
