//! Plan stage: a pure function from (desired, actual) to the plan. No I/O, no clock, no randomness;
//! instances are processed in domain order so the same inputs always give the same plan.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actual::{Actual, ActualInstance, Finding, Observed};
use crate::desired::{Desired, DesiredInstance, InstanceState};
use crate::instance_doc::FieldRef;
use crate::layout;
pub use crate::plan_renames::{DirRename, RenamePlan};

/// What happens to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Repair,
    Destroy,
    Unmanaged,
    NoOp,
}

/// Which document a field change is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// The instance doc in `global/instances`.
    Instance,
    /// `io.cozy.settings.instance`.
    Settings,
}

/// One field-level change. `None` means absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub doc: DocKind,
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Something missing that a repair creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repair {
    /// A database of the instance (its indexes and views are defined with it).
    Database { doctype: String },
    /// The settings doc.
    SettingsDoc,
    /// The "myself" contact (with a re-created contacts database).
    MyselfContact,
    /// The root directory doc.
    RootDir,
    /// The trash directory doc.
    TrashDir,
    /// A mango index that is missing or differs (`--deep`).
    Index { doctype: String, ddoc: String },
    /// A view that is missing or differs (`--deep`).
    View { doctype: String, name: String },
    /// `<fs_root>/<domain>` (and `.cozy_trash`).
    Folder,
    /// `<fs_root>/<domain>/.cozy_trash`.
    TrashFolder,
}

/// Everything needed to create an instance, apart from ids, secrets and the time (the executor's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSpec {
    pub domain: String,
    pub prefix: String,
    pub locale: String,
    pub context: Option<String>,
    pub uuid: Option<String>,
    pub disk_quota: u64,
    pub domain_aliases: Vec<String>,
    pub blocked: bool,
    pub blocking_reason: Option<String>,
    /// Settings doc entries (email, public_name, phone, tz and extras).
    pub settings: BTreeMap<String, String>,
    /// The cluster the databases go to (`couch_cluster`; see [`crate::clusters::place`]).
    #[serde(default)]
    pub couch_cluster: u32,
}

/// The existing instance a plan entry acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Existing {
    pub id: String,
    pub rev: String,
    pub db_prefix: String,
    /// The instance doc's `couch_cluster`: where its databases live.
    #[serde(default)]
    pub couch_cluster: u32,
}

/// The plan for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub domain: String,
    pub action: Action,
    /// Why, for destroys and unmanaged instances.
    pub reason: Option<String>,
    pub changes: Vec<Change>,
    pub repairs: Vec<Repair>,
    /// Boxed: absent from most entries of a large fleet's plan.
    pub create: Option<Box<CreateSpec>>,
    pub existing: Option<Existing>,
    /// For a rename (`renamed_from`): the domain the instance has now, and whether its folder moves.
    #[serde(default)]
    pub rename: Option<RenamePlan>,
    /// Default directories renamed with a locale change (`rename_default_dirs`).
    #[serde(default)]
    pub dir_renames: Vec<DirRename>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub unmanaged: usize,
    pub no_op: usize,
}

