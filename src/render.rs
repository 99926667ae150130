//! Render stage: the plan and the apply report as text for people (Terraform-like). Symbols carry
//! the meaning without color: `+` create, `~` update, `!` repair, `-` destroy, `?` unmanaged.

use std::fmt::Write as _;

use serde_json::Value;

use crate::plan::{Action, Change, DocKind, InstancePlan, Plan, Repair};

/// Colors for terminals; all empty when color is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub green: &'static str,
    pub yellow: &'static str,
    pub red: &'static str,
    pub cyan: &'static str,
    pub bold: &'static str,
    pub reset: &'static str,
}

impl Style {
    pub fn new(color: bool) -> Style {
        if color {
            Style {
                green: "\x1b[32m",
                yellow: "\x1b[33m",
                red: "\x1b[31m",
                cyan: "\x1b[36m",
                bold: "\x1b[1m",
                reset: "\x1b[0m",
            }
        } else {
            Style {
                green: "",
                yellow: "",
                red: "",
                cyan: "",
                bold: "",
                reset: "",
            }
        }
    }
}

/// A JSON value as shown in a plan: strings quoted, multi-line strings kept for a diff.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn field_name(c: &Change) -> String {
    match c.doc {
        DocKind::Instance => c.key.clone(),
        DocKind::Settings => format!("settings.{}", c.key),
    }
}

fn render_change(out: &mut String, c: &Change, st: Style, indent: &str) {
    let name = field_name(c);
    match (&c.before, &c.after) {
        (None, Some(a)) => writeln!(out, "{indent}{}+{} {name}: {}", st.green, st.reset, show(a)).unwrap(),
        (Some(b), None) => writeln!(out, "{indent}{}-{} {name}: {}", st.red, st.reset, show(b)).unwrap(),
        (Some(Value::String(b)), Some(Value::String(a))) if b.contains('\n') || a.contains('\n') => {
            writeln!(out, "{indent}{}~{} {name}:", st.yellow, st.reset).unwrap();
            let diff = similar::TextDiff::from_lines(b.as_str(), a.as_str());
            for change in diff.iter_all_changes() {
                let (sign, color) = match change.tag() {
                    similar::ChangeTag::Delete => ("-", st.red),
                    similar::ChangeTag::Insert => ("+", st.green),
                    similar::ChangeTag::Equal => (" ", ""),
                };
                write!(out, "{indent}    {color}{sign} {}{}", change.value(), st.reset).unwrap();
                if change.missing_newline() {
                    out.push('\n');
                }
            }
        }
        (Some(b), Some(a)) => writeln!(
            out,
            "{indent}{}~{} {name}: {} -> {}",
            st.yellow,
            st.reset,
            show(b),
            show(a)
        )
        .unwrap(),
        (None, None) => {}
    }
}

/// A repair in words.
pub fn describe_repair(r: &Repair) -> String {
    match r {
        Repair::Database { doctype } => format!("database {doctype} (with its indexes and views)"),
        Repair::SettingsDoc => "settings doc io.cozy.settings.instance".into(),
        Repair::MyselfContact => "\"myself\" contact".into(),
        Repair::RootDir => "root directory doc".into(),
        Repair::TrashDir => "trash directory doc".into(),
        Repair::Index { doctype, ddoc } => format!("mango index {doctype}/_design/{ddoc}"),
        Repair::View { doctype, name } => format!("view {doctype}/_design/{name}"),
        Repair::Folder => "folder on disk".into(),
        Repair::TrashFolder => "trash folder .cozy_trash on disk".into(),
    }
}

