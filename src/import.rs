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
    /// `apps_prune = false`: an installed app that cannot be declared would be uninstalled.
    no_prune: bool,
}

/// How to declare an installed app: its `source`, and the `version` to pin (registry sources
/// without a version in them, so that the plan does not update them to the channel's latest).
fn app_declaration(a: &crate::apps::InstalledApp) -> Result<(String, Option<String>), String> {
    let src = a.source.as_str();
    if !crate::apps::valid_slug(&a.slug) {
        return Err(format!("its slug {:?} is not valid", a.slug));
    }
    if let Some(rest) = src.strip_prefix("registry://") {
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if segs.is_empty()
            || segs.len() > 3
            || !crate::apps::valid_slug(segs[0])
            || segs[1..].iter().any(|s| s.is_empty())
        {
            return Err(format!("its source {src:?} is not a valid registry source"));
        }
        let pinned = segs.len() == 3 && segs[2] != "latest"
            || segs.len() == 2 && segs[1].starts_with(|c: char| c.is_ascii_digit());
        if pinned || a.version.is_empty() {
            return Ok((src.to_string(), None));
        }
        // Write the channel explicitly, so that the pin reads as one.
        let channel = if segs.len() >= 2 { segs[1] } else { "stable" };
        return Ok((format!("registry://{}/{channel}", segs[0]), Some(a.version.clone())));
    }
    if src.starts_with("file:///") && !src.contains('\0') {
        return Ok((src.to_string(), None));
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        let u = url::Url::parse(src).map_err(|e| format!("its source {src:?} is not a valid URL: {e}"))?;
        return match u.fragment() {
            None | Some("") => Ok((src.to_string(), None)),
            Some(f) if f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()) => Ok((src.to_string(), None)),
            Some(_) => Err(format!("its source {src:?} has a fragment that is not a sha256")),
        };
    }
    Err(format!(
        "its source {src:?} cannot be declared (cozyform installs from registry://, file:// and http(s):// only)"
    ))
}

/// The app keys of an imported instance: `apps = []` when `[defaults] apps` or `[defaults.app.<slug>]`
/// would add webapps, and
/// one `app.<slug>` / `konnector.<slug>` table per installed app.
fn app_tables(
    t: &mut Table,
    installed: &[crate::apps::InstalledApp],
    default_apps: bool,
    has_registry: bool,
    ov: &Overrides,
) -> Vec<String> {
    let mut notes = Vec::new();
    if installed.is_empty() && !default_apps {
        return notes;
    }
    if default_apps {
        t.insert("apps", value(Array::new()));
    }
    if ov.no_prune {
        t.insert("apps_prune", value(false));
    }
    for (key, kind) in [
        ("app", crate::apps::AppKind::Webapp),
        ("konnector", crate::apps::AppKind::Konnector),
    ] {
        let mut group = Table::new();
        group.set_implicit(true);
        for a in installed.iter().filter(|a| a.kind == kind) {
            match app_declaration(a) {
                Ok((source, _)) if source.starts_with("registry://") && !has_registry => notes.push(format!(
                    "{} {} not declared: it comes from {source}, but the config has no [registries] list for this instance (add one, then import again)",
                    kind.label(),
                    a.slug
                )),
                Ok((source, version)) => {
                    let mut at = Table::new();
                    at.insert("source", value(source));
                    if let Some(v) = version {
                        at.insert("version", value(v));
                    }
                    group.insert(&a.slug, Item::Table(at));
                }
                Err(e) => notes.push(format!("{} {} not declared: {e}", kind.label(), a.slug)),
            }
        }
        if !group.is_empty() {
            t.insert(key, Item::Table(group));
        }
    }
    notes
}