/// The whole plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every declared or existing instance, by domain.
    pub instances: Vec<InstancePlan>,
    /// Design docs of `global/instances` to (re)define.
    pub global: Vec<String>,
    /// Whether `global/instances` must be created.
    pub create_global_db: bool,
    pub findings: Vec<Finding>,
    /// Reasons this plan must not be applied (e.g. `prevent_destroy`).
    pub errors: Vec<String>,
    /// Leftovers apply removes (only removable ones; the others are findings), see [`crate::orphans`].
    #[serde(default)]
    pub orphans: Vec<crate::orphans::Orphan>,
    /// App changes of each instance that has some (see [`crate::apps::plan`]).
    #[serde(default)]
    pub apps: BTreeMap<String, Vec<crate::apps::plan::AppChange>>,
    /// The `--target` patterns this plan is restricted to; empty for a whole plan.
    #[serde(default)]
    pub targets: Vec<String>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for i in &self.instances {
            match i.action {
                Action::Create => s.add += 1,
                Action::Update | Action::Repair => s.change += 1,
                Action::Destroy => s.destroy += 1,
                Action::Unmanaged => s.unmanaged += 1,
                Action::NoOp => s.no_op += 1,
            }
        }
        s
    }

    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        let s = self.summary();
        s.add + s.change + s.destroy > 0
            || !self.global.is_empty()
            || self.create_global_db
            || self.apps.values().flatten().any(|c| c.acts())
            || !self.orphans.is_empty()
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// Computes the plan.
///
/// Linear in the number of instances: the declared instances (a `BTreeMap`, sorted by domain) and
/// the existing ones (sorted by domain, see [`sorted_existing`]) are merged in one pass, without a
/// map built per call; maps of aliases and renames are built only when the configuration needs them.
/// An up-to-date instance costs no allocation beyond its plan entry.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    let mut out = Plan {
        findings: actual.findings.clone(),
        ..Default::default()
    };
    // Indices into `actual.instances`, by domain.
    let order = sorted_existing(actual);
    let find = |domain: &str| -> Option<&ActualInstance> {
        order
            .binary_search_by(|&i| actual.instances[i].domain.as_str().cmp(domain))
            .ok()
            .map(|k| &actual.instances[order[k]])
    };

    // Alias -> the index of the existing instance holding it; built on first use (aliases declared,
    // or an instance to create).
    let aliases: OnceCell<HashMap<&str, usize>> = OnceCell::new();
    // Domain or alias -> the existing instance holding it (the later one in `actual.instances` when
    // a name is both).
    let holder = |name: &str| -> Option<&ActualInstance> {
        let by_alias = aliases
            .get_or_init(|| {
                let mut m = HashMap::new();
                for (k, inst) in actual.instances.iter().enumerate() {
                    for a in alias_strs(inst) {
                        m.insert(a, k);
                    }
                }
                m
            })
            .get(name)
            .copied();
        let by_domain = order
            .binary_search_by(|&i| actual.instances[i].domain.as_str().cmp(name))
            .ok()
            .map(|k| order[k]);
        by_alias.max(by_domain).map(|k| &actual.instances[k])
    };
    // Renames (`renamed_from`) to carry out now; their old domains are planned under the new one.
    let renames = crate::plan_renames::pending_renames(desired, actual, &mut out.errors);
    let rename_sources = crate::plan_renames::sources(&renames);
    let renamed_to: HashMap<&str, &str> = renames.iter().map(|(n, o)| (o.as_str(), n.as_str())).collect();
    // Whether an existing instance still holds `name` once the plan is applied.
    let still_holds = |inst: &ActualInstance, name: &str| -> bool {
        let declared = desired.instances.get(&inst.domain).or_else(|| {
            renamed_to
                .get(inst.domain.as_str())
                .and_then(|n| desired.instances.get(*n))
        });
        match declared {
            None => !desired.prune,
            Some(d) if d.state == InstanceState::Absent => false,
            Some(d) => {
                inst.domain == name
                    || d.domain_aliases
                        .as_ref()
                        .map(|a| a.iter().any(|x| x == name))
                        .unwrap_or(true)
            }
        }
    };
    // An error for each alias `w` declares that an existing instance other than `h` still holds.
    let alias_errors = |domain: &str, w: &DesiredInstance, h: &ActualInstance, errors: &mut Vec<String>| {
        for name in w.domain_aliases.iter().flatten() {
            if let Some(other) = holder(name.as_str())
                && other.domain != h.domain
                && still_holds(other, name)
            {
                errors.push(format!(
                    "{domain}: alias {name:?} is already used by the existing instance {:?}",
                    other.domain
                ));
            }
        }
    };

    // Exact for a fleet that is up to date (the drift-detection case); otherwise the Vec grows.
    out.instances.reserve_exact(desired.instances.len().max(order.len()));
    // Whether a planned instance declares `couch_cluster` or apps: the later stages that look
    // them up are skipped otherwise (they would do nothing).
    let (mut clusters_declared, mut apps_declared) = (false, false);
    for (domain, want, have) in merge_by_domain(desired, actual, &order) {
        if actual.ambiguous.contains(domain)
            || (!rename_sources.is_empty() && rename_sources.contains(domain) && want.is_none())
        {
            continue;
        }
        let entry = match (want, have) {
            (Some(w), None) if renames.contains_key(domain) => {
                let h = find(renames[domain].as_str()).expect("a pending rename's old domain exists");
                alias_errors(domain, w, h, &mut out.errors);
                let mut e = crate::plan_renames::plan_rename(w, h, actual);
                crate::plan_renames::attach_dir_renames(&mut e, w, h, actual);
                e
            }
            // A rename that cannot be carried out: the error is in the plan; create nothing.
            (Some(w), None) if w.renamed_from.is_some() && w.state == InstanceState::Present => continue,
            (Some(w), None) if w.state == InstanceState::Present => {
                for name in std::iter::once(&w.domain).chain(w.domain_aliases.iter().flatten()) {
                    if let Some(h) = holder(name.as_str())
                        && still_holds(h, name)
                    {
                        out.errors.push(format!(
                            "{domain}: {name:?} is already used by the existing instance {:?}; an instance's domain and aliases must be unique",
                            h.domain
                        ));
                    }
                }
                plan_create(w)
            }
            (Some(_), None) => continue,
            (Some(w), Some(h)) if w.state == InstanceState::Absent => {
                if w.prevent_destroy {
                    out.errors.push(format!(
                        "{domain}: the plan would destroy it, but prevent_destroy = true; remove prevent_destroy to allow the destruction, or remove state = \"absent\""
                    ));
                }
                destroy(h, "state = \"absent\" in the configuration")
            }
            (Some(w), Some(h)) => {
                alias_errors(domain, w, h, &mut out.errors);
                let mut e = plan_existing(w, h);
                crate::plan_renames::attach_dir_renames(&mut e, w, h, actual);
                e
            }
            (None, Some(h)) => {
                if desired.prune {
                    destroy(h, "not in the configuration, and prune = true")
                } else {
                    let reason = if h.deleting() {
                        "not in the configuration; flagged `deleting` by a deletion that failed: declare it with state = \"absent\" (or set prune = true) to finish it"
                    } else {
                        "not in the configuration; left alone (set prune = true to destroy it)"
                    };
                    InstancePlan {
                        domain: h.domain.clone(),
                        action: Action::Unmanaged,
                        reason: Some(reason.into()),
                        changes: vec![],
                        repairs: vec![],
                        create: None,
                        existing: Some(existing_of(h)),
                        rename: None,
                        dir_renames: vec![],
                    }
                }
            }
            (None, None) => continue,
        };
        if let Some(w) = want {
            clusters_declared |= w.couch_cluster.is_some();
            apps_declared |= w.apps.is_some();
        }
        out.instances.push(entry);
    }

    crate::plan_renames::check_creates(&out.instances, actual, &mut out.errors);
    plan_orphans(&mut out, desired, actual);
    let creates = out.instances.iter().any(|i| i.action == Action::Create);
    if actual.global_db {
        out.global = actual.global_missing.clone();
    } else if creates {
        out.create_global_db = true;
        out.global = layout::global_views()
            .map(|v| v.name.to_string())
            .chain(layout::global_indexes().map(|i| i.ddoc.to_string()))
            .collect();
    }
    if clusters_declared || !desired.clusters.is_empty() {
        crate::clusters::place(desired, actual, &mut out);
    }
    if apps_declared {
        out.apps = crate::apps::plan::plan_apps(desired, actual, &out.instances, &mut out.errors);
    }
    out
}

