//! Config validation through the real binary: every error of the config stage is reported by
//! `validate`, `plan` and `apply` with exit 1, its `file:line:column`, its message and its hint; all
//! errors of a file come in one run; `validate --json` gives them as data; nothing is written.

mod common;

use common::*;
use serde_json::Value;

/// An expected error: (line, column, part of the message, the whole hint).
type Expected<'a> = (usize, usize, &'a str, &'a str);

/// Runs the binary with `args`; returns (exit code, stdout, stderr).
fn run(ws: &Workspace, args: &[&str]) -> (i32, String, String) {
    let out = ws.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The diagnostics of a human-readable stderr, one block each, starting at `error:`/`warning:`.
fn blocks(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("error: ") || line.starts_with("warning: ") || out.is_empty() {
            out.push(String::new());
        }
        let last = out.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
    }
    out
}

fn error_blocks(stderr: &str) -> Vec<String> {
    blocks(stderr)
        .into_iter()
        .filter(|b| b.starts_with("error: "))
        .collect()
}

/// Asserts that `stderr` reports exactly the `expected` errors, in file order.
fn assert_reported(ws: &Workspace, what: &str, stderr: &str, expected: &[Expected]) {
    let errors = error_blocks(stderr);
    assert_eq!(
        errors.len(),
        expected.len(),
        "{what}: expected {} errors:\n{stderr}",
        expected.len()
    );
    let file = ws.config_path();
    for ((line, col, msg, hint), block) in expected.iter().zip(&errors) {
        let first = block.lines().next().unwrap();
        assert!(
            first.contains(msg),
            "{what}: expected message {msg:?} in {first:?}:\n{stderr}"
        );
        let at = format!("--> {}:{line}:{col}\n", file.display());
        assert!(block.contains(&at), "{what}: expected {at:?} for {msg:?}:\n{block}");
        let hint = format!("= hint: {hint}\n");
        assert!(block.contains(&hint), "{what}: expected {hint:?} for {msg:?}:\n{block}");
    }
}

/// Asserts that nothing was written next to the config: no embedded store, no fs_root.
fn assert_nothing_written(ws: &Workspace) {
    assert!(!ws.path().join(".cozyform").exists(), ".cozyform/ was created");
    assert!(!ws.fs_root().exists(), "the fs_root was created");
    let mut names: Vec<String> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["instances.toml"], "files appeared next to the config");
}

