//! `cozyform import`: declares existing instances, as they are, in TOML (the reverse of the config
//! stage). For each instance it writes every key the planner compares (locale, context, uuid,
//! domain_aliases, disk_quota, blocked and blocking_reason, email/public_name/phone/tz and the other
//! string settings), and lists in a comment what cozyform does not manage. Secrets never appear:
//! the actual state holds none.
//!
//! The result is checked rather than trusted: the new tables are added to the config file's text
//! (toml_edit keeps everything else, comments included), the whole is validated by the config stage,
//! and planned against the same actual state. A key that `[defaults]` would change is then written
//! explicitly where the config can say so (`blocked = false`, `disk_quota = 0`); whatever still
//! differs is reported as a warning, so that "right after import, plan is empty" holds or is said
//! not to.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use crate::actual::{Actual, ActualInstance, Observed};
use crate::config::{SETTINGS_DOC_KEYS, SETTINGS_RESERVED};
use crate::plan::{self, Action};

/// Instance-doc keys written to the config.
const MANAGED_KEYS: &[&str] = &[
    "locale",
    "context",
    "uuid",
    "domain_aliases",
    "disk_quota",
    "blocked",
    "blocking_reason",
];
/// Bookkeeping keys of the instance doc, never worth a comment.
const QUIET_KEYS: &[&str] = &["domain", "prefix", "indexes_version", "password_defined"];

/// What `import` produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The new tables alone, as TOML (what `import` prints).
    pub snippet: String,
    /// The config file with the new tables added (what `import --write` writes).
    pub config: String,
    /// Problems to tell the user: keys that could not be declared, and what plan would still do.
    pub warnings: Vec<String>,
}

/// Explicit values written to counter `[defaults]` (found by planning).
#[derive(Debug, Clone, Default)]
struct Overrides {
    unblock: bool,
    no_quota: bool,
}

