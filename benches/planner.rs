//! The pure planner alone, for 10,000 and 100,000 instances already up to date (the drift-detection
//! case), to show that its cost grows linearly: criterion reports the time per run and the
//! throughput in instances per second, which stays flat when the cost is linear.
//!
//! `cargo bench --bench planner`

use std::collections::BTreeMap;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

use cozyform::actual::{Actual, ActualInstance, Observed};
use cozyform::desired::{Desired, DesiredInstance, StoreTarget};
use cozyform::fsops::FsState;
use cozyform::layout;

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

fn planner(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_up_to_date");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let (desired, actual) = fleet(n);
        let p = cozyform::plan::plan(&desired, &actual);
        assert!(!p.has_changes(), "the bench fleet must be up to date");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| cozyform::plan::plan(&desired, &actual))
        });
    }
    group.finish();
}

criterion_group!(benches, planner);
criterion_main!(benches);