/// Indices into `actual.instances` sorted by domain, one per domain (the last one of a domain, as
/// a map keyed by domain would keep it). The reader already sorts them: then this is one check and
/// one allocation.
pub(crate) fn sorted_existing(actual: &Actual) -> Vec<usize> {
    let all = &actual.instances;
    let mut order: Vec<usize> = (0..all.len()).collect();
    if all.windows(2).all(|p| p[0].domain < p[1].domain) {
        return order;
    }
    // Stable: the instances of one domain keep their order; the last one stays.
    order.sort_by(|&a, &b| all[a].domain.cmp(&all[b].domain));
    let mut unique: Vec<usize> = Vec::with_capacity(order.len());
    for i in order {
        match unique.last_mut() {
            Some(last) if all[*last].domain == all[i].domain => *last = i,
            _ => unique.push(i),
        }
    }
    unique
}

/// Every declared or existing domain in order, with its declaration and its existing instance: a
/// merge of the two sorted lists.
fn merge_by_domain<'a>(
    desired: &'a Desired,
    actual: &'a Actual,
    order: &'a [usize],
) -> impl Iterator<Item = (&'a str, Option<&'a DesiredInstance>, Option<&'a ActualInstance>)> {
    let mut want = desired.instances.iter().peekable();
    let mut have = order.iter().map(|&i| &actual.instances[i]).peekable();
    std::iter::from_fn(move || {
        let order = match (want.peek(), have.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((d, _)), Some(h)) => d.as_str().cmp(h.domain.as_str()),
        };
        Some(match order {
            std::cmp::Ordering::Less => {
                let (d, w) = want.next()?;
                (d.as_str(), Some(w), None)
            }
            std::cmp::Ordering::Greater => {
                let h = have.next()?;
                (h.domain.as_str(), None, Some(h))
            }
            std::cmp::Ordering::Equal => {
                let (d, w) = want.next()?;
                (d.as_str(), Some(w), have.next())
            }
        })
    })
}

