//! Plan stage, renames: `renamed_from` (an instance renamed without destroying it) and the default
//! directories renamed on a locale change (`rename_default_dirs`). Pure functions called by
//! [`crate::plan::plan`]; no I/O. The executor side is [`crate::apply_renames`].
//!
//! A rename is recognized from the actual state alone, so that it is a no-op once done and a crash
//! midway is finished by the next plan:
//!
//! | doc of `old` | doc of `new` | plan |
//! |---|---|---|
//! | yes | no | rename (`~ old => new (renamed)`), with any other change of the instance |
//! | no | yes | done: the instance is planned as `new`, like any other (no-op when nothing differs) |
//! | yes | yes | error: the new domain already exists |
//! | no | no | error: nothing to rename (remove `renamed_from` to create `new`) |

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actual::{Actual, ActualInstance, ReadOptions};
use crate::desired::{Desired, DesiredInstance, InstanceState};
use crate::layout;
use crate::plan::{Action, Change, DocKind, InstancePlan, Repair};

/// The rename part of an instance's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenamePlan {
    /// The domain the instance has now (its `renamed_from`).
    pub from: String,
    /// Whether `<fs_root>/<from>` is moved to `<fs_root>/<domain>` (false when it was already moved,
    /// or when there is no folder: a `Folder` repair then creates it).
    pub move_folder: bool,
}

/// A default directory renamed for a locale change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRename {
    /// `administrative` or `photos`.
    pub kind: String,
    /// The id of the directory doc.
    pub id: String,
    /// Its path now, `/<name in the old locale>`.
    pub from: String,
    /// Its path after apply, `/<name in the new locale>`.
    pub to: String,
}

impl DirRename {
    /// The new name (the last component of `to`).
    pub fn to_name(&self) -> &str {
        self.to.trim_start_matches('/')
    }

    pub fn from_name(&self) -> &str {
        self.from.trim_start_matches('/')
    }
}

/// What the actual-state reader must also look at for renames: the target folders of renames, and
/// the default directories of instances that rename them on a locale change.
pub fn add_read_options(desired: &Desired, opts: &mut ReadOptions) {
    for w in desired.instances.values() {
        if w.state != InstanceState::Present {
            continue;
        }
        if let Some(old) = &w.renamed_from {
            opts.probe_folders.insert(w.domain.clone());
            // Until the rename is done, the instance (and its settings doc) is under the old domain.
            if !w.settings.is_empty() {
                opts.settings_for.insert(old.clone());
            }
        }
        if w.rename_default_dirs
            && let Some(l) = &w.locale
        {
            opts.default_dirs_for.insert(w.domain.clone(), l.clone());
            if let Some(old) = &w.renamed_from {
                opts.default_dirs_for.insert(old.clone(), l.clone());
            }
        }
    }
}

/// The renames to carry out now, as new domain -> old domain: the declared renames whose old
/// instance exists and whose new domain does not. Every other declared rename is either done (the
/// new domain exists alone) or an error, pushed to `errors`.
pub fn pending_renames(desired: &Desired, actual: &Actual, errors: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // The maps below cost a pass over the fleet: only when some rename is declared.
    if !desired.instances.values().any(|w| w.renamed_from.is_some()) {
        return out;
    }
    let existing = actual.by_domain();
    // Aliases only: domains are looked up in `existing`.
    let mut holders: HashMap<String, &ActualInstance> = HashMap::new();
    for inst in &actual.instances {
        for a in inst.aliases() {
            holders.insert(a, inst);
        }
    }
    for w in desired.instances.values() {
        let (Some(old), InstanceState::Present) = (&w.renamed_from, w.state) else {
            continue;
        };
        let new = &w.domain;
        if desired.instances.contains_key(old) {
            errors.push(format!(
                "{new}: renamed_from = {old:?}, but {old:?} is also declared; remove its declaration (the rename moves it) or remove renamed_from"
            ));
            continue;
        }
        if actual.ambiguous.contains(old) {
            errors.push(format!(
                "{new}: cannot rename {old:?}: several instance docs claim it; remove the extra ones first"
            ));
            continue;
        }
        match (existing.get(old.as_str()), existing.get(new.as_str())) {
            (Some(_), Some(_)) => errors.push(format!(
                "{new}: cannot rename {old:?} to {new:?}: {new:?} already exists; destroy one of them, or remove renamed_from if the rename was done another way"
            )),
            (None, Some(_)) => {} // Done.
            (None, None) if actual.ambiguous.contains(new) => {}
            (None, None) => errors.push(format!(
                "{new}: renamed_from = {old:?}, but neither {old:?} nor {new:?} exists; remove renamed_from to create {new:?} as a new instance, or fix renamed_from"
            )),
            (Some(h), None) => {
                if let Some(holder) = holders.get(new.as_str()) {
                    if holder.domain != *old {
                        errors.push(format!(
                            "{new}: cannot rename {old:?} to {new:?}: {new:?} is an alias of the existing instance {:?}",
                            holder.domain
                        ));
                        continue;
                    }
                    if w.domain_aliases.is_none() {
                        errors.push(format!(
                            "{new}: {new:?} is an alias of {old:?}; declare domain_aliases (without {new:?}) on {new:?} so that the rename removes it"
                        ));
                        continue;
                    }
                }
                let new_fs = actual.folders.get(new).copied().unwrap_or_default();
                if h.fs.symlink || new_fs.symlink {
                    errors.push(format!(
                        "{new}: cannot rename {old:?}: the folder of {} is a symbolic link; cozyform does not act through it",
                        if h.fs.symlink { old } else { new }
                    ));
                    continue;
                }
                if h.fs.root && new_fs.root {
                    errors.push(format!(
                        "{new}: cannot rename {old:?}: both folders <fs_root>/{old} and <fs_root>/{new} exist; move <fs_root>/{new} away (or merge it by hand), then plan again"
                    ));
                    continue;
                }
                out.insert(new.clone(), old.clone());
            }
        }
    }
    out
}

