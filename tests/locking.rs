//! The apply lock: a second apply fails showing the lock, plan warns, force-unlock needs the exact id.

mod common;

use std::time::Duration;

use common::*;

fn locked_apply_is_refused_until_force_unlock(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", "[instances.\"a.example.com\"]\n");
    ws.apply_ok();
    ws.write_config("", "[instances.\"a.example.com\"]\nlocale = \"fr\"\n");
    let store = ws.store();
    let held = block_on(cozyform::lock::acquire(&store, "apply", Duration::ZERO)).unwrap();

    let out = ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("locked") && err.contains(&held.id) && err.contains(&held.holder),
        "{err}"
    );
    assert!(err.contains(&format!("cozyform force-unlock {}", held.id)), "{err}");

    let plan = ws.cmd().args(["plan"]).output().unwrap();
    assert!(String::from_utf8_lossy(&plan.stderr).contains("holds the lock"));

    let wrong = ws.cmd().args(["force-unlock", "0000"]).output().unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        block_on(cozyform::lock::current(&store)).unwrap().is_some(),
        "a wrong id must release nothing"
    );

    ws.cmd().args(["force-unlock", &held.id]).assert().success();
    assert!(block_on(cozyform::lock::current(&store)).unwrap().is_none());
    ws.apply_ok();
    ws.assert_no_changes();
    assert!(
        block_on(cozyform::lock::current(&store)).unwrap().is_none(),
        "apply releases its lock"
    );
}

#[test]
fn locked_apply_is_refused_until_force_unlock_couchdb() {
    locked_apply_is_refused_until_force_unlock(Backend::Couch);
}

#[test]
fn locked_apply_is_refused_until_force_unlock_embedded() {
    locked_apply_is_refused_until_force_unlock(Backend::Embedded);
}

#[test]
fn apply_waits_for_the_lock_up_to_lock_timeout() {
    let ws = Workspace::new(Backend::Embedded);
    ws.write_config("", "[instances.\"a.example.com\"]\n");
    ws.apply_ok();
    ws.write_config("", "[instances.\"a.example.com\"]\nlocale = \"fr\"\n");
    let store = ws.store();
    let held = block_on(cozyform::lock::acquire(&store, "apply", Duration::ZERO)).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        block_on(cozyform::lock::release(&store, &held)).unwrap();
    });
    let out = ws
        .cmd()
        .args(["apply", "--auto-approve", "--lock-timeout", "30s"])
        .output()
        .unwrap();
    releaser.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ws.assert_no_changes();
}
