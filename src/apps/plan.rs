//! The app part of the plan (pure): for each instance that manages apps, what to install, update,
//! repair and uninstall, from the declared apps, the installed ones and the resolved sources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AppKind, InstalledApp, Resolved};
use crate::actual::Actual;
use crate::desired::Desired;
use crate::plan::{Action, InstancePlan};

/// What happens to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppOp {
    Install,
    Update,
    /// Installed but not `ready` (a failed install, `errored`): installed again.
    Repair,
    Uninstall,
    /// Installed, not declared, and `apps_prune` is off: reported, left alone.
    Unmanaged,
}

/// One app change of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppChange {
    pub kind: AppKind,
    pub slug: String,
    pub op: AppOp,
    /// The declared source (installs, updates, repairs) or the installed one.
    pub source: String,
    pub before_version: Option<String>,
    pub after_version: Option<String>,
    /// The permissions before and after, when an update or repair changes them.
    pub permissions_before: Option<Value>,
    pub permissions_after: Option<Value>,
    /// The error a repaired app was left with.
    pub error: Option<String>,
    /// What to install.
    pub target: Option<Resolved>,
}

impl AppChange {
    /// Whether applying acts on it.
    pub fn acts(&self) -> bool {
        self.op != AppOp::Unmanaged
    }
}

/// App counts for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppSummary {
    pub install: usize,
    pub update: usize,
    pub uninstall: usize,
    pub unmanaged: usize,
}

/// Counts the app changes (a repair counts as an update: the app is installed again in place).
pub fn summary(apps: &BTreeMap<String, Vec<AppChange>>) -> AppSummary {
    let mut s = AppSummary::default();
    for c in apps.values().flatten() {
        match c.op {
            AppOp::Install => s.install += 1,
            AppOp::Update | AppOp::Repair => s.update += 1,
            AppOp::Uninstall => s.uninstall += 1,
            AppOp::Unmanaged => s.unmanaged += 1,
        }
    }
    s
}

/// The app changes of every instance. Sources that could not be resolved become plan errors (one
/// per source, however many instances declare it): nothing is installed from a source cozyform could
/// not check.
pub fn plan_apps(
    desired: &Desired,
    actual: &Actual,
    instances: &[InstancePlan],
    errors: &mut Vec<String>,
) -> BTreeMap<String, Vec<AppChange>> {
    let mut out = BTreeMap::new();
    let mut failed: BTreeMap<String, (String, String, usize)> = BTreeMap::new();
    let none: Vec<InstalledApp> = Vec::new();
    // `instances` is sorted by domain: a merge, not a tree lookup per instance.
    let mut declared = crate::plan::InOrder::new(&desired.instances);
    for ip in instances {
        if !matches!(
            ip.action,
            Action::Create | Action::Update | Action::Repair | Action::NoOp
        ) {
            continue;
        }
        let Some(apps) = declared.get(&ip.domain).and_then(|d| d.apps.as_ref()) else {
            continue;
        };
        let installed = if ip.action == Action::Create {
            &none
        } else {
            match actual.apps.installed.get(&ip.domain) {
                Some(i) => i,
                None => continue,
            }
        };
        let mut changes = Vec::new();
        for want in &apps.list {
            let key = want.resolve_key();
            let src = want.source.url();
            let r = match actual.apps.resolved.get(&key) {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    failed
                        .entry(key)
                        .or_insert_with(|| {
                            let shown = super::http::redact(&src);
                            (format!("{} {} ({shown})", want.kind.label(), want.slug), e.clone(), 0)
                        })
                        .2 += 1;
                    continue;
                }
                None => continue,
            };
            let have = installed.iter().find(|i| i.kind == want.kind && i.slug == want.slug);
            let change = |op, have: Option<&InstalledApp>| {
                let perms_after = r.permissions();
                let perms_changed = have.is_some_and(|h| h.permissions != perms_after);
                AppChange {
                    kind: want.kind,
                    slug: want.slug.clone(),
                    op,
                    source: src.clone(),
                    before_version: have.map(|h| h.version.clone()),
                    after_version: Some(r.version.clone()),
                    permissions_before: perms_changed.then(|| have.map(|h| h.permissions.clone())).flatten(),
                    permissions_after: perms_changed.then_some(perms_after),
                    error: have.and_then(|h| h.error.clone()),
                    target: Some(r.clone()),
                }
            };
            match have {
                None => changes.push(change(AppOp::Install, None)),
                Some(h) if h.state != "ready" && h.state != "installed" => {
                    let mut c = change(AppOp::Repair, Some(h));
                    if c.error.is_none() {
                        c.error = Some(format!("state {:?}", h.state));
                    }
                    changes.push(c);
                }
                Some(h)
                    if h.version != r.version
                        || (h.source != src && !same_source_pinned(&h.source, &want.source, &h.version))
                        || (!h.checksum.is_empty() && !r.checksum.is_empty() && h.checksum != r.checksum) =>
                {
                    changes.push(change(AppOp::Update, Some(h)))
                }
                Some(_) => {}
            }
        }
        for h in installed {
            if apps.list.iter().any(|w| w.kind == h.kind && w.slug == h.slug) {
                continue;
            }
            changes.push(AppChange {
                kind: h.kind,
                slug: h.slug.clone(),
                op: if apps.prune { AppOp::Uninstall } else { AppOp::Unmanaged },
                source: h.source.clone(),
                before_version: Some(h.version.clone()),
                after_version: None,
                permissions_before: None,
                permissions_after: None,
                error: None,
                target: None,
            });
        }
        if !changes.is_empty() {
            changes.sort_by(|a: &AppChange, b: &AppChange| (a.kind, &a.slug).cmp(&(b.kind, &b.slug)));
            out.insert(ip.domain.clone(), changes);
        }
    }
    for (what, e, n) in failed.into_values() {
        errors.push(format!(
            "{what}: {e} (declared by {n} instance{}); fix the source or the registry, then run plan again",
            if n == 1 { "" } else { "s" }
        ));
    }
    out
}

