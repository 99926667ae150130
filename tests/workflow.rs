//! CI and infra-as-code workflow through the real binary, against the test CouchDB server (and the
//! embedded store for the basic saved-plan path): saved plans (`plan --out`, `apply FILE`) and each
//! cause of staleness, `--target`, `fmt [--check]`, `completions` and `man`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::{Value, json};

const A: &str = "alpha.example.com";
const B: &str = "beta.example.com";
const C: &str = "gamma.other.org";

fn inst(domain: &str, body: &str) -> String {
    format!("[instances.\"{domain}\"]\n{body}\n")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(ws: &Workspace, args: &[&str]) -> Output {
    ws.cmd().args(args).output().unwrap()
}

/// `plan --out plan.cfplan`; asserts success; returns the file path.
fn save_plan(ws: &Workspace, extra: &[&str]) -> PathBuf {
    let path = ws.path().join("plan.cfplan");
    let mut args = vec!["plan", "--out", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(ws, &args);
    assert!(
        out.status.success(),
        "plan --out failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("cozyform apply"), "{}", text(&out.stderr));
    path
}

/// `apply FILE` (no --auto-approve, stdin not a terminal).
fn apply_file(ws: &Workspace, path: &Path) -> Output {
    run(ws, &["apply", path.to_str().unwrap()])
}

fn assert_applied(out: &Output) -> String {
    assert!(
        out.status.success(),
        "apply FILE failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts a refusal: exit 1, nothing applied, and the message names `what`.
fn assert_stale(out: &Output, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal:\n{}\n{err}",
        text(&out.stdout)
    );
    assert!(err.contains(what), "expected {what:?} in:\n{err}");
    assert!(err.contains("nothing was applied"), "{err}");
}

fn instance_doc(ws: &Workspace, domain: &str) -> Value {
    let docs = block_on(cozyform::actual::read_instance_docs(&ws.store())).unwrap();
    docs.into_iter()
        .find(|d| d["domain"] == domain)
        .expect("the instance doc")
}

// ---------------------------------------------------------------------------------------------
// Saved plans

fn a_saved_plan_applies_without_prompt_and_only_once(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "locale = \"fr\"\nemail = \"a@example.com\""));
    let path = save_plan(&ws, &[]);
    let file = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(v["kind"], "cozyform-saved-plan");
    assert_eq!(v["plan"]["summary"]["add"], 1);
    for secret in [
        ADMIN_PASSWORD,
        "registerToken",
        "passphrase",
        "session_secret",
        "oauth_secret",
    ] {
        assert!(!file.contains(secret), "the saved plan holds {secret:?}");
    }
    // It validates against its committed schema.
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/saved-plan.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let out = assert_applied(&apply_file(&ws, &path));
    assert!(out.contains(&format!("{A}: created. Registration link")), "{out}");
    ws.assert_no_changes();
    // Applied once, it is stale.
    assert_stale(&apply_file(&ws, &path), "this saved plan was already applied");
}

fn a_settings_only_saved_plan_is_stale_once_applied(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", &inst(A, "email = \"a@example.com\""));
    ws.apply_ok();
    ws.write_config("", &inst(A, "email = \"new@example.com\""));
    let path = save_plan(&ws, &[]);
    let rev_before = instance_doc(&ws, A)["_rev"].clone();
    assert_applied(&apply_file(&ws, &path));
    // Only the settings doc changed: the instance doc's _rev did not.
    assert_eq!(instance_doc(&ws, A)["_rev"], rev_before);
    ws.assert_no_changes();
    let again = apply_file(&ws, &path);
    assert_stale(&again, "this saved plan was already applied");
    assert!(
        text(&again.stderr).contains(&format!("the settings doc of {A} changed")),
        "{}",
        text(&again.stderr)
    );
}