/// The JSON findings of `validate --json` (exit 1 expected).
fn json_findings(ws: &Workspace) -> Vec<Value> {
    let (code, out, err) = run(ws, &["validate", "--json"]);
    assert_eq!(code, 1, "validate --json:\n{out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("validate --json is not a JSON list ({e}):\n{out}"))
}

/// Writes `src` as the config of an embedded workspace, checks that `validate`, `plan` and `apply`
/// all fail with exactly the `expected` errors, that `validate --json` lists them, and that nothing
/// was written. Returns the workspace and the stderr of `validate`.
fn check(src: &str, expected: &[Expected]) -> (Workspace, String) {
    let ws = Workspace::new(Backend::Embedded);
    std::fs::write(ws.config_path(), src).unwrap();
    let err = check_in(&ws, expected);
    (ws, err)
}

/// [`check`] on an existing workspace whose config is written.
fn check_in(ws: &Workspace, expected: &[Expected]) -> String {
    let n = expected.len();
    let summary = format!("the configuration has {n} error{}", if n == 1 { "" } else { "s" });
    let mut validate_err = String::new();
    for args in [
        &["validate"][..],
        &["plan"],
        &["plan", "--detailed-exitcode"],
        &["apply", "--auto-approve"],
    ] {
        let what = args.join(" ");
        let (code, out, err) = run(ws, args);
        assert_eq!(code, 1, "{what} must exit 1:\n{out}\n{err}");
        assert_eq!(out, "", "{what}: nothing on stdout:\n{out}");
        assert_reported(ws, &what, &err, expected);
        if args[0] == "validate" {
            assert!(!err.contains("is valid"), "{err}");
            validate_err = err;
        } else {
            assert!(
                err.trim_end().ends_with(&summary),
                "{what}: expected {summary:?}:\n{err}"
            );
        }
    }

    let findings = json_findings(ws);
    let errors: Vec<&Value> = findings.iter().filter(|f| f["severity"] == "error").collect();
    assert_eq!(errors.len(), n, "{findings:#?}");
    for ((line, col, msg, hint), f) in expected.iter().zip(errors) {
        assert_eq!(f["file"].as_str(), Some(ws.config_path().to_str().unwrap()), "{f:#}");
        assert_eq!(
            (f["line"].as_u64(), f["column"].as_u64()),
            (Some(*line as u64), Some(*col as u64)),
            "{f:#}"
        );
        assert!(f["message"].as_str().unwrap().contains(msg), "{f:#}");
        assert_eq!(f["hint"].as_str(), Some(*hint), "{f:#}");
    }
    assert_nothing_written(ws);
    validate_err
}

const DOMAIN_HINT: &str =
    "a domain is a host name with an optional :port, without spaces, slashes or any of ,;&?#@|='\"";
const QUOTA_HINT: &str =
    "write a size such as disk_quota = \"5GB\" (5e9 bytes) or \"5GiB\" (5·2³⁰ bytes); \"0\" means unlimited";
const URL_HINT: &str = "use a URL such as url = \"http://127.0.0.1:5984/\"";

// ---------------------------------------------------------------------------------------------
// Baseline

#[test]
fn valid_file_passes_and_writes_nothing() {
    let ws = Workspace::new(Backend::Embedded);
    std::fs::write(ws.config_path(), "[instances.\"alice.example.com\"]\nlocale = \"fr\"\n").unwrap();
    let (code, out, err) = run(&ws, &["validate"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains(&format!("The configuration {} is valid.", ws.config_path().display())),
        "{err}"
    );
    let (code, out, _) = run(&ws, &["validate", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap(), Vec::<Value>::new());
    assert_nothing_written(&ws);
}

// ---------------------------------------------------------------------------------------------
// Keys and types

#[test]
fn unknown_key_suggests_the_closest() {
    let (ws, err) = check(
        "[instances.\"alice.example.com\"]\nlocle = \"fr\"\n",
        &[(
            2,
            1,
            "unknown key \"locle\" in instance \"alice.example.com\"",
            "did you mean \"locale\"?",
        )],
    );
    // The source line and a caret under the key.
    assert!(err.contains("2 | locle = \"fr\"\n"), "{err}");
    assert!(err.contains("  | ^^^^^\n"), "{err}");
    drop(ws);
}

#[test]
fn unknown_keys_in_every_table() {
    check(
        "prun = true\n[storage]\nfs_rot = \"fs\"\n[defaults]\nstate = \"absent\"\n[instances.\"a.example.com\"]\ncolour = \"red\"\n",
        &[
            (1, 1, "unknown key \"prun\" in the top level", "did you mean \"prune\"?"),
            (3, 1, "unknown key \"fs_rot\" in [storage]", "did you mean \"fs_root\"?"),
            (
                5,
                1,
                "unknown key \"state\" in [defaults]",
                "the keys allowed here are: locale, email, public_name, phone, tz, context, disk_quota, settings, blocked, blocking_reason, prevent_destroy, rename_default_dirs, apps, apps_prune, app, konnector",
            ),
            (
                7,
                1,
                "unknown key \"colour\" in instance \"a.example.com\"",
                "the keys allowed here are: state, renamed_from, locale, email, public_name, phone, tz, context, disk_quota, domain_aliases, uuid, settings, blocked, blocking_reason, prevent_destroy, rename_default_dirs, apps, apps_add, apps_remove, apps_prune, app, konnector",
            ),
        ],
    );
}

#[test]
fn wrong_types() {
    check(
        "prune = 1\n\
         [instances.\"a.example.com\"]\n\
         locale = 3\n\
         blocked = \"yes\"\n\
         domain_aliases = \"a.example.org\"\n\
         settings = \"premium\"\n\
         disk_quota = 1.5\n\
         prevent_destroy = 0\n\
         state = false\n",
        &[
            (
                1,
                9,
                "`prune` must be a boolean, found an integer",
                "for example: prune = true",
            ),
            (
                3,
                10,
                "`locale` must be a string, found an integer",
                "for example: locale = \"…\"",
            ),
            (
                4,
                11,
                "`blocked` must be a boolean, found a string",
                "for example: blocked = true",
            ),
            (
                5,
                18,
                "`domain_aliases` must be an array of strings, found a string",
                "for example: domain_aliases = [\"alice.example.org\"]",
            ),
            (
                6,
                12,
                "`settings` must be a table of strings, found a string",
                "for example: settings = { offer = \"premium\" }",
            ),
            (
                7,
                14,
                "`disk_quota` must be a string or an integer, found a float",
                "for example: disk_quota = \"5GB\"",
            ),
            (
                8,
                19,
                "`prevent_destroy` must be a boolean, found an integer",
                "for example: prevent_destroy = true",
            ),
            (
                9,
                9,
                "`state` must be a string, found a boolean",
                "for example: state = \"…\"",
            ),
        ],
    );
}

#[test]
fn tables_of_the_wrong_type() {
    check(
        "couchdb = \"http://127.0.0.1:5984/\"\nstorage = 1\ninstances = [\"a.example.com\"]\n",
        &[
            (
                1,
                1,
                "`couchdb` must be a table, found a string",
                "write it as [couchdb] followed by its keys",
            ),
            (
                2,
                1,
                "`storage` must be a table, found an integer",
                "write it as [storage] followed by its keys",
            ),
            (
                3,
                1,
                "`instances` must be a table, found an array",
                "write it as [instances] followed by its keys",
            ),
        ],
    );
}

#[test]
fn alias_that_is_not_a_string() {
    check(
        "[instances.\"a.example.com\"]\ndomain_aliases = [\"b.example.com\", 2]\n",
        &[(
            2,
            36,
            "domain_aliases of instance \"a.example.com\" must hold strings",
            "for example: domain_aliases = [\"alice.example.org\"]",
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Values

#[test]
fn bad_disk_quota() {
    check(
        "[instances.\"a.example.com\"]\n\
         disk_quota = \"5XB\"\n\
         [instances.\"b.example.com\"]\n\
         disk_quota = -1\n\
         [instances.\"c.example.com\"]\n\
         disk_quota = \"GB\"\n\
         [defaults]\n\
         disk_quota = \"99999999EB\"\n",
        &[
            (
                2,
                14,
                "bad disk_quota \"5XB\" in instance \"a.example.com\": unknown unit \"xb\"",
                QUOTA_HINT,
            ),
            (
                4,
                14,
                "disk_quota of instance \"b.example.com\" is negative",
                QUOTA_HINT,
            ),
            (
                6,
                14,
                "bad disk_quota \"GB\" in instance \"c.example.com\": \"GB\" does not start with a number",
                QUOTA_HINT,
            ),
            (
                8,
                14,
                "bad disk_quota \"99999999EB\" in [defaults]: \"99999999EB\" is too large",
                QUOTA_HINT,
            ),
        ],
    );
}

#[test]
fn empty_string_values() {
    check(
        "[instances.\"a.example.com\"]\n\
         email = \"\"\n\
         locale = \"  \"\n\
         blocked = true\n\
         blocking_reason = \"\"\n\
         [defaults]\n\
         tz = \"\"\n",
        &[
            (
                2,
                9,
                "`email` is empty",
                "remove the key to leave it alone, or set a value such as email = \"alice@example.com\"",
            ),
            (
                3,
                10,
                "`locale` is empty",
                "remove the key to leave it alone, or set a value such as locale = \"en\"",
            ),
            (
                5,
                19,
                "`blocking_reason` is empty",
                "use one of LOGIN_FAILED, PAYMENT_FAILED, IMPORTING, MOVING, UNKNOWN",
            ),
            (
                7,
                6,
                "`tz` is empty",
                "remove the key to leave it alone, or set a value such as tz = \"Europe/Paris\"",
            ),
        ],
    );
}

#[test]
fn bad_state_value() {
    check(
        "[instances.\"a.example.com\"]\nstate = \"gone\"\n",
        &[(
            2,
            9,
            "state must be \"present\" or \"absent\", not \"gone\"",
            "use state = \"absent\" to destroy the instance",
        )],
    );
}

#[test]
fn blocking_reason_without_blocked() {
    check(
        "[instances.\"a.example.com\"]\n\
         blocking_reason = \"PAYMENT_FAILED\"\n\
         [instances.\"b.example.com\"]\n\
         blocked = false\n\
         blocking_reason = \"LOGIN_FAILED\"\n",
        &[
            (
                2,
                19,
                "instance \"a.example.com\" has blocking_reason but is not blocked",
                "add blocked = true, or remove blocking_reason",
            ),
            (
                5,
                19,
                "instance \"b.example.com\" has blocking_reason but is not blocked",
                "add blocked = true, or remove blocking_reason",
            ),
        ],
    );
}

#[test]
fn blocking_reason_in_defaults_without_blocked() {
    check(
        "[defaults]\nblocking_reason = \"MOVING\"\n[instances.\"a.example.com\"]\n",
        &[(
            2,
            19,
            "[defaults] has blocking_reason but not blocked = true",
            "add blocked = true to [defaults], or set blocking_reason on the blocked instances",
        )],
    );
}

#[test]
fn blocking_reason_in_defaults_is_reported_once_for_many_instances() {
    check(
        "[defaults]\nblocking_reason = \"MOVING\"\n[instances.\"a.example.com\"]\n[instances.\"b.example.com\"]\n",
        &[(
            2,
            19,
            "[defaults] has blocking_reason but not blocked = true",
            "add blocked = true to [defaults], or set blocking_reason on the blocked instances",
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Domains and aliases

#[test]
fn domain_declared_twice_differing_in_case() {
    let (_ws, err) = check(
        "[instances.\"alice.example.com\"]\nlocale = \"fr\"\n[instances.\"Alice.Example.COM\"]\n",
        &[(
            3,
            12,
            "instance \"alice.example.com\" is declared twice (first at line 1)",
            "keep one of the two declarations",
        )],
    );
    // The normalization is reported too, as a warning.
    assert!(
        err.contains("warning: domain \"Alice.Example.COM\" is normalized to \"alice.example.com\""),
        "{err}"
    );
}

#[test]
fn domain_declared_twice_verbatim_is_a_toml_error() {
    check(
        "[instances.\"a.example.com\"]\n[instances.\"b.example.com\"]\n[instances.\"a.example.com\"]\n",
        &[(
            3,
            12,
            "invalid TOML: duplicate key",
            "each key, and each instance domain, may be declared only once",
        )],
    );
}

#[test]
fn invalid_domain_characters() {
    check(
        "[instances.\"a b.example.com\"]\n[instances.\"a/b.example.com\"]\n[instances.\"bob@example.com\"]\n[instances.\"x.example.com\"]\n",
        &[
            (
                1,
                12,
                "invalid domain \"a b.example.com\": the domain contains the illegal character ' '",
                DOMAIN_HINT,
            ),
            (
                2,
                12,
                "invalid domain \"a/b.example.com\": the domain contains the illegal character '/'",
                DOMAIN_HINT,
            ),
            (
                3,
                12,
                "invalid domain \"bob@example.com\": the domain contains the illegal character '@'",
                DOMAIN_HINT,
            ),
        ],
    );
}

#[test]
fn domain_with_a_leading_dot() {
    check(
        "[instances.\".example.com\"]\n[instances.\"..\"]\n",
        &[
            (
                1,
                12,
                "invalid domain \".example.com\": the domain starts with a dot",
                DOMAIN_HINT,
            ),
            (2, 12, "invalid domain \"..\": the domain is \"..\"", DOMAIN_HINT),
        ],
    );
}

#[test]
fn alias_declared_by_two_instances() {
    check(
        "[instances.\"a.example.com\"]\n\
         domain_aliases = [\"x.example.com\"]\n\
         [instances.\"b.example.com\"]\n\
         domain_aliases = [\"X.Example.com\"]\n",
        &[(
            4,
            19,
            "alias \"x.example.com\" is declared by both \"a.example.com\" and \"b.example.com\"",
            "an alias belongs to one instance only",
        )],
    );
}

#[test]
fn alias_equal_to_a_declared_instance() {
    check(
        "[instances.\"a.example.com\"]\n\
         domain_aliases = [\"b.example.com\"]\n\
         [instances.\"b.example.com\"]\n",
        &[(
            2,
            19,
            "alias \"b.example.com\" of \"a.example.com\" is also declared as an instance",
            "an alias cannot be another instance's domain",
        )],
    );
}

#[test]
fn alias_equal_to_its_own_domain_or_invalid() {
    check(
        "[instances.\"a.example.com\"]\ndomain_aliases = [\"A.example.com\", \"bad alias\"]\n",
        &[
            (
                2,
                19,
                "alias \"a.example.com\" is the domain of instance \"a.example.com\" itself",
                "remove it from domain_aliases",
            ),
            (
                2,
                36,
                "invalid alias \"bad alias\" of instance \"a.example.com\": the domain contains the illegal character ' '",
                "an alias follows the same rules as a domain",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Settings

#[test]
fn settings_value_not_a_string() {
    check(
        "[instances.\"a.example.com\"]\n\
         settings = { offer = 1, beta = true }\n\
         [instances.\"b.example.com\".settings]\n\
         level = [3]\n",
        &[
            (
                2,
                22,
                "`settings.offer` of instance \"a.example.com\" must be a string, found an integer",
                "cozy-stack stores settings values as strings: offer = \"…\"",
            ),
            (
                2,
                32,
                "`settings.beta` of instance \"a.example.com\" must be a string, found a boolean",
                "cozy-stack stores settings values as strings: beta = \"…\"",
            ),
            (
                4,
                9,
                "`settings.level` of instance \"b.example.com\" must be a string, found an array",
                "cozy-stack stores settings values as strings: level = \"…\"",
            ),
        ],
    );
}

#[test]
fn reserved_settings_keys() {
    check(
        "[instances.\"a.example.com\"]\n\
         settings = { locale = \"fr\", _secret = \"x\", email = \"a@example.com\" }\n\
         [defaults.settings]\n\
         auth_mode = \"basic\"\n",
        &[
            (
                2,
                14,
                "`settings.locale` of instance \"a.example.com\" is not stored in the settings doc",
                "cozy-stack keeps this on the instance doc; remove it from settings",
            ),
            (
                2,
                29,
                "`settings._secret` of instance \"a.example.com\" is not stored in the settings doc",
                "cozy-stack keeps this on the instance doc; remove it from settings",
            ),
            (
                2,
                44,
                "`settings.email` of instance \"a.example.com\" duplicates the `email` key",
                "set email = … directly on the instance",
            ),
            (
                4,
                1,
                "`settings.auth_mode` of [defaults] is not stored in the settings doc",
                "cozy-stack keeps this on the instance doc; remove it from settings",
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// TOML syntax

#[test]
fn toml_syntax_error_position() {
    check(
        "[instances.\"a.example.com\"]\nlocale = \"fr\"\nemail = \n",
        &[(3, 9, "invalid TOML:", "fix the TOML syntax at this position")],
    );
}

#[test]
fn toml_unterminated_string_position() {
    check(
        "[instances.\"a.example.com\"]\nlocale = \"fr\nemail = \"a@example.com\"\n",
        &[(2, 13, "invalid TOML:", "fix the TOML syntax at this position")],
    );
}

// ---------------------------------------------------------------------------------------------
// [storage] and [couchdb]

#[test]
fn fs_root_resolving_to_slash() {
    for (path, col) in [("/", 11), ("/../..", 11), ("/srv/..", 11)] {
        check(
            &format!("[storage]\nfs_root = \"{path}\"\n"),
            &[(
                2,
                col,
                "fs_root resolves to /",
                "instance folders need a dedicated directory, e.g. \"/var/lib/cozy\"",
            )],
        );
    }
}

#[test]
fn fs_root_relative_path_resolving_to_slash() {
    // The workspace is a temp dir a few levels deep: enough `..` reach /.
    let up = vec![".."; 40].join("/");
    check(
        &format!("[storage]\nfs_root = \"{up}\"\n"),
        &[(
            2,
            11,
            "fs_root resolves to /",
            "instance folders need a dedicated directory, e.g. \"/var/lib/cozy\"",
        )],
    );
}

#[test]
fn fs_root_empty() {
    check(
        "[storage]\nfs_root = \"\"\n",
        &[(
            2,
            11,
            "fs_root is empty or contains NUL",
            "set fs_root to a directory, e.g. \"/var/lib/cozy\"",
        )],
    );
}

#[test]
fn couchdb_url_not_a_url() {
    check(
        "[couchdb]\nurl = \"not a url\"\n",
        &[(
            2,
            7,
            "[couchdb] url is not a valid URL: relative URL without a base",
            URL_HINT,
        )],
    );
}

#[test]
fn couchdb_url_bad_scheme() {
    check(
        "[couchdb]\nurl = \"ftp://127.0.0.1:5984/\"\n",
        &[(
            2,
            7,
            "[couchdb] url has scheme \"ftp\"; CouchDB speaks http or https",
            URL_HINT,
        )],
    );
}

#[test]
fn couchdb_url_with_a_path() {
    check(
        "[couchdb]\nurl = \"http://127.0.0.1:5984/couch\"\n",
        &[(
            2,
            7,
            "[couchdb] url has the path \"/couch\"",
            "cozyform (like its couch_rs client) talks to CouchDB at the root of the URL; remove the path",
        )],
    );
}

#[test]
fn couchdb_without_url() {
    check(
        "[couchdb]\n[instances.\"a.example.com\"]\n",
        &[(
            1,
            2,
            "[couchdb] has no url",
            "add url = \"http://127.0.0.1:5984/\", or remove [couchdb] to use the embedded store",
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Several errors, JSON, missing file, CouchDB untouched

#[test]
fn every_error_of_a_file_is_reported_in_one_run() {
    check(
        "prune = 1\n\
         [storage]\n\
         fs_root = \"/\"\n\
         [instances.\"a b\"]\n\
         [instances.\"c.example.com\"]\n\
         disk_quota = \"5XB\"\n\
         blocking_reason = \"PAYMENT_FAILED\"\n\
         locle = \"fr\"\n\
         state = \"gone\"\n\
         settings = { offer = 1, locale = \"fr\" }\n\
         domain_aliases = [\"d.example.com\"]\n\
         [instances.\"d.example.com\"]\n\
         email = \"\"\n",
        &[
            (
                1,
                9,
                "`prune` must be a boolean, found an integer",
                "for example: prune = true",
            ),
            (
                3,
                11,
                "fs_root resolves to /",
                "instance folders need a dedicated directory, e.g. \"/var/lib/cozy\"",
            ),
            (4, 12, "invalid domain \"a b\"", DOMAIN_HINT),
            (6, 14, "bad disk_quota \"5XB\"", QUOTA_HINT),
            (
                7,
                19,
                "has blocking_reason but is not blocked",
                "add blocked = true, or remove blocking_reason",
            ),
            (8, 1, "unknown key \"locle\"", "did you mean \"locale\"?"),
            (
                9,
                9,
                "state must be \"present\" or \"absent\"",
                "use state = \"absent\" to destroy the instance",
            ),
            (
                10,
                22,
                "`settings.offer`",
                "cozy-stack stores settings values as strings: offer = \"…\"",
            ),
            (
                10,
                25,
                "`settings.locale`",
                "cozy-stack keeps this on the instance doc; remove it from settings",
            ),
            (
                11,
                19,
                "alias \"d.example.com\" of \"c.example.com\" is also declared as an instance",
                "an alias cannot be another instance's domain",
            ),
            (
                13,
                9,
                "`email` is empty",
                "remove the key to leave it alone, or set a value such as email = \"alice@example.com\"",
            ),
        ],
    );
}

#[test]
fn validate_json_lists_errors_and_warnings_with_positions() {
    let ws = Workspace::new(Backend::Embedded);
    std::fs::write(
        ws.config_path(),
        "[instances.\"a.example.com\"]\nlocale = \"de\"\nlocle = \"fr\"\n",
    )
    .unwrap();
    let findings = json_findings(&ws);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    let file = ws.config_path().to_str().unwrap().to_string();
    let warning = &findings[0];
    assert_eq!(warning["severity"], "warning");
    assert_eq!(warning["file"], file.as_str());
    assert_eq!(
        (warning["line"].as_u64(), warning["column"].as_u64()),
        (Some(2), Some(10))
    );
    assert!(
        warning["message"].as_str().unwrap().contains("locale \"de\""),
        "{warning:#}"
    );
    let error = &findings[1];
    assert_eq!(error["severity"], "error");
    assert_eq!(error["file"], file.as_str());
    assert_eq!((error["line"].as_u64(), error["column"].as_u64()), (Some(3), Some(1)));
    assert_eq!(error["message"], "unknown key \"locle\" in instance \"a.example.com\"");
    assert_eq!(error["hint"], "did you mean \"locale\"?");
    for f in &findings {
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["severity", "file", "line", "column", "message", "hint"], "{f:#}");
    }
    assert_nothing_written(&ws);
}

#[test]
fn missing_config_file_names_the_path() {
    let ws = Workspace::new(Backend::Embedded);
    let path = ws.config_path();
    assert!(!path.exists());
    for args in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let (code, out, err) = run(&ws, args);
        assert_eq!(code, 1, "{args:?}:\n{out}\n{err}");
        assert!(
            err.contains(&format!("error: cannot read the config file {}: ", path.display())),
            "{args:?}:\n{err}"
        );
        assert!(
            err.contains("= hint: pass the file with -c/--config, or create instances.toml in this directory"),
            "{err}"
        );
    }
    let (code, out, _) = run(&ws, &["validate", "--json"]);
    assert_eq!(code, 1);
    let findings: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains(path.to_str().unwrap()),
        "{findings:#?}"
    );
    let names: Vec<_> = std::fs::read_dir(ws.path()).unwrap().collect();
    assert!(names.is_empty(), "files appeared: {names:?}");
}

#[test]
fn invalid_config_never_touches_couchdb() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config(
        "",
        "[instances.\"a.example.com\"]\nlocle = \"fr\"\n[instances.\"b.example.com\"]\n",
    );
    // Lines: 1 (empty top), 2 [couchdb], 3 url, 4 [storage], 5 fs_root, 6 (empty), 7 [instances."a…"], 8 locle.
    check_in(
        &ws,
        &[(
            8,
            1,
            "unknown key \"locle\" in instance \"a.example.com\"",
            "did you mean \"locale\"?",
        )],
    );
    let store = ws.store();
    assert!(
        !block_on(store.db_exists(cozyform::layout::GLOBAL_INSTANCES_DB)).unwrap(),
        "global/instances was created"
    );
    assert_eq!(
        block_on(store.all_dbs("cozy", "cozy\u{fff0}")).unwrap(),
        Vec::<String>::new()
    );
}

#[test]

fn alias_listed_twice_by_one_instance_is_reported_as_such() {
    let ws = Workspace::new(Backend::Embedded);
    std::fs::write(
        ws.config_path(),
        "[instances.\"a.example.com\"]\ndomain_aliases = [\"x.example.com\", \"X.example.com\"]\n",
    )
    .unwrap();
    let findings = json_findings(&ws);
    let errors: Vec<&Value> = findings.iter().filter(|f| f["severity"] == "error").collect();
    assert_eq!(errors.len(), 1, "{findings:#?}");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["column"].as_u64()),
        (Some(2), Some(36))
    );
    let msg = errors[0]["message"].as_str().unwrap();
    assert!(
        !msg.contains("both \"a.example.com\" and \"a.example.com\""),
        "names the same instance twice: {msg}"
    );
    assert_ne!(errors[0]["hint"], "an alias belongs to one instance only", "{msg}");
}

#[test]

fn instance_that_is_not_a_table_hints_the_right_header() {
    let ws = Workspace::new(Backend::Embedded);
    std::fs::write(ws.config_path(), "[instances]\n\"a.example.com\" = 1\n").unwrap();
    let findings = json_findings(&ws);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(
        (findings[0]["line"].as_u64(), findings[0]["column"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("must be a table, found an integer")
    );
    assert_eq!(
        findings[0]["hint"],
        "write it as [instances.\"a.example.com\"] followed by its keys"
    );
}
