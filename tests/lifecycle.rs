//! Lifecycle of instances through the real binary: create, modify, block/unblock, repair, destroy,
//! prevent_destroy, unmanaged/prune, confirmation, concurrency, ports, `deleting`, alias conflicts,
//! failed applies and `[defaults]`. Every scenario runs against both backends (a test CouchDB server
//! and the embedded store): `both!` turns `fn scenario(Backend)` into `scenario::{couchdb, embedded}`.

mod common;

use std::path::PathBuf;

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::{Value, json};

both! {
    create_plans_changes_applies_and_converges;
    modify_updates_instance_and_settings_docs;
    omitted_key_leaves_the_field_alone;
    block_with_reason_then_unblock_removes_both_fields;
    repair_recreates_a_deleted_database;
    repair_recreates_the_instance_folder;
    repair_recreates_a_deleted_settings_doc;

    repair_of_a_deleted_settings_database_recreates_the_settings_doc;
    declared_settings_of_an_instance_without_its_settings_database_are_repaired;
    absent_destroys_databases_folder_and_doc;
    absent_instance_that_does_not_exist_is_a_no_op;
    prevent_destroy_refuses_plan_and_apply;
    instance_removed_from_file_is_unmanaged_and_kept;
    prune_destroys_unmanaged_instances;
    apply_without_auto_approve_refuses_without_a_terminal;
    twelve_instances_with_parallelism_four;
    domain_with_a_port;
    deleting_flag_on_a_declared_instance_is_cleared;
    failed_creation_exits_1_and_the_next_apply_completes_it;

    failed_creation_still_yields_a_registration_link;
    failed_creation_reports_the_os_error_once;
    defaults_apply_to_instances_that_do_not_set_the_key;
    alias_equal_to_an_existing_domain_is_refused;
    domain_equal_to_an_existing_alias_is_refused;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs the binary with `args`; returns (exit code, stdout, stderr).
fn run(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let out = ws.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Whether the store holds anything yet (for the embedded backend, opening it would create it).
fn store_exists(ws: &Workspace) -> bool {
    ws.backend == Backend::Couch || ws.path().join(".cozyform/store.sqlite").exists()
}

/// Every instance doc of `global/instances` (design docs excluded).
fn instance_docs(ws: &Workspace) -> Vec<Value> {
    let docs = block_on(ws.store().all_docs_page(GLOBAL_INSTANCES_DB, None, 1000)).unwrap();
    docs.into_iter()
        .filter(|d| !d["_id"].as_str().unwrap_or("").starts_with("_design/"))
        .collect()
}

/// The instance doc of `domain`, if any.
fn instance_doc(ws: &Workspace, domain: &str) -> Option<Value> {
    let mut found: Vec<Value> = instance_docs(ws)
        .into_iter()
        .filter(|d| d["domain"] == domain)
        .collect();
    assert!(found.len() <= 1, "several instance docs for {domain}: {found:#?}");
    found.pop()
}

fn instance_doc_ok(ws: &Workspace, domain: &str) -> Value {
    instance_doc(ws, domain).unwrap_or_else(|| panic!("no instance doc for {domain}"))
}

fn settings_db(domain: &str) -> String {
    db_name(&instance_prefix(domain), layout::SETTINGS)
}

/// The settings doc of `domain`.
fn settings_doc(ws: &Workspace, domain: &str) -> Option<Value> {
    block_on(ws.store().get_doc(&settings_db(domain), layout::SETTINGS_DOC_ID)).unwrap()
}

/// Every database of the instance prefix of `domain`.
fn dbs_of(ws: &Workspace, domain: &str) -> Vec<String> {
    let p = instance_prefix(domain);
    block_on(ws.store().all_dbs(&format!("{p}/"), &format!("{p}0"))).unwrap()
}

fn folder(ws: &Workspace, domain: &str) -> PathBuf {
    ws.fs_root().join(domain)
}

/// Asserts that `domain` exists completely: instance doc, 16 databases, folder and trash folder.
fn assert_exists(ws: &Workspace, domain: &str) {
    let doc = instance_doc_ok(ws, domain);
    assert_eq!(doc["prefix"], json!(instance_prefix(domain)), "{doc:#}");
    assert_eq!(
        dbs_of(ws, domain).len(),
        layout::INSTANCE_DOCTYPES.len(),
        "{:?}",
        dbs_of(ws, domain)
    );
    assert!(folder(ws, domain).is_dir(), "no folder for {domain}");
    assert!(
        folder(ws, domain).join(layout::TRASH_DIR_NAME).is_dir(),
        "no trash folder for {domain}"
    );
}

/// Asserts that nothing of `domain` is left: no instance doc, no database, no folder.
fn assert_gone(ws: &Workspace, domain: &str) {
    assert!(
        instance_doc(ws, domain).is_none(),
        "instance doc of {domain} still there"
    );
    assert_eq!(
        dbs_of(ws, domain),
        Vec::<String>::new(),
        "databases of {domain} still there"
    );
    assert!(!folder(ws, domain).exists(), "folder of {domain} still there");
}

/// The registration links printed by an apply, by domain.
fn registration_links(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(": created. Registration link (shown only once): "))
        .map(|(d, link)| (d.to_string(), link.trim().to_string()))
        .collect()
}

/// Asserts `link` is `https://<domain>/?registerToken=<32 lowercase hex>`.
fn assert_registration_link(link: &str, domain: &str) {
    let token = link
        .strip_prefix(&format!("https://{domain}/?registerToken="))
        .unwrap_or_else(|| panic!("unexpected registration link {link:?} for {domain}"));
    assert_eq!(token.len(), 32, "{link}");
    assert!(
        token.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{link}"
    );
}

/// Asserts a plan with changes (exit 2) whose output contains every `lines` entry, then returns it.
fn assert_plan_has(ws: &Workspace, lines: &[&str]) -> String {
    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "expected changes:\n{out}\n{err}");
    for l in lines {
        assert!(out.contains(l), "plan lacks {l:?}:\n{out}");
    }
    out
}

