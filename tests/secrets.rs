//! Secrets never appear in any output: the CouchDB password, register tokens (except the one
//! registration link after a create), session/oauth/cli secrets.

mod common;

use common::*;
use cozyform::layout;
use serde_json::Value;

fn all_output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn no_secret_in_any_output_of_a_full_run() {
    let ws = Workspace::new(Backend::Couch);
    let url = ws.couch.as_ref().unwrap().url.clone();
    // Credentials in the URL this time, not in the environment.
    let with_creds = url.replacen("http://", &format!("http://{ADMIN_USER}:{ADMIN_PASSWORD}@"), 1);
    let config = |body: &str| {
        std::fs::write(
            ws.config_path(),
            format!("[couchdb]\nurl = \"{with_creds}\"\n[storage]\nfs_root = \"fs\"\n{body}"),
        )
        .unwrap()
    };
    config("[instances.\"a.example.com\"]\nemail = \"a@example.com\"\n[instances.\"b.example.com\"]\n");

    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let out = ws
            .cmd()
            .env_remove("COUCHDB_USER")
            .env_remove("COUCHDB_PASSWORD")
            .args(args)
            .output()
            .unwrap();
        outputs.push((args.join(" "), all_output(&out)));
        out
    };
    run(&["validate"]);
    run(&["plan", "-v"]);
    let applied = run(&["apply", "--auto-approve", "-v"]);
    assert!(applied.status.success(), "{}", all_output(&applied));
    config("[instances.\"a.example.com\"]\nemail = \"b@example.com\"\nblocked = true\n");
    run(&["plan", "--deep", "-v"]);
    run(&["apply", "--auto-approve", "-v"]);

    // Read the secrets as stored.
    let store = ws.store();
    let docs = block_on(store.all_docs_page(layout::GLOBAL_INSTANCES_DB, None, 100)).unwrap();
    let mut secrets: Vec<String> = vec![ADMIN_PASSWORD.to_string()];
    for d in docs.iter().filter(|d| d.get("domain").is_some()) {
        for k in ["session_secret", "oauth_secret", "cli_secret", "register_token"] {
            if let Some(Value::String(v)) = d.get(k) {
                secrets.push(v.clone());
            }
        }
    }
    assert!(secrets.len() >= 5, "{secrets:?}");
    let apply_out = &outputs[2].1;
    for (cmd, text) in &outputs {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "`cozyform {cmd}` printed a secret:\n{text}");
        }
    }
    // The register token appears only as the registration link, once per created instance (two).
    assert_eq!(apply_out.matches("registerToken=").count(), 2, "{apply_out}");
    for (n, (cmd, text)) in outputs.iter().enumerate() {
        if n != 2 {
            assert!(
                !text.contains("registerToken="),
                "`cozyform {cmd}` printed a registration link"
            );
        }
    }
    // -v logged requests, without credentials.
    assert!(outputs[1].1.contains("http: GET"), "{}", outputs[1].1);
    assert!(!outputs.iter().any(|(_, t)| t.contains(&format!("{ADMIN_USER}:"))));
}

#[test]
fn unreachable_server_error_names_the_url_without_credentials() {
    let ws = Workspace::new(Backend::Embedded);
    // Nothing listens on this loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        ws.config_path(),
        format!("[couchdb]\nurl = \"http://admin:hunter2-secret@127.0.0.1:{port}/\"\n[instances.\"a.example.com\"]\n"),
    )
    .unwrap();
    let out = ws.cmd().arg("plan").output().unwrap();
    let text = all_output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(text.contains("hint:"), "{text}");
}
