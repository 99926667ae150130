//! Adopting and renaming instances through the real binary: `import` (printed and `--write`) then an
//! empty plan, for instances cozyform created and instances written directly the way cozy-stack
//! writes them; `show`; `renamed_from` (folder move, `old_domain`, prefix kept, no-op afterwards,
//! refusal, a crash between the folder move and the doc update); a locale change renaming the
//! default directories and their descendants' paths; the plan JSON of both against the schema.

mod common;

use std::path::PathBuf;

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::{Value, json};

both! {
    import_then_plan_is_empty;
    rename_moves_the_folder_keeps_the_prefix_and_is_a_no_op_afterwards;
    locale_change_renames_default_dirs_and_descendants;
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn run(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let out = ws.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn instance_docs(ws: &Workspace) -> Vec<Value> {
    block_on(ws.store().all_docs_page(GLOBAL_INSTANCES_DB, None, 1000))
        .unwrap()
        .into_iter()
        .filter(|d| !d["_id"].as_str().unwrap_or("").starts_with("_design/"))
        .collect()
}

fn instance_doc(ws: &Workspace, domain: &str) -> Option<Value> {
    let mut v: Vec<Value> = instance_docs(ws)
        .into_iter()
        .filter(|d| d["domain"] == domain)
        .collect();
    assert!(v.len() <= 1);
    v.pop()
}

/// The docs at `path` in the files database of the instance prefix derived from `domain`.
fn files_at(ws: &Workspace, domain: &str, path: &str) -> Vec<Value> {
    let files = db_name(&instance_prefix(domain), layout::FILES);
    block_on(ws.store().find_by_path(&files, cozyform::store::PathSelector::Eq(path))).unwrap()
}

fn folder(ws: &Workspace, domain: &str) -> PathBuf {
    ws.fs_root().join(domain)
}

fn inst(domain: &str, keys: &str) -> String {
    format!("[instances.\"{domain}\"]\n{keys}\n")
}

/// Validates a `plan --json` output against the committed schema.
fn assert_valid_plan_json(out: &str) -> Value {
    let doc: Value = serde_json::from_str(out).unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/plan.schema.json")).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{out}");
    doc
}

/// Writes an instance directly, as cozy-stack's `lifecycle.Create` would have (random id, secrets,
/// fields cozyform does not manage), with its 16 databases, settings doc and folders.
fn write_stack_instance(ws: &Workspace, domain: &str, extra: Value, settings: Value) -> Value {
    let store = ws.store();
    let prefix = instance_prefix(domain);
    block_on(async {
        store.create_db(GLOBAL_INSTANCES_DB).await.unwrap();
        for dt in layout::INSTANCE_DOCTYPES {
            store.create_db(&db_name(&prefix, dt)).await.unwrap();
        }
        let mut s = settings.as_object().cloned().unwrap();
        s.insert("_id".into(), json!(layout::SETTINGS_DOC_ID));
        store
            .put_doc(&db_name(&prefix, layout::SETTINGS), &Value::Object(s))
            .await
            .unwrap();
    });
    let mut doc = json!({
        "_id": format!("{:032x}", rand_id(domain)),
        "domain": domain,
        "prefix": prefix,
        "locale": "en",
        "password_defined": false,
        "indexes_version": 38,
        "register_token": "c2VjcmV0LXJlZ2lzdGVyLXRvaw==",
        "session_secret": "U0VTU0lPTi1TRUNSRVQtVkFMVUUtTk9ULVRPLUJFLVBSSU5URUQ=",
        "oauth_secret": "T0FVVEgtU0VDUkVULVZBTFVF",
        "cli_secret": "Q0xJLVNFQ1JFVC1WQUxVRQ==",
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    block_on(store.put_doc(GLOBAL_INSTANCES_DB, &doc)).unwrap();
    std::fs::create_dir_all(folder(ws, domain).join(".cozy_trash")).unwrap();
    doc
}

fn rand_id(domain: &str) -> u128 {
    domain
        .bytes()
        .fold(7u128, |a, b| a.wrapping_mul(131).wrapping_add(b as u128))
}

// ---------------------------------------------------------------------------------------------
// Import

const FULL: &str = "locale = \"fr\"
email = \"alice@example.com\"
public_name = \"Alice\"
phone = \"+33 6 00 00 00 00\"
tz = \"Europe/Paris\"
context = \"dev\"
disk_quota = \"5GiB\"
domain_aliases = [\"alice.example.org\"]
uuid = \"u-1\"
settings = { offer = \"premium\" }
blocked = true
blocking_reason = \"PAYMENT_FAILED\"";

fn import_then_plan_is_empty(b: Backend) {
    let ws = Workspace::new(b);
    // Instances created by cozyform, many fields and none.
    ws.write_config(
        "",
        &format!("{}{}", inst("alice.example.com", FULL), inst("bob.example.com", "")),
    );
    ws.apply_ok();
    // Instances written directly, as cozy-stack writes them.
    let carol = write_stack_instance(
        &ws,
        "carol.example.com",
        json!({
            "context": "pro",
            "disk_quota": "10000000000",
            "old_domain": "carol.old.example",
            "auth_mode": 1,
            "tos": "1.0.0-20260101",
            "blocked": false,
            "blocking_reason": "LOGIN_FAILED",
        }),
        json!({"email": "carol@example.com", "tz": "Europe/Berlin", "color": "blue", "flags": {"beta": true}}),
    );
    write_stack_instance(&ws, "dave.example.com:8080", json!({"locale": "de"}), json!({}));

    // A file without those instances, with [defaults] that the import must counter, and comments.
    let header = "# Fleet of the team\nprune = false\n";
    let defaults = "# Quota of every instance unless said otherwise\n[defaults]\ndisk_quota = \"1GB\"\n";
    ws.write_config(header, defaults);
    assert_eq!(
        run(&ws, &["fmt"]).0,
        0,
        "canonical layout first, to check import keeps it"
    );
    let before = std::fs::read_to_string(ws.config_path()).unwrap();

    let (code, out, err) = run(&ws, &["import", "--all"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for d in [
        "alice.example.com",
        "bob.example.com",
        "carol.example.com",
        "dave.example.com:8080",
    ] {
        assert!(out.contains(&format!("[instances.\"{d}\"]")), "{d} missing:\n{out}");
    }
    assert!(out.contains("disk_quota = \"5GiB\""), "{out}");
    assert!(out.contains("disk_quota = 0"), "defaults countered:\n{out}");
    assert!(
        out.contains("auth_mode = 1") && out.contains("old_domain"),
        "unmanaged fields as comments:\n{out}"
    );
    assert!(
        err.contains("flags") && err.contains("LOGIN_FAILED"),
        "undeclarable data warned:\n{err}"
    );
    // No secret anywhere: neither the values written directly nor those cozyform generated.
    let alice = instance_doc(&ws, "alice.example.com").unwrap();
    for secret in [
        carol["register_token"].as_str().unwrap(),
        carol["session_secret"].as_str().unwrap(),
        alice["session_secret"].as_str().unwrap(),
        alice["register_token"].as_str().unwrap(),
    ] {
        assert!(!out.contains(secret) && !err.contains(secret), "a secret was printed");
    }
    assert_eq!(
        std::fs::read_to_string(ws.config_path()).unwrap(),
        before,
        "print mode writes nothing"
    );

    let (code, out, err) = run(&ws, &["import", "--all", "--write"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let after = std::fs::read_to_string(ws.config_path()).unwrap();
    assert!(
        after.starts_with(&before),
        "the existing file, comments included, is kept:\n{after}"
    );
    ws.assert_no_changes();
    let (code, out, err) = run(&ws, &["fmt", "--check"]);
    assert_eq!(code, 0, "imported tables are in the canonical layout:\n{out}\n{err}");
    let (code, out, _) = run(&ws, &["plan", "--json"]);
    assert_eq!(code, 0);
    let doc = assert_valid_plan_json(&out);
    assert!(
        doc["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["action"] == "no-op"),
        "{out}"
    );

    // Importing a declared instance is refused, and --all finds nothing more.
    let (code, _, err) = run(&ws, &["import", "--domain", "bob.example.com", "--write"]);
    assert_eq!(code, 1);
    assert!(err.contains("already declared"), "{err}");
    let (code, out, err) = run(&ws, &["import", "--all"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // An unknown domain is an error that says so.
    let (code, _, err) = run(&ws, &["import", "--domain", "nobody.example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("no instance nobody.example.com"), "{err}");
}

#[test]
fn import_one_domain_then_show() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst("alice.example.com", FULL));
    ws.apply_ok();
    write_stack_instance(
        &ws,
        "carol.example.com",
        json!({"context": "pro"}),
        json!({"email": "c@x"}),
    );
    ws.write_config("", &inst("alice.example.com", FULL));
    let (code, out, err) = run(&ws, &["import", "--domain", "Carol.Example.com", "--write"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.is_empty(), "--write prints nothing on stdout: {out}");
    ws.assert_no_changes();

    // show, text and JSON; an alias works too.
    let alice = instance_doc(&ws, "alice.example.com").unwrap();
    let (code, out, err) = run(&ws, &["show", "alice.example.org"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("instance \"alice.example.com\""), "{out}");
    assert!(out.contains("databases: 16 of 16 present"), "{out}");
    assert!(out.contains("email = \"alice@example.com\""), "{out}");
    assert!(out.contains("register_token") && out.contains("not shown"), "{out}");
    let (code, out, err) = run(&ws, &["show", "alice.example.com", "--json"]);
    assert_eq!(code, 0, "{err}");
    for k in ["register_token", "session_secret", "oauth_secret", "cli_secret"] {
        assert!(!out.contains(alice[k].as_str().unwrap()), "secret {k} printed");
    }
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["domain"], "alice.example.com");
    assert_eq!(doc["db_prefix"], instance_prefix("alice.example.com"));
    assert_eq!(doc["instance_doc"]["blocking_reason"], "PAYMENT_FAILED");
    assert_eq!(doc["settings"]["offer"], "premium");
    assert_eq!(doc["databases"]["missing"], json!([]));
    assert_eq!(doc["folder"]["exists"], true);
    assert_eq!(doc["default_dirs"][0]["path"], "/Administratif");
    assert_eq!(doc["default_dirs"][0]["folder"], true);
    assert!(!doc["default_dirs"][0]["doc_id"].is_null());
    assert!(doc["instance_doc"].get("session_secret").is_none());
    let (code, _, err) = run(&ws, &["show", "nobody.example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("no instance nobody.example.com"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Renames

fn rename_moves_the_folder_keeps_the_prefix_and_is_a_no_op_afterwards(b: Backend) {
    let ws = Workspace::new(b);
    let old = "old.example.com";
    let new = "new.example.com";
    ws.write_config("prune = true", &inst(old, "locale = \"en\"\nemail = \"a@example.com\""));
    ws.apply_ok();
    std::fs::write(folder(&ws, old).join("Photos/cat.jpg"), b"meow").unwrap();
    let id = instance_doc(&ws, old).unwrap()["_id"].clone();

    // Renamed, with another change in the same plan; prune = true must not destroy anything.
    ws.write_config(
        "prune = true",
        &inst(
            new,
            &format!("renamed_from = \"{old}\"\nlocale = \"en\"\nemail = \"b@example.com\""),
        ),
    );
    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains(&format!("~ {old} => {new} (renamed)")), "{out}");
    assert!(out.contains(&format!("+ old_domain: \"{old}\"")), "{out}");
    assert!(out.contains("settings.email"), "{out}");
    assert!(out.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{out}");
    let (_, json_out, _) = run(&ws, &["plan", "--json"]);
    let doc = assert_valid_plan_json(&json_out);
    let i = &doc["instances"][0];
    assert_eq!(
        (i["domain"].as_str(), i["renamed_from"].as_str()),
        (Some(new), Some(old))
    );
    let (_, md, _) = run(&ws, &["plan", "--markdown"]);
    assert!(md.contains(&format!("`{old}` => `{new}`")), "{md}");

    // The apply report says "renamed": `renamed_from` next to `action`, valid against the schema.
    let (code, out, err) = run(&ws, &["apply", "--auto-approve", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/apply.schema.json")).unwrap()).unwrap();
    let errors: Vec<String> = jsonschema::validator_for(&schema)
        .unwrap()
        .iter_errors(&doc)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{out}");
    let r = &doc["result"]["instances"][0];
    assert_eq!(
        (r["domain"].as_str(), r["action"].as_str(), r["renamed_from"].as_str()),
        (Some(new), Some("update"), Some(old)),
        "{out}"
    );
    let d = instance_doc(&ws, new).expect("renamed doc");
    assert_eq!(d["_id"], id, "same doc");
    assert_eq!(d["old_domain"], old);
    assert_eq!(
        d["prefix"],
        instance_prefix(old),
        "the prefix stays, so the databases do"
    );
    assert!(instance_doc(&ws, old).is_none());
    let p = instance_prefix(old);
    let dbs = block_on(ws.store().all_dbs(&format!("{p}/"), &format!("{p}0"))).unwrap();
    assert_eq!(dbs.len(), layout::INSTANCE_DOCTYPES.len());
    let settings = block_on(
        ws.store()
            .get_doc(&db_name(&p, layout::SETTINGS), layout::SETTINGS_DOC_ID),
    )
    .unwrap()
    .unwrap();
    assert_eq!(settings["email"], "b@example.com");
    assert!(!folder(&ws, old).exists());
    assert_eq!(std::fs::read(folder(&ws, new).join("Photos/cat.jpg")).unwrap(), b"meow");
    // Done: a no-op while renamed_from stays in the file.
    ws.assert_no_changes();

    // Refused: renaming onto a domain that exists.
    ws.write_config("", &format!("{}{}", inst(new, ""), inst("other.example.com", "")));
    ws.apply_ok();
    ws.write_config("", &inst(new, "renamed_from = \"other.example.com\""));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = run(&ws, &["apply", "--auto-approve"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    assert!(instance_doc(&ws, "other.example.com").is_some(), "nothing applied");
}

#[test]
fn rename_stopped_after_the_folder_move_is_finished_by_the_next_plan() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst("a.example", ""));
    ws.apply_ok();
    // An apply that moved the folder, then died before writing the doc.
    std::fs::rename(folder(&ws, "a.example"), folder(&ws, "b.example")).unwrap();
    ws.write_config("", &inst("b.example", "renamed_from = \"a.example\""));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("~ a.example => b.example (renamed)"), "{out}");
    assert!(out.contains("already moved"), "{out}");
    assert!(!out.contains("missing folder"), "{out}");
    let out = ws.apply_ok();
    assert!(out.contains("b.example: renamed from a.example."), "{out}");
    assert_eq!(instance_doc(&ws, "b.example").unwrap()["old_domain"], "a.example");
    assert!(folder(&ws, "b.example").join(".cozy_trash").is_dir());
    ws.assert_no_changes();
}

#[test]
fn rename_of_nothing_and_renamed_from_validation() {
    let ws = Workspace::new(Backend::Embedded);
    ws.write_config("", &inst("b.example", "renamed_from = \"a.example\""));
    let (code, _, err) = ws.plan();
    assert_eq!(code, 1);
    assert!(err.contains("neither") && err.contains("remove renamed_from"), "{err}");
    ws.write_config("", &inst("b.example", "renamed_from = \"a b\""));
    let (code, out, _) = run(&ws, &["validate", "--json"]);
    assert_eq!(code, 1);
    let diags: Value = serde_json::from_str(&out).unwrap();
    let d = &diags[0];
    assert!(d["message"].as_str().unwrap().contains("renamed_from"), "{d}");
    assert_eq!(d["line"], 6, "{d}");
    assert_eq!(d["column"], 16, "{d}");
    ws.write_config(
        "",
        &format!(
            "{}{}",
            inst("b.example", "renamed_from = \"a.example\""),
            inst("a.example", "")
        ),
    );
    let (code, _, err) = ws.plan();
    assert_eq!(code, 1);
    assert!(err.contains("also declared"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Locale change with rename_default_dirs

fn locale_change_renames_default_dirs_and_descendants(b: Backend) {
    let ws = Workspace::new(b);
    let d = "alice.example.com";
    ws.write_config("", &inst(d, "locale = \"en\"\nrename_default_dirs = true"));
    ws.apply_ok();
    let files = db_name(&instance_prefix(d), layout::FILES);
    let store = ws.store();
    let admin = block_on(store.find_by_path(&files, cozyform::store::PathSelector::Eq("/Administrative")))
        .unwrap()
        .pop()
        .expect("Administrative dir doc");
    let admin_id = admin["_id"].as_str().unwrap().to_string();
    // Descendants written the way cozy-stack writes them: directories with a path, a file without.
    let now = "2026-07-02T16:21:15.123456789+02:00";
    let dir = |id: &str, name: &str, parent: &str, path: &str| {
        json!({"_id": id, "type": "directory", "name": name, "dir_id": parent, "path": path,
               "created_at": now, "updated_at": now})
    };
    block_on(store.bulk_docs(
        &files,
        &[
            dir("d-taxes", "Taxes", &admin_id, "/Administrative/Taxes"),
            dir("d-2025", "2025", "d-taxes", "/Administrative/Taxes/2025"),
            dir("d-other", "AdministrativeX", layout::ROOT_DIR_ID, "/AdministrativeX"),
            json!({"_id": "f-1", "type": "file", "name": "bill.pdf", "dir_id": "d-2025", "size": "3",
                   "created_at": now, "updated_at": now, "executable": false, "trashed": false, "encrypted": false}),
        ],
    ))
    .unwrap();
    // More descendants than one page of the descendant query (256).
    let many: Vec<Value> = (0..300)
        .map(|n| {
            dir(
                &format!("d-many-{n:03}"),
                &format!("{n:03}"),
                "d-taxes",
                &format!("/Administrative/Taxes/{n:03}"),
            )
        })
        .collect();
    block_on(store.bulk_docs(&files, &many)).unwrap();
    let inst_dir = folder(&ws, d);
    std::fs::create_dir_all(inst_dir.join("Administrative/Taxes/2025")).unwrap();
    std::fs::write(inst_dir.join("Administrative/Taxes/2025/bill.pdf"), b"pdf").unwrap();
    std::fs::create_dir_all(inst_dir.join("AdministrativeX")).unwrap();

    ws.write_config("", &inst(d, "locale = \"fr\"\nrename_default_dirs = true"));
    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("~ locale: \"en\" -> \"fr\""), "{out}");
    assert!(
        out.contains("~ directory \"/Administrative\" => \"/Administratif\""),
        "{out}"
    );
    assert!(!out.contains("Photos\" =>"), "Photos is Photos in both locales:\n{out}");
    let (_, json_out, _) = run(&ws, &["plan", "--json"]);
    let doc = assert_valid_plan_json(&json_out);
    assert_eq!(
        doc["instances"][0]["dir_renames"],
        json!([{"kind": "administrative", "from": "/Administrative", "to": "/Administratif"}])
    );
    ws.apply_ok();

    let get = |id: &str| block_on(store.get_doc(&files, id)).unwrap().unwrap();
    let a = get(&admin_id);
    assert_eq!(
        (a["name"].as_str(), a["path"].as_str()),
        (Some("Administratif"), Some("/Administratif"))
    );
    assert_ne!(a["updated_at"], admin["updated_at"]);
    assert_eq!(get("d-taxes")["path"], "/Administratif/Taxes");
    assert_eq!(get("d-2025")["path"], "/Administratif/Taxes/2025");
    assert_eq!(get("d-2025")["name"], "2025");
    for n in [0, 255, 256, 299] {
        assert_eq!(
            get(&format!("d-many-{n:03}"))["path"],
            format!("/Administratif/Taxes/{n:03}")
        );
    }
    assert_eq!(
        get("d-other")["path"],
        "/AdministrativeX",
        "a sibling sharing the prefix is untouched"
    );
    assert!(get("f-1").get("path").is_none(), "files have no path");
    assert_eq!(
        std::fs::read(inst_dir.join("Administratif/Taxes/2025/bill.pdf")).unwrap(),
        b"pdf"
    );
    assert!(!inst_dir.join("Administrative").exists());
    assert!(inst_dir.join("AdministrativeX").is_dir());
    assert_eq!(instance_doc(&ws, d).unwrap()["locale"], "fr");
    ws.assert_no_changes();

    // Back to English without rename_default_dirs: only the locale changes.
    ws.write_config("", &inst(d, "locale = \"en\""));
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(!out.contains("directory"), "{out}");
}

#[test]
fn rename_with_a_locale_change_renames_the_default_dirs_in_the_moved_folder() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst("a.example", "locale = \"en\"\nrename_default_dirs = true"));
    ws.apply_ok();
    ws.write_config(
        "",
        &inst(
            "b.example",
            "renamed_from = \"a.example\"\nlocale = \"fr\"\nrename_default_dirs = true",
        ),
    );
    let (code, out, err) = ws.plan();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("~ a.example => b.example (renamed)"), "{out}");
    assert!(
        out.contains("~ directory \"/Administrative\" => \"/Administratif\""),
        "{out}"
    );
    ws.apply_ok();
    let d = instance_doc(&ws, "b.example").unwrap();
    assert_eq!(
        (d["locale"].as_str(), d["old_domain"].as_str()),
        (Some("fr"), Some("a.example"))
    );
    assert!(folder(&ws, "b.example").join("Administratif").is_dir());
    assert!(!folder(&ws, "b.example").join("Administrative").exists());
    assert_eq!(files_at(&ws, "a.example", "/Administratif").len(), 1);
    ws.assert_no_changes();
}

#[test]
fn default_dir_rename_stopped_after_the_disk_step_is_finished() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config("", &inst("a.example", "locale = \"en\"\nrename_default_dirs = true"));
    ws.apply_ok();
    // An apply that renamed the folder on disk, then died before updating the docs.
    let dir = folder(&ws, "a.example");
    std::fs::rename(dir.join("Administrative"), dir.join("Administratif")).unwrap();
    ws.write_config("", &inst("a.example", "locale = \"fr\"\nrename_default_dirs = true"));
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2);
    assert!(
        out.contains("~ directory \"/Administrative\" => \"/Administratif\""),
        "{out}"
    );
    ws.apply_ok();
    assert_eq!(files_at(&ws, "a.example", "/Administratif").len(), 1);
    assert!(dir.join("Administratif").is_dir() && !dir.join("Administrative").exists());
    ws.assert_no_changes();
}
