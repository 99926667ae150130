//! Every example config parses and validates, and the committed config schema is the generated one.

use std::path::Path;

fn check(path: &Path) {
    let loaded = cozyform::config::load(path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
    assert!(
        !loaded.desired.instances.is_empty(),
        "{} declares no instance",
        path.display()
    );
}

#[test]
fn every_example_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    check(&root.join("instances.toml.example"));
    let mut n = 0;
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            check(&p);
            n += 1;
        }
    }
    assert!(n >= 2, "expected at least a small and a multi-tenant example");
}

#[test]
fn committed_config_schema_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("schemas/instances.schema.json")).unwrap()).unwrap();
    assert_eq!(
        committed,
        cozyform::config::json_schema(),
        "schemas/instances.schema.json is stale: run `cargo run -- schema config > schemas/instances.schema.json`"
    );
}

#[test]
fn committed_plan_and_apply_schemas_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, generated, which) in [
        ("plan.schema.json", cozyform::render_json::plan_json_schema(), "plan"),
        ("apply.schema.json", cozyform::render_json::apply_json_schema(), "apply"),
    ] {
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("schemas").join(file)).unwrap()).unwrap();
        assert_eq!(
            committed, generated,
            "schemas/{file} is stale: run `cargo run -- schema {which} > schemas/{file}`"
        );
        let description = committed["description"].as_str().unwrap();
        assert!(
            description.contains("only add fields") && description.contains("ignore unknown keys"),
            "{file}: the description must state the compatibility rule"
        );
    }
}

#[test]
fn example_config_validates_against_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = cozyform::config::json_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for name in [
        "instances.toml.example",
        "examples/small.toml",
        "examples/multi-tenant.toml",
    ] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(value).unwrap();
        let errors: Vec<String> = validator.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

/// The README's first command: `plan && apply --auto-approve` of instances.toml.example on a fresh
/// embedded store works, and a second plan finds nothing to do. Run on a copy (the file and the
/// `file://./examples/apps` it installs) so that nothing is written into the repository.
#[test]
fn readme_first_command_works_on_a_fresh_embedded_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("instances.toml.example"), dir.path().join("instances.toml")).unwrap();
    copy_tree(&root.join("examples/apps"), &dir.path().join("examples/apps"));
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("cozyform")
            .unwrap()
            .current_dir(dir.path())
            .args(["-c", "instances.toml"])
            .args(args)
            .output()
            .unwrap()
    };
    let plan = run(&["plan"]);
    assert!(
        plan.status.success(),
        "plan failed:\n{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let apply = run(&["apply", "--auto-approve"]);
    assert!(
        apply.status.success(),
        "apply failed:\n{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let again = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "a second plan still has changes:\n{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The files we ship are fmt-clean: `cozyform fmt --check` (which writes nothing) passes on
/// instances.toml.example and on every examples/*.toml.
#[test]
fn shipped_configs_are_fmt_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("instances.toml.example")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            files.push(p);
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let out = assert_cmd::Command::cargo_bin("cozyform")
            .unwrap()
            .arg("-c")
            .arg(f)
            .args(["fmt", "--check"])
            .env("NO_COLOR", "1")
            .env_remove("COZYFORM_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} is not fmt-clean (run `cozyform -c {} fmt`):\n{}{}",
            f.display(),
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