/// Humanizes a byte count without losing anything (`5GB`, `5GiB`, or bytes).
pub fn format_quota(bytes: u64) -> String {
    const UNITS: &[(u64, &str)] = &[
        (1 << 40, "TiB"),
        (1_000_000_000_000, "TB"),
        (1 << 30, "GiB"),
        (1_000_000_000, "GB"),
        (1 << 20, "MiB"),
        (1_000_000, "MB"),
    ];
    for (size, unit) in UNITS {
        if bytes >= *size && bytes.is_multiple_of(*size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

/// The table of one instance, and the notes about what it cannot declare.
fn instance_table(h: &ActualInstance, ov: &Overrides) -> (Table, Vec<String>) {
    let mut t = Table::new();
    let mut notes = Vec::new();
    let doc = &h.doc;
    let string = |k: &str| doc.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    if let Some(l) = string("locale") {
        t.insert("locale", value(l));
    }
    // Settings doc keys with their own config key, then the other string settings.
    let mut extra = InlineTable::new();
    match &h.settings {
        Observed::Present(s) => {
            for k in SETTINGS_DOC_KEYS {
                match s.get(*k) {
                    Some(Value::String(v)) if !v.trim().is_empty() => {
                        t.insert(k, value(v.as_str()));
                    }
                    Some(Value::String(_)) => notes.push(format!("settings doc key {k} is empty (not declarable)")),
                    None | Some(Value::Null) => {}
                    Some(other) => notes.push(format!("settings doc key {k} = {} is not a string", short(other))),
                }
            }
            for (k, v) in s {
                if SETTINGS_DOC_KEYS.contains(&k.as_str()) {
                    continue;
                }
                if SETTINGS_RESERVED.contains(&k.as_str()) || k.starts_with('_') {
                    notes.push(format!("settings doc key {k} = {} (not declarable)", short(v)));
                    continue;
                }
                match v {
                    Value::String(s) => {
                        extra.insert(k, s.as_str().into());
                    }
                    other => notes.push(format!("settings doc key {k} = {} (not a string)", short(other))),
                }
            }
        }
        Observed::Missing => notes.push("the settings doc is missing".into()),
        Observed::NotRead => {}
    }
    if let Some(c) = string("context") {
        t.insert("context", value(c));
    }
    match crate::layout::read_disk_quota(&Value::Object(doc.clone())) {
        Ok(q) if q > 0 => {
            t.insert("disk_quota", value(format_quota(q)));
        }
        Ok(_) if ov.no_quota => {
            t.insert("disk_quota", value(0));
        }
        Ok(_) => {}
        Err(e) => notes.push(format!("disk_quota not imported: {e}")),
    }
    let aliases = h.aliases();
    if !aliases.is_empty() {
        t.insert(
            "domain_aliases",
            value(Array::from_iter(aliases.iter().map(String::as_str))),
        );
    }
    if let Some(u) = string("uuid") {
        t.insert("uuid", value(u));
    }
    if !extra.is_empty() {
        t.insert("settings", value(extra));
    }
    let blocked = doc.get("blocked").and_then(Value::as_bool).unwrap_or(false);
    if blocked {
        t.insert("blocked", value(true));
        if let Some(r) = string("blocking_reason") {
            t.insert("blocking_reason", value(r));
        }
    } else {
        if ov.unblock {
            t.insert("blocked", value(false));
        }
        if let Some(r) = string("blocking_reason") {
            notes.push(format!("blocking_reason = {r:?} on an instance that is not blocked"));
        }
    }
    let unmanaged: Vec<String> = doc
        .iter()
        .filter(|(k, _)| !MANAGED_KEYS.contains(&k.as_str()) && !QUIET_KEYS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k} = {}", short(v)))
        .collect();
    if !unmanaged.is_empty() {
        notes.push(format!("not managed by cozyform, left as is: {}", unmanaged.join(", ")));
    }
    if h.deleting() {
        notes.push("flagged `deleting` by a deletion that failed: plan will clear the flag".into());
    }
    (t, notes)
}

fn comment(lines: &[String]) -> String {
    let mut s = String::from("\n");
    for l in lines {
        for part in l.lines() {
            s.push_str("# ");
            s.push_str(part);
            s.push('\n');
        }
    }
    s
}

fn max_position(t: &Table) -> isize {
    let mut m = t.position().unwrap_or(0);
    for (_, item) in t.iter() {
        if let Some(sub) = item.as_table() {
            m = m.max(max_position(sub));
        }
    }
    m
}

fn build(
    existing: &DocumentMut,
    actual: &Actual,
    domains: &[String],
    ov: &BTreeMap<String, Overrides>,
) -> (DocumentMut, DocumentMut, BTreeMap<String, Vec<String>>) {
    let by_domain = actual.by_domain();
    let mut doc = existing.clone();
    let mut alone = DocumentMut::new();
    let mut notes = BTreeMap::new();
    let first = max_position(doc.as_table()) + 1;
    for (pos, d) in (first..).zip(domains) {
        let h = by_domain[d.as_str()];
        let (mut t, n) = instance_table(h, ov.get(d).unwrap_or(&Overrides::default()));
        let mut header = vec![format!("imported by cozyform from instance doc {}", h.id)];
        header.extend(n.iter().cloned());
        t.decor_mut().set_prefix(comment(&header));
        t.set_position(pos);
        for target in [&mut doc, &mut alone] {
            let instances = target
                .entry("instances")
                .or_insert_with(|| {
                    let mut t = Table::new();
                    t.set_implicit(true);
                    Item::Table(t)
                })
                .as_table_mut()
                .expect("checked by the caller");
            instances.insert(d, Item::Table(t.clone()));
        }
        notes.insert(d.clone(), n);
    }
    (doc, alone, notes)
}

/// Builds the import of `domains` (existing, undeclared instances of `actual`) into the config
/// `src` (the file at `file`, in `base_dir`). Errors when the result is not a valid config.
pub fn import(
    src: &str,
    file: &Path,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    actual: &Actual,
    domains: &[String],
) -> anyhow::Result<Imported> {
    let existing: DocumentMut = src
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: invalid TOML: {e}", file.display()))?;
    if existing.get("instances").is_some_and(|i| !i.is_table()) {
        anyhow::bail!(
            "{}: `instances` is not written as [instances.\"<domain>\"] tables; cozyform import cannot add to it",
            file.display()
        );
    }
    let mut ov: BTreeMap<String, Overrides> = BTreeMap::new();
    for round in 0..2 {
        let (doc, alone, notes) = build(&existing, actual, domains, &ov);
        let text = doc.to_string();
        let loaded = crate::config::load_str(&text, file, base_dir, env)
            .map_err(|e| anyhow::anyhow!("the imported configuration is not valid:\n{e}"))?;
        let p = plan::plan(&loaded.desired, actual);
        let mut warnings = Vec::new();
        let mut again = false;
        for d in domains {
            for n in &notes[d] {
                if !n.starts_with("not managed") {
                    warnings.push(format!("{d}: {n}"));
                }
            }
            // Apps: an imported table declares none, but `[defaults] apps` would apply to it.
            if let Some(apps) = p.apps.get(d) {
                let acting: Vec<String> = apps
                    .iter()
                    .filter(|a| a.acts())
                    .map(|a| format!("{:?} {}", a.op, a.slug).to_lowercase())
                    .collect();
                if !acting.is_empty() {
                    warnings.push(format!(
                        "{d}: plan will change its apps (from [defaults] apps): {}",
                        acting.join(", ")
                    ));
                }
            }
            for e in p.errors.iter().filter(|e| e.starts_with(&format!("{d}:"))) {
                warnings.push(e.clone());
            }
            let Some(ip) = p.instances.iter().find(|i| &i.domain == d) else {
                continue;
            };
            if ip.action == Action::NoOp {
                continue;
            }
            for c in &ip.changes {
                let o = ov.entry(d.clone()).or_default();
                if c.key == "blocked" && c.before.is_none() && !o.unblock {
                    o.unblock = true;
                    again = true;
                } else if c.key == "disk_quota" && c.before.is_none() && !o.no_quota {
                    o.no_quota = true;
                    again = true;
                }
            }
            let mut what: Vec<String> = ip
                .changes
                .iter()
                .map(|c| {
                    let name = match c.doc {
                        plan::DocKind::Instance => c.key.clone(),
                        plan::DocKind::Settings => format!("settings.{}", c.key),
                    };
                    format!(
                        "{name}: {} -> {}",
                        c.before.as_ref().map(short).unwrap_or_else(|| "(absent)".into()),
                        c.after.as_ref().map(short).unwrap_or_else(|| "(absent)".into())
                    )
                })
                .collect();
            what.extend(
                ip.repairs
                    .iter()
                    .map(|r| format!("repair {}", crate::render::describe_repair(r))),
            );
            warnings.push(format!(
                "{d}: plan will not be empty for it (from [defaults] or an incomplete instance): {}",
                what.join(", ")
            ));
        }
        if again && round == 0 {
            continue;
        }
        return Ok(Imported {
            snippet: alone.to_string().trim_start().to_string(),
            config: text,
            warnings,
        });
    }
    unreachable!("the second round always returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_humanized_without_loss() {
        assert_eq!(format_quota(5_000_000_000), "5GB");
        assert_eq!(format_quota(5 << 30), "5GiB");
        assert_eq!(format_quota(123_456_789), "123456789");
        for q in [5_000_000_000u64, 5 << 30, 123_456_789, 1 << 20, 3_000_000] {
            assert_eq!(crate::quota::parse_bytes(&format_quota(q)).unwrap(), q);
        }
    }
}