/// The `domain_aliases` of an instance doc, borrowed.
fn alias_strs(inst: &ActualInstance) -> impl Iterator<Item = &str> {
    inst.doc
        .get_array("domain_aliases")
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Leftovers: those named after a declared instance are not leftovers (the unfinished create
/// of an instance to be created, or the folder a rename already moved: the plan reuses them);
/// the removable others are removed by apply; every one is reported.
fn plan_orphans(out: &mut Plan, desired: &Desired, actual: &Actual) {
    use crate::orphans::Orphan;
    if actual.orphans.is_empty() {
        return;
    }
    let present = |d: &&DesiredInstance| d.state == InstanceState::Present;
    // The database prefixes of the declared instances, computed once (not once per orphan).
    let prefixes: HashSet<String> = if actual.orphans.iter().any(|o| matches!(o, Orphan::Databases { .. })) {
        desired
            .instances
            .values()
            .filter(present)
            .map(|d| layout::instance_prefix(&d.domain))
            .collect()
    } else {
        HashSet::new()
    };
    for o in &actual.orphans {
        let reused = match o {
            Orphan::Databases { prefix, .. } => prefixes.contains(prefix.as_str()),
            Orphan::Folder { name, .. } => desired.instances.get(name.as_str()).is_some_and(|d| present(&d)),
        };
        if reused {
            continue;
        }
        out.findings.push(Finding {
            domain: None,
            doc_id: None,
            message: o.finding_message(),
        });
        if o.removable() {
            out.orphans.push(o.clone());
        }
    }
}

fn existing_of(h: &ActualInstance) -> Existing {
    Existing {
        id: h.id.clone(),
        rev: h.rev.clone(),
        db_prefix: h.db_prefix.clone(),
        couch_cluster: crate::clusters::couch_cluster_of(&h.doc),
    }
}

fn destroy(h: &ActualInstance, why: &str) -> InstancePlan {
    let reason = if h.deleting() {
        format!("{why}; finishing a deletion that failed")
    } else {
        why.to_string()
    };
    InstancePlan {
        domain: h.domain.clone(),
        action: Action::Destroy,
        reason: Some(reason),
        changes: vec![],
        repairs: vec![],
        create: None,
        existing: Some(existing_of(h)),
        rename: None,
        dir_renames: vec![],
    }
}

/// The create spec of a declared instance, with cozy-stack's defaults.
pub fn create_spec(w: &DesiredInstance) -> CreateSpec {
    let blocked = w.blocked.unwrap_or(false);
    CreateSpec {
        domain: w.domain.clone(),
        prefix: layout::instance_prefix(&w.domain),
        locale: w.locale.clone().unwrap_or_else(|| layout::DEFAULT_LOCALE.to_string()),
        context: w.context.clone(),
        uuid: w.uuid.clone(),
        disk_quota: w.disk_quota.unwrap_or(0),
        domain_aliases: w.domain_aliases.clone().unwrap_or_default(),
        blocked,
        blocking_reason: if blocked { w.blocking_reason.clone() } else { None },
        settings: w.settings.clone(),
        couch_cluster: 0,
    }
}

fn plan_create(w: &DesiredInstance) -> InstancePlan {
    let spec = create_spec(w);
    let mut changes = Vec::new();
    let mut add = |doc, key: &str, v: Value| {
        changes.push(Change {
            doc,
            key: key.into(),
            before: None,
            after: Some(v),
        })
    };
    add(DocKind::Instance, "locale", s(&spec.locale));
    if !spec.domain_aliases.is_empty() {
        add(DocKind::Instance, "domain_aliases", json!(spec.domain_aliases));
    }
    if let Some(c) = &spec.context {
        add(DocKind::Instance, "context", s(c));
    }
    if let Some(u) = &spec.uuid {
        add(DocKind::Instance, "uuid", s(u));
    }
    if spec.blocked {
        add(DocKind::Instance, "blocked", json!(true));
        if let Some(r) = &spec.blocking_reason {
            add(DocKind::Instance, "blocking_reason", s(r));
        }
    }
    if spec.disk_quota > 0 {
        add(DocKind::Instance, "disk_quota", s(&spec.disk_quota.to_string()));
    }
    for (k, v) in &spec.settings {
        add(DocKind::Settings, k, s(v));
    }
    InstancePlan {
        domain: w.domain.clone(),
        action: Action::Create,
        reason: None,
        changes,
        repairs: vec![],
        create: Some(Box::new(spec)),
        existing: None,
        rename: None,
        dir_renames: vec![],
    }
}

/// The desired value of a managed instance-doc key, borrowed from the configuration.
#[derive(Clone, Copy)]
enum Wanted<'a> {
    Absent,
    Str(&'a str),
    /// Non-empty.
    Strs(&'a [String]),
    True,
    /// Non-zero; stored as a string.
    Quota(u64),
}

impl Wanted<'_> {
    /// The value (`None` = absent).
    fn value(self) -> Option<Value> {
        match self {
            Wanted::Absent => None,
            Wanted::Str(v) => Some(s(v)),
            Wanted::Strs(a) => Some(json!(a)),
            Wanted::True => Some(json!(true)),
            Wanted::Quota(q) => Some(s(&q.to_string())),
        }
    }

    /// Whether `present(have) == self.value()`, without building either value.
    fn matches(self, have: Option<FieldRef<'_>>) -> bool {
        let str_is = |v: &str| matches!(have, Some(FieldRef::Str(x)) if !x.is_empty() && x == v);
        match self {
            Wanted::Absent => match have {
                None | Some(FieldRef::Null) | Some(FieldRef::Bool(false)) => true,
                Some(FieldRef::Str(s)) => s.is_empty(),
                Some(FieldRef::Other(v)) => is_absent(Some(v)),
                Some(_) => false,
            },
            Wanted::Str(v) => str_is(v),
            Wanted::Strs(a) => matches!(have, Some(FieldRef::Other(Value::Array(x)))
                if x.len() == a.len() && x.iter().zip(a).all(|(x, a)| x.as_str() == Some(a.as_str()))),
            Wanted::True => matches!(have, Some(FieldRef::Bool(true))),
            Wanted::Quota(q) => match have {
                Some(FieldRef::Str(x)) => {
                    let mut buf = [0u8; 20];
                    x.as_bytes() == u64_digits(q, &mut buf)
                }
                _ => false,
            },
        }
    }
}

/// The decimal digits of `q`, written at the end of `buf`.
fn u64_digits(mut q: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (q % 10) as u8;
        q /= 10;
        if q == 0 {
            return &buf[i..];
        }
    }
}

/// Calls `f` with each managed instance-doc key that the configuration sets, and its desired value.
fn desired_instance_fields<'a>(w: &'a DesiredInstance, mut f: impl FnMut(&'static str, Wanted<'a>)) {
    if let Some(a) = &w.domain_aliases {
        f(
            "domain_aliases",
            if a.is_empty() { Wanted::Absent } else { Wanted::Strs(a) },
        );
    }
    if let Some(l) = &w.locale {
        f("locale", Wanted::Str(l));
    }
    if let Some(u) = &w.uuid {
        f("uuid", Wanted::Str(u));
    }
    if let Some(c) = &w.context {
        f("context", Wanted::Str(c));
    }
    match w.blocked {
        Some(true) => {
            f("blocked", Wanted::True);
            if let Some(r) = &w.blocking_reason {
                f("blocking_reason", Wanted::Str(r));
            }
        }
        Some(false) => {
            f("blocked", Wanted::Absent);
            f("blocking_reason", Wanted::Absent);
        }
        None => {}
    }
    if let Some(q) = w.disk_quota {
        f("disk_quota", if q > 0 { Wanted::Quota(q) } else { Wanted::Absent });
    }
}

