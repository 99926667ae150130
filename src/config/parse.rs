//! The config parser: walks the TOML document with positions, checks every key and value, collects
//! every error, then builds the desired state.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use toml_edit::{Item, TableLike, Value};

use super::diagnostics::{ConfigError, Diagnostic, Severity};
use super::{
    CLUSTER_KEYS, COUCHDB_KEYS, DEFAULT_KEYS, INSTANCE_KEYS, SETTINGS_DOC_KEYS, SETTINGS_RESERVED, STORAGE_KEYS,
    TOP_KEYS,
};
use crate::desired::{ClusterTarget, Desired, DesiredInstance, InstanceState, StoreTarget};
use crate::domain::validate_domain;
use crate::layout::BLOCKING_REASONS;
use crate::quota::parse_bytes;

#[path = "apps.rs"]
mod apps;

/// Largest config file accepted. A file this size already declares hundreds of thousands of instances.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024 * 1024;
/// Most instances accepted in one file.
pub const MAX_INSTANCES: usize = 200_000;

/// A parsed and validated configuration, with its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub desired: Desired,
    pub warnings: Vec<Diagnostic>,
    /// `max_destroy` and `backup_dir` (safe destroys, see [`crate::backup`]).
    pub safety: crate::backup::Safety,
}

/// Reads and validates a config file. Credentials not in the URL come from `COUCHDB_USER` and
/// `COUCHDB_PASSWORD`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let one = |message: String, hint: Option<String>| ConfigError {
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message,
            hint,
            source_line: None,
            width: 1,
        }],
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        one(
            format!("cannot read the config file {}: {e}", path.display()),
            Some("pass the file with -c/--config, or create instances.toml in this directory".into()),
        )
    })?;
    if meta.len() as usize > MAX_CONFIG_BYTES {
        return Err(one(
            format!(
                "the config file is {} bytes; cozyform reads at most {MAX_CONFIG_BYTES}",
                meta.len()
            ),
            Some("split the fleet into several config files".into()),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| one(format!("cannot read {}: {e}", path.display()), None))?;
    let src = String::from_utf8(bytes).map_err(|e| {
        one(
            format!("the config file is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            Some("save it as UTF-8".into()),
        )
    })?;
    let env = |k: &str| std::env::var(k).ok();
    load_str(&src, path, &base_dir(path), &env)
}

/// Validates config text. `base_dir` (absolute) resolves relative paths; `env` supplies credentials.
pub fn load_str(
    src: &str,
    file: &Path,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let mut w = Walker {
        src,
        file,
        diags: Vec::new(),
    };
    if src.len() > MAX_CONFIG_BYTES {
        w.err(
            None,
            format!(
                "the config is {} bytes; cozyform reads at most {MAX_CONFIG_BYTES}",
                src.len()
            ),
            None,
        );
        return Err(w.finish_err());
    }
    // A cheap scan before building the document, which costs ~25 bytes of memory per byte of
    // input: a file with far too many instance tables is refused without parsing it.
    if let Some(at) = src
        .match_indices("[instances.")
        .filter(|(i, _)| *i == 0 || src.as_bytes()[i - 1] == b'\n')
        .nth(MAX_INSTANCES)
        .map(|(i, _)| i)
    {
        w.err(
            Some(at..at + 1),
            format!("the file declares more than {MAX_INSTANCES} instances; cozyform handles at most {MAX_INSTANCES} per file"),
            Some("split the fleet into several files, each with its own fs_root or CouchDB".into()),
        );
        return Err(w.finish_err());
    }
    let doc = match toml_edit::Document::parse(src) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message().trim().to_string();
            let hint = if msg.contains("duplicate key") {
                Some("each key, and each instance domain, may be declared only once".into())
            } else {
                Some("fix the TOML syntax at this position".into())
            };
            w.err(e.span(), format!("invalid TOML: {msg}"), hint);
            return Err(w.finish_err());
        }
    };
    let root = doc.as_table();
    w.check_keys(root, TOP_KEYS, "the top level");

    let prune = w.boolean(root, "prune").map(|(b, _)| b).unwrap_or(false);
    let apps_top = w.apps_top(root);

    let mut clusters: Vec<ClusterTarget> = Vec::new();
    let store = match root.get("couchdb") {
        None => StoreTarget::Embedded {
            path: base_dir.join(".cozyform").join("store.sqlite"),
        },
        Some(item) => match w.table(item, root.key("couchdb"), "couchdb", "couchdb") {
            None => StoreTarget::Embedded {
                path: base_dir.join(".cozyform").join("store.sqlite"),
            },
            Some(t) => {
                w.check_keys(t, COUCHDB_KEYS, "[couchdb]");
                clusters = w.clusters(t, env);
                match w.string(t, "url") {
                    None => {
                        w.err(
                            key_span(root, "couchdb"),
                            "[couchdb] has no url".into(),
                            Some(if t.contains_key("clusters") {
                                "[couchdb] url holds global/instances and is required with [[couchdb.clusters]]; clusters do not apply to the embedded store".into()
                            } else {
                                "add url = \"http://127.0.0.1:5984/\", or remove [couchdb] to use the embedded store".into()
                            }),
                        );
                        StoreTarget::Embedded { path: PathBuf::new() }
                    }
                    Some((u, span)) => w.couch_url(&u, span, env),
                }
            }
        },
    };

    let mut fs_root = base_dir.join(".cozyform").join("storage");
    if let Some(item) = root.get("storage")
        && let Some(t) = w.table(item, root.key("storage"), "storage", "storage")
    {
        w.check_keys(t, STORAGE_KEYS, "[storage]");
        if let Some((p, span)) = w.string(t, "fs_root") {
            let candidate = if Path::new(&p).is_absolute() {
                PathBuf::from(&p)
            } else {
                base_dir.join(&p)
            };
            let candidate = normalize_path(&candidate);
            if p.is_empty() || p.contains('\0') {
                w.err(
                    span,
                    "fs_root is empty or contains NUL".into(),
                    Some("set fs_root to a directory, e.g. \"/var/lib/cozy\"".into()),
                );
            } else if candidate == Path::new("/") {
                w.err(
                    span,
                    "fs_root resolves to /".into(),
                    Some("instance folders need a dedicated directory, e.g. \"/var/lib/cozy\"".into()),
                );
            } else {
                fs_root = candidate;
            }
        }
    }

    let mut safety = crate::backup::Safety::default();
    if let Some(item) = root.get("max_destroy") {
        match item.as_integer() {
            Some(n) if n >= 0 => safety.max_destroy = n as u64,
            Some(_) => w.err(
                Walker::value_span(root, "max_destroy"),
                "`max_destroy` must not be negative".into(),
                Some("for example: max_destroy = 5 (0 refuses every destroy without --max-destroy)".into()),
            ),
            None => w.wrong_type(root, "max_destroy", "an integer", "5"),
        }
    }
    if let Some((p, span)) = w.string(root, "backup_dir") {
        if p.is_empty() || p.contains('\0') {
            w.err(
                span,
                "backup_dir is empty or contains NUL".into(),
                Some("set backup_dir to a directory, e.g. \"/var/backups/cozyform\"".into()),
            );
        } else {
            safety.backup_dir = Some(normalize_path(&base_dir.join(&p)));
        }
    }

    let defaults = match root.get("defaults") {
        Some(item) => match w.table(item, root.key("defaults"), "defaults", "defaults") {
            Some(t) => {
                w.check_keys(t, DEFAULT_KEYS, "[defaults]");
                let d = w.instance_fields(t, "[defaults]");
                if d.blocking_reason.is_some() && d.blocked != Some(true) {
                    w.err(
                        d.blocking_reason_span.clone(),
                        "[defaults] has blocking_reason but not blocked = true".into(),
                        Some(
                            "add blocked = true to [defaults], or set blocking_reason on the blocked instances".into(),
                        ),
                    );
                }
                d
            }
            None => Fields::default(),
        },
        None => Fields::default(),
    };

    let app_defaults = root
        .get("defaults")
        .and_then(Item::as_table_like)
        .map(|t| w.app_defaults(t, base_dir))
        .unwrap_or_default();
    // Collected, then built at once into a map with full nodes (one inserted at a time, in file
    // order, leaves them half empty: 20 MB more for 100,000 instances).
    let mut instances: Vec<(String, DesiredInstance)> = Vec::new();
    let mut seen: HashMap<String, Option<Range<usize>>> = HashMap::new();
    // alias -> (owner domain, span)
    let mut alias_owner: HashMap<String, (String, Option<Range<usize>>)> = HashMap::new();
    // old domain -> (the instance renamed from it, span of its renamed_from)
    let mut renamed_from: HashMap<String, (String, Option<Range<usize>>)> = HashMap::new();
    if let Some(item) = root.get("instances")
        && let Some(t) = w.table(item, root.key("instances"), "instances", "instances")
    {
        if t.len() > MAX_INSTANCES {
            w.err(
                key_span(root, "instances"),
                format!(
                    "the file declares {} instances; cozyform handles at most {MAX_INSTANCES} per file",
                    t.len()
                ),
                Some("split the fleet into several config files".into()),
            );
            return Err(w.finish_err());
        }
        for (raw_domain, item) in t.iter() {
            let dspan = key_span_dyn(t, raw_domain);
            let domain = match validate_domain(raw_domain) {
                Ok(d) => d,
                Err(e) => {
                    w.err(
                        dspan.clone(),
                        format!("invalid domain {raw_domain:?}: {e}"),
                        Some("a domain is a host name with an optional :port, without spaces, slashes or any of ,;&?#@|='\"".into()),
                    );
                    continue;
                }
            };
            if domain != raw_domain {
                w.warn(
                    dspan.clone(),
                    format!("domain {raw_domain:?} is normalized to {domain:?}"),
                    Some(format!("write it as [instances.\"{domain}\"]")),
                );
            }
            if let Some(prev) = seen.get(&domain) {
                let (line, _, _) = super::diagnostics::line_col(src, prev.clone().map(|r| r.start).unwrap_or(0));
                w.err(
                    dspan.clone(),
                    format!("instance {domain:?} is declared twice (first at line {line})"),
                    Some("keep one of the two declarations".into()),
                );
                continue;
            }
            seen.insert(domain.clone(), dspan.clone());
            let what = format!("instance {domain:?}");
            let Some(it) = w.table(
                item,
                t.key(raw_domain),
                &what,
                &format!("instances.{}", toml_edit::Key::new(raw_domain).display_repr()),
            ) else {
                continue;
            };
            w.check_keys(it, INSTANCE_KEYS, &what);
            let f = w.instance_fields(it, &what);
            let mut inst = DesiredInstance::new(domain.clone());
            if let Some((s, span)) = w.string(it, "state") {
                match s.as_str() {
                    "present" => {}
                    "absent" => inst.state = InstanceState::Absent,
                    other => w.err(
                        span,
                        format!("state must be \"present\" or \"absent\", not {other:?}"),
                        Some("use state = \"absent\" to destroy the instance".into()),
                    ),
                }
            }
            if inst.state == InstanceState::Absent {
                let extra: Vec<&str> = it
                    .iter()
                    .map(|(k, _)| k)
                    .filter(|k| !matches!(*k, "state" | "prevent_destroy"))
                    .collect();
                if !extra.is_empty() {
                    w.warn(
                        dspan.clone(),
                        format!("{what} is absent; its keys {} are ignored", extra.join(", ")),
                        Some("remove them, or set state = \"present\"".into()),
                    );
                }
            }
            let merged = f.merge_over(&defaults);
            inst.prevent_destroy = merged.prevent_destroy.unwrap_or(false);
            inst.locale = merged.locale;
            inst.context = merged.context;
            inst.uuid = merged.uuid;
            inst.disk_quota = merged.disk_quota;
            inst.blocked = merged.blocked;
            inst.blocking_reason = merged.blocking_reason.clone();
            inst.settings = merged.settings;
            inst.rename_default_dirs = merged.rename_default_dirs.unwrap_or(false);
            if let Some((raw, span)) = w.string(it, "renamed_from") {
                match validate_domain(&raw) {
                    Err(e) => w.err(
                        span,
                        format!("invalid renamed_from {raw:?} of {what}: {e}"),
                        Some(
                            "renamed_from is the domain the instance had, e.g. renamed_from = \"old.example.com\""
                                .into(),
                        ),
                    ),
                    Ok(old) if old == domain => w.err(
                        span,
                        format!("{what} is renamed from itself"),
                        Some("remove renamed_from, or set it to the domain the instance had".into()),
                    ),
                    Ok(old) => {
                        if let Some((other, _)) = renamed_from.get(&old) {
                            w.err(
                                span.clone(),
                                format!("{other:?} and {domain:?} are both renamed from {old:?}"),
                                Some("an instance can be renamed to one domain only".into()),
                            );
                        } else {
                            renamed_from.insert(old.clone(), (domain.clone(), span));
                        }
                        inst.renamed_from = Some(old);
                    }
                }
            }
            for (k, v) in [
                ("email", merged.email),
                ("public_name", merged.public_name),
                ("phone", merged.phone),
                ("tz", merged.tz),
            ] {
                if let Some(v) = v {
                    inst.settings.insert(k.to_string(), v);
                }
            }
            if let Some(item) = it.get("couch_cluster") {
                let span = Walker::value_span(it, "couch_cluster");
                match item.as_integer() {
                    Some(n) if matches!(store, StoreTarget::Embedded { .. }) => {
                        let _ = n;
                        w.err(
                            span,
                            format!("{what} sets couch_cluster, but the embedded store has no clusters"),
                            Some("remove couch_cluster, or configure [couchdb] url and [[couchdb.clusters]]".into()),
                        );
                    }
                    Some(n) if n >= 0 && (n as usize) < clusters.len().max(1) => inst.couch_cluster = Some(n as u32),
                    Some(n) => {
                        w.err(
                            span,
                            format!(
                                "couch_cluster = {n} of {what} names no cluster: {}",
                                match clusters.len() {
                                    0 => "no [[couchdb.clusters]] is configured, so only 0 (the main url) exists"
                                        .to_string(),
                                    k => format!("[[couchdb.clusters]] has {k} entries (0 to {})", k - 1),
                                }
                            ),
                            Some("couch_cluster is an index into [[couchdb.clusters]], starting at 0".into()),
                        )
                    }
                    None => w.wrong_type(it, "couch_cluster", "an integer", "1"),
                }
            }
            if inst.blocked != Some(true) {
                // A default reason only applies to blocked instances; it was reported once above.
                inst.blocking_reason = None;
            }
            if f.blocking_reason.is_some() && inst.blocked != Some(true) && inst.state == InstanceState::Present {
                let span = f.blocking_reason_span.clone().or(dspan.clone());
                w.err(
                    span,
                    format!("{what} has blocking_reason but is not blocked"),
                    Some("add blocked = true, or remove blocking_reason".into()),
                );
            }
            if let Some(aliases) = &f.domain_aliases {
                let mut list = Vec::new();
                for (raw, span) in aliases {
                    match validate_domain(raw) {
                        Err(e) => w.err(
                            span.clone(),
                            format!("invalid alias {raw:?} of {what}: {e}"),
                            Some("an alias follows the same rules as a domain".into()),
                        ),
                        Ok(a) if a == domain => w.err(
                            span.clone(),
                            format!("alias {a:?} is the domain of {what} itself"),
                            Some("remove it from domain_aliases".into()),
                        ),
                        Ok(a) => {
                            if let Some((owner, _)) = alias_owner.get(&a)
                                && *owner == domain
                            {
                                w.err(
                                    span.clone(),
                                    format!("alias {a:?} is listed twice in {what}"),
                                    Some("remove the duplicate from domain_aliases".into()),
                                );
                            } else if let Some((owner, _)) = alias_owner.get(&a) {
                                w.err(
                                    span.clone(),
                                    format!("alias {a:?} is declared by both {owner:?} and {domain:?}"),
                                    Some("an alias belongs to one instance only".into()),
                                );
                            } else {
                                alias_owner.insert(a.clone(), (domain.clone(), span.clone()));
                                list.push(a);
                            }
                        }
                    }
                }
                inst.domain_aliases = Some(list);
            }
            if inst.state == InstanceState::Present {
                let ctx = inst.context.clone();
                inst.apps = w.instance_apps(
                    it,
                    &what,
                    ctx.as_deref(),
                    &app_defaults,
                    &apps_top,
                    base_dir,
                    dspan.clone(),
                );
            }
            instances.push((domain, inst));
        }
    }
    for (alias, (owner, span)) in &alias_owner {
        if seen.contains_key(alias) {
            w.err(
                span.clone(),
                format!("alias {alias:?} of {owner:?} is also declared as an instance"),
                Some("an alias cannot be another instance's domain".into()),
            );
        }
    }

    for (old, (new, span)) in &renamed_from {
        if seen.contains_key(old) {
            w.err(
                span.clone(),
                format!("{new:?} is renamed from {old:?}, which is also declared as an instance"),
                Some(format!(
                    "remove the declaration of {old:?} (the rename moves it), or remove renamed_from"
                )),
            );
        } else if let Some((owner, _)) = alias_owner.get(old) {
            w.err(
                span.clone(),
                format!("{new:?} is renamed from {old:?}, which is declared as an alias of {owner:?}"),
                Some("renamed_from names the domain the instance had, not another instance's alias".into()),
            );
        }
    }
    let has_errors = w.diags.iter().any(|d| d.severity == Severity::Error);
    if has_errors {
        return Err(w.finish_err());
    }
    // The document (about 25 bytes per byte of input) is freed before the map is built.
    drop((doc, seen, alias_owner, renamed_from));
    let instances: BTreeMap<String, DesiredInstance> = instances.into_iter().collect();
    let config_hash = hex::encode(Sha256::digest(src.as_bytes()));
    let mut warnings = w.diags;
    sort_diags(&mut warnings);
    Ok(Loaded {
        desired: Desired {
            config_path: file.to_path_buf(),
            config_hash,
            prune,
            store,
            fs_root,
            instances,
            clusters,
        },
        warnings,
        safety,
    })
}

