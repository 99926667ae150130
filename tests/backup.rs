//! Safe destroys: the `max_destroy` limit, backups written and verified before a destroy, and
//! `cozyform restore`, on both backends.

mod common;

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::{Value, json};

both! {
    destroy_with_backup_then_restore_gives_an_empty_plan;
    more_destroys_than_max_destroy_are_refused_with_auto_approve;
    failed_backup_deletes_nothing;
}

const A: &str = "a.example.com";
const B: &str = "b.example.com";

fn instance_doc(ws: &Workspace, domain: &str) -> Option<Value> {
    block_on(
        ws.store()
            .get_doc(GLOBAL_INSTANCES_DB, &layout::derived_id("instance", domain)),
    )
    .unwrap()
}

fn archives(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn destroy_with_backup_then_restore_gives_an_empty_plan(b: Backend) {
    let ws = Workspace::new(b);
    let declared = format!(
        "[instances.\"{A}\"]\nlocale = \"fr\"\nemail = \"a@example.com\"\ndisk_quota = \"5GB\"\n[instances.\"{B}\"]\n"
    );
    ws.write_config("", &declared);
    ws.apply_ok();
    // User data: a contact in a database, a file in the folder.
    let contacts = db_name(&instance_prefix(A), layout::CONTACTS);
    block_on(
        ws.store()
            .put_doc(&contacts, &json!({"_id": "user-contact", "fullname": "Bob"})),
    )
    .unwrap();
    let photo = ws.fs_root().join(A).join("Photos").join("holiday.jpg");
    std::fs::write(&photo, b"\xff\xd8 not really a jpeg").unwrap();
    let before = instance_doc(&ws, A).unwrap();

    ws.write_config(
        "backup_dir = \"backups\"\n",
        &format!("[instances.\"{A}\"]\nstate = \"absent\"\n[instances.\"{B}\"]\n"),
    );
    let out = ws.apply_ok();
    assert!(out.contains("destroyed, after a verified backup"), "{out}");
    assert!(instance_doc(&ws, A).is_none());
    assert!(!ws.fs_root().join(A).exists());
    let files = archives(&ws.path().join("backups"));
    assert_eq!(files.len(), 2, "an archive and its checksum: {files:?}");
    let archive = files.iter().find(|p| p.to_string_lossy().ends_with(".tar.gz")).unwrap();
    assert!(files.iter().any(|p| p.to_string_lossy().ends_with(".tar.gz.sha256")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(archive).unwrap().permissions().mode() & 0o777, 0o600);

    ws.cmd().arg("restore").arg(archive).assert().success();
    // Refused when the domain exists.
    let again = ws.cmd().arg("restore").arg(archive).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    ws.write_config("", &declared);
    ws.assert_no_changes();
    let after = instance_doc(&ws, A).unwrap();
    for k in [
        "oauth_secret",
        "session_secret",
        "register_token",
        "prefix",
        "locale",
        "disk_quota",
    ] {
        assert_eq!(after[k], before[k], "{k}");
    }
    assert!(
        block_on(ws.store().get_doc(&contacts, "user-contact"))
            .unwrap()
            .is_some()
    );
    assert_eq!(std::fs::read(&photo).unwrap(), b"\xff\xd8 not really a jpeg");
    // Deep plan: the indexes and views are back too.
    let deep = ws
        .cmd()
        .args(["plan", "--deep", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(deep.status.code(), Some(0), "{}", String::from_utf8_lossy(&deep.stdout));
}

/// Applies x1, x2 and x3.example.com, then writes a config that declares none of them, with `prune`.
fn three_applied_then_pruned(ws: &Workspace) {
    let three: String = ["x1", "x2", "x3"]
        .iter()
        .map(|d| format!("[instances.\"{d}.example.com\"]\n"))
        .collect();
    ws.write_config("", &three);
    ws.apply_ok();
    ws.write_config("prune = true\n", "");
}

fn more_destroys_than_max_destroy_are_refused_with_auto_approve(b: Backend) {
    let ws = Workspace::new(b);
    three_applied_then_pruned(&ws);
    let out = ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("destroys 3 instances, more than max_destroy = 1"), "{err}");
    assert!(err.contains("--max-destroy 3"), "{err}");
    assert!(instance_doc(&ws, "x1.example.com").is_some(), "nothing destroyed");
    // apply --json refuses too.
    let out = ws.cmd().args(["apply", "--auto-approve", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // max_destroy in the config allows it; so does --max-destroy.
    ws.write_config("prune = true\nmax_destroy = 2\n", "");
    assert_eq!(
        ws.cmd()
            .args(["apply", "--auto-approve"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    ws.cmd()
        .args(["apply", "--auto-approve", "--max-destroy", "3"])
        .assert()
        .success();
    ws.assert_no_changes();
    assert!(instance_doc(&ws, "x1.example.com").is_none());
    // Validation of the key.
    ws.write_config("max_destroy = -1\n", "");
    let v = ws.cmd().arg("validate").output().unwrap();
    assert_eq!(v.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&v.stderr).contains("instances.toml:1:15"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

fn failed_backup_deletes_nothing(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &format!("[instances.\"{A}\"]\n"));
    ws.apply_ok();
    std::fs::write(ws.path().join("not-a-dir"), "x").unwrap();
    ws.write_config(
        "backup_dir = \"not-a-dir\"\n",
        &format!("[instances.\"{A}\"]\nstate = \"absent\"\n"),
    );
    let out = ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("nothing was deleted"), "{stdout}");
    let doc = instance_doc(&ws, A).unwrap();
    assert_eq!(doc.get("deleting"), None);
    assert!(ws.fs_root().join(A).is_dir());
    // --backup-dir overrides the config; apply --json names the archive.
    let dir = ws.path().join("elsewhere");
    let out = ws
        .cmd()
        .args(["apply", "--auto-approve", "--json", "--backup-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let backup = doc["result"]["instances"][0]["backup"].as_str().unwrap().to_string();
    assert!(instance_doc(&ws, A).is_none());
    assert_eq!(archives(&dir).len(), 2);
    assert!(std::path::Path::new(&backup).is_file() && backup.starts_with(dir.to_str().unwrap()));
}

/// At a terminal (a pty from `script`), a plan over the limit needs the number typed: `yes` is
/// not enough.
#[test]
fn typed_number_confirms_a_mass_destroy() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to give apply a terminal");
        return;
    }
    let ws = Workspace::new(Backend::Embedded);
    three_applied_then_pruned(&ws);
    let at_a_terminal = |input: &str| {
        use std::io::Write;
        let cmd = format!(
            "{} -c {} apply",
            assert_cmd::cargo::cargo_bin("cozyform").display(),
            ws.config_path().display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(ws.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = at_a_terminal("yes\n");
    assert!(out.contains("Type the number of instances to destroy"), "{out}");
    assert!(out.contains("Apply cancelled"), "{out}");
    assert!(instance_doc(&ws, "x1.example.com").is_some());
    let out = at_a_terminal("3\n");
    assert!(out.contains("3 destroyed"), "{out}");
    ws.assert_no_changes();
}