/// Creates that would collide with a renamed instance: a renamed instance keeps the prefix (and doc
/// id) derived from its first domain, so that domain cannot be created again; cozy-stack would mix
/// both instances' databases.
pub fn check_creates(instances: &[InstancePlan], actual: &Actual, errors: &mut Vec<String>) {
    // The index of the first existing instance with each prefix, and with each doc id: built once,
    // when something is created (a scan of the fleet per create would be quadratic).
    type FirstIndex<'a> = HashMap<&'a str, usize>;
    let mut taken: Option<(FirstIndex, FirstIndex)> = None;
    for ip in instances.iter().filter(|i| i.action == Action::Create) {
        let Some(spec) = &ip.create else { continue };
        let id = layout::derived_id("instance", &ip.domain);
        let (by_prefix, by_id) = taken.get_or_insert_with(|| {
            let (mut p, mut d) = (HashMap::new(), HashMap::new());
            for (k, h) in actual.instances.iter().enumerate() {
                p.entry(h.db_prefix.as_str()).or_insert(k);
                d.entry(h.id.as_str()).or_insert(k);
            }
            (p, d)
        });
        let first = [by_prefix.get(spec.prefix.as_str()), by_id.get(id.as_str())]
            .into_iter()
            .flatten()
            .min();
        if let Some(h) = first.map(|&k| &actual.instances[k]) {
            errors.push(format!(
                "{}: cannot be created: the existing instance {:?} (renamed from it) keeps its database prefix {} and doc id; choose another domain, or destroy {:?} first",
                ip.domain, h.domain, spec.prefix, h.domain
            ));
        }
    }
}

/// The old domains of pending renames: they are planned under their new domain, not on their own.
pub fn sources(pending: &BTreeMap<String, String>) -> HashSet<String> {
    pending.values().cloned().collect()
}

fn strip_port(d: &str) -> &str {
    d.split(':').next().unwrap_or(d)
}

