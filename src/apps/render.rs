//! Human rendering of app changes, under each instance of the plan, and of app outcomes.

use std::fmt::Write as _;

use serde_json::Value;

use super::plan::{AppChange, AppOp};
use crate::render::Style;

fn rule(v: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        parts.push(t.to_string());
    }
    if let Some(verbs) = v.get("verbs").and_then(Value::as_array) {
        let verbs: Vec<&str> = verbs.iter().filter_map(Value::as_str).collect();
        parts.push(verbs.join(","));
    }
    if let Some(s) = v.get("selector").and_then(Value::as_str) {
        parts.push(format!("selector={s}"));
    }
    if let Some(vals) = v.get("values").and_then(Value::as_array) {
        let vals: Vec<String> = vals
            .iter()
            .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
            .collect();
        parts.push(format!("values={}", vals.join(",")));
    }
    parts.join(" ")
}

/// The permission rules added, removed or changed by an update, one line each.
pub fn permission_lines(c: &AppChange) -> Vec<(char, String)> {
    let empty = serde_json::Map::new();
    let before = c
        .permissions_before
        .as_ref()
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(after) = c.permissions_after.as_ref().and_then(Value::as_object) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (title, v) in after {
        match before.get(title) {
            None => out.push(('+', format!("permission {title}: {}", rule(v)))),
            Some(b) if b != v => out.push(('~', format!("permission {title}: {} -> {}", rule(b), rule(v)))),
            Some(_) => {}
        }
    }
    for (title, v) in before {
        if !after.contains_key(title) {
            out.push(('-', format!("permission {title}: {}", rule(v))));
        }
    }
    out
}

/// One line per app change (and its permission changes), indented under the instance.
pub fn render_app_changes(out: &mut String, changes: &[AppChange], st: Style) {
    for c in changes {
        let what = c.kind.label();
        let slug = &c.slug;
        let before = c.before_version.as_deref().unwrap_or("?");
        let after = c.after_version.as_deref().unwrap_or("?");
        match c.op {
            AppOp::Install => writeln!(
                out,
                "  {}+{} {what} {slug} {after} ({})",
                st.green,
                st.reset,
                super::http::redact(&c.source)
            )
            .unwrap(),
            AppOp::Update => {
                if before == after {
                    writeln!(
                        out,
                        "  {}~{} {what} {slug} {before} -> {after} ({})",
                        st.yellow,
                        st.reset,
                        super::http::redact(&c.source)
                    )
                    .unwrap()
                } else {
                    writeln!(out, "  {}~{} {what} {slug} {before} -> {after}", st.yellow, st.reset).unwrap()
                }
            }
            AppOp::Repair => writeln!(
                out,
                "  {}!{} {what} {slug} {}: {} (install {after} again)",
                st.cyan,
                st.reset,
                if c.error.as_deref().is_some_and(|e| e.starts_with("state ")) {
                    "is not ready"
                } else {
                    "errored"
                },
                c.error.as_deref().unwrap_or("")
            )
            .unwrap(),
            AppOp::Uninstall => writeln!(out, "  {}-{} {what} {slug} {before}", st.red, st.reset).unwrap(),
            AppOp::Unmanaged => writeln!(
                out,
                "  # {what} {slug} {before} is installed but not declared; left alone (apps_prune = true uninstalls it)"
            )
            .unwrap(),
        }
        for (sym, line) in permission_lines(c) {
            let color = match sym {
                '+' => st.green,
                '-' => st.red,
                _ => st.yellow,
            };
            writeln!(out, "      {color}{sym}{} {line}", st.reset).unwrap();
        }
    }
}

/// The app section of an instance whose instance-level plan is a no-op.
pub fn render_apps_only(out: &mut String, domain: &str, changes: &[AppChange], st: Style) {
    writeln!(out, "  {}# {domain}: apps{}", st.bold, st.reset).unwrap();
    render_app_changes(out, changes, st);
}

/// Prints the app outcomes of an apply (stdout), then their counts.
pub fn render_app_outcomes(outcomes: &[super::install::AppOutcome], st: Style) {
    for o in outcomes {
        let what = format!("{} {} {}", o.kind.label(), o.slug, o.version.as_deref().unwrap_or(""));
        match &o.error {
            Some(e) => println!("{}Error{}: {}: {what}: {e}", st.red, st.reset, o.domain),
            None => {
                let done = match o.op {
                    super::plan::AppOp::Install => "installed",
                    super::plan::AppOp::Update | super::plan::AppOp::Repair => "updated",
                    super::plan::AppOp::Uninstall => "uninstalled",
                    super::plan::AppOp::Unmanaged => continue,
                };
                println!("{}: {what}: {done}.", o.domain)
            }
        }
    }
    if !outcomes.is_empty() {
        let c = super::install::count(outcomes);
        let failed = outcomes.iter().filter(|o| !o.ok).count();
        println!(
            "Apps: {} installed, {} updated, {} uninstalled, {failed} failed.",
            c.get("installed").unwrap_or(&0),
            c.get("updated").unwrap_or(&0),
            c.get("uninstalled").unwrap_or(&0)
        );
    }
}

/// `plan --markdown`: one line per instance with app changes.
pub fn markdown_lines(apps: &std::collections::BTreeMap<String, Vec<AppChange>>) -> Vec<String> {
    let mut lines = Vec::new();
    for (domain, changes) in apps {
        let parts: Vec<String> = changes
            .iter()
            .filter(|c| c.acts())
            .map(|c| {
                let (b, a) = (
                    c.before_version.as_deref().unwrap_or("?"),
                    c.after_version.as_deref().unwrap_or("?"),
                );
                let perms = if c.permissions_after.is_some() {
                    " (permissions change)"
                } else {
                    ""
                };
                match c.op {
                    AppOp::Install => format!("+ {} `{}` {a}", c.kind.label(), c.slug),
                    AppOp::Update => format!("~ {} `{}` {b} → {a}{perms}", c.kind.label(), c.slug),
                    AppOp::Repair => format!("! {} `{}` errored → {a}", c.kind.label(), c.slug),
                    AppOp::Uninstall => format!("- {} `{}` {b}", c.kind.label(), c.slug),
                    AppOp::Unmanaged => String::new(),
                }
            })
            .collect();
        if !parts.is_empty() {
            lines.push(format!("- **apps** `{domain}`: {}", parts.join(", ")));
        }
    }
    lines
}