/// Whether an app installed from `registry://<slug>/<channel>` at version `v` is what a declaration
/// of the same channel pinned to `v` asks for (as `import` writes it): the code is the same, so the
/// pin alone is no update.
fn same_source_pinned(installed: &str, want: &super::AppSource, installed_version: &str) -> bool {
    match want {
        super::AppSource::Registry {
            slug,
            channel,
            version: Some(v),
        } => {
            let installed = installed.trim_end_matches('/');
            v == installed_version
                && (installed == format!("registry://{slug}/{channel}")
                    || (channel == "stable" && installed == format!("registry://{slug}")))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apps::{AppSource, AppsActual, CodeSource, DesiredApp, DesiredApps};
    use crate::desired::DesiredInstance;
    use crate::plan::tests::{actual, desired, existing};

    fn app(slug: &str) -> DesiredApp {
        DesiredApp {
            kind: AppKind::Webapp,
            slug: slug.into(),
            source: AppSource::Registry {
                slug: slug.into(),
                channel: "stable".into(),
                version: None,
            },
            registries: vec!["http://reg/".into()],
        }
    }

    fn resolved(version: &str, perms: Value) -> Resolved {
        Resolved {
            version: version.into(),
            checksum: "ab".repeat(32),
            manifest: json!({"name": "x", "version": version, "permissions": perms}),
            code: CodeSource::Tarball {
                url: "http://reg/x.tgz".into(),
                sha256: None,
                prefix: String::new(),
            },
        }
    }

    fn installed(slug: &str, version: &str, state: &str, perms: Value) -> InstalledApp {
        InstalledApp {
            kind: AppKind::Webapp,
            slug: slug.into(),
            source: format!("registry://{slug}/stable"),
            version: version.into(),
            checksum: "ab".repeat(32),
            state: state.into(),
            error: (state == "errored").then(|| "boom".into()),
            permissions: perms,
        }
    }

    fn run(
        list: Vec<DesiredApp>,
        prune: bool,
        inst: Vec<InstalledApp>,
        res: Vec<(&DesiredApp, Result<Resolved, String>)>,
    ) -> (BTreeMap<String, Vec<AppChange>>, Vec<String>) {
        let mut w = DesiredInstance::new("a.example");
        let keys: Vec<(String, Result<Resolved, String>)> =
            res.into_iter().map(|(a, r)| (a.resolve_key(), r)).collect();
        w.apps = Some(DesiredApps { prune, list });
        let d = desired(vec![w], false);
        let mut a = actual(vec![existing("a.example", json!({}))]);
        a.apps = AppsActual {
            installed: [("a.example".to_string(), inst)].into_iter().collect(),
            resolved: keys.into_iter().collect(),
        };
        let mut errors = Vec::new();
        let p = crate::plan::plan(&d, &a);
        let apps = plan_apps(&d, &a, &p.instances, &mut errors);
        (apps, errors)
    }

    #[test]
    fn plan_installs_a_missing_app_and_leaves_a_matching_one() {
        let (d, p) = (app("drive"), app("photos"));
        let (apps, errors) = run(
            vec![d.clone(), p.clone()],
            false,
            vec![installed("photos", "1.0.0", "ready", json!({}))],
            vec![
                (&d, Ok(resolved("1.2.3", json!({})))),
                (&p, Ok(resolved("1.0.0", json!({})))),
            ],
        );
        assert!(errors.is_empty());
        let c = &apps["a.example"];
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].slug.as_str(), c[0].op), ("drive", AppOp::Install));
    }

    #[test]
    fn plan_updates_on_a_new_version_and_shows_permission_changes() {
        let p = app("photos");
        let (apps, _) = run(
            vec![p.clone()],
            false,
            vec![installed("photos", "1.4.1", "ready", json!({}))],
            vec![(&p, Ok(resolved("1.4.2", json!({"files": {"type": "io.cozy.files"}}))))],
        );
        let c = &apps["a.example"][0];
        assert_eq!(c.op, AppOp::Update);
        assert_eq!(c.before_version.as_deref(), Some("1.4.1"));
        assert_eq!(c.permissions_after, Some(json!({"files": {"type": "io.cozy.files"}})));
    }

    #[test]
    fn plan_repairs_an_errored_app() {
        let p = app("notes");
        let (apps, _) = run(
            vec![p.clone()],
            false,
            vec![installed("notes", "1.0.0", "errored", json!({}))],
            vec![(&p, Ok(resolved("1.0.0", json!({}))))],
        );
        assert_eq!(apps["a.example"][0].op, AppOp::Repair);
        assert_eq!(apps["a.example"][0].error.as_deref(), Some("boom"));
    }

    #[test]
    fn plan_uninstalls_undeclared_apps_only_with_apps_prune() {
        let (apps, _) = run(
            vec![],
            false,
            vec![installed("store", "1.0.0", "ready", json!({}))],
            vec![],
        );
        assert_eq!(apps["a.example"][0].op, AppOp::Unmanaged);
        let (apps, _) = run(
            vec![],
            true,
            vec![installed("store", "1.0.0", "ready", json!({}))],
            vec![],
        );
        assert_eq!(apps["a.example"][0].op, AppOp::Uninstall);
    }

    #[test]
    fn plan_reports_an_unresolved_source_once() {
        let d = app("drive");
        let (apps, errors) = run(vec![d.clone()], false, vec![], vec![(&d, Err("registry down".into()))]);
        assert!(apps.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("registry down"), "{errors:?}");
    }
}