/// The plan of a pending rename: the instance `h` (at its old domain) becomes `w.domain`, with every
/// other change `w` declares.
pub fn plan_rename(w: &DesiredInstance, h: &ActualInstance, actual: &Actual) -> InstancePlan {
    let old = h.domain.as_str();
    let new = w.domain.as_str();
    let mut e = crate::plan::plan_existing(w, h);
    e.domain = new.to_string();
    let mut notes: Vec<String> = e.reason.take().into_iter().collect();

    let mut inst_changes = vec![Change {
        doc: DocKind::Instance,
        key: "domain".into(),
        before: Some(json!(old)),
        after: Some(json!(new)),
    }];
    // `old_domain` is also the passphrase salt (`me@<old_domain or domain>`, port stripped): it is
    // set only when that keeps the salt, so that the owner's passphrase and vault keep working.
    let current = h.doc.get_str("old_domain").filter(|s| !s.is_empty());
    match current {
        None => inst_changes.push(Change {
            doc: DocKind::Instance,
            key: "old_domain".into(),
            before: None,
            after: Some(json!(old)),
        }),
        Some(x) if x == old => {}
        Some(x) if strip_port(x) == strip_port(old) => inst_changes.push(Change {
            doc: DocKind::Instance,
            key: "old_domain".into(),
            before: Some(json!(x)),
            after: Some(json!(old)),
        }),
        Some(x) => notes.push(format!(
            "old_domain stays {x:?}: it is the passphrase salt, and changing it would lock the owner out; requests to {old:?} will not be redirected"
        )),
    }
    // A legacy doc without `prefix` uses its domain as the database prefix: keep it explicitly.
    if !matches!(h.doc.get("prefix"), Some(Value::String(p)) if !p.is_empty()) {
        inst_changes.push(Change {
            doc: DocKind::Instance,
            key: "prefix".into(),
            before: None,
            after: Some(json!(h.db_prefix)),
        });
    }
    let (mut inst, settings): (Vec<Change>, Vec<Change>) =
        e.changes.drain(..).partition(|c| c.doc == DocKind::Instance);
    inst_changes.append(&mut inst);
    inst_changes.sort_by_key(|c| {
        layout::INSTANCE_FIELD_ORDER
            .iter()
            .position(|k| *k == c.key)
            .unwrap_or(usize::MAX)
    });
    e.changes = inst_changes;
    e.changes.extend(settings);

    let new_fs = actual.folders.get(new).copied().unwrap_or_default();
    let move_folder = h.fs.root && !new_fs.root;
    if !h.fs.root && new_fs.root {
        // Moved by an earlier apply that stopped before the doc was updated.
        e.repairs.retain(|r| !matches!(r, Repair::Folder | Repair::TrashFolder));
        if !new_fs.trash {
            e.repairs.push(Repair::TrashFolder);
        }
        notes.push(format!("the folder was already moved to <fs_root>/{new}"));
    }
    e.action = Action::Update;
    e.reason = (!notes.is_empty()).then(|| notes.join("; "));
    e.rename = Some(RenamePlan {
        from: old.to_string(),
        move_folder,
    });
    e
}