fn stale_when_an_instance_doc_changed() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, "locale = \"en\""));
    ws.apply_ok();
    ws.write_config("", &inst(A, "locale = \"fr\""));
    let path = save_plan(&ws, &[]);
    // cozy-stack (or anyone) writes the instance doc meanwhile, without touching what the plan changes.
    let mut doc = instance_doc(&ws, A);
    doc["onboarding_finished"] = json!(true);
    block_on(ws.store().put_doc(GLOBAL_INSTANCES_DB, &doc)).unwrap();
    let out = apply_file(&ws, &path);
    assert_stale(&out, &format!("the instance doc of {A} ("));
    assert!(text(&out.stderr).contains("changed: _rev 2-"), "{}", text(&out.stderr));
    // Nothing was applied, and the lock was released.
    assert_eq!(instance_doc(&ws, A)["locale"], "en");
    assert!(block_on(cozyform::lock::current(&ws.store())).unwrap().is_none());
}

fn stale_when_a_database_was_created_or_removed() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, "locale = \"en\""));
    ws.apply_ok();
    ws.write_config("", &inst(A, "locale = \"fr\""));
    let prefix = instance_prefix(A);
    let path = save_plan(&ws, &[]);
    let extra = db_name(&prefix, "io.cozy.notes");
    assert!(block_on(ws.store().create_db(&extra)).unwrap());
    assert_stale(
        &apply_file(&ws, &path),
        &format!("databases of {A} ({prefix}) were created or removed"),
    );

    let path = save_plan(&ws, &[]);
    assert!(block_on(ws.store().delete_db(&db_name(&prefix, layout::FILES))).unwrap());
    let out = apply_file(&ws, &path);
    assert_stale(&out, "were created or removed");
    assert!(text(&out.stderr).contains("17 → 16 databases"), "{}", text(&out.stderr));

    // A database appearing under the prefix of an instance the plan creates.
    ws.write_config("", &format!("{}{}", inst(A, "locale = \"fr\""), inst(B, "")));
    let path = save_plan(&ws, &[]);
    assert!(block_on(ws.store().create_db(&db_name(&instance_prefix(B), "io.cozy.files"))).unwrap());
    assert_stale(&apply_file(&ws, &path), &format!("databases of {B} ("));
}

fn stale_when_the_config_changed() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, ""));
    let path = save_plan(&ws, &[]);
    let cfg = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(ws.config_path(), format!("{cfg}# a comment is a change too\n")).unwrap();
    let out = apply_file(&ws, &path);
    assert_stale(&out, "the configuration file changed since it was saved");
    assert!(
        block_on(cozyform::actual::read_instance_docs(&ws.store()))
            .unwrap()
            .is_empty()
    );
}

fn stale_when_the_version_changed_and_refused_when_tampered() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, ""));
    let path = save_plan(&ws, &[]);
    let original = std::fs::read_to_string(&path).unwrap();
    let mut v: Value = serde_json::from_str(&original).unwrap();
    v["cozyform_version"] = json!("0.0.1");

    // Edited by hand: refused as modified.
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    assert_stale(&apply_file(&ws, &path), "was modified after cozyform wrote it");

    // The same edit with a valid checksum: another version wrote it.
    v["checksum"] = json!(cozyform::saved_plan::checksum(&v));
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let out = apply_file(&ws, &path);
    assert_stale(&out, "it was computed by cozyform 0.0.1");
    assert!(
        text(&out.stderr).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out.stderr)
    );

    // Tampering with the plan itself.
    let mut v: Value = serde_json::from_str(&original).unwrap();
    v["internal"]["instances"][0]["create"]["locale"] = json!("fr");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    assert_stale(&apply_file(&ws, &path), "was modified after cozyform wrote it");
    // Not a saved plan at all.
    std::fs::write(&path, "{\"hello\": 1}").unwrap();
    let out = apply_file(&ws, &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a cozyform saved plan"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        block_on(cozyform::actual::read_instance_docs(&ws.store()))
            .unwrap()
            .is_empty()
    );
}

fn stale_after_another_apply() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, ""));
    ws.apply_ok();
    // A plan whose only change is a folder on disk: no _rev records it, the state serial does.
    std::fs::remove_dir_all(ws.fs_root().join(A)).unwrap();
    let first = save_plan(&ws, &[]);
    let second = ws.path().join("second.cfplan");
    std::fs::copy(&first, &second).unwrap();
    assert_applied(&apply_file(&ws, &first));
    assert!(ws.fs_root().join(A).is_dir());
    // The copy was computed from the same state: another apply ran since.
    assert_stale(&apply_file(&ws, &second), "this saved plan was already applied");
    // A saved plan is stale after a plain apply too.
    std::fs::remove_dir_all(ws.fs_root().join(A)).unwrap();
    let third = save_plan(&ws, &[]);
    ws.apply_ok();
    assert_stale(&apply_file(&ws, &third), "another apply ran since the plan was saved");
}