/// One instance table.
fn inst(domain: &str, keys: &str) -> String {
    format!("[instances.\"{domain}\"]\n{keys}\n")
}

const A: &str = "alice.example.com";
const B: &str = "bob.example.com";

// ---------------------------------------------------------------------------------------------
// 1. Create

fn create_plans_changes_applies_and_converges(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "locale = \"fr\"\nemail = \"alice@example.com\""));
    assert_plan_has(
        &ws,
        &[
            &format!("+ instance \"{A}\" {{"),
            "+ locale: \"fr\"",
            "+ settings.email: \"alice@example.com\"",
            "Plan: 1 to add, 0 to change, 0 to destroy.",
        ],
    );
    assert!(!folder(&ws, A).exists(), "plan must not write");

    let out = ws.apply_ok();
    let links = registration_links(&out);
    assert_eq!(links.len(), 1, "{out}");
    assert_eq!(links[0].0, A);
    assert_registration_link(&links[0].1, A);
    assert!(
        out.contains("Apply complete! Instances: 1 added, 0 changed, 0 destroyed."),
        "{out}"
    );

    assert_exists(&ws, A);
    let doc = instance_doc_ok(&ws, A);
    assert_eq!(doc["locale"], "fr");
    assert_eq!(settings_doc(&ws, A).unwrap()["email"], "alice@example.com");
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 2. Modify

