//! The app keys of the config file: `[registries]`, `apps_prune`, `[defaults] apps`, and per instance
//! `apps`, `apps_add`, `apps_remove`, `apps_prune`, `app.<slug>` and `konnector.<slug>`. Checked
//! without any I/O; every error has its position.

use super::*;
use crate::apps::{AppKind, AppSource, DesiredApp, DesiredApps, valid_slug};
use crate::config::APP_KEYS;

/// Top-level app keys.
#[derive(Debug, Default)]
pub(super) struct AppsTop {
    prune: Option<bool>,
    registries: BTreeMap<String, Vec<String>>,
}

/// `[defaults]` app keys.
#[derive(Debug, Default)]
pub(super) struct AppDefaults {
    apps: Option<Vec<(String, Option<Range<usize>>)>>,
    prune: Option<bool>,
    /// `[defaults.app.<slug>]` and `[defaults.konnector.<slug>]`.
    tables: Vec<AppTable>,
}

/// An `app.<slug>` or `konnector.<slug>` table: (kind, slug, position of the key, source).
type AppTable = (AppKind, String, Option<Range<usize>>, AppSource);

const SLUG_HINT: &str = "a slug is lowercase letters, digits and dashes, e.g. \"drive\"";

impl Walker<'_> {
    pub(super) fn apps_top(&mut self, root: &toml_edit::Table) -> AppsTop {
        let mut top = AppsTop {
            prune: self.boolean(root, "apps_prune").map(|b| b.0),
            ..Default::default()
        };
        if let Some(item) = root.get("registries")
            && let Some(t) = self.table(item, root.key("registries"), "registries", "registries")
        {
            for (ctx, v) in t.iter() {
                let Some(arr) = v.as_array() else {
                    self.wrong_type(
                        t,
                        ctx,
                        "an array of registry URLs",
                        "[\"https://apps-registry.example.org/\"]",
                    );
                    continue;
                };
                let mut list = Vec::new();
                for u in arr.iter() {
                    let Some(s) = u.as_str() else {
                        self.err(
                            u.span(),
                            format!("registries.{ctx} must hold URL strings"),
                            Some("for example: default = [\"https://apps-registry.example.org/\"]".into()),
                        );
                        continue;
                    };
                    match url::Url::parse(s) {
                        Ok(p) if p.scheme() == "http" || p.scheme() == "https" => list.push(s.to_string()),
                        _ => self.err(
                            u.span(),
                            format!("registry {s:?} of registries.{ctx} is not an http(s) URL"),
                            Some("write it as \"https://apps-registry.example.org/\"".into()),
                        ),
                    }
                }
                top.registries.insert(ctx.to_string(), list);
            }
        }
        top
    }

    pub(super) fn app_defaults(&mut self, t: &dyn TableLike, base_dir: &Path) -> AppDefaults {
        AppDefaults {
            apps: self.slug_list(t, "apps", "[defaults]"),
            prune: self.boolean(t, "apps_prune").map(|b| b.0),
            tables: self.app_tables(t, "[defaults]", None, base_dir),
        }
    }

    fn slug_list(&mut self, t: &dyn TableLike, key: &str, what: &str) -> Option<Vec<(String, Option<Range<usize>>)>> {
        let item = t.get(key)?;
        let Some(arr) = item.as_array() else {
            self.wrong_type(t, key, "an array of app slugs", "[\"drive\", \"photos\"]");
            return None;
        };
        let mut out: Vec<(String, Option<Range<usize>>)> = Vec::new();
        for v in arr.iter() {
            match v.as_str() {
                Some(s) if valid_slug(s) => {
                    if out.iter().any(|(o, _)| o == s) {
                        self.warn(
                            v.span(),
                            format!("app {s:?} is listed twice in `{key}` of {what}"),
                            Some("remove the duplicate".into()),
                        );
                    } else {
                        out.push((s.to_string(), v.span()));
                    }
                }
                Some(s) => self.err(
                    v.span(),
                    format!("invalid app slug {s:?} in `{key}` of {what}"),
                    Some(format!(
                        "{SLUG_HINT}; other sources go in an [….app.<slug>] table with source = \"…\""
                    )),
                ),
                None => self.err(
                    v.span(),
                    format!("`{key}` of {what} must hold app slugs (strings)"),
                    Some(format!("for example: {key} = [\"drive\"]")),
                ),
            }
        }
        Some(out)
    }

    /// The `app.<slug>` and `konnector.<slug>` tables of an instance or of `[defaults]`, checked;
    /// `remove` is the instance's `apps_remove` (a slug both removed and declared is an error).
    fn app_tables(
        &mut self,
        it: &dyn TableLike,
        what: &str,
        remove: Option<&Vec<(String, Option<Range<usize>>)>>,
        base_dir: &Path,
    ) -> Vec<AppTable> {
        let mut tables: Vec<AppTable> = Vec::new();
        for (key, kind) in [("app", AppKind::Webapp), ("konnector", AppKind::Konnector)] {
            let Some(item) = it.get(key) else { continue };
            let Some(t) = self.table(
                item,
                it.get_key_value(key).map(|(k, _)| k),
                &format!("{key} of {what}"),
                key,
            ) else {
                continue;
            };
            for (slug, v) in t.iter() {
                let kspan = key_span_dyn(t, slug);
                if !valid_slug(slug) {
                    self.err(
                        kspan.clone(),
                        format!("invalid {} slug {slug:?} in {what}", kind.label()),
                        Some(SLUG_HINT.into()),
                    );
                    continue;
                }
                let Some(at) = v.as_table_like() else {
                    self.wrong_type(t, slug, "a table", "{ source = \"registry://drive/stable\" }");
                    continue;
                };
                self.check_keys(at, APP_KEYS, &format!("{key}.{slug} of {what}"));
                let version = self.nonempty_string(at, "version", "\"1.2.3\"");
                let version_span = Self::value_span(at, "version");
                let source = match self.string(at, "source") {
                    Some((raw, span)) => self.app_source(&raw, span, base_dir),
                    None => Some(AppSource::Registry {
                        slug: slug.to_string(),
                        channel: "stable".into(),
                        version: None,
                    }),
                };
                let Some(mut source) = source else { continue };
                if let Some(v) = version {
                    match &mut source {
                        AppSource::Registry { version: Some(_), .. } => self.err(
                            version_span,
                            format!("{key}.{slug} of {what} pins a version twice (in source and in version)"),
                            Some("keep one of the two".into()),
                        ),
                        AppSource::Registry { version: pin, .. } => *pin = Some(v),
                        _ => self.err(
                            version_span,
                            format!("version of {key}.{slug} in {what} applies to registry sources only"),
                            Some("a file or tarball source is the version its manifest says; remove version".into()),
                        ),
                    }
                }
                if kind == AppKind::Webapp
                    && let Some(r) = remove
                    && let Some((_, rspan)) = r.iter().find(|(s, _)| s == slug)
                {
                    self.err(
                        kspan.clone().or(rspan.clone()),
                        format!("app {slug:?} of {what} is both removed (apps_remove) and declared in app.{slug}"),
                        Some(format!("remove {slug:?} from apps_remove, or remove [app.{slug}]")),
                    );
                }
                tables.push((kind, slug.to_string(), kspan, source));
            }
        }
        tables
    }

    /// The apps an instance manages, or `None` when it declares none (and there is no default list).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn instance_apps(
        &mut self,
        it: &dyn TableLike,
        what: &str,
        context: Option<&str>,
        defaults: &AppDefaults,
        top: &AppsTop,
        base_dir: &Path,
        dspan: Option<Range<usize>>,
    ) -> Option<DesiredApps> {
        let own = self.slug_list(it, "apps", what);
        let add = self.slug_list(it, "apps_add", what);
        let remove = self.slug_list(it, "apps_remove", what);
        let prune = self.boolean(it, "apps_prune").map(|b| b.0);
        let registries = context
            .and_then(|c| top.registries.get(c))
            .or_else(|| top.registries.get("default"))
            .cloned()
            .unwrap_or_default();
        let mut tables = self.app_tables(it, what, remove.as_ref(), base_dir);
        let managed = own.is_some()
            || add.is_some()
            || remove.is_some()
            || prune.is_some()
            || !tables.is_empty()
            || defaults.apps.is_some()
            || !defaults.tables.is_empty();
        if !managed {
            return None;
        }
        // The default webapp list: `[defaults] apps`, then the `[defaults.app.<slug>]` tables.
        let mut default_slugs = defaults.apps.clone();
        for (kind, slug, span, _) in &defaults.tables {
            if *kind == AppKind::Webapp {
                let l = default_slugs.get_or_insert_with(Vec::new);
                if !l.iter().any(|(s, _)| s == slug) {
                    l.push((slug.clone(), span.clone()));
                }
            }
        }
        // Default konnectors, unless the instance has its own table.
        for t in &defaults.tables {
            if t.0 == AppKind::Konnector && !tables.iter().any(|o| o.0 == t.0 && o.1 == t.1) {
                tables.push(t.clone());
            }
        }
        let mut slugs: Vec<(String, Option<Range<usize>>)> = own.or(default_slugs).unwrap_or_default();
        for (s, span) in add.unwrap_or_default() {
            if !slugs.iter().any(|(o, _)| *o == s) {
                slugs.push((s, span));
            }
        }
        for (s, span) in remove.iter().flatten() {
            if slugs.iter().any(|(o, _)| o == s) {
                slugs.retain(|(o, _)| o != s);
            } else if !tables.iter().any(|t| t.0 == AppKind::Webapp && t.1 == *s)
                && !defaults.tables.iter().any(|t| t.0 == AppKind::Webapp && t.1 == *s)
            {
                self.warn(
                    span.clone(),
                    format!("apps_remove of {what} removes {s:?}, which is not in its list"),
                    Some("remove it from apps_remove".into()),
                );
            }
        }
        let mut list: Vec<DesiredApp> = Vec::new();
        let mut spans: Vec<Option<Range<usize>>> = Vec::new();
        for (kind, slug, span, source) in tables {
            spans.push(span);
            list.push(DesiredApp {
                kind,
                slug,
                source,
                registries: registries.clone(),
            });
        }
        for (slug, span) in slugs {
            if list.iter().any(|a| a.kind == AppKind::Webapp && a.slug == slug) {
                continue;
            }
            // A slug with a `[defaults.app.<slug>]` table comes from its source.
            let default = defaults.tables.iter().find(|t| t.0 == AppKind::Webapp && t.1 == slug);
            let source = match default {
                Some(t) => t.3.clone(),
                None => AppSource::Registry {
                    slug: slug.clone(),
                    channel: "stable".into(),
                    version: None,
                },
            };
            spans.push(default.map(|t| t.2.clone()).unwrap_or(span));
            list.push(DesiredApp {
                kind: AppKind::Webapp,
                source,
                slug,
                registries: registries.clone(),
            });
        }
        if registries.is_empty() {
            for (a, span) in list.iter().zip(&spans) {
                if matches!(a.source, AppSource::Registry { .. }) {
                    self.err(
                        span.clone().or(dspan.clone()),
                        format!(
                            "{} {} of {what} comes from a registry, but no registry is configured{}",
                            a.kind.label(),
                            a.slug,
                            context.map(|c| format!(" for context {c:?}")).unwrap_or_default()
                        ),
                        Some("add [registries] default = [\"https://apps-registry.example.org/\"]".into()),
                    );
                    break;
                }
            }
        }
        list.sort_by(|a, b| (a.kind, &a.slug).cmp(&(b.kind, &b.slug)));
        Some(DesiredApps {
            prune: prune.or(defaults.prune).or(top.prune).unwrap_or(false),
            list,
        })
    }

    fn app_source(&mut self, raw: &str, span: Option<Range<usize>>, base_dir: &Path) -> Option<AppSource> {
        let bad = |w: &mut Self, msg: String, hint: &str| {
            w.err(span.clone(), msg, Some(hint.to_string()));
            None
        };
        if let Some(rest) = raw.strip_prefix("registry://") {
            let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
            let hint = "write registry://<slug>, registry://<slug>/<channel> or registry://<slug>/<channel>/<version>";
            if segs.is_empty() || segs.len() > 3 || !valid_slug(segs[0]) || segs[1..].iter().any(|s| s.is_empty()) {
                return bad(self, format!("invalid registry source {raw:?}"), hint);
            }
            let (mut channel, mut version) = ("stable".to_string(), None);
            match segs.len() {
                2 if segs[1].starts_with(|c: char| c.is_ascii_digit()) => version = Some(segs[1].to_string()),
                2 => channel = segs[1].to_string(),
                3 => {
                    channel = segs[1].to_string();
                    version = Some(segs[2].to_string());
                }
                _ => {}
            }
            if version.as_deref() == Some("latest") {
                version = None;
            }
            return Some(AppSource::Registry {
                slug: segs[0].to_string(),
                channel,
                version,
            });
        }
        if let Some(rest) = raw.strip_prefix("file://") {
            let hint = "write file:///absolute/dir, or file://./dir relative to the config file";
            let path = if rest.starts_with('/') {
                PathBuf::from(rest)
            } else if rest.starts_with("./") || rest.starts_with("../") {
                base_dir.join(rest)
            } else {
                return bad(self, format!("invalid file source {raw:?}"), hint);
            };
            if rest.contains('\0') {
                return bad(self, format!("invalid file source {raw:?}"), hint);
            }
            return Some(AppSource::File {
                path: normalize_path(&path),
            });
        }
        if raw.starts_with("http://") || raw.starts_with("https://") {
            let mut u = match url::Url::parse(raw) {
                Ok(u) => u,
                Err(e) => {
                    return bad(
                        self,
                        format!("invalid source URL {raw:?}: {e}"),
                        "write https://host/path/app.tar.gz#<sha256>",
                    );
                }
            };
            let sha = match u.fragment() {
                None | Some("") => None,
                Some(f) if f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()) => Some(f.to_lowercase()),
                Some(f) => {
                    return bad(
                        self,
                        format!("the checksum {f:?} of {raw:?} is not a sha256 (64 hex characters)"),
                        "write the tarball's sha256 after #, or remove the fragment",
                    );
                }
            };
            u.set_fragment(None);
            return Some(AppSource::Http {
                url: u.to_string(),
                sha256: sha,
            });
        }
        let scheme = raw.split("://").next().unwrap_or("");
        if ["git", "git+ssh", "ssh+git", "git+https"].contains(&scheme) {
            return bad(
                self,
                format!("git sources ({raw:?}) are not supported by cozyform"),
                "publish the app to a registry, or use a tarball (https://…tar.gz#<sha256>) or a file:// folder",
            );
        }
        bad(
            self,
            format!("invalid or not supported source scheme in {raw:?}"),
            "use registry://<slug>/<channel>, file:///dir, file://./dir or https://…tar.gz#<sha256>",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "[registries]\ndefault = [\"https://reg.example/\"]\npro = [\"https://pro.example/\"]\n";

    fn parse(src: &str) -> Result<Loaded, ConfigError> {
        load_str(src, Path::new("instances.toml"), Path::new("/srv/conf"), &|_| None)
    }

    fn errors(src: &str) -> Vec<Diagnostic> {
        parse(src).unwrap_err().errors().cloned().collect()
    }

    fn apps(src: &str, domain: &str) -> Option<DesiredApps> {
        parse(src).unwrap().desired.instances[domain].apps.clone()
    }

    #[test]
    fn defaults_add_remove_and_tables_make_the_list() {
        let a = apps(
            &format!("{REG}[defaults]\napps = [\"home\", \"drive\"]\n[instances.\"a.example\"]\ncontext = \"pro\"\napps_add = [\"notes\"]\napps_remove = [\"home\"]\n[instances.\"a.example\".app.photos]\nsource = \"registry://photos/beta\"\nversion = \"1.4.2\"\n[instances.\"a.example\".konnector.ameli]\nsource = \"file://./konn/ameli\"\n"),
            "a.example",
        )
        .unwrap();
        let names: Vec<(AppKind, &str)> = a.list.iter().map(|x| (x.kind, x.slug.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (AppKind::Webapp, "drive"),
                (AppKind::Webapp, "notes"),
                (AppKind::Webapp, "photos"),
                (AppKind::Konnector, "ameli")
            ]
        );
        assert_eq!(a.list[2].source.url(), "registry://photos/beta/1.4.2");
        assert_eq!(a.list[0].registries, vec!["https://pro.example/".to_string()]);
        assert_eq!(a.list[3].source.url(), "file:///srv/conf/konn/ameli");
        assert!(!a.prune);
    }

    #[test]
    fn an_instance_without_app_keys_manages_no_apps() {
        assert!(apps(&format!("{REG}[instances.\"a.example\"]\n"), "a.example").is_none());
        let a = apps(
            &format!("apps_prune = true\n{REG}[instances.\"a.example\"]\napps = []\n"),
            "a.example",
        )
        .unwrap();
        assert!(a.prune && a.list.is_empty());
    }

    #[test]
    fn bad_slugs_schemes_and_checksums_are_reported_with_positions() {
        let e = errors(&format!(
            "{REG}[instances.\"a.example\"]\napps = [\"Drive\"]\n[instances.\"a.example\".app.x]\nsource = \"ftp://h/x.tgz\"\n[instances.\"a.example\".app.y]\nsource = \"https://h/y.tgz#abc\"\n[instances.\"a.example\".app.z]\nsource = \"git://h/z.git\"\n"
        ));
        assert_eq!(e.len(), 4, "{e:#?}");
        assert_eq!((e[0].line, e[0].column), (5, 9));
        assert!(e[0].message.contains("invalid app slug"));
        assert_eq!(e[1].line, 7);
        assert!(e[1].message.contains("not supported source scheme"));
        assert_eq!(e[2].line, 9);
        assert!(e[2].message.contains("not a sha256"));
        assert!(e[3].message.contains("git sources"));
    }

    #[test]
    fn defaults_app_and_konnector_tables() {
        let src = format!(
            "{REG}[defaults]\napps = [\"drive\"]\n[defaults.app.photos]\nsource = \"registry://photos/beta\"\n[defaults.app.notes]\nversion = \"2.0.0\"\n[defaults.konnector.ameli]\nsource = \"file://./konn/ameli\"\n\
             [instances.\"a.example\"]\n\
             [instances.\"b.example\"]\napps_remove = [\"notes\"]\n[instances.\"b.example\".app.photos]\nsource = \"registry://photos/stable\"\n[instances.\"b.example\".konnector.ameli]\nsource = \"file:///srv/ameli\"\n\
             [instances.\"c.example\"]\napps = [\"notes\"]\n"
        );
        let list = |d: &str| -> Vec<(AppKind, String, String)> {
            apps(&src, d)
                .unwrap()
                .list
                .iter()
                .map(|x| (x.kind, x.slug.clone(), x.source.url()))
                .collect()
        };
        let w = |s: &str, u: &str| (AppKind::Webapp, s.to_string(), u.to_string());
        let k = |s: &str, u: &str| (AppKind::Konnector, s.to_string(), u.to_string());
        // Every default: the list, the default tables' sources, the default konnector.
        assert_eq!(
            list("a.example"),
            vec![
                w("drive", "registry://drive/stable"),
                w("notes", "registry://notes/stable/2.0.0"),
                w("photos", "registry://photos/beta"),
                k("ameli", "file:///srv/conf/konn/ameli"),
            ]
        );
        // apps_remove drops a default table; the instance's own tables win.
        assert_eq!(
            list("b.example"),
            vec![
                w("drive", "registry://drive/stable"),
                w("photos", "registry://photos/stable"),
                k("ameli", "file:///srv/ameli"),
            ]
        );
        // `apps` replaces the default list, a named slug keeps its default table's source.
        assert_eq!(
            list("c.example"),
            vec![
                w("notes", "registry://notes/stable/2.0.0"),
                k("ameli", "file:///srv/conf/konn/ameli")
            ]
        );
        // Checked with positions, like the instance tables.
        let e = errors(&format!(
            "{REG}[defaults.app.Photos]\nsource = \"registry://photos/beta\"\n[defaults.konnector.x]\nsource = \"ftp://h/x.tgz\"\ncolor = 1\n[instances.\"a.example\"]\n"
        ));
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!((e[0].line, e[0].column), (4, 15));
        assert!(
            e[0].message.contains("invalid app slug \"Photos\" in [defaults]"),
            "{e:#?}"
        );
        assert_eq!(e[1].line, 7);
        assert!(e[1].message.contains("not supported source scheme"), "{e:#?}");
        assert_eq!(e[2].line, 8);
        assert!(e[2].message.contains("color"), "{e:#?}");
    }

    #[test]
    fn removed_and_pinned_at_once_is_an_error() {
        let e = errors(&format!(
            "{REG}[defaults]\napps = [\"photos\"]\n[instances.\"a.example\"]\napps_remove = [\"photos\"]\n[instances.\"a.example\".app.photos]\nversion = \"1.0.0\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0].line, 8);
        assert!(e[0].message.contains("both removed"));
    }

    #[test]
    fn registry_sources_need_a_registry_and_versions_need_a_registry_source() {
        let e = errors("[instances.\"a.example\"]\napps = [\"drive\"]\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("no registry is configured"), "{e:#?}");
        let e = errors(
            "[instances.\"a.example\".app.t]\nsource = \"file:///srv/t\"\nversion = \"1\"\n[instances.\"b.example\".app.u]\nsource = \"file:relative\"\n",
        );
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].message.contains("registry sources only"));
        assert!(e[1].message.contains("not supported source scheme"));
    }
}