fn apply_file_json_prints_the_result() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, ""));
    let path = save_plan(&ws, &["--json"]);
    let out = run(&ws, &["apply", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["result"]["summary"]["added"], 1);
    assert!(
        doc["result"]["instances"][0]["registration_link"]
            .as_str()
            .unwrap()
            .contains("registerToken=")
    );
}

// ---------------------------------------------------------------------------------------------
// --target

fn targeting_restricts_plan_and_apply_with_a_warning() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &format!("{}{}{}", inst(A, ""), inst(B, ""), inst(C, "")));
    let out = run(&ws, &["plan", "--target", "*.example.com"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.contains("warning: resource targeting is in effect"), "{stderr}");
    assert!(
        stdout.contains(A) && stdout.contains(B) && !stdout.contains(C),
        "{stdout}"
    );
    assert!(stdout.contains("Plan: 2 to add"), "{stdout}");

    // --json: the document says the plan is partial.
    let out = run(&ws, &["plan", "--json", "--target", "*.EXAMPLE.com", "--target", C]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["targets"], json!(["*.example.com", C]));
    assert_eq!(doc["summary"]["add"], 3);

    let out = run(&ws, &["plan", "--markdown", "--target", "*.example.com"]);
    assert!(
        text(&out.stdout).contains("**Warning:** partial plan (`--target` `*.example.com`)"),
        "{}",
        text(&out.stdout)
    );

    // A target matching nothing is an error naming it.
    let out = run(&ws, &["plan", "--target", "typo.example.com"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"typo.example.com\" matches no instance"),
        "{}",
        text(&out.stderr)
    );

    // apply --target creates only the targeted instance.
    let out = run(&ws, &["apply", "--auto-approve", "--target", "beta.*"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("resource targeting is in effect"));
    let docs = block_on(cozyform::actual::read_instance_docs(&ws.store())).unwrap();
    let domains: Vec<&str> = docs.iter().filter_map(|d| d["domain"].as_str()).collect();
    assert_eq!(domains, [B]);

    // A saved plan records its targets and applies only them.
    let path = save_plan(&ws, &["--target", "*.org"]);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["read"]["targets"], json!(["*.org"]));
    let out = apply_file(&ws, &path);
    assert_applied(&out);
    assert!(text(&out.stderr).contains("resource targeting is in effect"));
    let docs = block_on(cozyform::actual::read_instance_docs(&ws.store())).unwrap();
    assert_eq!(docs.len(), 2);
    // --target cannot be combined with a saved plan: its targets are recorded in it.
    let out = run(&ws, &["apply", path.to_str().unwrap(), "--target", A]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("recorded in it"), "{}", text(&out.stderr));
    // The untargeted instance is still to be created.
    let (code, stdout, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(stdout.contains("Plan: 1 to add"), "{stdout}");
}

fn a_targeted_saved_plan_ignores_changes_outside_its_targets() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config(
        "",
        &format!("{}{}", inst(A, "locale = \"en\""), inst(C, "locale = \"en\"")),
    );
    ws.apply_ok();
    ws.write_config(
        "",
        &format!("{}{}", inst(A, "locale = \"fr\""), inst(C, "locale = \"en\"")),
    );
    let path = save_plan(&ws, &["--target", A]);
    let mut doc = instance_doc(&ws, C);
    doc["onboarding_finished"] = json!(true);
    block_on(ws.store().put_doc(GLOBAL_INSTANCES_DB, &doc)).unwrap();
    assert_applied(&apply_file(&ws, &path));
    assert_eq!(instance_doc(&ws, A)["locale"], "fr");
}

// ---------------------------------------------------------------------------------------------
// fmt, completions, man, schema

