//! Machine-readable output: the documents `plan --json` and `apply --json` print.
//!
//! These are dedicated types, built from the plan and the apply report, so that the JSON contract
//! stays stable when the planner's internals change. Their JSON Schemas (`schemas/plan.schema.json`,
//! `schemas/apply.schema.json`) are generated from them with schemars.
//!
//! Compatibility: within one major `format_version` ("1.x"), changes only add fields (a minor bump);
//! consumers must ignore keys they do not know. Removing or changing a field bumps the major version.
//!
//! Secrets: a plan never holds any (ids, revs and database prefixes are not secrets). The only secret
//! in these documents is the registration link of an instance `apply --json` created, as it is the
//! only place it is shown.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actual::Finding;
use crate::apply::{ApplyReport, InstanceOutcome};
use crate::plan::{self, Plan};

/// The version of the JSON documents' format. Minor versions only add fields (1.1: `targets` on
/// the plan, `renamed_from` and `dir_renames` on each plan instance).
pub const FORMAT_VERSION: &str = "1.1";

/// The compatibility rule, as stated in the schemas.
pub const COMPATIBILITY: &str =
    "Changes within a major format_version (1.x) only add fields; consumers must ignore unknown keys.";

/// Marks every property required: optional values are always present, as null when absent.
fn require_all(schema: &mut schemars::Schema) {
    let keys: Vec<Value> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    schema.insert("required".into(), Value::Array(keys));
}

/// The document `cozyform plan --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "cozyform plan",
    description = "The plan printed by `cozyform plan --json` (and under `plan` by `cozyform apply --json`). Changes within a major format_version (1.x) only add fields; consumers must ignore unknown keys. A plan holds no secret."
)]
pub struct PlanDocument {
    /// The format of this document, "1.1". Changes within a major version only add fields;
    /// consumers must ignore unknown keys.
    pub format_version: String,
    /// The version of cozyform that produced it.
    pub cozyform_version: String,
    /// Whether applying would change anything (instances or `global/instances`).
    pub has_changes: bool,
    /// How many instances each kind of action concerns.
    pub summary: PlanSummary,
    /// Reasons the plan must not be applied (e.g. `prevent_destroy`, alias conflicts). When not
    /// empty, the command exits 1.
    pub errors: Vec<String>,
    /// Problems found in the actual state, reported instead of acted on.
    pub findings: Vec<PlanFinding>,
    /// What the plan does to `global/instances`.
    pub global: PlanGlobal,
    /// Every declared or existing instance, sorted by domain, including no-ops.
    pub instances: Vec<PlanInstance>,
    /// App and konnector changes by kind (added in 1.1).
    #[serde(default)]
    pub app_summary: crate::apps::json::PlanAppSummary,
    /// Every app change (and every installed app not declared), by domain then kind and slug (added
    /// in 1.1).
    #[serde(default)]
    pub apps: Vec<crate::apps::json::PlanApp>,
    /// The `--target` patterns the plan is restricted to (added in 1.1). When not empty, the plan
    /// is partial: it covers only the matching instances. Absent from 1.0 documents.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// Instance counts by action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanSummary {
    /// Instances to create.
    pub add: usize,
    /// Instances to update or repair.
    pub change: usize,
    /// Instances to destroy.
    pub destroy: usize,
    /// Existing instances not in the configuration, left alone.
    pub unmanaged: usize,
    /// Instances that already match the configuration.
    pub no_op: usize,
}

/// A problem found in the actual state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_all)]
pub struct PlanFinding {
    /// The domain concerned, when known.
    pub domain: Option<String>,
    /// The instance doc concerned, when known.
    pub doc_id: Option<String>,
    pub message: String,
}

/// What the plan does to the global database `global/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanGlobal {
    /// Whether the database `global/instances` will be created.
    pub create_database: bool,
    /// Design docs (view and index names) of `global/instances` to define or redefine.
    pub design_docs: Vec<String>,
}

/// What happens to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlanAction {
    Create,
    Update,
    Repair,
    Destroy,
    Unmanaged,
    NoOp,
}

