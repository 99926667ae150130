//! Machine-readable output through the real binary, on both backends: `plan --json` (fields, schema,
//! detailed exit code, plan errors), `apply --auto-approve --json`, no secret in any output, and
//! `plan --markdown`.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::*;
use cozyform::layout::GLOBAL_INSTANCES_DB;
use serde::Deserialize;
use serde_json::Value;

both! {
    plan_json_describes_creates_then_no_ops;
    plan_json_validates_against_the_committed_schema;
    plan_json_detailed_exitcode;
    plan_json_with_a_plan_error_prints_the_errors_and_exits_1;
    apply_json_reports_links_and_outcomes;
    json_output_holds_no_secret;
    plan_markdown_summarizes_the_plan;
}

// ---------------------------------------------------------------------------------------------
// The contract, as a consumer would read it (unknown keys ignored).

#[derive(Debug, Deserialize)]
struct PlanDoc {
    format_version: String,
    cozyform_version: String,
    summary: Summary,
    errors: Vec<String>,
    findings: Vec<Value>,
    global: Global,
    instances: Vec<Instance>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
struct Summary {
    add: usize,
    change: usize,
    destroy: usize,
    unmanaged: usize,
    no_op: usize,
}

#[derive(Debug, Deserialize)]
struct Global {
    create_database: bool,
    design_docs: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Instance {
    domain: String,
    action: String,
    reason: Option<String>,
    changes: Vec<Change>,
    repairs: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct Change {
    doc: String,
    key: String,
    before: Option<Value>,
    after: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ApplyDoc {
    format_version: String,
    cozyform_version: String,
    plan: PlanDoc,
    result: ApplyResult,
}

#[derive(Debug, Deserialize)]
struct ApplyResult {
    ok: bool,
    applied: bool,
    summary: ApplySummary,
    global_error: Option<String>,
    instances: Vec<ApplyInstance>,
}

#[derive(Debug, Deserialize)]
struct ApplySummary {
    added: usize,
    changed: usize,
    destroyed: usize,
    failed: usize,
}

#[derive(Debug, Deserialize)]
struct ApplyInstance {
    domain: String,
    action: String,
    ok: bool,
    error: Option<String>,
    registration_link: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Helpers

const TWO: &str = r#"
[instances."alice.example.com"]
locale = "fr"
email = "alice@example.com"
public_name = "Alice"

[instances."bob.example.com"]
disk_quota = "1GB"
"#;

fn run(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let out = ws.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs `plan --json` (plus `extra`), checks stdout is exactly one JSON document; returns it raw
/// and parsed.
fn plan_json(ws: &Workspace, extra: &[&str], want_code: i32) -> (Value, PlanDoc) {
    let mut args = vec!["plan", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = run(ws, &args);
    assert_eq!(code, want_code, "stdout:\n{out}\nstderr:\n{err}");
    let raw: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"));
    let doc: PlanDoc = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(doc.format_version, "1.1");
    assert_eq!(doc.cozyform_version, env!("CARGO_PKG_VERSION"));
    (raw, doc)
}

fn apply_json(ws: &Workspace) -> (String, ApplyDoc) {
    let (code, out, err) = run(ws, &["apply", "--auto-approve", "--json"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let doc: ApplyDoc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"));
    assert_eq!(doc.format_version, "1.1");
    assert_eq!(doc.cozyform_version, env!("CARGO_PKG_VERSION"));
    (out, doc)
}

fn instance<'a>(doc: &'a PlanDoc, domain: &str) -> &'a Instance {
    doc.instances
        .iter()
        .find(|i| i.domain == domain)
        .unwrap_or_else(|| panic!("{domain} is not in the plan: {doc:#?}"))
}

fn validate(schema: &Value, doc: &Value) {
    let validator = jsonschema::validator_for(schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

fn committed_schema(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn plan_json_describes_creates_then_no_ops(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);
    let (_, doc) = plan_json(&ws, &[], 0);
    assert_eq!(
        doc.summary,
        Summary {
            add: 2,
            change: 0,
            destroy: 0,
            unmanaged: 0,
            no_op: 0
        }
    );
    assert!(doc.errors.is_empty() && doc.findings.is_empty(), "{doc:#?}");
    assert!(doc.global.create_database);
    assert!(!doc.global.design_docs.is_empty());
    let alice = instance(&doc, "alice.example.com");
    assert_eq!(alice.action, "create");
    assert!(alice.reason.is_none());
    assert!(alice.repairs.is_empty());
    let locale = alice
        .changes
        .iter()
        .find(|c| c.key == "locale")
        .expect("the create lists locale");
    assert_eq!(locale.doc, "instance");
    assert_eq!(locale.before, None);
    assert_eq!(locale.after, Some(Value::from("fr")));
    let email = alice.changes.iter().find(|c| c.key == "email").expect("email");
    assert_eq!(email.doc, "settings");
    assert_eq!(email.after, Some(Value::from("alice@example.com")));
    assert_eq!(instance(&doc, "bob.example.com").action, "create");

    ws.apply_ok();
    let (_, doc) = plan_json(&ws, &[], 0);
    assert_eq!(doc.summary.no_op, 2, "{doc:#?}");
    assert_eq!(doc.summary.add + doc.summary.change + doc.summary.destroy, 0);
    assert!(!doc.global.create_database && doc.global.design_docs.is_empty());
    for i in &doc.instances {
        assert_eq!(i.action, "no-op", "{i:#?}");
        assert!(i.changes.is_empty() && i.repairs.is_empty(), "{i:#?}");
    }

    // An update lists before and after.
    ws.write_config("", &TWO.replace("locale = \"fr\"", "locale = \"en\""));
    let (_, doc) = plan_json(&ws, &[], 0);
    let alice = instance(&doc, "alice.example.com");
    assert_eq!(alice.action, "update");
    assert_eq!(alice.changes.len(), 1, "{alice:#?}");
    assert_eq!(alice.changes[0].key, "locale");
    assert_eq!(alice.changes[0].before, Some(Value::from("fr")));
    assert_eq!(alice.changes[0].after, Some(Value::from("en")));
}

fn plan_json_validates_against_the_committed_schema(backend: Backend) {
    let schema = committed_schema("plan.schema.json");
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);
    let (raw, _) = plan_json(&ws, &[], 0);
    validate(&schema, &raw);
    ws.apply_ok();
    // Drift of every kind: an update, a repair, a destroy, an unmanaged instance, a plan error.
    std::fs::remove_dir_all(ws.fs_root().join("bob.example.com")).unwrap();
    ws.write_config(
        "",
        r#"
[instances."alice.example.com"]
locale = "en"

[instances."bob.example.com"]

[instances."gone.example.com"]
state = "absent"
"#,
    );
    let (raw, doc) = plan_json(&ws, &[], 0);
    validate(&schema, &raw);
    assert_eq!(instance(&doc, "alice.example.com").action, "update");
    let bob = instance(&doc, "bob.example.com");
    assert_eq!(bob.action, "repair");
    assert!(bob.repairs.iter().any(|r| r["kind"] == "folder"), "{bob:#?}");

    let apply_schema = committed_schema("apply.schema.json");
    let (out, _) = apply_json(&ws);
    validate(&apply_schema, &serde_json::from_str(&out).unwrap());

    ws.write_config(
        "",
        "[instances.\"alice.example.com\"]\nstate = \"absent\"\nprevent_destroy = true\n",
    );
    let (raw, doc) = plan_json(&ws, &[], 1);
    validate(&schema, &raw);
    assert_eq!(instance(&doc, "alice.example.com").action, "destroy");
    assert_eq!(instance(&doc, "bob.example.com").action, "unmanaged");
    assert!(instance(&doc, "bob.example.com").reason.is_some());
}

fn plan_json_detailed_exitcode(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);
    let (_, doc) = plan_json(&ws, &["--detailed-exitcode"], 2);
    assert_eq!(doc.summary.add, 2);
    ws.apply_ok();
    let (_, doc) = plan_json(&ws, &["--detailed-exitcode"], 0);
    assert_eq!(doc.summary.no_op, 2);
}

fn plan_json_with_a_plan_error_prints_the_errors_and_exits_1(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);
    ws.apply_ok();
    ws.write_config(
        "",
        "[instances.\"alice.example.com\"]\nstate = \"absent\"\nprevent_destroy = true\n\n[instances.\"bob.example.com\"]\n",
    );
    let (code, out, err) = run(&ws, &["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let doc: PlanDoc = serde_json::from_str(&out).unwrap();
    assert_eq!(doc.errors.len(), 1, "{doc:#?}");
    assert!(doc.errors[0].contains("prevent_destroy"), "{doc:#?}");
    assert!(err.contains("prevent_destroy"), "the error is on stderr too: {err}");

    // apply --json prints the refused plan and applies nothing.
    let (code, out, err) = run(&ws, &["apply", "--auto-approve", "--json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let doc: ApplyDoc = serde_json::from_str(&out).unwrap();
    assert!(!doc.result.ok && !doc.result.applied);
    assert_eq!(doc.plan.errors.len(), 1);
    assert!(doc.result.instances.is_empty());
    let docs = block_on(ws.store().all_docs_page(GLOBAL_INSTANCES_DB, None, 1000)).unwrap();
    assert!(
        docs.iter().any(|d| d["domain"] == "alice.example.com"),
        "nothing was destroyed"
    );
}

fn apply_json_reports_links_and_outcomes(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);

    // Without --auto-approve: refused, nothing on stdout, nothing created.
    let (code, out, err) = run(&ws, &["apply", "--json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "stdout must stay empty: {out}");
    assert!(err.contains("--auto-approve"), "{err}");
    if backend == Backend::Embedded {
        assert!(!ws.path().join(".cozyform/store.sqlite").exists());
    }
    let (_, doc) = plan_json(&ws, &[], 0);
    assert_eq!(doc.summary.add, 2, "the refused apply changed nothing");

    let (_, doc) = apply_json(&ws);
    assert_eq!(doc.plan.summary.add, 2);
    assert!(doc.result.ok && doc.result.applied, "{doc:#?}");
    assert!(doc.result.global_error.is_none());
    assert_eq!(doc.result.summary.added, 2);
    assert_eq!(
        doc.result.summary.changed + doc.result.summary.destroyed + doc.result.summary.failed,
        0
    );
    assert_eq!(doc.result.instances.len(), 2);
    for i in &doc.result.instances {
        assert_eq!(i.action, "create");
        assert!(i.ok && i.error.is_none(), "{i:#?}");
        let link = i.registration_link.as_deref().expect("a registration link");
        let prefix = format!("https://{}/?registerToken=", i.domain);
        assert!(link.starts_with(&prefix), "{link}");
        let token = &link[prefix.len()..];
        assert!(
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "{link}"
        );
    }
    ws.assert_no_changes();

    // Nothing to do: ok, not applied, no instance.
    let (_, doc) = apply_json(&ws);
    assert!(doc.result.ok && !doc.result.applied, "{doc:#?}");
    assert!(doc.result.instances.is_empty());
    assert_eq!(doc.plan.summary.no_op, 2);

    // An update: no link.
    ws.write_config("", &TWO.replace("disk_quota = \"1GB\"", "disk_quota = \"2GB\""));
    let (_, doc) = apply_json(&ws);
    assert_eq!(doc.result.summary.changed, 1);
    assert_eq!(doc.result.instances.len(), 1);
    assert_eq!(doc.result.instances[0].domain, "bob.example.com");
    assert_eq!(doc.result.instances[0].action, "update");
    assert!(doc.result.instances[0].registration_link.is_none());
}

fn json_output_holds_no_secret(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);
    let mut outputs = vec![];
    let (code, out, err) = run(&ws, &["plan", "--json"]);
    assert_eq!(code, 0);
    outputs.push(("plan --json before apply", out, err));
    let (code, apply_out, apply_err) = run(&ws, &["apply", "--auto-approve", "--json"]);
    assert_eq!(code, 0, "{apply_out}\n{apply_err}");
    let (code, out, err) = run(&ws, &["plan", "--json"]);
    assert_eq!(code, 0);
    outputs.push(("plan --json after apply", out, err));
    ws.write_config("", &TWO.replace("locale = \"fr\"", "locale = \"en\""));
    for args in [
        &["plan", "--json"][..],
        &["plan", "--markdown"],
        &["plan", "--json", "--deep"],
    ] {
        let (_, out, err) = run(&ws, args);
        outputs.push((args.join(" ").leak(), out, err));
    }
    let apply: ApplyDoc = serde_json::from_str(&apply_out).unwrap();

    let docs = block_on(ws.store().all_docs_page(GLOBAL_INSTANCES_DB, None, 1000)).unwrap();
    let mut checked = 0;
    for d in docs.iter().filter(|d| d.get("domain").is_some()) {
        let domain = d["domain"].as_str().unwrap();
        let mut secrets: Vec<String> = vec![];
        for key in ["session_secret", "oauth_secret", "cli_secret", "register_token"] {
            let v = d[key].as_str().unwrap_or_else(|| panic!("{domain}: no {key} in {d:#}"));
            assert!(v.len() >= 16, "{key}: {v}");
            secrets.push(v.to_string());
            // Also as hex and unpadded base64, whichever way it could leak.
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(v) {
                secrets.push(hex::encode(&bytes));
            }
            secrets.push(v.trim_end_matches('=').to_string());
        }
        let register_hex = base64::engine::general_purpose::STANDARD
            .decode(d["register_token"].as_str().unwrap())
            .map(hex::encode)
            .unwrap_or_default();
        for (what, out, err) in &outputs {
            for s in &secrets {
                assert!(!out.contains(s.as_str()), "{what}: stdout holds a secret of {domain}");
                assert!(!err.contains(s.as_str()), "{what}: stderr holds a secret of {domain}");
            }
        }
        // apply --json: only the registration link holds the register token, and nothing else.
        let link = apply
            .result
            .instances
            .iter()
            .find(|i| i.domain == domain)
            .and_then(|i| i.registration_link.clone())
            .expect("a link");
        if !register_hex.is_empty() {
            assert!(link.ends_with(&register_hex), "{link} vs {register_hex}");
        }
        let without_link = apply_out.replace(&link, "");
        for s in &secrets {
            assert!(
                !without_link.contains(s.as_str()),
                "apply --json holds a secret of {domain} outside its link"
            );
            assert!(
                !apply_err.contains(s.as_str()),
                "apply --json stderr holds a secret of {domain}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}

fn plan_markdown_summarizes_the_plan(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write_config("", TWO);
    let (code, md, err) = run(&ws, &["plan", "--markdown", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{md}\n{err}");
    assert!(md.contains("| add | change | destroy | unmanaged |"), "{md}");
    assert!(md.contains("| 2 | 0 | 0 | 0 |"), "{md}");
    assert!(md.contains("- **+ create** `alice.example.com`"), "{md}");
    assert!(md.contains("- **+ create** `bob.example.com`"), "{md}");
    assert!(md.contains("<details><summary>Full plan</summary>"), "{md}");
    assert!(md.contains("```diff\n"), "{md}");
    assert!(md.contains("Plan: 2 to add, 0 to change, 0 to destroy."), "{md}");
    assert!(md.trim_end().ends_with("</details>"), "{md}");
    assert!(!md.contains('\x1b'), "no colors: {md}");

    ws.apply_ok();
    std::fs::remove_dir_all(ws.fs_root().join("bob.example.com")).unwrap();
    ws.write_config("", &TWO.replace("locale = \"fr\"", "locale = \"en\"\nblocked = true"));
    let (code, md, err) = run(&ws, &["plan", "--markdown", "--color", "always"]);
    assert_eq!(code, 0, "{md}\n{err}");
    assert!(md.contains("| 0 | 2 | 0 | 0 |"), "{md}");
    assert!(
        md.contains("- **~ update** `alice.example.com`: locale, blocked"),
        "{md}"
    );
    assert!(md.contains("- **! repair** `bob.example.com`"), "{md}");
    assert!(!md.contains('\x1b'), "no colors even with --color always: {md}");

    // --json and --markdown conflict.
    let (code, out, err) = run(&ws, &["plan", "--json", "--markdown"]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("cannot be used with"), "{err}");
}
