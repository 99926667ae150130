//! Properties of the linear planner's building blocks (see `plan::plan`): the allocation-free field
//! comparison agrees with comparing values, the in-order lookup agrees with the map, and the plan
//! does not depend on the order of the existing instances.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::tests::{actual, desired, existing};
use super::*;

/// An owned [`Wanted`].
#[derive(Debug, Clone)]
enum W {
    Absent,
    Str(String),
    Strs(Vec<String>),
    True,
    Quota(u64),
}

impl W {
    fn borrow(&self) -> Wanted<'_> {
        match self {
            W::Absent => Wanted::Absent,
            W::Str(s) => Wanted::Str(s),
            W::Strs(a) => Wanted::Strs(a),
            W::True => Wanted::True,
            W::Quota(q) => Wanted::Quota(*q),
        }
    }
}

fn a_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|b| Some(json!(b))),
        "[a0-9]{0,3}".prop_map(|s| Some(json!(s))),
        (0u64..120).prop_map(|n| Some(json!(n))),
        prop::collection::vec("[ab]{0,2}", 0..3).prop_map(|a| Some(json!(a))),
        Just(Some(json!(["a", 1]))),
    ]
}

fn a_wanted() -> impl Strategy<Value = W> {
    prop_oneof![
        Just(W::Absent),
        "[a0-9]{0,3}".prop_map(W::Str),
        prop::collection::vec("[ab]{0,2}", 1..3).prop_map(W::Strs),
        Just(W::True),
        (1u64..120).prop_map(W::Quota),
        Just(W::Quota(u64::MAX)),
    ]
}

/// A small fleet over a universe of 6 domains: declarations and existing instances, each with
/// fields that may differ, aliases that may collide with domains or aliases, and states. Existing
/// instances hold distinct aliases (`x<i>.example`), as cozy-stack keeps them: with a name held
/// twice, which holder an error names depends on the order of the docs (it did before too).
fn a_fleet() -> impl Strategy<Value = (Desired, Vec<ActualInstance>)> {
    let name = prop_oneof![
        (0..6usize).prop_map(|i| format!("d{i}.example")),
        (0..6usize).prop_map(|i| format!("x{i}.example")),
    ];
    let decl = (
        0..6usize,
        prop::option::of(prop_oneof![Just("en"), Just("fr")]),
        prop::option::of(prop::collection::vec(name, 0..2)),
        any::<bool>(),
        prop::option::of(0u64..3),
    );
    let have = (
        0..6usize,
        prop_oneof![Just("en"), Just("fr")],
        any::<bool>(),
        any::<bool>(),
    );
    (
        prop::collection::vec(decl, 0..6),
        prop::collection::vec(have, 0..6),
        any::<bool>(),
    )
        .prop_map(|(decls, haves, prune)| {
            let mut ds = BTreeMap::new();
            for (i, locale, aliases, absent, quota) in decls {
                let mut w = DesiredInstance::new(format!("d{i}.example"));
                w.locale = locale.map(str::to_string);
                w.domain_aliases = aliases;
                w.disk_quota = quota;
                if absent {
                    w.state = InstanceState::Absent;
                }
                ds.insert(i, w);
            }
            let mut hs = BTreeMap::new();
            for (i, locale, alias, deleting) in haves {
                let aliases: Vec<String> = alias.then(|| format!("x{i}.example")).into_iter().collect();
                let doc = json!({"locale": locale, "domain_aliases": aliases, "deleting": deleting});
                hs.insert(i, existing(&format!("d{i}.example"), doc));
            }
            (desired(ds.into_values().collect(), prune), hs.into_values().collect())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn wanted_matches_is_comparing_the_normalized_values(have in a_value(), w in a_wanted()) {
        let w = w.borrow();
        // As the planner sees it: a field of a compact instance doc.
        let doc = crate::instance_doc::InstanceDoc::from_map(have.iter().map(|v| ("k".to_string(), v.clone())).collect());
        prop_assert_eq!(w.matches(doc.get_ref("k")), present(have.as_ref()) == w.value());
    }

    #[test]
    fn in_order_lookups_agree_with_the_map(
        keys in prop::collection::btree_set("[a-d]{0,3}", 0..12),
        mut queries in prop::collection::vec("[a-d]{0,3}", 0..20),
        sort in any::<bool>(),
    ) {
        let map: BTreeMap<String, usize> = keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect();
        if sort {
            queries.sort();
        }
        let mut lookup = InOrder::new(&map);
        for q in &queries {
            prop_assert_eq!(lookup.get(q), map.get(q), "{}", q);
        }
    }

    #[test]
    fn the_plan_does_not_depend_on_the_order_of_existing_instances(
        (d, sorted, shuffled) in a_fleet()
            .prop_flat_map(|(d, hs)| (Just(d), Just(hs.clone()), Just(hs).prop_shuffle()))
    ) {
        let a = plan(&d, &actual(sorted));
        let b = plan(&d, &actual(shuffled));
        prop_assert_eq!(a, b);
    }
}

#[test]
fn sorted_existing_keeps_the_last_instance_of_a_domain() {
    let mut first = existing("b.example", json!({}));
    first.rev = "1-first".into();
    let a = actual(vec![
        existing("c.example", json!({})),
        first,
        existing("a.example", json!({})),
        existing("b.example", json!({})),
    ]);
    let order = sorted_existing(&a);
    let got: Vec<(&str, &str)> = order
        .iter()
        .map(|&i| (a.instances[i].domain.as_str(), a.instances[i].rev.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("a.example", "2-abc"), ("b.example", "2-abc"), ("c.example", "2-abc")]
    );
}

#[test]
fn quota_digits() {
    let mut buf = [0u8; 20];
    for q in [0, 1, 9, 10, 4096, u64::MAX] {
        assert_eq!(u64_digits(q, &mut buf), q.to_string().as_bytes());
    }
}
