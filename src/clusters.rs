//! Several CouchDB clusters, as cozy-stack's `couchdb.clusters` (pkg/config/config/config.go):
//! `global/instances` (and the apply lock) live on the main `[couchdb] url`; the databases of an
//! instance live on the cluster its instance doc's `couch_cluster` names, an index into
//! `[[couchdb.clusters]]` (absent = 0). Without clusters, everything is on the main URL (cozy-stack
//! then uses the main URL as cluster 0); an index outside the list also falls back to the main URL,
//! as `config.CouchCluster(n)` does.
//!
//! Two parts: [`Stores`], the one place that routes a request to the right server (the actual-state
//! reader and the executor ask it for an instance's store), and [`place`], the pure step of the
//! planner that puts each new instance on a cluster and refuses moves between clusters.

use serde_json::{Value, json};

use crate::actual::Actual;
use crate::desired::Desired;
use crate::instance_doc::DocFields;
use crate::plan::{Action, Change, DocKind, Plan};
use crate::store::Store;

/// The `couch_cluster` of an instance doc: its integer value, 0 when absent or not an integer.
pub fn couch_cluster_of(doc: &(impl DocFields + ?Sized)) -> u32 {
    cluster_field(doc.field("couch_cluster").as_deref())
}

/// The value of a `couch_cluster` field: 0 when absent or not a small non-negative integer.
pub fn cluster_field(v: Option<&Value>) -> u32 {
    v.and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// One cluster's store and whether new instances may go there.
#[derive(Clone)]
pub struct Cluster {
    pub store: Store,
    pub instance_creation: bool,
}

/// The stores of a run: the main one and the clusters. Cheap to clone.
#[derive(Clone)]
pub struct Stores {
    /// `[couchdb] url` (or the embedded store): `global/instances`, the lock.
    pub main: Store,
    /// `[[couchdb.clusters]]`, in order; empty when not configured.
    pub clusters: Vec<Cluster>,
}

impl Stores {
    /// One store for everything (the embedded store, or CouchDB without clusters).
    pub fn single(main: Store) -> Self {
        Stores {
            main,
            clusters: Vec::new(),
        }
    }

    /// The store holding the databases of instances with `couch_cluster = n`.
    pub fn for_cluster(&self, n: u32) -> &Store {
        match self.clusters.get(n as usize) {
            Some(c) => &c.store,
            None => &self.main,
        }
    }

    /// The store holding the databases of the instance whose doc is `doc`.
    pub fn for_instance(&self, doc: &(impl DocFields + ?Sized)) -> &Store {
        self.for_cluster(couch_cluster_of(doc))
    }

    /// Whether `couch_cluster = n` names a configured cluster (rather than falling back to main).
    pub fn is_configured(&self, n: u32) -> bool {
        (n as usize) < self.clusters.len()
    }

    /// The stores that hold instance databases: each cluster, or the main store alone.
    pub fn instance_stores(&self) -> Vec<&Store> {
        if self.clusters.is_empty() {
            vec![&self.main]
        } else {
            self.clusters.iter().map(|c| &c.store).collect()
        }
    }

    /// Requests made so far by every store.
    pub fn requests(&self) -> u64 {
        self.main.requests() + self.clusters.iter().map(|c| c.store.requests()).sum::<u64>()
    }
}

/// Puts each instance the plan creates on a cluster, and refuses moves. Pure.
///
/// - A declared `couch_cluster` is used as is; it must allow `instance_creation` (when clusters are
///   configured).
/// - Otherwise the instance goes to the **least-loaded** cluster with `instance_creation = true`:
///   the one holding the fewest instances (existing ones, counted from `global/instances`, plus those
///   this plan already placed, in domain order); ties go to the lowest index. cozy-stack picks at
///   random; a deterministic rule keeps plans reproducible and spreads the load evenly.
/// - Without clusters, every instance is on cluster 0 (the main URL) and nothing is shown.
/// - An existing instance whose declared `couch_cluster` differs from its doc's is a plan error:
///   moving databases between clusters is not supported.
pub fn place(desired: &Desired, actual: &Actual, plan: &mut Plan) {
    let configured = !desired.clusters.is_empty();
    // Without clusters and without a declared `couch_cluster`, everything stays on cluster 0 (the
    // default of a create spec): nothing to do, and no pass over the fleet.
    if !configured && !desired.instances.values().any(|w| w.couch_cluster.is_some()) {
        return;
    }
    let mut load = vec![0usize; desired.clusters.len()];
    if configured {
        for inst in &actual.instances {
            if let Some(l) = load.get_mut(couch_cluster_of(&inst.doc) as usize) {
                *l += 1;
            }
        }
    }
    // `plan.instances` is sorted by domain: a merge, not a tree lookup per instance.
    let mut declared = crate::plan::InOrder::new(&desired.instances);
    for ip in &mut plan.instances {
        let want = declared.get(&ip.domain).and_then(|w| w.couch_cluster);
        match ip.action {
            Action::Create => {
                let n = match want {
                    Some(n) => {
                        if configured && !desired.clusters.get(n as usize).is_some_and(|c| c.instance_creation) {
                            plan.errors.push(format!(
                                "{}: couch_cluster = {n}, but that cluster has instance_creation = false; choose a cluster that accepts new instances, or remove couch_cluster to let cozyform choose",
                                ip.domain
                            ));
                        }
                        n
                    }
                    None if !configured => 0,
                    None => {
                        let best = (0..load.len())
                            .filter(|&i| desired.clusters[i].instance_creation)
                            .min_by_key(|&i| (load[i], i));
                        match best {
                            Some(i) => i as u32,
                            None => {
                                plan.errors.push(format!(
                                    "{}: no CouchDB cluster available for creation (every [[couchdb.clusters]] entry has instance_creation = false)",
                                    ip.domain
                                ));
                                0
                            }
                        }
                    }
                };
                if let Some(l) = load.get_mut(n as usize) {
                    *l += 1;
                }
                if let Some(spec) = ip.create.as_mut() {
                    spec.couch_cluster = n;
                }
                if n != 0 {
                    ip.changes.push(Change {
                        doc: DocKind::Instance,
                        key: "couch_cluster".into(),
                        before: None,
                        after: Some(json!(n)),
                    });
                }
            }
            Action::NoOp | Action::Update | Action::Repair => {
                // The instance at this domain (not the old instance of a pending rename).
                let here = ip.existing.as_ref().filter(|_| ip.rename.is_none());
                if let (Some(n), Some(e)) = (want, here) {
                    let have = e.couch_cluster;
                    if have != n {
                        plan.errors.push(format!(
                            "{}: couch_cluster = {n} in the configuration, but the instance lives on cluster {have}; cozyform does not move instances between clusters: set couch_cluster = {have}, or move it with cozy-stack first",
                            ip.domain
                        ));
                    }
                }
            }
            Action::Destroy | Action::Unmanaged => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{ClusterTarget, DesiredInstance};
    use crate::plan::tests::{actual, desired, existing};

    fn cluster(creation: bool) -> ClusterTarget {
        ClusterTarget {
            url: "http://c:5984/".into(),
            user: None,
            password: None,
            instance_creation: creation,
        }
    }

    fn placed(p: &Plan) -> Vec<(String, u32)> {
        p.instances
            .iter()
            .filter_map(|i| i.create.as_ref().map(|c| (i.domain.clone(), c.couch_cluster)))
            .collect()
    }

    #[test]
    fn new_instances_go_to_the_least_loaded_cluster_accepting_creations() {
        let mut d = desired(
            ["a.example", "b.example", "c.example", "old.example"]
                .into_iter()
                .map(DesiredInstance::new)
                .collect(),
            false,
        );
        d.clusters = vec![cluster(true), cluster(false), cluster(true)];
        // old.example already lives on cluster 0.
        let p = crate::plan::plan(&d, &actual(vec![existing("old.example", json!({}))]));
        assert_eq!(
            placed(&p),
            vec![
                ("a.example".into(), 2),
                ("b.example".into(), 0),
                ("c.example".into(), 2)
            ]
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
    }

    #[test]
    fn declared_cluster_is_used_and_must_accept_creations() {
        let mut a = DesiredInstance::new("a.example");
        a.couch_cluster = Some(1);
        let mut d = desired(vec![a], false);
        d.clusters = vec![cluster(true), cluster(true)];
        let p = crate::plan::plan(&d, &actual(vec![]));
        assert_eq!(placed(&p), vec![("a.example".into(), 1)]);
        d.clusters[1].instance_creation = false;
        let p = crate::plan::plan(&d, &actual(vec![]));
        assert!(p.errors[0].contains("instance_creation = false"), "{:?}", p.errors);
    }

    #[test]
    fn without_clusters_everything_is_on_cluster_zero_and_nothing_is_shown() {
        let p = crate::plan::plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &actual(vec![]),
        );
        assert_eq!(placed(&p), vec![("a.example".into(), 0)]);
        assert!(p.instances[0].changes.iter().all(|c| c.key != "couch_cluster"));
    }

    #[test]
    fn a_different_declared_cluster_for_an_existing_instance_is_refused() {
        let mut a = DesiredInstance::new("a.example");
        a.couch_cluster = Some(0);
        let mut d = desired(vec![a], false);
        d.clusters = vec![cluster(true), cluster(true)];
        let p = crate::plan::plan(&d, &actual(vec![existing("a.example", json!({"couch_cluster": 1}))]));
        assert!(
            p.errors.iter().any(|e| e.contains("does not move instances")),
            "{:?}",
            p.errors
        );
    }
}