fn sort_diags(d: &mut [Diagnostic]) {
    d.sort_by(|a, b| (a.line, a.column).cmp(&(b.line, b.column)));
}

/// The directory that the config file's relative paths are resolved against: the file's own
/// directory, absolute (from the current directory) and normalized.
pub fn base_dir(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let parent = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    normalize_path(&parent)
}

/// Lexically removes `.` and `..` (no filesystem access).
pub fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        out
    }
}

fn key_span(t: &toml_edit::Table, key: &str) -> Option<Range<usize>> {
    t.key(key).and_then(|k| k.span())
}

fn key_span_dyn(t: &dyn TableLike, key: &str) -> Option<Range<usize>> {
    t.get_key_value(key).and_then(|(k, _)| k.span())
}

/// Instance-level fields read from an instance table or `[defaults]`.
#[derive(Debug, Default, Clone)]
struct Fields {
    locale: Option<String>,
    email: Option<String>,
    public_name: Option<String>,
    phone: Option<String>,
    tz: Option<String>,
    context: Option<String>,
    uuid: Option<String>,
    disk_quota: Option<u64>,
    domain_aliases: Option<Vec<(String, Option<Range<usize>>)>>,
    settings: BTreeMap<String, String>,
    settings_declared: bool,
    blocked: Option<bool>,
    blocking_reason: Option<String>,
    blocking_reason_span: Option<Range<usize>>,
    prevent_destroy: Option<bool>,
    rename_default_dirs: Option<bool>,
}

