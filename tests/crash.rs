//! Crash safety: `cozyform apply` is killed with SIGKILL at random points while it creates,
//! modifies and destroys instances; the store (a separate server process, or the embedded SQLite
//! file) survives. Then the stuck lock is released with `force-unlock` and `apply` runs again, and
//! the state must be exactly the declared one: plan empty, no instance lost or duplicated, none
//! keeping `deleting`, no leftover database or folder, one instance doc per domain.
//!
//! Destroys write a backup first (`backup_dir`): every published archive must be complete, also
//! when the destroy was killed and resumed.
//!
//! Sometimes the recovery apply uses the *other* configuration (the operator changed their mind
//! after the crash): an interrupted create then leaves databases no instance claims, which the
//! plan must show and apply must remove (see `cozyform::orphans`).
//!
//! Runs: `COZYFORM_CRASH_RUNS` kills per backend (default 5 on CouchDB, 4 on the embedded store);
//! `COZYFORM_CRASH_SEED` replays a run (the seed is printed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

/// Instances in both configurations: they must never be recreated (secrets and a marker doc kept).
const KEPT: &[&str] = &["kept1.example.com", "kept2.example.com"];

/// Configuration A: kept1, kept2, a1, a2. Configuration B: kept1, kept2 modified, b1, b2; a1 and
/// a2 are destroyed by prune (and b1, b2 going back to A).
fn config(ws: &Workspace, which: char) {
    let body = match which {
        'A' => {
            "[instances.\"kept1.example.com\"]\nlocale = \"en\"\nemail = \"k1@example.com\"\n\
             [instances.\"kept2.example.com\"]\npublic_name = \"Kept Two\"\n\
             [instances.\"a1.example.com\"]\nemail = \"a1@example.com\"\n\
             [instances.\"a2.example.com\"]\nlocale = \"fr\"\n"
        }
        _ => {
            "[instances.\"kept1.example.com\"]\nlocale = \"fr\"\nemail = \"k1-new@example.com\"\ncontext = \"ctx\"\n\
             [instances.\"kept2.example.com\"]\npublic_name = \"Kept Two renamed\"\nblocked = true\nblocking_reason = \"PAYMENT_FAILED\"\n\
             [instances.\"b1.example.com\"]\nemail = \"b1@example.com\"\n\
             [instances.\"b2.example.com\"]\n"
        }
    };
    ws.write_config("prune = true\nmax_destroy = 10\nbackup_dir = \"backups\"\n", body);
}

fn declared(which: char) -> BTreeSet<String> {
    let list: &[&str] = match which {
        'A' => &["a1.example.com", "a2.example.com"],
        _ => &["b1.example.com", "b2.example.com"],
    };
    KEPT.iter().chain(list).map(|s| s.to_string()).collect()
}

fn instance_id(domain: &str) -> String {
    layout::derived_id("instance", domain)
}

/// The identity of the kept instances: their secret (a recreation would draw a new one).
fn identities(store: &cozyform::store::Store) -> BTreeMap<String, Value> {
    KEPT.iter()
        .map(|d| {
            let doc = block_on(store.get_doc(GLOBAL_INSTANCES_DB, &instance_id(d)))
                .unwrap()
                .unwrap_or_else(|| panic!("{d}: instance doc missing"));
            (d.to_string(), doc["oauth_secret"].clone())
        })
        .collect()
}