const FULL_BEFORE: &str = "locale = \"en\"
email = \"alice@example.com\"
tz = \"Europe/Paris\"
context = \"dev\"
disk_quota = \"1GB\"
domain_aliases = [\"alice.example.org\"]
settings = { offer = \"free\" }";

const FULL_AFTER: &str = "locale = \"fr\"
email = \"alice@example.net\"
tz = \"America/New_York\"
context = \"prod\"
disk_quota = \"5GiB\"
domain_aliases = [\"alice.example.net\", \"alice.example.io\"]
settings = { offer = \"premium\" }";

fn modify_updates_instance_and_settings_docs(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, FULL_BEFORE));
    ws.apply_ok();
    ws.assert_no_changes();

    ws.write_config("", &inst(A, FULL_AFTER));
    assert_plan_has(
        &ws,
        &[
            &format!("~ instance \"{A}\" {{"),
            "~ locale: \"en\" -> \"fr\"",
            "~ context: \"dev\" -> \"prod\"",
            "~ disk_quota: \"1000000000\" -> \"5368709120\"",
            "~ domain_aliases: [\"alice.example.org\"] -> [\"alice.example.net\",\"alice.example.io\"]",
            "~ settings.email: \"alice@example.com\" -> \"alice@example.net\"",
            "~ settings.tz: \"Europe/Paris\" -> \"America/New_York\"",
            "~ settings.offer: \"free\" -> \"premium\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    let out = ws.apply_ok();
    assert!(out.contains(&format!("{A}: updated.")), "{out}");
    assert!(
        out.contains("Apply complete! Instances: 0 added, 1 changed, 0 destroyed."),
        "{out}"
    );

    let doc = instance_doc_ok(&ws, A);
    assert_eq!(doc["locale"], "fr");
    assert_eq!(doc["context"], "prod");
    assert_eq!(doc["disk_quota"], json!("5368709120"), "disk_quota is a JSON string");
    assert_eq!(doc["domain_aliases"], json!(["alice.example.net", "alice.example.io"]));
    let settings = settings_doc(&ws, A).unwrap();
    assert_eq!(settings["email"], "alice@example.net");
    assert_eq!(settings["tz"], "America/New_York");
    assert_eq!(settings["offer"], "premium");
    ws.assert_no_changes();

    // disk_quota = 0 means unlimited, domain_aliases = [] none: both fields are removed.
    let cleared = FULL_AFTER
        .replace("disk_quota = \"5GiB\"", "disk_quota = 0")
        .replace("[\"alice.example.net\", \"alice.example.io\"]", "[]");
    ws.write_config("", &inst(A, &cleared));
    assert_plan_has(
        &ws,
        &[
            "- domain_aliases: [\"alice.example.net\",\"alice.example.io\"]",
            "- disk_quota: \"5368709120\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    ws.apply_ok();
    let doc = instance_doc_ok(&ws, A);
    assert!(doc.get("disk_quota").is_none(), "{doc:#}");
    assert!(doc.get("domain_aliases").is_none(), "{doc:#}");
    ws.assert_no_changes();
}

fn omitted_key_leaves_the_field_alone(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, FULL_BEFORE));
    ws.apply_ok();

    // Without email (tz and offer still declared, so the settings doc is read and compared).
    ws.write_config(
        "",
        &inst(A, &FULL_BEFORE.replace("email = \"alice@example.com\"\n", "")),
    );
    ws.assert_no_changes();
    // Without any key at all.
    ws.write_config("", &inst(A, ""));
    ws.assert_no_changes();
    ws.apply_ok();

    let doc = instance_doc_ok(&ws, A);
    assert_eq!(doc["locale"], "en");
    assert_eq!(doc["context"], "dev");
    assert_eq!(doc["disk_quota"], json!("1000000000"));
    assert_eq!(doc["domain_aliases"], json!(["alice.example.org"]));
    let settings = settings_doc(&ws, A).unwrap();
    assert_eq!(settings["email"], "alice@example.com");
    assert_eq!(settings["tz"], "Europe/Paris");
    assert_eq!(settings["offer"], "free");
}

// ---------------------------------------------------------------------------------------------
// 3. Block / unblock

fn block_with_reason_then_unblock_removes_both_fields(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, ""));
    ws.apply_ok();

    ws.write_config("", &inst(A, "blocked = true\nblocking_reason = \"PAYMENT_FAILED\""));
    assert_plan_has(
        &ws,
        &[
            "+ blocked: true",
            "+ blocking_reason: \"PAYMENT_FAILED\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    ws.apply_ok();
    let doc = instance_doc_ok(&ws, A);
    assert_eq!(doc["blocked"], json!(true));
    assert_eq!(doc["blocking_reason"], "PAYMENT_FAILED");
    ws.assert_no_changes();

    ws.write_config("", &inst(A, "blocked = false"));
    assert_plan_has(
        &ws,
        &[
            "- blocked: true",
            "- blocking_reason: \"PAYMENT_FAILED\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    ws.apply_ok();
    let doc = instance_doc_ok(&ws, A);
    assert!(doc.get("blocked").is_none(), "{doc:#}");
    assert!(doc.get("blocking_reason").is_none(), "{doc:#}");
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 4. Repair

fn repair_recreates_a_deleted_database(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, ""));
    ws.apply_ok();
    let jobs = db_name(&instance_prefix(A), "io.cozy.jobs");
    assert!(block_on(ws.store().delete_db(&jobs)).unwrap());

    assert_plan_has(
        &ws,
        &[
            &format!("! instance \"{A}\" {{"),
            "missing database io.cozy.jobs",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    let out = ws.apply_ok();
    assert!(out.contains(&format!("{A}: repaired.")), "{out}");
    assert!(block_on(ws.store().db_exists(&jobs)).unwrap());
    // Its indexes come back with it.
    let out = ws
        .cmd()
        .args(["plan", "--detailed-exitcode", "--deep"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    ws.assert_no_changes();
}

fn repair_recreates_the_instance_folder(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "locale = \"fr\""));
    ws.apply_ok();
    std::fs::remove_dir_all(folder(&ws, A)).unwrap();

    assert_plan_has(
        &ws,
        &["missing folder on disk", "Plan: 0 to add, 1 to change, 0 to destroy."],
    );
    ws.apply_ok();
    assert!(folder(&ws, A).is_dir());
    assert!(folder(&ws, A).join(layout::TRASH_DIR_NAME).is_dir());
    // The default directories cozyform created come back with their localized names.
    assert!(folder(&ws, A).join("Administratif").is_dir());
    assert!(folder(&ws, A).join("Photos").is_dir());
    ws.assert_no_changes();

    // Only the trash folder missing.
    std::fs::remove_dir(folder(&ws, A).join(layout::TRASH_DIR_NAME)).unwrap();
    assert_plan_has(&ws, &["missing trash folder .cozy_trash on disk"]);
    ws.apply_ok();
    assert!(folder(&ws, A).join(layout::TRASH_DIR_NAME).is_dir());
    ws.assert_no_changes();
}

fn repair_recreates_a_deleted_settings_doc(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config(
        "",
        &inst(A, "email = \"alice@example.com\"\nsettings = { offer = \"free\" }"),
    );
    ws.apply_ok();
    let doc = settings_doc(&ws, A).unwrap();
    block_on(
        ws.store()
            .delete_doc(&settings_db(A), layout::SETTINGS_DOC_ID, doc["_rev"].as_str().unwrap()),
    )
    .unwrap();
    assert!(settings_doc(&ws, A).is_none());

    assert_plan_has(
        &ws,
        &[
            "missing settings doc io.cozy.settings.instance",
            "+ settings.email: \"alice@example.com\"",
            "+ settings.offer: \"free\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    ws.apply_ok();
    let doc = settings_doc(&ws, A).expect("settings doc recreated");
    assert_eq!(doc["email"], "alice@example.com");
    assert_eq!(doc["offer"], "free");
    ws.assert_no_changes();
}

fn repair_of_a_deleted_settings_database_recreates_the_settings_doc(b: Backend) {
    let ws = Workspace::new(b);
    // No email, tz, … nor settings declared: the settings doc is not read by a normal plan.
    ws.write_config("", &inst(A, ""));
    ws.apply_ok();
    assert!(settings_doc(&ws, A).is_some());
    assert!(block_on(ws.store().delete_db(&settings_db(A))).unwrap());

    assert_plan_has(&ws, &["missing database io.cozy.settings"]);
    ws.apply_ok();
    assert!(block_on(ws.store().db_exists(&settings_db(A))).unwrap());
    // Like the root/trash dirs with io.cozy.files and the "myself" contact with io.cozy.contacts,
    // the doc that lived in the database must come back with it.
    assert!(
        settings_doc(&ws, A).is_some(),
        "the settings doc was not recreated with its database"
    );
    let out = ws
        .cmd()
        .args(["plan", "--detailed-exitcode", "--deep"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

fn declared_settings_of_an_instance_without_its_settings_database_are_repaired(b: Backend) {
    let ws = Workspace::new(b);
    // Declared settings are read while global/instances is still being read, before the
    // database lists say whether io.cozy.settings exists: a missing database must still read as a
    // missing doc, on the instance it belongs to, next to one whose settings are intact.
    let a = inst(A, "email = \"alice@example.com\"");
    let b_ = inst(B, "email = \"bob@example.com\"");
    ws.write_config("", &format!("{a}{b_}"));
    ws.apply_ok();
    ws.assert_no_changes();
    assert!(block_on(ws.store().delete_db(&settings_db(A))).unwrap());

    let plan = assert_plan_has(&ws, &["missing database io.cozy.settings", "settings.email"]);
    assert!(!plan.contains(B), "bob's settings are intact:\n{plan}");
    ws.apply_ok();
    assert_eq!(settings_doc(&ws, A).expect("recreated")["email"], "alice@example.com");
    assert_eq!(settings_doc(&ws, B).expect("kept")["email"], "bob@example.com");
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 5. Destroy

fn absent_destroys_databases_folder_and_doc(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &format!("{}{}", inst(A, ""), inst(B, "")));
    ws.apply_ok();
    assert_exists(&ws, A);

    ws.write_config("", &format!("{}{}", inst(A, "state = \"absent\""), inst(B, "")));
    assert_plan_has(
        &ws,
        &[
            &format!("# {A} will be destroyed"),
            &format!("- instance \"{A}\""),
            "Plan: 0 to add, 0 to change, 1 to destroy.",
        ],
    );
    let out = ws.apply_ok();
    assert!(out.contains(&format!("{A}: destroyed.")), "{out}");
    assert!(
        out.contains("Apply complete! Instances: 0 added, 0 changed, 1 destroyed."),
        "{out}"
    );
    assert_gone(&ws, A);
    assert_exists(&ws, B);
    ws.assert_no_changes();
}

fn absent_instance_that_does_not_exist_is_a_no_op(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "state = \"absent\""));
    ws.assert_no_changes();
    let out = ws.apply_ok();
    assert!(out.contains("No changes."), "{out}");
    assert!(!ws.fs_root().join(A).exists());
    if store_exists(&ws) {
        assert!(
            !block_on(ws.store().db_exists(GLOBAL_INSTANCES_DB)).unwrap(),
            "a no-op apply created global/instances"
        );
        assert!(dbs_of(&ws, A).is_empty());
    }
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 6. prevent_destroy

fn prevent_destroy_refuses_plan_and_apply(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "prevent_destroy = true"));
    ws.apply_ok();

    ws.write_config("", &inst(A, "state = \"absent\"\nprevent_destroy = true"));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("the plan cannot be applied"), "{err}");
    assert!(
        err.contains(&format!("{A}: the plan would destroy it, but prevent_destroy = true")),
        "{err}"
    );

    let (code, out, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains(A) && err.contains("prevent_destroy"), "{err}");
    assert!(!out.contains(&format!("{A}: destroyed.")), "{out}");
    assert_exists(&ws, A);
    assert!(instance_doc_ok(&ws, A).get("deleting").is_none());
}

// ---------------------------------------------------------------------------------------------
// 7. Unmanaged instances and prune

fn instance_removed_from_file_is_unmanaged_and_kept(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &format!("{}{}", inst(A, ""), inst(B, "")));
    ws.apply_ok();

    ws.write_config("", &inst(A, ""));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("# {B} is unmanaged")), "{out}");
    assert!(out.contains("No changes."), "{out}");
    ws.apply_ok();
    assert_exists(&ws, A);
    assert_exists(&ws, B);
}

fn prune_destroys_unmanaged_instances(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &format!("{}{}", inst(A, ""), inst(B, "")));
    ws.apply_ok();

    ws.write_config("prune = true", &inst(A, ""));
    assert_plan_has(
        &ws,
        &[
            &format!("- instance \"{B}\""),
            "not in the configuration, and prune = true",
            "Plan: 0 to add, 0 to change, 1 to destroy.",
        ],
    );
    let out = ws.apply_ok();
    assert!(out.contains(&format!("{B}: destroyed.")), "{out}");
    assert_gone(&ws, B);
    assert_exists(&ws, A);
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 8. Confirmation

fn apply_without_auto_approve_refuses_without_a_terminal(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, ""));
    // Even "yes" on a pipe is refused: a pipe is not a terminal.
    let out = ws.cmd().arg("apply").write_stdin("yes\n").output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("standard input is not a terminal"), "{stderr}");
    assert!(stderr.contains("--auto-approve"), "{stderr}");
    assert!(
        stdout.contains("Plan: 1 to add"),
        "the plan is shown before refusing:\n{stdout}"
    );
    assert!(!ws.fs_root().exists(), "apply wrote the fs_root");
    if store_exists(&ws) {
        assert!(
            !block_on(ws.store().db_exists(GLOBAL_INSTANCES_DB)).unwrap(),
            "apply created global/instances"
        );
        assert!(dbs_of(&ws, A).is_empty());
    }
}

/// The embedded store is not created by an apply that is refused (as a plan does not create it).
#[test]

fn refused_apply_creates_no_embedded_store() {
    let ws = Workspace::new(Backend::Embedded);
    ws.write_config("", &inst(A, ""));
    let out = ws.cmd().arg("apply").write_stdin("yes\n").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !ws.path().join(".cozyform").exists(),
        "a refused apply created the embedded store"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Concurrency

fn twelve_instances_with_parallelism_four(b: Backend) {
    let ws = Workspace::new(b);
    let domains: Vec<String> = (1..=12).map(|n| format!("user{n:02}.example.com")).collect();
    let body: String = domains
        .iter()
        .map(|d| inst(d, &format!("email = \"admin@{d}\"")))
        .collect();
    ws.write_config("", &body);
    let out = ws
        .cmd()
        .args(["apply", "--auto-approve", "--parallelism", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Apply complete! Instances: 12 added, 0 changed, 0 destroyed."),
        "{stdout}"
    );
    let links = registration_links(&stdout);
    assert_eq!(links.len(), 12, "{stdout}");
    for (d, link) in &links {
        assert_registration_link(link, d);
    }
    assert_eq!(instance_docs(&ws).len(), 12);
    for d in &domains {
        assert_exists(&ws, d);
        assert_eq!(settings_doc(&ws, d).unwrap()["email"], json!(format!("admin@{d}")));
    }
    let out = ws
        .cmd()
        .args(["plan", "--detailed-exitcode", "--parallelism", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 10. Domain with a port

fn domain_with_a_port(b: Backend) {
    const D: &str = "cozy.localhost:8080";
    const PREFIX: &str = "cozy1a4e1aabf424a194d7daf946d7b1337d";
    assert_eq!(instance_prefix(D), PREFIX);
    let ws = Workspace::new(b);
    ws.write_config("", &inst(D, ""));
    let out = ws.apply_ok();
    let links = registration_links(&out);
    assert_eq!(links.len(), 1, "{out}");
    assert_registration_link(&links[0].1, D);
    assert!(
        ws.fs_root()
            .join("cozy.localhost:8080")
            .join(layout::TRASH_DIR_NAME)
            .is_dir()
    );
    let doc = instance_doc_ok(&ws, D);
    assert_eq!(doc["prefix"], PREFIX);
    assert!(block_on(ws.store().db_exists(&format!("{PREFIX}/io-cozy-files"))).unwrap());
    assert_exists(&ws, D);
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 11. `deleting` flag

fn deleting_flag_on_a_declared_instance_is_cleared(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, ""));
    ws.apply_ok();
    let mut doc = instance_doc_ok(&ws, A);
    doc["deleting"] = json!(true);
    block_on(ws.store().put_doc(GLOBAL_INSTANCES_DB, &doc)).unwrap();

    assert_plan_has(&ws, &["- deleting: true", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    ws.apply_ok();
    let doc = instance_doc_ok(&ws, A);
    assert!(doc.get("deleting").is_none(), "{doc:#}");
    assert_exists(&ws, A);
    ws.assert_no_changes();
}

// ---------------------------------------------------------------------------------------------
// 12. Alias conflicts with existing instances

fn alias_equal_to_an_existing_domain_is_refused(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &format!("{}{}", inst(A, ""), inst(B, "")));
    ws.apply_ok();

    // B is no longer declared (so the file itself is valid) but still exists.
    ws.write_config("", &inst(A, &format!("domain_aliases = [\"{B}\"]")));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "{A}: alias \"{B}\" is already used by the existing instance \"{B}\""
        )),
        "{err}"
    );

    let (code, _, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{err}");
    assert!(instance_doc_ok(&ws, A).get("domain_aliases").is_none());
    assert_exists(&ws, B);
}

fn domain_equal_to_an_existing_alias_is_refused(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "domain_aliases = [\"alias.example.com\"]"));
    ws.apply_ok();

    // A declared without domain_aliases keeps its alias (left alone): the new domain conflicts with it.
    ws.write_config("", &format!("{}{}", inst(A, ""), inst("alias.example.com", "")));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains(
            "alias.example.com: \"alias.example.com\" is already used by the existing instance \"alice.example.com\""
        ),
        "{err}"
    );
    let (code, _, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{err}");
    assert!(instance_doc(&ws, "alias.example.com").is_none());
    assert!(!folder(&ws, "alias.example.com").exists());
}

// ---------------------------------------------------------------------------------------------
// Failed applies

/// Makes the creation of instance folders fail: the fs_root is a regular file.
fn break_fs_root(ws: &Workspace) {
    std::fs::write(ws.fs_root(), "not a directory").unwrap();
}

fn failed_creation_exits_1_and_the_next_apply_completes_it(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "locale = \"fr\""));
    break_fs_root(&ws);
    let (code, out, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains(&format!("Error: {A}: ")), "{out}");
    assert!(
        out.contains("Apply failed for 1 instance(s). Done: 0 added, 0 changed, 0 destroyed."),
        "{out}"
    );

    std::fs::remove_file(ws.fs_root()).unwrap();
    assert_plan_has(&ws, &["missing folder on disk"]);
    ws.apply_ok();
    assert_exists(&ws, A);
    assert!(folder(&ws, A).join("Administratif").is_dir());
    ws.assert_no_changes();
}

fn failed_creation_still_yields_a_registration_link(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, ""));
    break_fs_root(&ws);
    let (_, first, _) = run(&ws, &["apply", "--auto-approve"]);
    std::fs::remove_file(ws.fs_root()).unwrap();
    let second = ws.apply_ok();
    // The instance doc holds a register token: someone must be told the link, once.
    assert!(instance_doc_ok(&ws, A).get("register_token").is_some());
    let links: Vec<_> = registration_links(&first)
        .into_iter()
        .chain(registration_links(&second))
        .collect();
    assert_eq!(
        links.len(),
        1,
        "no registration link was ever shown for {A}:\n{first}\n{second}"
    );
    assert_registration_link(&links[0].1, A);
}

