//! Property: for arbitrary desired and actual states, plan → apply → plan is empty.
//!
//! The actual state is produced by applying an arbitrary first configuration (and then tampering
//! with it: a deleted database, a removed folder); the second, arbitrary configuration is then
//! applied and planned again. Runs on the embedded store through the library (the same executor as
//! the binary), so that many cases fit in a few seconds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use cozyform::actual::{ReadOptions, read_actual};
use cozyform::apply::{ApplyOptions, apply};
use cozyform::desired::{Desired, DesiredInstance, InstanceState, StoreTarget};
use cozyform::layout;
use cozyform::plan::plan;
use cozyform::store::Store;
use cozyform::store::embedded::EmbeddedStore;
use proptest::prelude::*;

const DOMAINS: &[&str] = &["a.example", "b.example", "c.example:8080", "d.example"];

#[derive(Debug, Clone)]
struct Spec {
    absent: bool,
    locale: Option<&'static str>,
    blocked: Option<(bool, Option<&'static str>)>,
    quota: Option<u64>,
    email: Option<&'static str>,
    alias: Option<bool>,
    extra: Option<&'static str>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::bool::weighted(0.15),
        prop::option::of(prop::sample::select(vec!["en", "fr", "de"])),
        prop::option::of((
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["PAYMENT_FAILED", "UNKNOWN"])),
        )),
        prop::option::of(prop::sample::select(vec![0u64, 1_000_000, 5_000_000_000])),
        prop::option::of(prop::sample::select(vec!["x@example.com", "y@example.com"])),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["premium", "basic"])),
    )
        .prop_map(|(absent, locale, blocked, quota, email, alias, extra)| Spec {
            absent,
            locale,
            blocked,
            quota,
            email,
            alias,
            extra,
        })
}

fn config() -> impl Strategy<Value = (bool, Vec<Option<Spec>>)> {
    (
        any::<bool>(),
        prop::collection::vec(prop::option::of(spec()), DOMAINS.len()),
    )
}

fn desired(fs_root: &Path, store: &Path, prune: bool, specs: &[Option<Spec>]) -> Desired {
    let mut instances = BTreeMap::new();
    for (domain, spec) in DOMAINS.iter().zip(specs) {
        let Some(s) = spec else { continue };
        let mut d = DesiredInstance::new(*domain);
        if s.absent {
            d.state = InstanceState::Absent;
        } else {
            d.locale = s.locale.map(str::to_string);
            if let Some((b, reason)) = s.blocked {
                d.blocked = Some(b);
                d.blocking_reason = if b { reason.map(str::to_string) } else { None };
            }
            d.disk_quota = s.quota;
            if let Some(e) = s.email {
                d.settings.insert("email".into(), e.into());
            }
            if let Some(x) = s.extra {
                d.settings.insert("offer".into(), x.into());
            }
            // Each domain owns its own alias name, so aliases never conflict.
            d.domain_aliases = s.alias.map(|on| {
                if on {
                    vec![format!("alias-{}", domain.replace(':', "-"))]
                } else {
                    vec![]
                }
            });
        }
        instances.insert(domain.to_string(), d);
    }
    Desired {
        config_path: "instances.toml".into(),
        config_hash: String::new(),
        prune,
        store: StoreTarget::Embedded {
            path: store.to_path_buf(),
        },
        fs_root: fs_root.to_path_buf(),
        instances,
    }
}

async fn converge(store: &Store, d: &Desired) -> cozyform::plan::Plan {
    let settings_for: BTreeSet<String> = d
        .instances
        .values()
        .filter(|i| !i.settings.is_empty())
        .map(|i| i.domain.clone())
        .collect();
    let opts = ReadOptions {
        deep: false,
        parallelism: 4,
        settings_for,
        ..Default::default()
    };
    let a = read_actual(store, &d.fs_root, &opts).await.unwrap();
    let p = plan(d, &a);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let report = apply(store, d, &p, &ApplyOptions::new(4, d.fs_root.clone())).await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    let a = read_actual(store, &d.fs_root, &ReadOptions { deep: true, ..opts })
        .await
        .unwrap();
    plan(d, &a)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn plan_apply_plan_is_empty((prune1, first) in config(), (prune2, second) in config(), tamper in 0usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let fs_root = dir.path().join("fs");
        let path = dir.path().join("store.sqlite");
        let store = Store::Embedded(Arc::new(EmbeddedStore::open(&path).unwrap()));
        common::block_on(async {
            let d1 = desired(&fs_root, &path, prune1, &first);
            let after_first = converge(&store, &d1).await;
            prop_assert!(!after_first.has_changes(), "first config did not converge: {after_first:#?}");

            // Drift behind cozyform's back on the first present instance, if any.
            if let Some(i) = d1.instances.values().find(|i| i.state == InstanceState::Present) {
                let prefix = layout::instance_prefix(&i.domain);
                match tamper {
                    0 => { store.delete_db(&layout::db_name(&prefix, "io.cozy.jobs")).await.unwrap(); }
                    1 => { let _ = std::fs::remove_dir_all(fs_root.join(&i.domain)); }
                    2 => { store.delete_db(&layout::db_name(&prefix, "io.cozy.files")).await.unwrap(); }
                    _ => {}
                }
            }

            let d2 = desired(&fs_root, &path, prune2, &second);
            let after_second = converge(&store, &d2).await;
            prop_assert!(!after_second.has_changes(), "plan after apply is not empty: {after_second:#?}");
            Ok(())
        })?;
    }
}