/// Whether a value is "empty" as the stack omits it (`omitempty`): it compares as absent.
fn is_absent(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// Normalizes "empty" values the stack omits (`omitempty`) so they compare as absent.
fn present(v: Option<&Value>) -> Option<Value> {
    if is_absent(v) { None } else { v.cloned() }
}

pub(crate) fn plan_existing(w: &DesiredInstance, h: &ActualInstance) -> InstancePlan {
    let mut changes = Vec::new();
    desired_instance_fields(w, |key, wanted| {
        let have = h.doc.get_ref(key);
        if !wanted.matches(have) {
            changes.push(Change {
                doc: DocKind::Instance,
                key: key.into(),
                before: present(have.map(FieldRef::to_value).as_ref()),
                after: wanted.value(),
            });
        }
    });
    if h.deleting() {
        changes.push(Change {
            doc: DocKind::Instance,
            key: "deleting".into(),
            before: Some(json!(true)),
            after: None,
        });
    }
    changes.sort_by_key(|c| {
        layout::INSTANCE_FIELD_ORDER
            .iter()
            .position(|k| *k == c.key)
            .unwrap_or(usize::MAX)
    });

    let mut repairs = Vec::new();
    // Almost always: every database is there, and no doctype needs looking up.
    let all_dbs = h.doctypes == crate::dbset::DoctypeSet::all();
    let missing_db = |dt: &str| !all_dbs && !h.doctypes.contains(dt);
    for dt in layout::INSTANCE_DOCTYPES.iter().filter(|_| !all_dbs) {
        if missing_db(dt) {
            repairs.push(Repair::Database {
                doctype: dt.to_string(),
            });
        }
    }
    if missing_db(layout::FILES) {
        repairs.push(Repair::RootDir);
        repairs.push(Repair::TrashDir);
    }
    if missing_db(layout::CONTACTS) {
        repairs.push(Repair::MyselfContact);
    }
    if missing_db(layout::SETTINGS) && !matches!(h.settings, Observed::Missing) {
        // The settings doc went with its database, whether or not the file declares settings.
        repairs.push(Repair::SettingsDoc);
    }
    if !h.fs.symlink {
        if !h.fs.root {
            repairs.push(Repair::Folder);
        } else if !h.fs.trash {
            repairs.push(Repair::TrashFolder);
        }
    }
    match &h.settings {
        Observed::Missing => {
            repairs.push(Repair::SettingsDoc);
            for (k, v) in &w.settings {
                changes.push(Change {
                    doc: DocKind::Settings,
                    key: k.clone(),
                    before: None,
                    after: Some(s(v)),
                });
            }
        }
        Observed::Present(doc) => {
            for (k, v) in &w.settings {
                let before = doc.get(k).cloned();
                let after = Some(s(v));
                if before != after {
                    changes.push(Change {
                        doc: DocKind::Settings,
                        key: k.clone(),
                        before,
                        after,
                    });
                }
            }
        }
        Observed::NotRead => {}
    }
    if let Some(d) = &h.deep {
        if !d.root_dir && !repairs.contains(&Repair::RootDir) {
            repairs.push(Repair::RootDir);
        }
        if !d.trash_dir && !repairs.contains(&Repair::TrashDir) {
            repairs.push(Repair::TrashDir);
        }
        for (dt, ddoc) in &d.bad_indexes {
            if h.doctypes.contains(dt) {
                repairs.push(Repair::Index {
                    doctype: dt.clone(),
                    ddoc: ddoc.clone(),
                });
            }
        }
        for (dt, name) in &d.bad_views {
            if h.doctypes.contains(dt) {
                repairs.push(Repair::View {
                    doctype: dt.clone(),
                    name: name.clone(),
                });
            }
        }
    }
    let action = if !changes.is_empty() {
        Action::Update
    } else if !repairs.is_empty() {
        Action::Repair
    } else {
        Action::NoOp
    };
    InstancePlan {
        domain: h.domain.clone(),
        action,
        reason: h
            .fs
            .symlink
            .then(|| format!("{} is a symbolic link; cozyform does not act through it", h.domain)),
        changes,
        repairs,
        create: None,
        existing: Some(existing_of(h)),
        rename: None,
        dir_renames: vec![],
    }
}

/// Looks up the keys of a `BTreeMap` given in increasing order, as a merge: each lookup advances an
/// iterator instead of descending the tree, so looking up every entry of a plan (sorted by domain)
/// is linear. A key given out of order falls back to a tree lookup.
pub(crate) struct InOrder<'a, V> {
    map: &'a BTreeMap<String, V>,
    iter: std::iter::Peekable<std::collections::btree_map::Iter<'a, String, V>>,
    /// The greatest key the iterator has passed.
    passed: Option<&'a str>,
}