fn failed_creation_reports_the_os_error_once(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, ""));
    break_fs_root(&ws);
    let (code, out, _) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("Error: {A}: ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(line.matches("File exists").count(), 1, "{line}");
}

// ---------------------------------------------------------------------------------------------
// [defaults]

fn defaults_apply_to_instances_that_do_not_set_the_key(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config(
        "",
        &format!(
            "[defaults]\nlocale = \"fr\"\ntz = \"Europe/Paris\"\nsettings = {{ offer = \"free\" }}\n{}{}",
            inst(A, ""),
            inst(B, "locale = \"en\"\nsettings = { offer = \"premium\" }")
        ),
    );
    ws.apply_ok();
    assert_eq!(instance_doc_ok(&ws, A)["locale"], "fr");
    assert_eq!(instance_doc_ok(&ws, B)["locale"], "en");
    let (sa, sb) = (settings_doc(&ws, A).unwrap(), settings_doc(&ws, B).unwrap());
    assert_eq!((&sa["tz"], &sa["offer"]), (&json!("Europe/Paris"), &json!("free")));
    assert_eq!((&sb["tz"], &sb["offer"]), (&json!("Europe/Paris"), &json!("premium")));
    ws.assert_no_changes();

    // Changing a default changes every instance that does not override it.
    ws.write_config(
        "",
        &format!(
            "[defaults]\nlocale = \"en\"\ntz = \"Europe/Paris\"\nsettings = {{ offer = \"free\" }}\n{}{}",
            inst(A, ""),
            inst(B, "locale = \"en\"\nsettings = { offer = \"premium\" }")
        ),
    );
    assert_plan_has(
        &ws,
        &[
            "~ locale: \"fr\" -> \"en\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
}
