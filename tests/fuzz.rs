//! Hostile input: the config loader and validator fuzzed with proptest (arbitrary bytes, arbitrary
//! TOML, TOML generated near the real schema, mutations of valid files), the corpus under
//! `tests/fuzz/corpus/` replayed, and the big inputs (huge file, deep nesting, too many instances).
//!
//! The property: no panic, and every input gives a valid config or an error whose diagnostics all
//! carry a position inside the file (line ≥ 1 and at most one past the last line, column ≥ 1).
//!
//! `COZYFORM_FUZZ_CASES=N` sets the cases per generator (default 256); the run prints the time and
//! the number of executions. `COZYFORM_FUZZ_SAVE=1` writes every failing input to the corpus.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cozyform::config::{self, COUCHDB_KEYS, DEFAULT_KEYS, INSTANCE_KEYS, STORAGE_KEYS, TOP_KEYS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
static VALID: AtomicUsize = AtomicUsize::new(0);

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus")
}

fn env(name: &str) -> Option<String> {
    match name {
        "COUCHDB_USER" => Some("admin".into()),
        "COUCHDB_PASSWORD" => Some("pw".into()),
        _ => None,
    }
}

/// Loads `src` and checks the property; returns a description of the violation.
fn check(src: &str) -> Result<(), String> {
    EXECUTIONS.fetch_add(1, Ordering::Relaxed);
    let file = Path::new("/fuzz/instances.toml");
    let lines = src.split('\n').count().max(1);
    let result = std::panic::catch_unwind(|| config::load_str(src, file, Path::new("/fuzz"), &env));
    match result {
        Err(_) => Err("panic".into()),
        Ok(Ok(loaded)) => {
            VALID.fetch_add(1, Ordering::Relaxed);
            for d in &loaded.warnings {
                if d.line < 1 || d.column < 1 || d.line > lines + 1 {
                    return Err(format!("warning without a position in the file: {d:?}"));
                }
            }
            Ok(())
        }
        Ok(Err(e)) => {
            if e.errors().next().is_none() {
                return Err("an error without any error diagnostic".into());
            }
            for d in &e.diagnostics {
                if d.line < 1 || d.column < 1 || d.line > lines + 1 {
                    return Err(format!("diagnostic outside the file ({lines} lines): {d:?}"));
                }
                if d.file != file {
                    return Err(format!("diagnostic names another file: {d:?}"));
                }
            }
            Ok(())
        }
    }
}

fn cases() -> u32 {
    std::env::var("COZYFORM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Runs one generator; on failure saves the shrunk input to the corpus when asked, and fails.
fn fuzz(name: &str, strategy: impl Strategy<Value = String>) {
    let started = Instant::now();
    let before = EXECUTIONS.load(Ordering::Relaxed);
    let valid_before = VALID.load(Ordering::Relaxed);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |src| {
        check(&src).map_err(|e| TestCaseError::fail(format!("{e}\ninput: {src:?}")))
    });
    eprintln!(
        "fuzz {name}: {} executions in {:?} ({} valid configs, the rest errors with a position)",
        EXECUTIONS.load(Ordering::Relaxed) - before,
        started.elapsed(),
        VALID.load(Ordering::Relaxed) - valid_before
    );
    if let Err(e) = result {
        if std::env::var_os("COZYFORM_FUZZ_SAVE").is_some()
            && let proptest::test_runner::TestError::Fail(_, src) = &e
        {
            let path = corpus_dir().join(format!("crash-{name}-{:x}.toml", md5_like(src)));
            std::fs::write(&path, src).unwrap();
            eprintln!("saved {}", path.display());
        }
        panic!("fuzz {name}: {e}");
    }
}

fn md5_like(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

// ------------------------------------------------------------------ generators

fn key() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = TOP_KEYS
        .iter()
        .chain(COUCHDB_KEYS)
        .chain(STORAGE_KEYS)
        .chain(INSTANCE_KEYS)
        .chain(DEFAULT_KEYS)
        .copied()
        .collect();
    prop_oneof![
        4 => proptest::sample::select(known).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
        1 => "\"[^\"\\\\\n]{0,12}\"",
    ]
}

fn scalar() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[ -~]{0,20}".prop_map(|s| format!("{:?}", s)),
        "[\\PC]{0,12}".prop_map(|s| format!("{:?}", s)),
        proptest::sample::select(vec![
            "\"en\"",
            "\"fr\"",
            "\"5GB\"",
            "\"0\"",
            "\"5XB\"",
            "\"-1\"",
            "\"present\"",
            "\"absent\"",
            "\"PAYMENT_FAILED\"",
            "\"http://127.0.0.1:5984/\"",
            "\"http://u:p@h/\"",
            "\"fs\"",
            "\"/\"",
            "\"..\"",
            "\"\"",
            "1979-05-27T07:32:00Z",
            "inf",
            "nan",
            "[]",
            "{}",
            "\"a.example.com\"",
            "\"a/../b\"",
        ])
        .prop_map(str::to_string),
    ]
    .boxed()
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                let parts: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", parts.join(", "))
            }),
        ]
    })
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}\\.example\\.com",
        "[a-z]{1,8}\\.example\\.com:[0-9]{1,5}",
        "[\\PC]{0,16}",
        proptest::sample::select(vec![
            "..",
            "/etc",
            "a/b",
            "a\u{0}b",
            "",
            "ÉCOLE.fr",
            "xn--",
            "-a.com",
            " a.com"
        ])
        .prop_map(str::to_string),
    ]
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[couchdb]".to_string()),
        Just("[storage]".to_string()),
        Just("[defaults]".to_string()),
        Just("[instances]".to_string()),
        domain().prop_map(|d| format!("[instances.{:?}]", d)),
        domain().prop_map(|d| format!("[instances.{:?}.settings]", d)),
        key().prop_map(|k| format!("[{k}]")),
        key().prop_map(|k| format!("[[{k}]]")),
    ]
}