/// The plan for one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_all)]
pub struct PlanInstance {
    pub domain: String,
    pub action: PlanAction,
    /// Why: for destroys and unmanaged instances, or a note (e.g. a failed deletion to clear).
    pub reason: Option<String>,
    /// Field-level changes (for a create, every field it sets).
    pub changes: Vec<PlanChange>,
    /// Missing parts to (re)create.
    pub repairs: Vec<PlanRepair>,
    /// For a rename (`renamed_from`, format 1.1): the domain the instance has before apply; `domain`
    /// is the one it has after. Null otherwise.
    #[serde(default)]
    pub renamed_from: Option<String>,
    /// Default directories renamed with a locale change (`rename_default_dirs`, format 1.1).
    #[serde(default)]
    pub dir_renames: Vec<PlanDirRename>,
}

/// A default directory renamed with a locale change: the directory doc's `name` and `path`, the
/// `path` of every descendant directory, and the folder on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanDirRename {
    /// `administrative` or `photos`.
    pub kind: String,
    /// The path before, e.g. `/Administrative`.
    pub from: String,
    /// The path after, e.g. `/Administratif`.
    pub to: String,
}

/// Which document a change is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanDoc {
    /// The instance doc in `global/instances`.
    Instance,
    /// The settings doc `io.cozy.settings.instance`.
    Settings,
}

/// One field-level change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_all)]
pub struct PlanChange {
    pub doc: PlanDoc,
    pub key: String,
    /// The current value; null when absent.
    pub before: Option<Value>,
    /// The value after apply; null when the key is removed.
    pub after: Option<Value>,
}

/// Something missing that a repair creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanRepair {
    /// A database of the instance (its indexes and views are defined with it).
    Database { doctype: String },
    /// The settings doc.
    SettingsDoc,
    /// The "myself" contact.
    MyselfContact,
    /// The root directory doc.
    RootDir,
    /// The trash directory doc.
    TrashDir,
    /// A mango index that is missing or differs (`--deep`).
    Index { doctype: String, ddoc: String },
    /// A view that is missing or differs (`--deep`).
    View { doctype: String, name: String },
    /// The instance folder on disk.
    Folder,
    /// The trash folder `.cozy_trash` on disk.
    TrashFolder,
}

impl From<plan::Action> for PlanAction {
    fn from(a: plan::Action) -> Self {
        match a {
            plan::Action::Create => PlanAction::Create,
            plan::Action::Update => PlanAction::Update,
            plan::Action::Repair => PlanAction::Repair,
            plan::Action::Destroy => PlanAction::Destroy,
            plan::Action::Unmanaged => PlanAction::Unmanaged,
            plan::Action::NoOp => PlanAction::NoOp,
        }
    }
}

impl From<&plan::Repair> for PlanRepair {
    fn from(r: &plan::Repair) -> Self {
        match r {
            plan::Repair::Database { doctype } => PlanRepair::Database {
                doctype: doctype.clone(),
            },
            plan::Repair::SettingsDoc => PlanRepair::SettingsDoc,
            plan::Repair::MyselfContact => PlanRepair::MyselfContact,
            plan::Repair::RootDir => PlanRepair::RootDir,
            plan::Repair::TrashDir => PlanRepair::TrashDir,
            plan::Repair::Index { doctype, ddoc } => PlanRepair::Index {
                doctype: doctype.clone(),
                ddoc: ddoc.clone(),
            },
            plan::Repair::View { doctype, name } => PlanRepair::View {
                doctype: doctype.clone(),
                name: name.clone(),
            },
            plan::Repair::Folder => PlanRepair::Folder,
            plan::Repair::TrashFolder => PlanRepair::TrashFolder,
        }
    }
}

impl From<&plan::Change> for PlanChange {
    fn from(c: &plan::Change) -> Self {
        PlanChange {
            doc: match c.doc {
                plan::DocKind::Instance => PlanDoc::Instance,
                plan::DocKind::Settings => PlanDoc::Settings,
            },
            key: c.key.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
        }
    }
}

impl From<&Finding> for PlanFinding {
    fn from(f: &Finding) -> Self {
        PlanFinding {
            domain: f.domain.clone(),
            doc_id: f.doc_id.clone(),
            message: f.message.clone(),
        }
    }
}