/// Gives `t` and its sub-tables consecutive positions from `pos`, in document order.
fn set_positions(t: &mut Table, pos: &mut isize) {
    t.set_position(*pos);
    *pos += 1;
    for (_, item) in t.iter_mut() {
        if let Some(sub) = item.as_table_mut() {
            set_positions(sub, pos);
        }
    }
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
fn instance_table(
    h: &ActualInstance,
    ov: &Overrides,
    installed: Option<&[crate::apps::InstalledApp]>,
    default_apps: bool,
    registries: &dyn Fn(Option<&str>) -> bool,
) -> (Table, Vec<String>) {
    let mut t = Table::new();
    let mut notes = Vec::new();
    let doc = &h.doc.to_map();
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
            for (k, v) in s.iter() {
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
    if let Some(installed) = installed {
        let has_registry = registries(string("context"));
        notes.extend(app_tables(&mut t, installed, default_apps, has_registry, ov));
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
    let mut pos = max_position(doc.as_table()) + 1;
    let default_apps = existing
        .get("defaults")
        .and_then(Item::as_table_like)
        .is_some_and(|t| t.contains_key("apps") || t.contains_key("app"));
    // Whether an instance of a context (its own, else the default one) has a registry list.
    let default_context = existing
        .get("defaults")
        .and_then(|d| d.get("context"))
        .and_then(Item::as_str)
        .map(str::to_string);
    let registries = |ctx: Option<&str>| {
        let Some(r) = existing.get("registries").and_then(Item::as_table_like) else {
            return false;
        };
        match ctx.map(str::to_string).or_else(|| default_context.clone()) {
            Some(c) if r.contains_key(&c) => true,
            _ => r.contains_key("default"),
        }
    };
    for d in domains {
        let h = by_domain[d.as_str()];
        let (mut t, n) = instance_table(
            h,
            ov.get(d).unwrap_or(&Overrides::default()),
            actual.apps.installed.get(d).map(Vec::as_slice),
            default_apps,
            &registries,
        );
        let mut header = vec![format!("imported by cozyform from instance doc {}", h.id)];
        header.extend(n.iter().cloned());
        t.decor_mut().set_prefix(comment(&header));
        set_positions(&mut t, &mut pos);
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
pub async fn import(
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
    let mut actual = actual.clone();
    for round in 0..2 {
        let (doc, alone, notes) = build(&existing, &actual, domains, &ov);
        let text = doc.to_string();
        let loaded = crate::config::load_str(&text, file, base_dir, env)
            .map_err(|e| anyhow::anyhow!("the imported configuration is not valid:\n{e}"))?;
        // Resolve the declared sources of the imported instances, as plan does, so that the check
        // below sees the app updates plan would make.
        let wanted: Vec<&crate::apps::DesiredApp> = domains
            .iter()
            .filter_map(|d| loaded.desired.instances.get(d))
            .filter_map(|i| i.apps.as_ref())
            .flat_map(|a| a.list.iter())
            .collect();
        actual.apps.resolved = crate::apps::resolve::resolve_all(&wanted, 8).await;
        let p = plan::plan(&loaded.desired, &actual);
        let mut warnings = Vec::new();
        let mut again = false;
        for d in domains {
            for n in &notes[d] {
                if !n.starts_with("not managed") {
                    warnings.push(format!("{d}: {n}"));
                }
            }
            // Apps: what plan would still do to them (an app that could not be declared, with
            // apps_prune on, is kept by `apps_prune = false`).
            if let Some(apps) = p.apps.get(d) {
                if apps.iter().any(|a| a.op == crate::apps::plan::AppOp::Uninstall) {
                    let o = ov.entry(d.clone()).or_default();
                    if !o.no_prune {
                        o.no_prune = true;
                        again = true;
                    }
                }
                let acting: Vec<String> = apps
                    .iter()
                    .filter(|a| a.acts())
                    .map(|a| format!("{:?} {}", a.op, a.slug).to_lowercase())
                    .collect();
                if !acting.is_empty() {
                    warnings.push(format!("{d}: plan will change its apps: {}", acting.join(", ")));
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

    fn app(source: &str, version: &str) -> crate::apps::InstalledApp {
        crate::apps::InstalledApp {
            kind: crate::apps::AppKind::Webapp,
            slug: "drive".into(),
            source: source.into(),
            version: version.into(),
            checksum: String::new(),
            state: "ready".into(),
            error: None,
            permissions: serde_json::json!({}),
        }
    }

    #[test]
    fn installed_apps_are_declared_with_a_pin_or_refused() {
        let pin = |s: &str, v: &str| app_declaration(&app(s, v));
        assert_eq!(
            pin("registry://drive/stable", "1.0.0").unwrap(),
            ("registry://drive/stable".into(), Some("1.0.0".into()))
        );
        assert_eq!(
            pin("registry://drive", "1.0.0").unwrap(),
            ("registry://drive/stable".into(), Some("1.0.0".into()))
        );
        assert_eq!(pin("registry://drive/beta/1.2.0", "1.2.0").unwrap().1, None);
        assert_eq!(pin("registry://drive/1.2.0", "1.2.0").unwrap().1, None);
        assert_eq!(
            pin("file:///srv/apps/x", "1-abc").unwrap(),
            ("file:///srv/apps/x".into(), None)
        );
        assert_eq!(pin("https://h/x.tar.gz", "1").unwrap().1, None);
        assert!(pin("https://h/x.tar.gz#zz", "1").is_err());
        assert!(pin("git://h/x.git", "1").unwrap_err().contains("cannot be declared"));
        assert!(pin("", "1").is_err());
    }
}