impl<'a, V> InOrder<'a, V> {
    pub(crate) fn new(map: &'a BTreeMap<String, V>) -> Self {
        InOrder {
            map,
            iter: map.iter().peekable(),
            passed: None,
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<&'a V> {
        if self.passed.is_some_and(|p| key <= p) {
            return self.map.get(key);
        }
        while let Some((k, v)) = self.iter.peek() {
            match k.as_str().cmp(key) {
                std::cmp::Ordering::Less => {
                    self.passed = Some(k.as_str());
                    self.iter.next();
                }
                std::cmp::Ordering::Equal => return Some(*v),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;
    use crate::actual::{ActualInstance, DeepState};
    use crate::desired::StoreTarget;
    use crate::fsops::FsState;

    pub(crate) fn desired(instances: Vec<DesiredInstance>, prune: bool) -> Desired {
        Desired {
            config_path: PathBuf::from("instances.toml"),
            config_hash: String::new(),
            prune,
            store: StoreTarget::Embedded {
                path: PathBuf::from("/x/store.sqlite"),
            },
            fs_root: PathBuf::from("/srv/cozy"),
            instances: instances.into_iter().map(|i| (i.domain.clone(), i)).collect(),
            clusters: Vec::new(),
        }
    }

    /// An existing, complete instance as cozyform creates it.
    pub(crate) fn existing(domain: &str, doc: Value) -> ActualInstance {
        let prefix = layout::instance_prefix(domain);
        let mut m = doc.as_object().cloned().unwrap_or_default();
        m.insert("domain".into(), json!(domain));
        m.insert("prefix".into(), json!(prefix));
        m.entry("locale").or_insert(json!("en"));
        ActualInstance {
            id: layout::derived_id("instance", domain),
            rev: "2-abc".into(),
            domain: domain.into(),
            db_prefix: prefix.clone(),
            doc: m.into(),
            doctypes: crate::dbset::DoctypeSet::all(),
            other_databases: Vec::new(),
            fs: FsState {
                root: true,
                trash: true,
                symlink: false,
            },
            settings: Observed::NotRead,
            deep: None,
        }
    }

    pub(crate) fn actual(instances: Vec<ActualInstance>) -> Actual {
        Actual {
            global_db: true,
            instances,
            ..Default::default()
        }
    }

    fn only(p: &Plan) -> &InstancePlan {
        let changed: Vec<&InstancePlan> = p.instances.iter().filter(|i| i.action != Action::NoOp).collect();
        assert_eq!(changed.len(), 1, "{p:#?}");
        changed[0]
    }

    #[test]
    fn plan_creates_a_missing_instance_with_default_locale() {
        let p = plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &actual(vec![]),
        );
        let i = only(&p);
        assert_eq!(i.action, Action::Create);
        let spec = i.create.as_ref().unwrap();
        assert_eq!(spec.locale, "en");
        assert_eq!(spec.prefix, layout::instance_prefix("a.example"));
        assert!(!p.create_global_db, "the global db exists");
    }

    #[test]
    fn plan_creates_the_global_db_with_the_first_instance() {
        let p = plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &Actual::default(),
        );
        assert!(p.create_global_db);
        assert_eq!(p.global.len(), 4);
    }

    #[test]
    fn plan_is_empty_when_nothing_differs() {
        let mut d = DesiredInstance::new("a.example");
        d.locale = Some("en".into());
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing("a.example", json!({}))]),
        );
        assert!(!p.has_changes());
        assert_eq!(p.summary().no_op, 1);
    }

    #[test]
    fn plan_updates_only_declared_fields() {
        let mut d = DesiredInstance::new("a.example");
        d.locale = Some("fr".into());
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing("a.example", json!({"context": "pro", "uuid": "u"}))]),
        );
        let i = only(&p);
        assert_eq!(i.action, Action::Update);
        assert_eq!(
            i.changes,
            vec![Change {
                doc: DocKind::Instance,
                key: "locale".into(),
                before: Some(json!("en")),
                after: Some(json!("fr"))
            }]
        );
    }

    #[test]
    fn plan_unblocking_clears_the_reason() {
        let mut d = DesiredInstance::new("a.example");
        d.blocked = Some(false);
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing(
                "a.example",
                json!({"blocked": true, "blocking_reason": "PAYMENT_FAILED"}),
            )]),
        );
        let keys: Vec<(&str, bool)> = only(&p)
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.after.is_none()))
            .collect();
        assert_eq!(keys, vec![("blocked", true), ("blocking_reason", true)]);
    }

    #[test]
    fn plan_blocked_false_on_unblocked_instance_is_no_op() {
        let mut d = DesiredInstance::new("a.example");
        d.blocked = Some(false);
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing("a.example", json!({}))]),
        );
        assert!(!p.has_changes());
    }

    #[test]
    fn plan_quota_is_compared_as_a_json_string() {
        let mut d = DesiredInstance::new("a.example");
        d.disk_quota = Some(5_000_000_000);
        let same = plan(
            &desired(vec![d.clone()], false),
            &actual(vec![existing("a.example", json!({"disk_quota": "5000000000"}))]),
        );
        assert!(!same.has_changes());
        let number = plan(
            &desired(vec![d], false),
            &actual(vec![existing("a.example", json!({"disk_quota": 5000000000u64}))]),
        );
        assert_eq!(only(&number).changes[0].after, Some(json!("5000000000")));
    }

    #[test]
    fn plan_zero_quota_removes_it() {
        let mut d = DesiredInstance::new("a.example");
        d.disk_quota = Some(0);
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing("a.example", json!({"disk_quota": "10"}))]),
        );
        assert_eq!(only(&p).changes[0].after, None);
    }

    #[test]
    fn plan_destroys_only_with_prune() {
        let a = actual(vec![existing("stray.example", json!({}))]);
        let kept = plan(&desired(vec![], false), &a);
        assert_eq!(kept.instances[0].action, Action::Unmanaged);
        assert!(!kept.has_changes());
        let pruned = plan(&desired(vec![], true), &a);
        assert_eq!(pruned.instances[0].action, Action::Destroy);
    }

    #[test]
    fn plan_destroys_absent_instances() {
        let mut d = DesiredInstance::new("old.example");
        d.state = InstanceState::Absent;
        let p = plan(
            &desired(vec![d.clone()], false),
            &actual(vec![existing("old.example", json!({}))]),
        );
        assert_eq!(only(&p).action, Action::Destroy);
        let gone = plan(&desired(vec![d], false), &actual(vec![]));
        assert!(gone.instances.is_empty());
    }

    #[test]
    fn plan_refuses_to_destroy_with_prevent_destroy() {
        let mut d = DesiredInstance::new("old.example");
        d.state = InstanceState::Absent;
        d.prevent_destroy = true;
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing("old.example", json!({}))]),
        );
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].contains("old.example") && p.errors[0].contains("prevent_destroy"));
    }

    #[test]
    fn plan_repairs_missing_databases_and_folders() {
        let mut h = existing("a.example", json!({}));
        h.doctypes.remove("io.cozy.files");
        h.doctypes.remove("io.cozy.jobs");
        h.fs = FsState {
            root: false,
            trash: false,
            symlink: false,
        };
        let p = plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &actual(vec![h]),
        );
        let i = only(&p);
        assert_eq!(i.action, Action::Repair);
        for r in [
            Repair::Database {
                doctype: "io.cozy.files".into(),
            },
            Repair::Database {
                doctype: "io.cozy.jobs".into(),
            },
            Repair::RootDir,
            Repair::TrashDir,
            Repair::Folder,
        ] {
            assert!(i.repairs.contains(&r), "{r:?} in {:?}", i.repairs);
        }
    }

    #[test]
    fn plan_repairs_a_missing_settings_doc_with_declared_keys() {
        let mut d = DesiredInstance::new("a.example");
        d.settings.insert("email".into(), "a@x".into());
        let mut h = existing("a.example", json!({}));
        h.settings = Observed::Missing;
        let p = plan(&desired(vec![d], false), &actual(vec![h]));
        let i = only(&p);
        assert!(i.repairs.contains(&Repair::SettingsDoc));
        assert_eq!(i.changes[0].key, "email");
    }

    #[test]
    fn plan_deep_repairs_indexes_views_and_dirs() {
        let mut h = existing("a.example", json!({}));
        h.deep = Some(Box::new(DeepState {
            root_dir: true,
            trash_dir: false,
            bad_indexes: vec![("io.cozy.jobs".into(), "by-queued-at".into())],
            bad_views: vec![("io.cozy.files".into(), "disk-usage".into())],
        }));
        let p = plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &actual(vec![h]),
        );
        let i = only(&p);
        assert_eq!(i.repairs.len(), 3, "{:?}", i.repairs);
    }

    #[test]
    fn plan_clears_deleting_on_a_declared_instance() {
        let p = plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &actual(vec![existing("a.example", json!({"deleting": true}))]),
        );
        assert_eq!(only(&p).changes[0].key, "deleting");
    }

    #[test]
    fn plan_reports_a_failed_deletion_of_an_unmanaged_instance() {
        let p = plan(
            &desired(vec![], false),
            &actual(vec![existing("a.example", json!({"deleting": true}))]),
        );
        assert_eq!(p.instances[0].action, Action::Unmanaged);
        assert!(
            p.instances[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("deletion that failed")
        );
    }

    #[test]
    fn plan_refuses_an_alias_held_by_another_instance() {
        let mut d = DesiredInstance::new("a.example");
        d.domain_aliases = Some(vec!["b.example".into()]);
        let p = plan(
            &desired(vec![d], false),
            &actual(vec![existing("b.example", json!({}))]),
        );
        assert_eq!(p.errors.len(), 1, "{p:#?}");
    }

    #[test]
    fn plan_allows_an_alias_freed_in_the_same_plan() {
        let mut a = DesiredInstance::new("a.example");
        a.domain_aliases = Some(vec!["x.example".into()]);
        let mut b = DesiredInstance::new("b.example");
        b.domain_aliases = Some(vec![]);
        let p = plan(
            &desired(vec![a, b], false),
            &actual(vec![existing("b.example", json!({"domain_aliases": ["x.example"]}))]),
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
    }

    #[test]
    fn plan_skips_domains_claimed_by_two_docs() {
        let mut a = actual(vec![]);
        a.ambiguous = BTreeSet::from(["a.example".to_string()]);
        let p = plan(&desired(vec![DesiredInstance::new("a.example")], false), &a);
        assert!(p.instances.is_empty());
    }

    #[test]
    fn plan_is_deterministic_and_sorted() {
        let d = desired(
            vec![DesiredInstance::new("b.example"), DesiredInstance::new("a.example")],
            true,
        );
        let a = actual(vec![existing("c.example", json!({}))]);
        let p1 = plan(&d, &a);
        assert_eq!(p1, plan(&d, &a));
        let domains: Vec<&str> = p1.instances.iter().map(|i| i.domain.as_str()).collect();
        assert_eq!(domains, ["a.example", "b.example", "c.example"]);
    }

    #[test]
    fn plan_removes_removable_leftovers_reports_the_others_and_reuses_those_of_a_create() {
        use crate::orphans::Orphan;
        let dbs = |domain: &str, removable: bool| Orphan::Databases {
            prefix: layout::instance_prefix(domain),
            databases: vec![format!("{}/io-cozy-files", layout::instance_prefix(domain))],
            removable,
            cluster: 0,
        };
        let mut a = actual(vec![]);
        a.orphans = vec![
            dbs("gone.example", true),
            dbs("data.example", false),
            dbs("new.example", true),
            Orphan::Folder {
                name: "empty.example".into(),
                removable: true,
            },
        ];
        let p = plan(&desired(vec![DesiredInstance::new("new.example")], false), &a);
        assert_eq!(p.orphans, vec![a.orphans[0].clone(), a.orphans[3].clone()]);
        assert_eq!(p.findings.len(), 3, "new.example's leftover is its unfinished create");
        assert!(p.findings.iter().any(|f| f.message.contains("left alone")));
        assert!(p.has_changes());
    }
}

#[cfg(test)]
#[path = "plan_linear_tests.rs"]
mod linear_tests;