impl Fields {
    /// `self` (an instance) over `d` (the defaults); settings merge key by key.
    fn merge_over(&self, d: &Fields) -> Fields {
        let mut settings = d.settings.clone();
        settings.extend(self.settings.clone());
        Fields {
            locale: self.locale.clone().or(d.locale.clone()),
            email: self.email.clone().or(d.email.clone()),
            public_name: self.public_name.clone().or(d.public_name.clone()),
            phone: self.phone.clone().or(d.phone.clone()),
            tz: self.tz.clone().or(d.tz.clone()),
            context: self.context.clone().or(d.context.clone()),
            uuid: self.uuid.clone(),
            disk_quota: self.disk_quota.or(d.disk_quota),
            domain_aliases: self.domain_aliases.clone(),
            settings_declared: self.settings_declared || d.settings_declared,
            settings,
            blocked: self.blocked.or(d.blocked),
            // A reason only travels with the blocked state it was declared with.
            blocking_reason: if self.blocked.is_some() {
                self.blocking_reason.clone()
            } else {
                self.blocking_reason.clone().or(d.blocking_reason.clone())
            },
            blocking_reason_span: self.blocking_reason_span.clone(),
            prevent_destroy: self.prevent_destroy.or(d.prevent_destroy),
            rename_default_dirs: self.rename_default_dirs.or(d.rename_default_dirs),
        }
    }
}