fn render_instance(out: &mut String, i: &InstancePlan, st: Style) {
    let d = &i.domain;
    match i.action {
        Action::Create => {
            writeln!(out, "  {}# {d} will be created{}", st.bold, st.reset).unwrap();
            writeln!(out, "  {}+{} instance \"{d}\" {{", st.green, st.reset).unwrap();
            for c in &i.changes {
                render_change(out, c, st, "      ");
            }
            writeln!(out, "      {}+{} 16 databases, 22 indexes, 13 views, root/trash/Administrative/Photos directories, folder on disk", st.green, st.reset).unwrap();
            writeln!(out, "    }}").unwrap();
        }
        Action::Update | Action::Repair => {
            let what = match (&i.rename, i.action) {
                (Some(_), _) => "renamed",
                (None, Action::Update) => "updated in-place",
                _ => "repaired",
            };
            writeln!(out, "  {}# {d} will be {what}{}", st.bold, st.reset).unwrap();
            let sym = if i.action == Action::Update {
                format!("{}~{}", st.yellow, st.reset)
            } else {
                format!("{}!{}", st.cyan, st.reset)
            };
            match &i.rename {
                Some(r) => writeln!(out, "  {sym} {} => {d} (renamed) {{", r.from).unwrap(),
                None => writeln!(out, "  {sym} instance \"{d}\" {{").unwrap(),
            }
            for c in &i.changes {
                render_change(out, c, st, "      ");
            }
            if let Some(r) = i.rename.as_ref().filter(|r| r.move_folder) {
                writeln!(
                    out,
                    "      {}~{} folder <fs_root>/{} => <fs_root>/{d}",
                    st.yellow, st.reset, r.from
                )
                .unwrap();
            }
            for dr in &i.dir_renames {
                writeln!(
                    out,
                    "      {}~{} directory {:?} => {:?} (its subdirectories' paths and its folder on disk too)",
                    st.yellow, st.reset, dr.from, dr.to
                )
                .unwrap();
            }
            for r in &i.repairs {
                writeln!(out, "      {}!{} missing {}", st.cyan, st.reset, describe_repair(r)).unwrap();
            }
            writeln!(out, "    }}").unwrap();
        }
        Action::Destroy => {
            writeln!(out, "  {}# {d} will be destroyed{}", st.bold, st.reset).unwrap();
            if let Some(r) = &i.reason {
                writeln!(out, "  # ({r})").unwrap();
            }
            writeln!(
                out,
                "  {}-{} instance \"{d}\" (every database of its prefix, its folder on disk, its instance doc)",
                st.red, st.reset
            )
            .unwrap();
        }
        Action::Unmanaged => {
            writeln!(
                out,
                "  # {d} is unmanaged: {}",
                i.reason.as_deref().unwrap_or("not in the configuration")
            )
            .unwrap();
        }
        Action::NoOp => {}
    }
    if i.action != Action::Unmanaged
        && i.action != Action::Destroy
        && let Some(r) = &i.reason
    {
        writeln!(out, "  # note: {r}").unwrap();
    }
}