/// Adds the default-directory renames of a locale change to `e` (the plan of `w` on `h`).
pub fn attach_dir_renames(e: &mut InstancePlan, w: &DesiredInstance, h: &ActualInstance, actual: &Actual) {
    if !w.rename_default_dirs
        || !e
            .changes
            .iter()
            .any(|c| c.doc == DocKind::Instance && c.key == "locale")
    {
        return;
    }
    let Some(obs) = actual.default_dirs.get(&h.domain) else {
        return;
    };
    let mut notes = Vec::new();
    for o in obs {
        let Some(id) = &o.id else { continue };
        if o.target_taken {
            notes.push(format!(
                "{} is not renamed to {}: that path already exists",
                o.from_path, o.to_path
            ));
            continue;
        }
        e.dir_renames.push(DirRename {
            kind: o.kind.clone(),
            id: id.clone(),
            from: o.from_path.clone(),
            to: o.to_path.clone(),
        });
    }
    if !notes.is_empty() {
        let mut all: Vec<String> = e.reason.take().into_iter().collect();
        all.extend(notes);
        e.reason = Some(all.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actual::DefaultDirObs;
    use crate::fsops::FsState;
    use crate::plan::plan;
    use crate::plan::tests::{actual, desired, existing};

    fn renamed(new: &str, old: &str) -> DesiredInstance {
        let mut d = DesiredInstance::new(new);
        d.renamed_from = Some(old.into());
        d
    }

    #[test]
    fn plan_renames_instead_of_destroy_and_create() {
        let p = plan(
            &desired(vec![renamed("new.example", "old.example")], true),
            &actual(vec![existing("old.example", json!({}))]),
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.instances.len(), 1, "{p:#?}");
        let i = &p.instances[0];
        assert_eq!((i.domain.as_str(), i.action), ("new.example", Action::Update));
        let r = i.rename.as_ref().unwrap();
        assert_eq!(r.from, "old.example");
        assert!(r.move_folder);
        let keys: Vec<&str> = i.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["domain", "old_domain"]);
        assert_eq!(
            i.existing.as_ref().unwrap().db_prefix,
            layout::instance_prefix("old.example"),
            "the prefix stays"
        );
    }

    #[test]
    fn plan_rename_is_a_no_op_once_done() {
        let mut h = existing("new.example", json!({"old_domain": "old.example"}));
        h.db_prefix = layout::instance_prefix("old.example");
        h.doc.insert("prefix".into(), json!(h.db_prefix));
        let p = plan(
            &desired(vec![renamed("new.example", "old.example")], false),
            &actual(vec![h]),
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert!(!p.has_changes(), "{p:#?}");
    }

    #[test]
    fn plan_refuses_a_rename_onto_an_existing_domain() {
        let p = plan(
            &desired(vec![renamed("new.example", "old.example")], false),
            &actual(vec![
                existing("old.example", json!({})),
                existing("new.example", json!({})),
            ]),
        );
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].contains("already exists"), "{:?}", p.errors);
    }

    #[test]
    fn plan_refuses_to_create_the_domain_a_renamed_instance_came_from() {
        let mut h = existing("new.example", json!({"old_domain": "old.example"}));
        h.db_prefix = layout::instance_prefix("old.example");
        h.id = layout::derived_id("instance", "old.example");
        let p = plan(
            &desired(
                vec![
                    renamed("new.example", "old.example"),
                    DesiredInstance::new("old.example"),
                ],
                false,
            ),
            &actual(vec![h]),
        );
        assert!(
            p.errors.iter().any(|e| e.contains("keeps its database prefix")),
            "{:?}",
            p.errors
        );
    }

    #[test]
    fn plan_refuses_a_rename_of_nothing() {
        let p = plan(
            &desired(vec![renamed("new.example", "old.example")], false),
            &actual(vec![]),
        );
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].contains("neither"), "{:?}", p.errors);
        assert!(p.instances.is_empty(), "nothing is created: {p:#?}");
    }

    #[test]
    fn plan_rename_keeps_an_old_domain_that_is_the_passphrase_salt() {
        let p = plan(
            &desired(vec![renamed("c.example", "b.example")], false),
            &actual(vec![existing("b.example", json!({"old_domain": "a.example"}))]),
        );
        let i = &p.instances[0];
        assert!(i.changes.iter().all(|c| c.key != "old_domain"), "{:?}", i.changes);
        assert!(i.reason.as_deref().unwrap().contains("passphrase salt"));
    }

    #[test]
    fn plan_rename_of_a_legacy_doc_pins_its_prefix() {
        let mut h = existing("old.example", json!({}));
        h.doc.remove("prefix");
        h.db_prefix = "old.example".into();
        let p = plan(
            &desired(vec![renamed("new.example", "old.example")], false),
            &actual(vec![h]),
        );
        let c = p.instances[0].changes.iter().find(|c| c.key == "prefix").unwrap();
        assert_eq!(c.after, Some(json!("old.example")));
    }

    #[test]
    fn plan_rename_finishes_a_folder_already_moved() {
        let mut h = existing("old.example", json!({}));
        h.fs = FsState::default();
        let mut a = actual(vec![h]);
        a.folders.insert(
            "new.example".into(),
            FsState {
                root: true,
                trash: true,
                symlink: false,
            },
        );
        let p = plan(&desired(vec![renamed("new.example", "old.example")], false), &a);
        let i = &p.instances[0];
        assert!(!i.rename.as_ref().unwrap().move_folder);
        assert!(i.repairs.is_empty(), "{:?}", i.repairs);
    }

    #[test]
    fn plan_rename_refuses_when_both_folders_exist() {
        let mut a = actual(vec![existing("old.example", json!({}))]);
        a.folders.insert(
            "new.example".into(),
            FsState {
                root: true,
                trash: false,
                symlink: false,
            },
        );
        let p = plan(&desired(vec![renamed("new.example", "old.example")], false), &a);
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    }

    #[test]
    fn plan_renames_default_dirs_on_a_locale_change_only_when_asked() {
        let mut d = DesiredInstance::new("a.example");
        d.locale = Some("fr".into());
        let mut a = actual(vec![existing("a.example", json!({"locale": "en"}))]);
        a.default_dirs.insert(
            "a.example".into(),
            vec![DefaultDirObs {
                kind: "administrative".into(),
                from_path: "/Administrative".into(),
                to_path: "/Administratif".into(),
                id: Some("d1".into()),
                target_taken: false,
                rev: None,
            }],
        );
        let off = plan(&desired(vec![d.clone()], false), &a);
        assert!(off.instances[0].dir_renames.is_empty());
        d.rename_default_dirs = true;
        let on = plan(&desired(vec![d], false), &a);
        assert_eq!(
            on.instances[0].dir_renames,
            vec![DirRename {
                kind: "administrative".into(),
                id: "d1".into(),
                from: "/Administrative".into(),
                to: "/Administratif".into()
            }]
        );
    }
}