struct Walker<'a> {
    src: &'a str,
    file: &'a Path,
    diags: Vec<Diagnostic>,
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => match v {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::InlineTable(_) => "a table",
        },
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

impl Walker<'_> {
    fn push(&mut self, severity: Severity, span: Option<Range<usize>>, message: String, hint: Option<String>) {
        self.diags
            .push(Diagnostic::at(severity, self.file, self.src, span, message, hint));
    }
    fn err(&mut self, span: Option<Range<usize>>, message: String, hint: Option<String>) {
        self.push(Severity::Error, span, message, hint);
    }
    fn warn(&mut self, span: Option<Range<usize>>, message: String, hint: Option<String>) {
        self.push(Severity::Warning, span, message, hint);
    }
    fn finish_err(mut self) -> ConfigError {
        sort_diags(&mut self.diags);
        ConfigError {
            diagnostics: self.diags,
        }
    }

    /// `header` is how the table is written in TOML (`couchdb`, `instances."a.example"`).
    fn table<'t>(
        &mut self,
        item: &'t Item,
        key: Option<&toml_edit::Key>,
        what: &str,
        header: &str,
    ) -> Option<&'t dyn TableLike> {
        match item.as_table_like() {
            Some(t) => Some(t),
            None => {
                let span = key.and_then(|k| k.span()).or(item.span());
                self.err(
                    span,
                    format!("`{what}` must be a table, found {}", type_name(item)),
                    Some(format!("write it as [{header}] followed by its keys")),
                );
                None
            }
        }
    }

    fn check_keys(&mut self, t: &dyn TableLike, allowed: &[&str], what: &str) {
        for (k, _) in t.iter() {
            if allowed.contains(&k) {
                continue;
            }
            let span = key_span_dyn(t, k);
            let hint = suggest(k, allowed)
                .map(|s| format!("did you mean \"{s}\"?"))
                .or_else(|| Some(format!("the keys allowed here are: {}", allowed.join(", "))));
            self.err(span, format!("unknown key \"{k}\" in {what}"), hint);
        }
    }

    fn value_span(t: &dyn TableLike, key: &str) -> Option<Range<usize>> {
        t.get_key_value(key).and_then(|(k, v)| v.span().or(k.span()))
    }

    fn wrong_type(&mut self, t: &dyn TableLike, key: &str, expected: &str, example: &str) {
        let item = t.get(key).expect("key exists");
        let span = Self::value_span(t, key);
        self.err(
            span,
            format!("`{key}` must be {expected}, found {}", type_name(item)),
            Some(format!("for example: {key} = {example}")),
        );
    }

    fn string(&mut self, t: &dyn TableLike, key: &str) -> Option<(String, Option<Range<usize>>)> {
        let item = t.get(key)?;
        match item.as_str() {
            Some(s) => Some((s.to_string(), Self::value_span(t, key))),
            None => {
                self.wrong_type(t, key, "a string", "\"…\"");
                None
            }
        }
    }

    fn nonempty_string(&mut self, t: &dyn TableLike, key: &str, example: &str) -> Option<String> {
        let (s, span) = self.string(t, key)?;
        if s.trim().is_empty() {
            self.err(
                span,
                format!("`{key}` is empty"),
                Some(format!(
                    "remove the key to leave it alone, or set a value such as {key} = {example}"
                )),
            );
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, t: &dyn TableLike, key: &str) -> Option<(bool, Option<Range<usize>>)> {
        let item = t.get(key)?;
        match item.as_bool() {
            Some(b) => Some((b, Self::value_span(t, key))),
            None => {
                self.wrong_type(t, key, "a boolean", "true");
                None
            }
        }
    }

    fn instance_fields(&mut self, t: &dyn TableLike, what: &str) -> Fields {
        let mut f = Fields {
            locale: self.nonempty_string(t, "locale", "\"en\""),
            email: self.nonempty_string(t, "email", "\"alice@example.com\""),
            public_name: self.nonempty_string(t, "public_name", "\"Alice\""),
            phone: self.nonempty_string(t, "phone", "\"+33 6 00 00 00 00\""),
            tz: self.nonempty_string(t, "tz", "\"Europe/Paris\""),
            context: self.nonempty_string(t, "context", "\"default\""),
            uuid: self.nonempty_string(t, "uuid", "\"…\""),
            blocked: self.boolean(t, "blocked").map(|b| b.0),
            prevent_destroy: self.boolean(t, "prevent_destroy").map(|b| b.0),
            rename_default_dirs: self.boolean(t, "rename_default_dirs").map(|b| b.0),
            ..Fields::default()
        };
        if let Some(l) = &f.locale
            && !crate::layout::SUPPORTED_LOCALES.contains(&l.as_str())
        {
            let span = Self::value_span(t, "locale");
            self.warn(
                span,
                format!(
                    "locale {l:?} of {what} is not translated by cozy-stack; its default folders get English names"
                ),
                Some(format!(
                    "cozy-stack loads translations for {} only",
                    crate::layout::SUPPORTED_LOCALES.join(" and ")
                )),
            );
        }
        if let Some((reason, span)) = self.string(t, "blocking_reason") {
            if reason.trim().is_empty() {
                self.err(
                    span.clone(),
                    "`blocking_reason` is empty".into(),
                    Some(format!("use one of {}", BLOCKING_REASONS.join(", "))),
                );
            } else {
                if !BLOCKING_REASONS.contains(&reason.as_str()) {
                    let hint = suggest(&reason, BLOCKING_REASONS)
                        .map(|s| format!("did you mean \"{s}\"? cozy-stack knows {}", BLOCKING_REASONS.join(", ")))
                        .or_else(|| Some(format!("cozy-stack knows {}", BLOCKING_REASONS.join(", "))));
                    self.warn(
                        span.clone(),
                        format!("blocking_reason {reason:?} of {what} is a custom reason"),
                        hint,
                    );
                }
                f.blocking_reason = Some(reason);
                f.blocking_reason_span = span;
            }
        }
        if let Some(item) = t.get("disk_quota") {
            let span = Self::value_span(t, "disk_quota");
            let hint = Some("write a size such as disk_quota = \"5GB\" (5e9 bytes) or \"5GiB\" (5·2³⁰ bytes); \"0\" means unlimited".to_string());
            if let Some(s) = item.as_str() {
                match parse_bytes(s) {
                    Ok(b) => f.disk_quota = Some(b),
                    Err(e) => self.err(span, format!("bad disk_quota {s:?} in {what}: {e}"), hint),
                }
            } else if let Some(i) = item.as_integer() {
                if i < 0 {
                    self.err(span, format!("disk_quota of {what} is negative"), hint);
                } else {
                    f.disk_quota = Some(i as u64);
                }
            } else {
                self.wrong_type(t, "disk_quota", "a string or an integer", "\"5GB\"");
            }
        }
        if let Some(item) = t.get("domain_aliases") {
            match item.as_array() {
                Some(arr) => {
                    let mut list = Vec::new();
                    for v in arr.iter() {
                        match v.as_str() {
                            Some(s) => list.push((s.to_string(), v.span())),
                            None => self.err(
                                v.span(),
                                format!("domain_aliases of {what} must hold strings"),
                                Some("for example: domain_aliases = [\"alice.example.org\"]".into()),
                            ),
                        }
                    }
                    f.domain_aliases = Some(list);
                }
                None => self.wrong_type(t, "domain_aliases", "an array of strings", "[\"alice.example.org\"]"),
            }
        }
        if let Some(item) = t.get("settings") {
            match item.as_table_like() {
                Some(st) => {
                    f.settings_declared = true;
                    for (k, v) in st.iter() {
                        let kspan = key_span_dyn(st, k);
                        if SETTINGS_DOC_KEYS.contains(&k) {
                            self.err(
                                kspan,
                                format!("`settings.{k}` of {what} duplicates the `{k}` key"),
                                Some(format!("set {k} = … directly on the instance")),
                            );
                            continue;
                        }
                        if SETTINGS_RESERVED.contains(&k) || k.starts_with('_') {
                            self.err(
                                kspan,
                                format!("`settings.{k}` of {what} is not stored in the settings doc"),
                                Some("cozy-stack keeps this on the instance doc; remove it from settings".into()),
                            );
                            continue;
                        }
                        match v.as_str() {
                            Some(s) => {
                                f.settings.insert(k.to_string(), s.to_string());
                            }
                            None => {
                                let span = v.span().or(kspan);
                                self.err(
                                    span,
                                    format!("`settings.{k}` of {what} must be a string, found {}", type_name(v)),
                                    Some(format!("cozy-stack stores settings values as strings: {k} = \"…\"")),
                                );
                            }
                        }
                    }
                }
                None => self.wrong_type(t, "settings", "a table of strings", "{ offer = \"premium\" }"),
            }
        }
        f
    }

    /// `[[couchdb.clusters]]` of the `[couchdb]` table.
    fn clusters(&mut self, t: &dyn TableLike, env: &dyn Fn(&str) -> Option<String>) -> Vec<ClusterTarget> {
        let Some(item) = t.get("clusters") else {
            return Vec::new();
        };
        let hint = "write each cluster as [[couchdb.clusters]] with url = \"http://…:5984/\" and instance_creation = true|false";
        let Some(list) = item.as_array_of_tables() else {
            let span = Self::value_span(t, "clusters");
            self.err(
                span,
                format!(
                    "`couchdb.clusters` must be an array of tables, found {}",
                    type_name(item)
                ),
                Some(hint.into()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (n, c) in list.iter().enumerate() {
            self.check_keys(c, CLUSTER_KEYS, &format!("[[couchdb.clusters]] #{n}"));
            let instance_creation = self.boolean(c, "instance_creation").map(|b| b.0).unwrap_or(true);
            let target = match self.string(c, "url") {
                None => {
                    self.err(
                        c.span(),
                        format!("[[couchdb.clusters]] #{n} has no url"),
                        Some(hint.into()),
                    );
                    continue;
                }
                Some((u, span)) => self.couch_url(&u, span, env),
            };
            if let StoreTarget::Couch { url, user, password } = target {
                out.push(ClusterTarget {
                    url,
                    user,
                    password,
                    instance_creation,
                });
            }
        }
        out
    }

    fn couch_url(
        &mut self,
        raw: &str,
        span: Option<Range<usize>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> StoreTarget {
        let hint = Some("use a URL such as url = \"http://127.0.0.1:5984/\"".to_string());
        let mut u = match url::Url::parse(raw) {
            Ok(u) => u,
            Err(e) => {
                self.err(span, format!("[couchdb] url is not a valid URL: {e}"), hint);
                return StoreTarget::Embedded { path: PathBuf::new() };
            }
        };
        if u.scheme() != "http" && u.scheme() != "https" {
            self.err(
                span,
                format!(
                    "[couchdb] url has scheme {:?}; CouchDB speaks http or https",
                    u.scheme()
                ),
                hint,
            );
            return StoreTarget::Embedded { path: PathBuf::new() };
        }
        if u.path() != "/" {
            self.err(
                span,
                format!("[couchdb] url has the path {:?}", u.path()),
                Some(
                    "cozyform (like its couch_rs client) talks to CouchDB at the root of the URL; remove the path"
                        .into(),
                ),
            );
        }
        let url_user = (!u.username().is_empty()).then(|| percent_decode(u.username()));
        let url_pass = u.password().map(percent_decode);
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let user = url_user.or_else(|| env("COUCHDB_USER"));
        let password = url_pass.or_else(|| env("COUCHDB_PASSWORD"));
        StoreTarget::Couch {
            url: u.to_string(),
            user,
            password,
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The allowed key closest to `k`, when it is close enough to be a typo.
pub fn suggest<'a>(k: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let lower = k.to_lowercase();
    allowed
        .iter()
        .map(|a| (strsim::damerau_levenshtein(&lower, &a.to_lowercase()), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Loaded, ConfigError> {
        load_str(src, Path::new("instances.toml"), Path::new("/srv/conf"), &|_| None)
    }

    fn errors(src: &str) -> Vec<Diagnostic> {
        parse(src).unwrap_err().errors().cloned().collect()
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        let e = errors("[instances.\"a.example.com\"]\nlocle = \"fr\"\n");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (2, 1));
        assert_eq!(e[0].hint.as_deref(), Some("did you mean \"locale\"?"));
    }

    #[test]
    fn collects_every_error_in_one_run() {
        let e = errors(
            "prune = 1\n[instances.\"a b\"]\n[instances.\"c.example\"]\ndisk_quota = \"5XB\"\nblocking_reason = \"X\"\nlocale = 3\n",
        );
        assert_eq!(e.len(), 5, "{e:#?}");
    }

    #[test]
    fn blocking_reason_needs_blocked() {
        let e = errors("[instances.\"a.example\"]\nblocking_reason = \"PAYMENT_FAILED\"\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.contains("not blocked"));
    }

    #[test]
    fn domain_declared_twice_after_normalization() {
        let e = errors("[instances.\"A.example\"]\n[instances.\"a.example\"]\n");
        assert!(e.iter().any(|d| d.message.contains("declared twice")), "{e:#?}");
    }

    #[test]
    fn aliases_unique_across_file() {
        let e = errors(
            "[instances.\"a.example\"]\ndomain_aliases = [\"x.example\"]\n[instances.\"b.example\"]\ndomain_aliases = [\"x.example\"]\n",
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 4);
    }

    #[test]
    fn defaults_apply_when_not_set() {
        let l = parse("[defaults]\nlocale = \"fr\"\ntz = \"Europe/Paris\"\n[instances.\"a.example\"]\n[instances.\"b.example\"]\nlocale = \"en\"\n").unwrap();
        let a = &l.desired.instances["a.example"];
        assert_eq!(a.locale.as_deref(), Some("fr"));
        assert_eq!(a.settings.get("tz").map(String::as_str), Some("Europe/Paris"));
        assert_eq!(l.desired.instances["b.example"].locale.as_deref(), Some("en"));
    }

    #[test]
    fn quota_and_credentials() {
        let l = load_str(
            "[couchdb]\nurl = \"http://u:p%40ss@127.0.0.1:5984/\"\n[instances.\"a.example\"]\ndisk_quota = \"5GiB\"\n",
            Path::new("i.toml"),
            Path::new("/srv"),
            &|_| Some("envuser".into()),
        )
        .unwrap();
        assert_eq!(l.desired.instances["a.example"].disk_quota, Some(5 << 30));
        assert_eq!(
            l.desired.store,
            StoreTarget::Couch {
                url: "http://127.0.0.1:5984/".into(),
                user: Some("u".into()),
                password: Some("p@ss".into())
            }
        );
    }

    #[test]
    fn fs_root_relative_to_config_and_never_slash() {
        let l = parse("[storage]\nfs_root = \"data/../cozy\"\n").unwrap();
        assert_eq!(l.desired.fs_root, PathBuf::from("/srv/conf/cozy"));
        let e = errors("[storage]\nfs_root = \"/../..\"\n");
        assert!(e[0].message.contains("resolves to /"));
    }

    #[test]
    fn toml_syntax_error_has_position() {
        let e = errors("[instances.\"a.example\"]\nlocale = \n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 2);
    }

    #[test]
    fn settings_values_must_be_strings_and_not_reserved() {
        let e = errors("[instances.\"a.example\"]\nsettings = { offer = 1, locale = \"fr\", email = \"x\" }\n");
        assert_eq!(e.len(), 3, "{e:#?}");
    }
}