/// The human rendering of a plan, ending with the summary line.
pub fn render_plan(plan: &Plan, st: Style) -> String {
    let mut out = String::new();
    for f in &plan.findings {
        let whom = f
            .domain
            .as_deref()
            .or(f.doc_id.as_deref())
            .unwrap_or("global/instances");
        writeln!(out, "{}warning{}: {whom}: {}", st.yellow, st.reset, f.message).unwrap();
    }
    if !plan.findings.is_empty() {
        out.push('\n');
    }
    let changed: Vec<&InstancePlan> = plan
        .instances
        .iter()
        .filter(|i| i.action != Action::NoOp && i.action != Action::Unmanaged)
        .collect();
    let unmanaged: Vec<&InstancePlan> = plan
        .instances
        .iter()
        .filter(|i| i.action == Action::Unmanaged)
        .collect();
    if !plan.has_changes() {
        for i in &unmanaged {
            render_instance(&mut out, i, st);
        }
        if !unmanaged.is_empty() {
            out.push('\n');
        }
        for (domain, apps) in &plan.apps {
            crate::apps::render::render_apps_only(&mut out, domain, apps, st);
            out.push('\n');
        }
        writeln!(
            out,
            "{}No changes.{} Your instances match the configuration.",
            st.bold, st.reset
        )
        .unwrap();
        return out;
    }
    writeln!(out, "cozyform will perform the following actions:\n").unwrap();
    if plan.create_global_db || !plan.global.is_empty() {
        writeln!(out, "  {}# global/instances{}", st.bold, st.reset).unwrap();
        if plan.create_global_db {
            writeln!(out, "  {}+{} database global/instances", st.green, st.reset).unwrap();
        }
        for g in &plan.global {
            writeln!(out, "  {}!{} design doc _design/{g}", st.cyan, st.reset).unwrap();
        }
        out.push('\n');
    }
    for i in &changed {
        render_instance(&mut out, i, st);
        if let Some(apps) = plan.apps.get(&i.domain) {
            crate::apps::render::render_app_changes(&mut out, apps, st);
        }
        out.push('\n');
    }
    for i in plan.instances.iter().filter(|i| i.action == Action::NoOp) {
        if let Some(apps) = plan.apps.get(&i.domain) {
            crate::apps::render::render_apps_only(&mut out, &i.domain, apps, st);
            out.push('\n');
        }
    }
    for i in &unmanaged {
        render_instance(&mut out, i, st);
    }
    if !unmanaged.is_empty() {
        out.push('\n');
    }
    for o in &plan.orphans {
        writeln!(out, "  {}-{} {}", st.red, st.reset, o.describe()).unwrap();
    }
    if !plan.orphans.is_empty() {
        out.push('\n');
    }
    let s = plan.summary();
    write!(
        out,
        "{}Plan:{} {} to add, {} to change, {} to destroy.",
        st.bold, st.reset, s.add, s.change, s.destroy
    )
    .unwrap();
    if s.unmanaged > 0 {
        write!(out, " ({} unmanaged left alone.)", s.unmanaged).unwrap();
    }
    out.push('\n');
    let a = crate::apps::plan::summary(&plan.apps);
    if a.install + a.update + a.uninstall + a.unmanaged > 0 {
        write!(
            out,
            "{}Apps:{} {} to install, {} to update, {} to uninstall.",
            st.bold, st.reset, a.install, a.update, a.uninstall
        )
        .unwrap();
        if a.unmanaged > 0 {
            write!(out, " ({} not declared, left alone.)", a.unmanaged).unwrap();
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::desired::{DesiredInstance, InstanceState};
    use crate::fsops::FsState;
    use crate::plan::plan;
    use crate::plan::tests::{actual, desired, existing};

    fn sample_plan() -> Plan {
        let mut alice = DesiredInstance::new("alice.example.com");
        alice.locale = Some("fr".into());
        alice.blocked = Some(true);
        alice.blocking_reason = Some("PAYMENT_FAILED".into());
        alice.settings.insert("email".into(), "alice@example.com".into());
        alice.disk_quota = Some(5_000_000_000);
        let mut bob = DesiredInstance::new("bob.example.com");
        bob.locale = Some("fr".into());
        bob.blocked = Some(false);
        let carol = DesiredInstance::new("carol.example.com");
        let mut old = DesiredInstance::new("old.example.com");
        old.state = InstanceState::Absent;
        let mut carol_actual = existing("carol.example.com", json!({}));
        carol_actual.doctypes.remove("io.cozy.jobs");
        carol_actual.fs = FsState {
            root: true,
            trash: false,
            symlink: false,
        };
        plan(
            &desired(vec![alice, bob, carol, old], false),
            &actual(vec![
                existing(
                    "bob.example.com",
                    json!({"blocked": true, "blocking_reason": "PAYMENT_FAILED"}),
                ),
                carol_actual,
                existing("old.example.com", json!({})),
                existing("stray.example.com", json!({})),
            ]),
        )
    }

    #[test]
    fn human_plan_snapshot() {
        insta::assert_snapshot!(render_plan(&sample_plan(), Style::new(false)));
    }

    #[test]
    fn human_no_changes_snapshot() {
        let p = plan(
            &desired(vec![DesiredInstance::new("a.example")], false),
            &actual(vec![existing("a.example", json!({}))]),
        );
        insta::assert_snapshot!(render_plan(&p, Style::new(false)));
    }

    #[test]
    fn multi_line_values_are_diffed_line_by_line() {
        let mut out = String::new();
        let c = Change {
            doc: DocKind::Settings,
            key: "motd".into(),
            before: Some(json!("hello\nworld\n")),
            after: Some(json!("hello\nthere\n")),
        };
        render_change(&mut out, &c, Style::new(false), "");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn human_rename_snapshot() {
        use crate::actual::DefaultDirObs;
        let mut d = DesiredInstance::new("new.example.com");
        d.renamed_from = Some("old.example.com".into());
        d.locale = Some("fr".into());
        d.rename_default_dirs = true;
        let mut a = actual(vec![existing("old.example.com", json!({"locale": "en"}))]);
        a.default_dirs.insert(
            "old.example.com".into(),
            vec![DefaultDirObs {
                kind: "administrative".into(),
                from_path: "/Administrative".into(),
                to_path: "/Administratif".into(),
                id: Some("d1".into()),
                target_taken: false,
                rev: None,
            }],
        );
        insta::assert_snapshot!(render_plan(&plan(&desired(vec![d], false), &a), Style::new(false)));
    }

    #[test]
    fn color_is_only_added_when_asked() {
        let p = sample_plan();
        assert!(!render_plan(&p, Style::new(false)).contains('\x1b'));
        assert!(render_plan(&p, Style::new(true)).contains('\x1b'));
    }
}