impl PlanDocument {
    /// The document of a plan.
    pub fn new(p: &Plan) -> PlanDocument {
        let s = p.summary();
        PlanDocument {
            format_version: FORMAT_VERSION.into(),
            cozyform_version: env!("CARGO_PKG_VERSION").into(),
            has_changes: p.has_changes(),
            summary: PlanSummary {
                add: s.add,
                change: s.change,
                destroy: s.destroy,
                unmanaged: s.unmanaged,
                no_op: s.no_op,
            },
            errors: p.errors.clone(),
            findings: p.findings.iter().map(PlanFinding::from).collect(),
            global: PlanGlobal {
                create_database: p.create_global_db,
                design_docs: p.global.clone(),
            },
            instances: p
                .instances
                .iter()
                .map(|i| PlanInstance {
                    domain: i.domain.clone(),
                    action: i.action.into(),
                    reason: i.reason.clone(),
                    changes: i.changes.iter().map(PlanChange::from).collect(),
                    repairs: i.repairs.iter().map(PlanRepair::from).collect(),
                    renamed_from: i.rename.as_ref().map(|r| r.from.clone()),
                    dir_renames: i
                        .dir_renames
                        .iter()
                        .map(|r| PlanDirRename {
                            kind: r.kind.clone(),
                            from: r.from.clone(),
                            to: r.to.clone(),
                        })
                        .collect(),
                })
                .collect(),
            app_summary: crate::apps::json::plan_app_summary(p),
            apps: crate::apps::json::plan_apps(p),
            targets: p.targets.clone(),
        }
    }
}

/// The document `cozyform apply --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "cozyform apply result",
    description = "The result printed by `cozyform apply --auto-approve --json`. Changes within a major format_version (1.x) only add fields; consumers must ignore unknown keys. The only secret it holds is the registration link of each created instance."
)]
pub struct ApplyDocument {
    /// The format of this document, "1.1".
    pub format_version: String,
    /// The version of cozyform that produced it.
    pub cozyform_version: String,
    /// The plan that was applied (the same document as `plan --json`).
    pub plan: PlanDocument,
    /// What the apply did.
    pub result: ApplyResult,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_all)]
pub struct ApplyResult {
    /// Whether everything planned was done (false when the plan had errors and nothing was applied).
    pub ok: bool,
    /// Whether the apply ran (false when the plan had no changes, or had errors).
    pub applied: bool,
    /// Instances created, changed (updated or repaired) and destroyed successfully, and failures.
    pub summary: ApplySummary,
    /// The error preparing `global/instances`, if any.
    pub global_error: Option<String>,
    /// One entry per instance acted on (no-ops and unmanaged instances are not listed).
    pub instances: Vec<ApplyInstance>,
    /// Errors tied to no instance: leftovers that could not be removed, a lock that could not be
    /// released (with the `force-unlock` command to run). Counted in `summary.failed`.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Leftovers of interrupted creates removed by this run.
    #[serde(default)]
    pub leftovers_removed: usize,
    /// One entry per app change acted on (added in 1.1).
    #[serde(default)]
    pub apps: Vec<crate::apps::json::ApplyApp>,
}

/// Counts of what an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplySummary {
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
    /// Failed instances, plus one if `global/instances` could not be prepared.
    pub failed: usize,
}

/// What happened to one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_all)]
pub struct ApplyInstance {
    pub domain: String,
    pub action: PlanAction,
    pub ok: bool,
    pub error: Option<String>,
    /// For a created instance: `https://<domain>/?registerToken=<hex>`. A secret, shown only here.
    /// It can be set on a failed create too, when the instance doc was written.
    pub registration_link: Option<String>,
    /// For a destroy with a backup dir: the verified archive written before the destroy.
    #[serde(default)]
    pub backup: Option<String>,
    /// For a rename (format 1.1): the domain the instance had; `action` is `update` and `domain` the
    /// new domain. `null` otherwise.
    pub renamed_from: Option<String>,
}

impl From<&InstanceOutcome> for ApplyInstance {
    fn from(o: &InstanceOutcome) -> Self {
        ApplyInstance {
            domain: o.domain.clone(),
            action: o.action.into(),
            ok: o.ok,
            error: o.error.clone(),
            registration_link: o.registration_link.clone(),
            backup: o.backup.clone(),
            renamed_from: o.renamed_from.clone(),
        }
    }
}