/// Checks every invariant of the issue against the store and the disk.
fn check_state(ws: &Workspace, which: char, ids: &BTreeMap<String, Value>, ctx: &str) {
    let store = ws.store();
    let want = declared(which);
    let docs = block_on(cozyform::actual::read_instance_docs(&store)).unwrap();
    let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
    for d in &docs {
        let domain = d["domain"]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: doc without domain: {d}"));
        *per_domain.entry(domain.to_string()).or_default() += 1;
        assert_ne!(
            d.get("deleting"),
            Some(&json!(true)),
            "{ctx}: {domain} keeps `deleting`"
        );
    }
    for (d, n) in &per_domain {
        assert_eq!(*n, 1, "{ctx}: {n} instance docs for {d}");
    }
    let have: BTreeSet<String> = per_domain.keys().cloned().collect();
    assert_eq!(have, want, "{ctx}: instances differ from the declared ones");

    let dbs = block_on(store.all_dbs("cozy", "cozy\u{fff0}")).unwrap();
    let prefixes: BTreeSet<String> = want.iter().map(|d| instance_prefix(d)).collect();
    for db in &dbs {
        let p = db.split('/').next().unwrap();
        assert!(prefixes.contains(p), "{ctx}: leftover database {db}");
    }
    for d in &want {
        for dt in layout::INSTANCE_DOCTYPES {
            let name = db_name(&instance_prefix(d), dt);
            assert!(dbs.contains(&name), "{ctx}: {d}: database {name} missing");
        }
    }
    let folders: BTreeSet<String> = std::fs::read_dir(ws.fs_root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(folders, want, "{ctx}: folders differ from the declared instances");

    assert_eq!(
        &identities(&store),
        ids,
        "{ctx}: a kept instance was recreated (its secret changed)"
    );
    for d in KEPT {
        let contacts = db_name(&instance_prefix(d), layout::CONTACTS);
        assert!(
            block_on(store.get_doc(&contacts, "marker-user-data"))
                .unwrap()
                .is_some(),
            "{ctx}: {d}: user data lost"
        );
    }
    assert!(
        block_on(cozyform::lock::current(&store)).unwrap().is_none(),
        "{ctx}: lock left held"
    );
    // Every destroy wrote a complete, verified archive first (a resumed deletion reuses it).
    for e in std::fs::read_dir(ws.path().join("backups")).into_iter().flatten() {
        let path = e.unwrap().path();
        if path.to_string_lossy().ends_with(".tar.gz") {
            let a =
                cozyform::backup::read_archive(&path).unwrap_or_else(|e| panic!("{ctx}: {}: {e:#}", path.display()));
            assert_eq!(
                a.databases.len(),
                layout::INSTANCE_DOCTYPES.len(),
                "{ctx}: {} is incomplete",
                path.display()
            );
        }
    }
    ws.assert_no_changes();
}

/// Releases the lock a killed run left, as an operator would: with its exact id.
fn release_stale_lock(ws: &Workspace) -> bool {
    let store = ws.store();
    match block_on(cozyform::lock::current(&store)).unwrap() {
        Some(l) => {
            let out = ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            // A run killed after its last write but before releasing the lock leaves nothing to
            // do: such an apply needs no lock and succeeds. Any other is blocked, naming the lock.
            let nothing_to_do = out.status.success()
                && stdout.contains("0 added, 0 changed, 0 destroyed")
                && err.contains(&format!("cozyform force-unlock {}", l.id));
            assert!(
                nothing_to_do || (!out.status.success() && err.contains(&format!("cozyform force-unlock {}", l.id))),
                "a stale lock must block apply and name its id:\n{stdout}\n{err}"
            );
            ws.cmd().args(["force-unlock", &l.id]).assert().success();
            true
        }
        None => false,
    }
}

fn spawn_apply(ws: &Workspace) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("cozyform"))
        .current_dir(ws.path())
        .arg("-c")
        .arg(ws.config_path())
        .args(["apply", "--auto-approve", "--parallelism", "2"])
        .env("COUCHDB_USER", ADMIN_USER)
        .env("COUCHDB_PASSWORD", ADMIN_PASSWORD)
        .env("NO_COLOR", "1")
        .env_remove("COZYFORM_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigkill_at_random_points(b: Backend, default_runs: usize) {
    let runs: usize = std::env::var("COZYFORM_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_runs);
    let seed: u64 = std::env::var("COZYFORM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test ({b:?}): {runs} runs, COZYFORM_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let ws = Workspace::new(b);
    config(&ws, 'A');
    ws.apply_ok();
    let store = ws.store();
    for d in KEPT {
        let contacts = db_name(&instance_prefix(d), layout::CONTACTS);
        block_on(store.put_doc(&contacts, &json!({"_id": "marker-user-data", "fn": "user data"}))).unwrap();
    }
    let ids = identities(&store);
    check_state(&ws, 'A', &ids, "setup");

    // Calibration: how long a whole apply takes each way, so kills fall inside it.
    let mut shortest = Duration::MAX;
    for which in ['B', 'A'] {
        config(&ws, which);
        let t = Instant::now();
        ws.apply_ok();
        shortest = shortest.min(t.elapsed());
        check_state(&ws, which, &ids, "calibration");
    }
    let window_ms = (shortest.as_millis() as u64 * 9 / 10).max(50);
    eprintln!("crash test ({b:?}): a full apply takes {shortest:?} or more; kills within {window_ms} ms");

    let mut state = 'A';
    let (mut killed, mut finished_first, mut stale_locks, mut switched) = (0usize, 0usize, 0usize, 0usize);
    for run in 0..runs {
        let target = if state == 'A' { 'B' } else { 'A' };
        config(&ws, target);
        // One kill in four anywhere in the run (start-up and planning included); the others once
        // the lock is taken, where the writes happen.
        let after_lock = rng.random_range(0..4) != 0;
        let delay = rng.random_range(0..window_ms);
        let mut child = spawn_apply(&ws);
        if after_lock {
            let started = Instant::now();
            while block_on(cozyform::lock::current(&store)).ok().flatten().is_none()
                && child.try_wait().unwrap().is_none()
                && started.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(delay / 2));
        } else {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if child.try_wait().unwrap().is_some() {
            finished_first += 1;
        } else {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        if release_stale_lock(&ws) {
            stale_locks += 1;
        }
        // One time in four, recover with the configuration the run started from.
        let recover = if rng.random_range(0..4) == 0 {
            switched += 1;
            state
        } else {
            target
        };
        config(&ws, recover);
        let ctx = format!(
            "run {run} (seed {seed}, kill {delay} ms after {}, {state}->{target}, recovered to {recover})",
            if after_lock { "the lock (halved)" } else { "the start" }
        );
        let out = ws.cmd().args(["apply", "--auto-approve"]).output().unwrap();
        assert!(
            out.status.success(),
            "{ctx}: recovery apply failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        check_state(&ws, recover, &ids, &ctx);
        state = recover;
        if (run + 1) % 10 == 0 {
            eprintln!(
                "crash test ({b:?}): {} runs, {killed} SIGKILLs so far, all converged",
                run + 1
            );
        }
    }
    eprintln!(
        "crash test ({b:?}): {killed} SIGKILLs during an apply, {finished_first} applies finished before the kill, \
         {stale_locks} stale locks released, {switched} recoveries to the other configuration; nothing lost"
    );
}

#[test]
fn sigkill_during_apply_then_apply_converges_couchdb() {
    sigkill_at_random_points(Backend::Couch, 5);
}

#[test]
fn sigkill_during_apply_then_apply_converges_embedded() {
    sigkill_at_random_points(Backend::Embedded, 4);
}
