//! Faults during apply: docs edited behind cozyform's back (409 → re-read, re-check, retry), the
//! CouchDB server stopped in the middle of an apply and started again, 5xx/429 answers (retried), and
//! Ctrl-C (SIGINT).
//!
//! The 409s are injected deterministically by the test server (tools/couch-test-server,
//! `POST /_cozyform_faults`): the next PUT of a given doc first applies a concurrent edit.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::{Value, json};

/// POSTs `body` to one of the test server's admin-only test hooks, which answers 201.
fn post_hook(couch: &TestCouch, hook: &str, body: Value) {
    block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{}{hook}", couch.url))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    });
}

/// What one of the test server's test hooks answers to a GET.
fn get_hook(couch: &TestCouch, hook: &str) -> Value {
    block_on(async {
        reqwest::Client::new()
            .get(format!("{}{hook}", couch.url))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// Arms a fault: the PUT of `db/id` after `skip` others first gets `patch` applied concurrently.
fn arm(couch: &TestCouch, db: &str, id: &str, patch: Value, skip: u32) {
    post_hook(
        couch,
        "_cozyform_faults",
        json!({"db": db, "id": id, "patch": patch, "skip": skip}),
    );
}

/// (armed, fired) faults of the test server.
fn faults(couch: &TestCouch) -> (u64, u64) {
    let v = get_hook(couch, "_cozyform_faults");
    (v["armed"].as_u64().unwrap(), v["fired"].as_u64().unwrap())
}

fn instance_id(domain: &str) -> String {
    layout::derived_id("instance", domain)
}

fn get(ws: &Workspace, db: &str, id: &str) -> Value {
    block_on(ws.store().get_doc(db, id)).unwrap().unwrap()
}

const A: &str = "a.example.com";

#[test]
fn conflict_on_the_instance_doc_is_reread_and_retried_keeping_the_other_edit() {
    let ws = Workspace::new(Backend::Couch);
    let couch = ws.couch.as_ref().unwrap();
    ws.write_config("", &format!("[instances.\"{A}\"]\n"));
    ws.apply_ok();
    ws.write_config("", &format!("[instances.\"{A}\"]\nblocked = true\nlocale = \"fr\"\n"));
    arm(
        couch,
        GLOBAL_INSTANCES_DB,
        &instance_id(A),
        json!({"oidc_id": "edited-behind-our-back"}),
        0,
    );
    ws.apply_ok();
    assert_eq!(faults(couch), (0, 1), "the fault must have fired");
    let doc = get(&ws, GLOBAL_INSTANCES_DB, &instance_id(A));
    assert_eq!(doc["blocked"], json!(true));
    assert_eq!(doc["locale"], json!("fr"));
    assert_eq!(
        doc["oidc_id"],
        json!("edited-behind-our-back"),
        "the concurrent edit was lost"
    );
    ws.assert_no_changes();
}

#[test]
fn conflict_with_an_edit_that_already_made_the_change_writes_nothing_more() {
    let ws = Workspace::new(Backend::Couch);
    let couch = ws.couch.as_ref().unwrap();
    ws.write_config("", &format!("[instances.\"{A}\"]\n"));
    ws.apply_ok();
    let rev_before = get(&ws, GLOBAL_INSTANCES_DB, &instance_id(A))["_rev"]
        .as_str()
        .unwrap()
        .to_string();
    ws.write_config("", &format!("[instances.\"{A}\"]\nlocale = \"fr\"\n"));
    arm(couch, GLOBAL_INSTANCES_DB, &instance_id(A), json!({"locale": "fr"}), 0);
    ws.apply_ok();
    assert_eq!(faults(couch), (0, 1));
    let doc = get(&ws, GLOBAL_INSTANCES_DB, &instance_id(A));
    let generation = |r: &str| r.split('-').next().unwrap().parse::<u32>().unwrap();
    assert_eq!(
        generation(doc["_rev"].as_str().unwrap()),
        generation(&rev_before) + 1,
        "only the concurrent edit wrote: the re-check saw the change already made"
    );
    ws.assert_no_changes();
}

#[test]
fn conflict_on_the_settings_doc_is_reread_and_retried() {
    let ws = Workspace::new(Backend::Couch);
    let couch = ws.couch.as_ref().unwrap();
    ws.write_config("", &format!("[instances.\"{A}\"]\nemail = \"old@example.com\"\n"));
    ws.apply_ok();
    ws.write_config("", &format!("[instances.\"{A}\"]\nemail = \"new@example.com\"\n"));
    let settings_db = db_name(&instance_prefix(A), layout::SETTINGS);
    arm(
        couch,
        &settings_db,
        layout::SETTINGS_DOC_ID,
        json!({"tz": "Europe/Berlin"}),
        0,
    );
    ws.apply_ok();
    assert_eq!(faults(couch), (0, 1));
    let doc = get(&ws, &settings_db, layout::SETTINGS_DOC_ID);
    assert_eq!(doc["email"], json!("new@example.com"));
    assert_eq!(doc["tz"], json!("Europe/Berlin"), "the concurrent edit was lost");
    ws.assert_no_changes();
}

#[test]
fn conflicts_during_create_and_destroy_are_retried() {
    let ws = Workspace::new(Backend::Couch);
    let couch = ws.couch.as_ref().unwrap();
    // Create: the final update of the instance doc (its second PUT) meets a concurrent edit.
    arm(
        couch,
        GLOBAL_INSTANCES_DB,
        &instance_id(A),
        json!({"oidc_id": "during-create"}),
        1,
    );
    ws.write_config("", &format!("[instances.\"{A}\"]\nemail = \"a@example.com\"\n"));
    ws.apply_ok();
    assert_eq!(faults(couch), (0, 1));
    assert_eq!(
        get(&ws, GLOBAL_INSTANCES_DB, &instance_id(A))["oidc_id"],
        json!("during-create")
    );
    ws.assert_no_changes();
    // Destroy: setting `deleting` meets a concurrent edit; the destroy still completes.
    arm(
        couch,
        GLOBAL_INSTANCES_DB,
        &instance_id(A),
        json!({"oidc_id": "during-destroy"}),
        0,
    );
    ws.write_config("", &format!("[instances.\"{A}\"]\nstate = \"absent\"\n"));
    ws.apply_ok();
    assert_eq!(faults(couch), (0, 2));
    assert!(
        block_on(ws.store().get_doc(GLOBAL_INSTANCES_DB, &instance_id(A)))
            .unwrap()
            .is_none()
    );
    assert!(!ws.fs_root().join(A).exists());
    ws.assert_no_changes();
}

fn spawn_apply(ws: &Workspace, parallelism: &str) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("cozyform"))
        .current_dir(ws.path())
        .arg("-c")
        .arg(ws.config_path())
        .args(["apply", "--auto-approve", "--parallelism", parallelism])
        .env("COUCHDB_USER", ADMIN_USER)
        .env("COUCHDB_PASSWORD", ADMIN_PASSWORD)
        .env("NO_COLOR", "1")
        .env_remove("COZYFORM_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn many_instances(n: usize) -> String {
    (0..n)
        .map(|i| format!("[instances.\"i{i}.example.com\"]\nemail = \"u{i}@example.com\"\n"))
        .collect()
}

/// Waits until `global/instances` holds at least one instance doc (the apply is under way).
fn wait_for_first_instance(store: &cozyform::store::Store) {
    let started = Instant::now();
    loop {
        let n = block_on(cozyform::actual::read_instance_docs(store))
            .map(|d| d.len())
            .unwrap_or(0);
        if n > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the apply never created an instance"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn server_stopped_mid_apply_gives_a_clear_error_and_the_next_apply_converges() {
    let port = free_port();
    let couch = TestCouch::start_in(tempfile::tempdir().unwrap(), false, port);
    let mut ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
        couch: Some(couch),
        backend: Backend::Couch,
    };
    ws.write_config("", &many_instances(6));
    let child = spawn_apply(&ws, "1");
    wait_for_first_instance(&ws.store());
    let data = ws.couch.take().unwrap().stop();
    let out = child.wait_with_output().unwrap();
    ws.couch = Some(TestCouch::start_in(data, false, port));

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "--- the interrupted run's report:\n{}",
        stdout.split("Plan:").last().unwrap_or("")
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("Apply failed"), "{stdout}");
    // What was not done is named, instance by instance.
    let not_done = (0..6)
        .filter(|i| stdout.contains(&format!("Error: i{i}.example.com:")))
        .count();
    assert!(not_done >= 1, "{stdout}");
    assert!(
        stdout.contains("not started: the store stopped answering"),
        "instances after the failure are not even started:\n{stdout}"
    );
    // The lock could not be released while the server was down: the message says how.
    let lock = block_on(cozyform::lock::current(&ws.store())).unwrap();
    match lock {
        Some(l) => {
            assert!(stdout.contains(&format!("cozyform force-unlock {}", l.id)), "{stdout}");
            ws.cmd().args(["force-unlock", &l.id]).assert().success();
        }
        None => panic!("the lock was released although the server was down?\n{stdout}"),
    }
    ws.apply_ok();
    ws.assert_no_changes();
    assert_eq!(
        block_on(cozyform::actual::read_instance_docs(&ws.store()))
            .unwrap()
            .len(),
        6
    );
}

fn sigint_stops_new_work_and_releases_the_lock(b: Backend) {
    let ws = Workspace::new(b);
    // Enough instances that the run is still under way when the signal lands (the embedded
    // store creates one in a few tens of milliseconds).
    let n = if b == Backend::Embedded { 60 } else { 10 };
    ws.write_config("", &many_instances(n));
    // The embedded store exists only after the first apply; create it with one instance.
    if b == Backend::Embedded {
        ws.write_config("", &many_instances(1));
        ws.apply_ok();
        ws.write_config("", &many_instances(n));
    }
    // If the machine is so loaded that the run ends before the signal lands, the scenario did
    // not happen: try again with more instances (never more than three times).
    let mut attempt = 0;
    let (stdout, stderr) = loop {
        let before = block_on(cozyform::actual::read_instance_docs(&ws.store()))
            .map(|d| d.len())
            .unwrap_or(0);
        let child = spawn_apply(&ws, "1");
        let started = Instant::now();
        loop {
            let n = block_on(cozyform::actual::read_instance_docs(&ws.store()))
                .map(|d| d.len())
                .unwrap_or(0);
            if n > before {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(10));
        }
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        attempt += 1;
        if out.status.code() == Some(0) && stdout.contains("Apply complete!") && attempt < 3 {
            eprintln!("the run ended before the signal landed; again with more instances");
            ws.write_config("", &many_instances(n * (attempt + 1)));
            continue;
        }
        assert_eq!(
            out.status.code(),
            Some(1),
            "status {:?}\n{stdout}\n{stderr}",
            out.status
        );
        break (stdout, stderr);
    };
    assert!(stderr.contains("Interrupted"), "{stderr}");
    assert!(stdout.contains("not started: the run was interrupted"), "{stdout}");
    assert!(
        stdout.contains("created. Registration link"),
        "what was done is printed:\n{stdout}"
    );
    assert!(
        block_on(cozyform::lock::current(&ws.store())).unwrap().is_none(),
        "the lock must be released"
    );
    // What was started finished: every instance doc written is a complete instance.
    let (code, plan, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(
        !plan.contains("will be repaired") && !plan.contains("# repair"),
        "{plan}"
    );
    ws.apply_ok();
    ws.assert_no_changes();
}

#[test]
fn sigint_stops_new_work_and_releases_the_lock_couchdb() {
    sigint_stops_new_work_and_releases_the_lock(Backend::Couch);
}

#[test]
fn sigint_stops_new_work_and_releases_the_lock_embedded() {
    sigint_stops_new_work_and_releases_the_lock(Backend::Embedded);
}

/// A run killed after its last write leaves its lock: an apply with nothing to do succeeds (it
/// needs no lock) but says how to release it, since the next change would be blocked.
#[test]
fn stale_lock_with_nothing_to_do_is_reported() {
    let ws = Workspace::new(Backend::Embedded);
    ws.write_config("", &format!("[instances.\"{A}\"]\n"));
    ws.apply_ok();
    let held = block_on(cozyform::lock::acquire(&ws.store(), "apply", Duration::ZERO)).unwrap();
    let out = ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cozyform force-unlock {}", held.id)), "{err}");
}

/// Makes the test server answer the next `method path` requests with `statuses` in turn (with a
/// `Retry-After: retry_after` header when given).
fn inject_errors(couch: &TestCouch, method: &str, path: &str, statuses: &[u16], retry_after: Option<u64>) {
    post_hook(
        couch,
        "_cozyform_errors",
        json!({"method": method, "path": path, "statuses": statuses, "retry_after": retry_after}),
    );
}

/// How many injected error answers the test server gave.
fn errors_given(couch: &TestCouch) -> u64 {
    get_hook(couch, "_cozyform_errors")["given"].as_u64().unwrap()
}

/// CouchDB answering 5xx or 429 is retried (with the shared backoff; a `Retry-After` is honoured,
/// here 0 s so the test does not wait), and the request then succeeds; a server that keeps failing
/// gets a bounded number of attempts (6), then a clear error naming the request.
#[test]
fn couchdb_5xx_and_429_are_retried_then_reported() {
    let ws = Workspace::new(Backend::Couch);
    let couch = ws.couch.as_ref().unwrap();
    ws.write_config("", &format!("[instances.\"{A}\"]\n"));
    inject_errors(couch, "GET", "/global%2Finstances", &[503, 429, 500], Some(0));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "the plan goes through after the retries:\n{out}\n{err}");
    assert!(out.contains(A), "{out}");
    assert_eq!(errors_given(couch), 3);

    inject_errors(couch, "GET", "/global%2Finstances", &[503; 10], Some(0));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(errors_given(couch), 3 + 6, "6 attempts in all");
    assert!(err.contains("503") && err.contains("global%2Finstances"), "{err}");
    inject_errors(couch, "GET", "/global%2Finstances", &[], None);
    assert_eq!(ws.plan().0, 2);
}
