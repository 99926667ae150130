//! The app parts of `plan --json` and `apply --json` (see [`crate::render_json`] for the contract:
//! within format_version 1.x these only add fields).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppKind;
use super::install::AppOutcome;
use super::plan::{AppChange, AppOp};
use crate::plan::Plan;

/// `app` (a webapp, `io.cozy.apps`) or `konnector` (`io.cozy.konnectors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanAppKind {
    App,
    Konnector,
}

impl From<AppKind> for PlanAppKind {
    fn from(k: AppKind) -> Self {
        match k {
            AppKind::Webapp => PlanAppKind::App,
            AppKind::Konnector => PlanAppKind::Konnector,
        }
    }
}

/// What happens to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanAppOp {
    /// Not installed: installed.
    Install,
    /// Installed at another version or from another source: updated.
    Update,
    /// Installed but errored (or not ready): installed again.
    Repair,
    /// Installed, not declared, and apps_prune is on: uninstalled.
    Uninstall,
    /// Installed, not declared, apps_prune off: left alone.
    Unmanaged,
}

impl From<AppOp> for PlanAppOp {
    fn from(o: AppOp) -> Self {
        match o {
            AppOp::Install => PlanAppOp::Install,
            AppOp::Update => PlanAppOp::Update,
            AppOp::Repair => PlanAppOp::Repair,
            AppOp::Uninstall => PlanAppOp::Uninstall,
            AppOp::Unmanaged => PlanAppOp::Unmanaged,
        }
    }
}

/// One app change of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanApp {
    pub domain: String,
    pub kind: PlanAppKind,
    pub slug: String,
    pub op: PlanAppOp,
    /// The declared source, or the installed one (uninstall, unmanaged).
    pub source: String,
    /// The installed version, if any.
    pub before_version: Option<String>,
    /// The version to install, if any.
    pub after_version: Option<String>,
    /// The permissions before and after, when an update changes them (rules keyed by title).
    pub permissions_before: Option<Value>,
    pub permissions_after: Option<Value>,
    /// The error of an errored app being repaired.
    pub error: Option<String>,
}

/// App changes by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanAppSummary {
    pub install: usize,
    /// Updates and repairs.
    pub update: usize,
    pub uninstall: usize,
    /// Installed apps not declared, left alone.
    pub unmanaged: usize,
}

fn plan_app(domain: &str, c: &AppChange) -> PlanApp {
    PlanApp {
        domain: domain.to_string(),
        kind: c.kind.into(),
        slug: c.slug.clone(),
        op: c.op.into(),
        source: super::http::redact(&c.source),
        before_version: c.before_version.clone(),
        after_version: c.after_version.clone(),
        permissions_before: c.permissions_before.clone(),
        permissions_after: c.permissions_after.clone(),
        error: c.error.clone(),
    }
}

/// The app changes of a plan, by domain then (kind, slug).
pub fn plan_apps(p: &Plan) -> Vec<PlanApp> {
    p.apps
        .iter()
        .flat_map(|(d, cs)| cs.iter().map(move |c| plan_app(d, c)))
        .collect()
}

pub fn plan_app_summary(p: &Plan) -> PlanAppSummary {
    let s = super::plan::summary(&p.apps);
    PlanAppSummary {
        install: s.install,
        update: s.update,
        uninstall: s.uninstall,
        unmanaged: s.unmanaged,
    }
}

/// What happened to one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyApp {
    pub domain: String,
    pub kind: PlanAppKind,
    pub slug: String,
    pub op: PlanAppOp,
    pub version: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
}

pub fn apply_apps(outcomes: &[AppOutcome]) -> Vec<ApplyApp> {
    outcomes
        .iter()
        .map(|o| ApplyApp {
            domain: o.domain.clone(),
            kind: o.kind.into(),
            slug: o.slug.clone(),
            op: o.op.into(),
            version: o.version.clone(),
            ok: o.ok,
            error: o.error.clone(),
        })
        .collect()
}
