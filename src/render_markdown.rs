//! `plan --markdown`: a compact summary of a plan for a pull-request comment, with the full human
//! plan folded in a `<details>` block.

use std::fmt::Write as _;

use crate::plan::{Action, DocKind, Plan};
use crate::render::{self, Style};

/// The Markdown summary of a plan.
pub fn render_markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let s = plan.summary();
    writeln!(out, "### cozyform plan\n").unwrap();
    for e in &plan.errors {
        writeln!(out, "> **Error:** {}", one_line(e)).unwrap();
    }
    if !plan.errors.is_empty() {
        writeln!(out, ">\n> This plan cannot be applied.\n").unwrap();
    }
    if !plan.targets.is_empty() {
        let t: Vec<String> = plan.targets.iter().map(|t| format!("`{t}`")).collect();
        writeln!(
            out,
            "> **Warning:** partial plan (`--target` {}): other instances are neither shown nor changed.\n",
            t.join(", ")
        )
        .unwrap();
    }
    writeln!(out, "| add | change | destroy | unmanaged |").unwrap();
    writeln!(out, "| ---: | ---: | ---: | ---: |").unwrap();
    writeln!(out, "| {} | {} | {} | {} |\n", s.add, s.change, s.destroy, s.unmanaged).unwrap();
    let a = crate::apps::plan::summary(&plan.apps);
    if a.install + a.update + a.uninstall + a.unmanaged > 0 {
        writeln!(
            out,
            "Apps: {} to install, {} to update, {} to uninstall, {} not declared (left alone).\n",
            a.install, a.update, a.uninstall, a.unmanaged
        )
        .unwrap();
    }
    if !plan.has_changes() {
        writeln!(out, "No changes. Your instances match the configuration.\n").unwrap();
    }
    let mut lines = Vec::new();
    if plan.create_global_db {
        lines.push("- **+ create** `global/instances`".to_string());
    } else if !plan.global.is_empty() {
        lines.push(format!("- **! repair** `global/instances`: {}", plan.global.join(", ")));
    }
    for i in &plan.instances {
        let d = &i.domain;
        let line = match i.action {
            Action::Create => format!("- **+ create** `{d}`"),
            Action::Update => {
                let mut keys: Vec<String> = i
                    .changes
                    .iter()
                    .map(|c| match c.doc {
                        DocKind::Instance => c.key.clone(),
                        DocKind::Settings => format!("settings.{}", c.key),
                    })
                    .collect();
                keys.extend(
                    i.dir_renames
                        .iter()
                        .map(|r| format!("directory {} => {}", r.from, r.to)),
                );
                keys.extend(i.repairs.iter().map(render::describe_repair));
                match &i.rename {
                    Some(r) => format!("- **~ rename** `{}` => `{d}`: {}", r.from, keys.join(", ")),
                    None => format!("- **~ update** `{d}`: {}", keys.join(", ")),
                }
            }
            Action::Repair => {
                let what: Vec<String> = i.repairs.iter().map(render::describe_repair).collect();
                format!("- **! repair** `{d}`: {}", what.join(", "))
            }
            Action::Destroy => match &i.reason {
                Some(r) => format!("- **- destroy** `{d}`: {}", one_line(r)),
                None => format!("- **- destroy** `{d}`"),
            },
            Action::Unmanaged | Action::NoOp => continue,
        };
        lines.push(line);
    }
    lines.extend(crate::apps::render::markdown_lines(&plan.apps));
    for l in &lines {
        writeln!(out, "{l}").unwrap();
    }
    if !lines.is_empty() {
        out.push('\n');
    }
    let full = diff_friendly(&render::render_plan(plan, Style::new(false)));
    let fence = fence_for(&full);
    writeln!(out, "<details><summary>Full plan</summary>\n").unwrap();
    writeln!(out, "{fence}diff").unwrap();
    out.push_str(&full);
    if !full.ends_with('\n') {
        out.push('\n');
    }
    writeln!(out, "{fence}\n").unwrap();
    writeln!(out, "</details>").unwrap();
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Moves each line's leading `+`, `-`, `~` or `!` symbol to the first column, where diff highlighting
/// looks for it; the rest of the line is unchanged.
fn diff_friendly(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let mut chars = trimmed.chars();
        match (chars.next(), chars.next()) {
            (Some(c @ ('+' | '-' | '~' | '!')), Some(' ' | '\n') | None) if indent > 0 => {
                out.push(c);
                out.push_str(&" ".repeat(indent));
                out.push_str(&trimmed[1..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// A backtick fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::desired::{DesiredInstance, InstanceState};
    use crate::plan::plan;
    use crate::plan::tests::{actual, desired, existing};

    #[test]
    fn markdown_lists_each_changed_instance() {
        let new = DesiredInstance::new("new.example");
        let mut upd = DesiredInstance::new("upd.example");
        upd.locale = Some("fr".into());
        upd.blocked = Some(true);
        let mut gone = DesiredInstance::new("gone.example");
        gone.state = InstanceState::Absent;
        let mut rep = existing("rep.example", json!({}));
        rep.doctypes.remove("io.cozy.jobs");
        let p = plan(
            &desired(vec![new, upd, gone, DesiredInstance::new("rep.example")], false),
            &actual(vec![
                existing("upd.example", json!({})),
                existing("gone.example", json!({})),
                rep,
            ]),
        );
        let md = render_markdown(&p);
        assert!(md.contains("| add | change | destroy | unmanaged |"), "{md}");
        assert!(md.contains("| 1 | 2 | 1 | 0 |"), "{md}");
        assert!(md.contains("- **+ create** `new.example`"), "{md}");
        assert!(md.contains("- **~ update** `upd.example`: locale, blocked"), "{md}");
        assert!(
            md.contains("- **! repair** `rep.example`: database io.cozy.jobs"),
            "{md}"
        );
        assert!(md.contains("- **- destroy** `gone.example`"), "{md}");
        assert!(md.contains("<details><summary>Full plan</summary>"), "{md}");
        assert!(md.contains("```diff\n"), "{md}");
        assert!(md.contains("\n+   instance \"new.example\" {"), "{md}");
        assert!(!md.contains('\x1b'));
    }

    #[test]
    fn the_fence_outlasts_backticks_in_values() {
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }
}
