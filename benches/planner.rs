//! The pure planner alone, for 1,000, 10,000 and 100,000 instances already up to date (the
//! drift-detection case), to show that its cost grows linearly: criterion reports the time per run
//! and the throughput in instances per second, which stays flat when the cost is linear.
//!
//! `cargo bench --bench planner`
//!
//! Before criterion runs, the bench prints load-independent figures for each size: heap allocations
//! (and bytes) made by one `plan()` call, per instance, counted by a counting global allocator; and
//! the best of 10 timed runs in ns per instance, next to the best of 10 runs of a floor (see
//! [`floor`]) taken in the same seconds, and their ratio. They go to stdout as `planner-alloc …`
//! lines. Criterion then times `plan_up_to_date/N` and `plan_floor/N`.
//!
//! `COZYFORM_PLANNER_ONCE=N cargo bench --bench planner` builds an N-instance fleet, plans it once,
//! prints the same line and exits without criterion: the mode to run under
//! `valgrind --tool=callgrind --toggle-collect='cozyform::plan::plan'` for instruction counts.
//! `COZYFORM_PLANNER_RUNS=K` adds the best of K timed runs to that line.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use serde_json::{Map, Value, json};

use cozyform::actual::{Actual, ActualInstance, Observed};
use cozyform::desired::{Desired, DesiredInstance, StoreTarget};
use cozyform::fsops::FsState;
use cozyform::layout;

/// The system allocator, counting allocations (reallocations count as one, with their new size).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(p, l, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn fleet(n: usize) -> (Desired, Actual) {
    let mut instances = BTreeMap::new();
    let mut actual = Vec::with_capacity(n);
    for i in 0..n {
        let domain = format!("i{i:06}.bench.example");
        let mut d = DesiredInstance::new(domain.clone());
        d.locale = Some("en".into());
        let prefix = layout::instance_prefix(&domain);
        let mut doc = Map::new();
        doc.insert("domain".into(), json!(domain));
        doc.insert("prefix".into(), json!(prefix));
        doc.insert("locale".into(), json!("en"));
        doc.insert("indexes_version".into(), json!(layout::INDEXES_VERSION));
        doc.insert("password_defined".into(), Value::Bool(false));
        actual.push(ActualInstance {
            id: layout::derived_id("instance", &domain),
            rev: "2-abc".into(),
            domain: domain.clone(),
            db_prefix: prefix.clone(),
            doc: doc.into(),
            doctypes: cozyform::dbset::DoctypeSet::all(),
            other_databases: Vec::new(),
            fs: FsState {
                root: true,
                trash: true,
                symlink: false,
            },
            settings: Observed::NotRead,
            deep: None,
        });
        instances.insert(domain, d);
    }
    let desired = Desired {
        config_path: PathBuf::from("instances.toml"),
        config_hash: String::new(),
        prune: false,
        store: StoreTarget::Embedded {
            path: PathBuf::from("store.sqlite"),
        },
        fs_root: PathBuf::from("/srv/cozy"),
        instances,
        clusters: Vec::new(),
    };
    let actual = Actual {
        global_db: true,
        instances: actual,
        ..Default::default()
    };
    (desired, actual)
}

/// The least work any planner does for this fleet: walk the declared and existing instances in
/// domain order comparing domains, look the declared field (`locale`) up in the doc, and copy the
/// four strings a plan entry holds (domain, doc id, rev, database prefix). Its time shows what the
/// memory hierarchy alone costs per instance at each size: the planner's ratio to it stays flat
/// when the planner is linear.
fn floor(desired: &Desired, actual: &Actual) -> Vec<(String, String, String, String)> {
    let mut out = Vec::with_capacity(actual.instances.len());
    for ((d, w), h) in desired.instances.iter().zip(&actual.instances) {
        assert!(d == &h.domain && h.doc.get_str("locale") == w.locale.as_deref());
        out.push((h.domain.clone(), h.id.clone(), h.rev.clone(), h.db_prefix.clone()));
    }
    out
}

/// The time of one run of `f`, its result dropped outside the timing.
fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    let out = std::hint::black_box(f());
    let d = t.elapsed();
    drop(out);
    d
}

/// Plans the fleet once, counting allocations, then a few timed runs (and as many of the floor);
/// prints one line.
fn load_independent(n: usize, timed_runs: usize) {
    let f0 = BYTES.load(Relaxed);
    let (desired, actual) = fleet(n);
    // The working set the planner reads (the caches hold it at 1k, not at 100k).
    let fleet_bytes = BYTES.load(Relaxed) - f0;
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let p = cozyform::plan::plan(&desired, &actual);
    let (allocs, bytes) = (ALLOCS.load(Relaxed) - a0, BYTES.load(Relaxed) - b0);
    assert!(!p.has_changes(), "the bench fleet must be up to date");
    assert_eq!(p.instances.len(), n);
    drop(p);
    let per = |x: u64| x as f64 / n as f64;
    let timing = if timed_runs > 0 {
        let ns = |d: Duration| d.as_nanos() as f64 / n as f64;
        let mut plan_best = Duration::MAX;
        let mut floor_best = Duration::MAX;
        // Interleaved, so that both see the same load.
        for _ in 0..timed_runs {
            plan_best = plan_best.min(timed(|| cozyform::plan::plan(&desired, &actual)));
            floor_best = floor_best.min(timed(|| floor(&desired, &actual)));
        }
        format!(
            "best of {timed_runs} {:.2} ms = {:.0} ns/instance; floor {:.0} ns/instance; plan/floor {:.2}",
            plan_best.as_secs_f64() * 1e3,
            ns(plan_best),
            ns(floor_best),
            plan_best.as_secs_f64() / floor_best.as_secs_f64()
        )
    } else {
        "not timed".into()
    };
    println!(
        "planner-alloc n={n}: {allocs} allocations ({:.2}/instance), {bytes} bytes ({:.0} B/instance); {timing}; fleet {:.0} MiB",
        per(allocs),
        per(bytes),
        fleet_bytes as f64 / 1048576.0
    );
}

fn planner(c: &mut Criterion) {
    for n in SIZES {
        load_independent(n, 10);
    }
    let mut group = c.benchmark_group("plan_up_to_date");
    group.sample_size(10);
    for n in SIZES {
        let (desired, actual) = fleet(n);
        let p = cozyform::plan::plan(&desired, &actual);
        assert!(!p.has_changes(), "the bench fleet must be up to date");
        drop(p);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| cozyform::plan::plan(&desired, &actual))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("plan_floor");
    group.sample_size(10);
    for n in SIZES {
        let (desired, actual) = fleet(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| floor(&desired, &actual))
        });
    }
    group.finish();
}

criterion_group!(benches, planner);

fn main() {
    if let Some(n) = std::env::var("COZYFORM_PLANNER_ONCE").ok().and_then(|v| v.parse().ok()) {
        let runs = std::env::var("COZYFORM_PLANNER_RUNS").ok().and_then(|v| v.parse().ok());
        load_independent(n, runs.unwrap_or(0));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