fn committed_saved_plan_schema_is_up_to_date() {
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/saved-plan.schema.json")).unwrap())
            .unwrap();
    assert_eq!(
        committed,
        cozyform::saved_plan::json_schema(),
        "schemas/saved-plan.schema.json is stale: run `cargo run -- schema saved-plan > schemas/saved-plan.schema.json`"
    );
}

fn fmt_check_then_fmt_keeps_comments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("instances.toml");
    let src = "#:schema ./schemas/instances.schema.json\n[instances.\"b.test\"]\n# B's owner\nemail = \"b@test.org\"\nlocale = \"fr\" # French\n\n[instances.\"a.test\"]\nlocale = \"en\"\n";
    std::fs::write(&cfg, src).unwrap();
    let cmd = || {
        let mut c = assert_cmd::Command::cargo_bin("cozyform").unwrap();
        c.arg("-c").arg(&cfg).env("NO_COLOR", "1");
        c
    };
    let out = cmd().args(["fmt", "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out.stdout);
    assert!(diff.contains("+++ ") && diff.contains("--- "), "{diff}");
    assert!(
        diff.contains("-locale = \"fr\" # French") || diff.contains("+locale = \"fr\" # French"),
        "{diff}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), src, "--check changed the file");

    let out = cmd().arg("fmt").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let formatted = std::fs::read_to_string(&cfg).unwrap();
    assert_eq!(
        formatted,
        "#:schema ./schemas/instances.schema.json\n[instances.\"a.test\"]\nlocale = \"en\"\n\n[instances.\"b.test\"]\nlocale = \"fr\" # French\n# B's owner\nemail = \"b@test.org\"\n"
    );
    let out = cmd().args(["fmt", "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty());

    // A file that does not parse is refused with its position, and left alone.
    std::fs::write(&cfg, "[instances.\"a.test\"]\nlocale = \"en\n").unwrap();
    let out = cmd().arg("fmt").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("instances.toml:2:"), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        "[instances.\"a.test\"]\nlocale = \"en\n"
    );
    // No temp file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = assert_cmd::Command::cargo_bin("cozyform")
            .unwrap()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let s = text(&out.stdout);
        assert!(
            s.contains("cozyform") && s.contains("force-unlock") && s.contains("target"),
            "{shell}:\n{s}"
        );
    }
    let bash = assert_cmd::Command::cargo_bin("cozyform")
        .unwrap()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(
        text(&bash.stdout).contains("complete -F"),
        "not a bash completion script"
    );

    let out = assert_cmd::Command::cargo_bin("cozyform")
        .unwrap()
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let man = text(&out.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH cozyform"), "{man}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
        "Exit codes",
    ] {
        assert!(man.contains(section), "no {section} in:\n{man}");
    }
    // One page per command, with the global options.
    let out = assert_cmd::Command::cargo_bin("cozyform")
        .unwrap()
        .args(["man", "apply"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(page.contains(".TH cozyform-apply 1"), "{page}");
    for what in ["PLAN_FILE", "lock\\-timeout", "\\-\\-config", "\\-\\-target"] {
        assert!(page.contains(what), "no {what} in:\n{page}");
    }
    let out = assert_cmd::Command::cargo_bin("cozyform")
        .unwrap()
        .args(["man", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no command named \"nope\""));
}

/// A rename reads the old and new instance folders, a locale change with `rename_default_dirs` the
/// default directory docs: a saved plan is stale when they changed, and fresh again when put back.
fn stale_when_what_a_rename_read_changed() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst(A, "locale = \"en\""));
    ws.apply_ok();
    ws.write_config("", &inst(B, &format!("renamed_from = \"{A}\"\nlocale = \"en\"")));
    let path = save_plan(&ws, &[]);
    let (old, new) = (ws.fs_root().join(A), ws.fs_root().join(B));
    std::fs::rename(&old, &new).unwrap();
    let out = apply_file(&ws, &path);
    assert_stale(&out, &format!("the folder of {A} changed: present → missing"));
    assert!(
        text(&out.stderr).contains(&format!("the folder of {B} changed: missing → present")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(instance_doc(&ws, A)["domain"], A, "nothing applied");
    // Put back, the plan is fresh again: it is applied.
    std::fs::rename(&new, &old).unwrap();
    assert_applied(&apply_file(&ws, &path));
    assert_eq!(instance_doc(&ws, B)["old_domain"], A);
    assert!(new.is_dir() && !old.exists());

    // A default directory renamed on a locale change: its doc changed meanwhile.
    ws.write_config("", &inst(B, "locale = \"fr\"\nrename_default_dirs = true"));
    let path = save_plan(&ws, &[]);
    let files = db_name(&instance_prefix(A), layout::FILES);
    let mut dir = block_on(ws.store().all_docs_page(&files, None, 1000))
        .unwrap()
        .into_iter()
        .find(|d| d["path"] == "/Administrative")
        .expect("the Administrative dir doc");
    dir["tags"] = json!(["touched"]);
    block_on(ws.store().put_doc(&files, &dir)).unwrap();
    let out = apply_file(&ws, &path);
    assert_stale(&out, &format!("the directory doc /Administrative of {B} ("));
    assert!(text(&out.stderr).contains("changed: _rev 1-"), "{}", text(&out.stderr));
    assert_eq!(instance_doc(&ws, B)["locale"], "en", "nothing applied");
}

/// A refused apply on a fresh directory creates nothing: the embedded store is created only once
/// the checks passed (they run before taking the lock when there is no store yet).
fn a_refused_apply_on_a_fresh_dir_leaves_no_store() {
    let ws = Workspace::new(Backend::Embedded);
    ws.write_config("", &inst(A, "locale = \"en\""));
    ws.apply_ok();
    ws.write_config("", &inst(A, "locale = \"fr\""));
    let path = save_plan(&ws, &[]);
    // The store goes away: the directory is fresh again, and the plan stale.
    let dot = ws.path().join(".cozyform");
    std::fs::remove_dir_all(&dot).unwrap();
    let out = apply_file(&ws, &path);
    assert_stale(&out, &format!("the instance doc of {A} ("));
    assert!(text(&out.stderr).contains("was deleted"), "{}", text(&out.stderr));
    assert!(
        !dot.join("store.sqlite").exists(),
        "a refused apply created the embedded store"
    );
    // A fresh plan on the fresh directory applies, creating the store.
    let path = save_plan(&ws, &[]);
    assert_applied(&apply_file(&ws, &path));
    assert!(dot.join("store.sqlite").exists());
    assert_eq!(instance_doc(&ws, A)["locale"], "fr");
}

macro_rules! tests {
    ($($name:ident;)*) => {$(
        #[test]
        fn $name() {
            super::$name()
        }
    )*};
}

mod couchdb {
    tests! {
        stale_when_an_instance_doc_changed;
        stale_when_a_database_was_created_or_removed;
        stale_when_the_config_changed;
        stale_when_what_a_rename_read_changed;
        stale_when_the_version_changed_and_refused_when_tampered;
        stale_after_another_apply;
        apply_file_json_prints_the_result;
        targeting_restricts_plan_and_apply_with_a_warning;
        a_targeted_saved_plan_ignores_changes_outside_its_targets;
    }

    #[test]
    fn a_saved_plan_applies_without_prompt_and_only_once() {
        super::a_saved_plan_applies_without_prompt_and_only_once(super::Backend::Couch)
    }

    #[test]
    fn a_settings_only_saved_plan_is_stale_once_applied() {
        super::a_settings_only_saved_plan_is_stale_once_applied(super::Backend::Couch)
    }
}

mod embedded {
    tests! {
        a_refused_apply_on_a_fresh_dir_leaves_no_store;
    }

    #[test]
    fn a_saved_plan_applies_without_prompt_and_only_once() {
        super::a_saved_plan_applies_without_prompt_and_only_once(super::Backend::Embedded)
    }

    #[test]
    fn a_settings_only_saved_plan_is_stale_once_applied() {
        super::a_settings_only_saved_plan_is_stale_once_applied(super::Backend::Embedded)
    }
}

mod tooling {
    tests! {
        fmt_check_then_fmt_keeps_comments;
        completions_and_man_page;
        committed_saved_plan_schema_is_up_to_date;
    }
}