impl ApplyResult {
    /// The result of a run; `None` when nothing was applied (`ok` tells whether that was a refusal).
    pub fn new(report: Option<&ApplyReport>, ok_without_report: bool) -> ApplyResult {
        match report {
            None => ApplyResult {
                ok: ok_without_report,
                applied: false,
                summary: ApplySummary::default(),
                global_error: None,
                instances: vec![],
                errors: vec![],
                leftovers_removed: 0,
                apps: vec![],
            },
            Some(r) => ApplyResult {
                ok: r.failed() == 0,
                applied: true,
                summary: ApplySummary {
                    added: r.count(plan::Action::Create),
                    changed: r.count(plan::Action::Update) + r.count(plan::Action::Repair),
                    destroyed: r.count(plan::Action::Destroy),
                    failed: r.failed(),
                },
                global_error: r.global_error.clone(),
                instances: r.outcomes.iter().map(ApplyInstance::from).collect(),
                errors: r.leftover_errors.iter().cloned().chain(r.lock_error.clone()).collect(),
                leftovers_removed: r.leftovers_removed,
                apps: crate::apps::json::apply_apps(&r.apps),
            },
        }
    }
}

impl ApplyDocument {
    pub fn new(p: &Plan, result: ApplyResult) -> ApplyDocument {
        ApplyDocument {
            format_version: FORMAT_VERSION.into(),
            cozyform_version: env!("CARGO_PKG_VERSION").into(),
            plan: PlanDocument::new(p),
            result,
        }
    }
}

/// The JSON Schema of [`PlanDocument`] (`schemas/plan.schema.json`).
pub fn plan_json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(PlanDocument)).expect("schema serializes")
}

/// The JSON Schema of [`ApplyDocument`] (`schemas/apply.schema.json`).
pub fn apply_json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(ApplyDocument)).expect("schema serializes")
}

/// A document as printed: pretty JSON and a final newline.
pub fn to_pretty<T: Serialize>(doc: &T) -> String {
    let mut s = serde_json::to_string_pretty(doc).expect("documents serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::desired::{DesiredInstance, InstanceState};
    use crate::plan::plan;
    use crate::plan::tests::{actual, desired, existing};

    fn sample() -> Plan {
        let mut a = DesiredInstance::new("a.example");
        a.locale = Some("fr".into());
        let mut b = DesiredInstance::new("b.example");
        b.locale = Some("fr".into());
        let mut old = DesiredInstance::new("old.example");
        old.state = InstanceState::Absent;
        old.prevent_destroy = true;
        let mut c = existing("c.example", json!({}));
        c.doctypes.remove("io.cozy.jobs");
        plan(
            &desired(vec![a, b, DesiredInstance::new("c.example"), old], false),
            &actual(vec![
                existing("b.example", json!({"locale": "en"})),
                c,
                existing("old.example", json!({})),
                existing("stray.example", json!({})),
            ]),
        )
    }

    #[test]
    fn plan_document_has_the_contract_fields() {
        let doc = serde_json::to_value(PlanDocument::new(&sample())).unwrap();
        assert_eq!(doc["format_version"], "1.1");
        assert_eq!(doc["cozyform_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            doc["summary"],
            json!({"add": 1, "change": 2, "destroy": 1, "unmanaged": 1, "no_op": 0})
        );
        assert_eq!(doc["errors"].as_array().unwrap().len(), 1);
        let inst = doc["instances"].as_array().unwrap();
        let actions: Vec<&str> = inst.iter().map(|i| i["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["create", "update", "repair", "destroy", "unmanaged"]);
        assert_eq!(
            inst[1]["changes"],
            json!([{"doc": "instance", "key": "locale", "before": "en", "after": "fr"}])
        );
        assert_eq!(
            inst[2]["repairs"],
            json!([{"kind": "database", "doctype": "io.cozy.jobs"}])
        );
        assert!(inst[0]["reason"].is_null());
        // Internals stay out of the contract.
        assert!(inst[0].get("create").is_none() && inst[1].get("existing").is_none());
    }

    #[test]
    fn plan_document_validates_against_its_schema() {
        let schema = plan_json_schema();
        let doc = serde_json::to_value(PlanDocument::new(&sample())).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(schema["description"].as_str().unwrap().contains(COMPATIBILITY));
    }
}