/// A TOML file near the real schema: sections with known and unknown keys, random values.
fn schema_toml() -> impl Strategy<Value = String> {
    let section = (header(), proptest::collection::vec((key(), value()), 0..6));
    (
        proptest::collection::vec((key(), value()), 0..3),
        proptest::collection::vec(section, 0..6),
    )
        .prop_map(|(top, sections)| {
            let mut s = String::new();
            for (k, v) in top {
                s.push_str(&format!("{k} = {v}\n"));
            }
            for (h, kvs) in sections {
                s.push_str(&h);
                s.push('\n');
                for (k, v) in kvs {
                    s.push_str(&format!("{k} = {v}\n"));
                }
            }
            s
        })
}

/// Valid files (examples and corpus) with random edits.
fn mutated() -> impl Strategy<Value = String> {
    let mut seeds: Vec<String> = vec![
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("instances.toml.example")).unwrap(),
    ];
    for e in std::fs::read_dir(corpus_dir()).unwrap().flatten() {
        if let Ok(s) = std::fs::read_to_string(e.path()) {
            seeds.push(s);
        }
    }
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), any::<char>()).prop_map(|(i, c)| (0u8, i, c)),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(|(i, c)| (1u8, i, c)),
        (
            any::<prop::sample::Index>(),
            proptest::sample::select(vec!['[', ']', '"', '=', '\n', '#', '\'', '{', ','])
        )
            .prop_map(|(i, c)| (2u8, i, c)),
    ];
    (proptest::sample::select(seeds), proptest::collection::vec(edit, 1..8)).prop_map(|(seed, edits)| {
        let mut chars: Vec<char> = seed.chars().collect();
        for (op, i, c) in edits {
            if chars.is_empty() {
                chars.push(c);
                continue;
            }
            let at = i.index(chars.len());
            match op {
                0 => chars[at] = c,
                1 => {
                    chars.remove(at);
                }
                _ => chars.insert(at, c),
            }
        }
        chars.into_iter().collect()
    })
}

// ------------------------------------------------------------------ tests

#[test]
fn fuzz_arbitrary_bytes() {
    fuzz(
        "bytes",
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    );
}

#[test]
fn fuzz_arbitrary_toml() {
    // Any TOML document the toml crate can print: random tables of random values.
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        any::<bool>().prop_map(toml::Value::Boolean),
        "[\\PC]{0,16}".prop_map(toml::Value::String),
        any::<f64>().prop_map(toml::Value::Float),
    ];
    let v = leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    });
    let doc = proptest::collection::btree_map(key(), v, 0..6)
        .prop_map(|m| toml::to_string(&toml::Value::Table(m.into_iter().collect())).unwrap_or_default());
    fuzz("toml", doc);
}

#[test]
fn fuzz_toml_near_the_schema() {
    fuzz("schema", schema_toml());
}

#[test]
fn fuzz_mutations_of_valid_files() {
    fuzz("mutations", mutated());
}

/// Every file of the corpus: the property holds (a regression test for each crash found).
#[test]
fn corpus_replays() {
    let mut n = 0;
    for e in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let src = String::from_utf8_lossy(&bytes);
        check(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 10, "the corpus has only {n} files");
}

#[test]
fn deeply_nested_toml_is_an_error_with_a_position() {
    for depth in [1_000usize, 100_000] {
        for (open, close) in [("[", "]"), ("{ a = ", " }")] {
            let src = format!("x = {}1{}\n", open.repeat(depth), close.repeat(depth));
            // A thread with a small stack: recursion must be bounded, not lucky.
            let handle = std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || check(&src))
                .unwrap();
            handle.join().expect("no stack overflow").unwrap();
        }
    }
}

#[test]
fn huge_config_is_refused_before_parsing() {
    let src = "#".repeat(config::parse::MAX_CONFIG_BYTES + 1);
    let e = config::load_str(&src, Path::new("/x.toml"), Path::new("/"), &env)
        .err()
        .unwrap();
    assert!(e.to_string().contains("at most"), "{e}");
    // On disk, the size is checked before reading (a sparse file costs nothing).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("instances.toml");
    std::fs::File::create(&p)
        .unwrap()
        .set_len(config::parse::MAX_CONFIG_BYTES as u64 * 16)
        .unwrap();
    let e = config::load(&p).err().unwrap();
    assert!(e.to_string().contains("at most"), "{e}");
}

#[test]
fn too_many_instances_is_a_clear_error() {
    too_many(config::parse::MAX_INSTANCES + 1);
}

/// A million instances, generated in memory: refused by the scan before any parsing.
#[test]
fn a_million_instances_is_a_clear_error() {
    too_many(1_000_000);
}

fn too_many(n: usize) {
    let mut src = String::with_capacity(n * 24);
    for i in 0..n {
        src.push_str(&format!("[instances.\"i{i}.ex.com\"]\n"));
    }
    let e = config::load_str(&src, Path::new("/x.toml"), Path::new("/"), &env)
        .err()
        .unwrap();
    assert!(e.to_string().contains("at most"), "{e}");
}
