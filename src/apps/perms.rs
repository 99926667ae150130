//! Permission sets as cozy-stack reads and writes them (`model/permission` `Set`, `Rule`, `VerbSet`):
//! a manifest's `permissions` object is decoded into an ordered list of rules and encoded back, so
//! that the app doc and the permission doc hold exactly what cozy-stack would write:
//! - each rule is `{type, description?, verbs?, selector?, values?}` in that order, empty fields
//!   left out (`omitempty`), unknown keys dropped;
//! - `verbs` are de-duplicated and written in the order GET, POST, PUT, PATCH, DELETE; a list
//!   holding `"ALL"` (or an empty one) means every verb and is left out;
//! - the rules keep the manifest's order; a rule with an empty title is written `rule<i>`.
//!
//! It also mirrors what an update does to the permission doc (`permission.Diff` and
//! `MergeExtraPermissions`): rights the doc had beyond the old manifest's are kept, and so are the
//! old manifest's rules (cozy-stack's `Diff` returns the old set whole when the doc was not altered).

use serde_json::{Map, Value, json};

const VERBS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One rule (`permission.Rule`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub title: String,
    pub typ: String,
    pub description: String,
    /// A subset of [`VERBS`], in that order; empty means every verb.
    pub verbs: Vec<&'static str>,
    pub selector: String,
    pub values: Vec<String>,
}

fn contains(verbs: &[&'static str], v: &str) -> bool {
    verbs.is_empty() || verbs.contains(&v)
}

fn contains_all(verbs: &[&'static str], other: &[&'static str]) -> bool {
    verbs.is_empty() || other.iter().all(|v| verbs.contains(v))
}

fn add_verb(verbs: &mut Vec<&'static str>, v: &'static str) {
    if !verbs.contains(&v) {
        verbs.push(v);
        verbs.sort_by_key(|x| VERBS.iter().position(|y| y == x));
    }
}

fn string_field(o: &Map<String, Value>, k: &str, title: &str) -> Result<String, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("permission {title:?}: {k} must be a string")),
    }
}

/// Decodes a `permissions` object (`Set.UnmarshalJSON`); null or absent is the empty set.
pub fn parse(v: Option<&Value>) -> Result<Vec<Rule>, String> {
    let o = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err("permissions must be an object".into()),
    };
    let mut out = Vec::new();
    for (title, raw) in o {
        let r = match raw {
            Value::Object(r) => r,
            Value::Null => {
                out.push(Rule {
                    title: title.clone(),
                    ..Rule::default()
                });
                continue;
            }
            _ => return Err(format!("permission {title:?} must be an object")),
        };
        let mut rule = Rule {
            title: title.clone(),
            typ: string_field(r, "type", title)?,
            description: string_field(r, "description", title)?,
            selector: string_field(r, "selector", title)?,
            ..Rule::default()
        };
        match r.get("verbs") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                let names: Vec<&str> = a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| format!("permission {title:?}: verbs must be strings"))
                    })
                    .collect::<Result<_, _>>()?;
                if !names.contains(&"ALL") {
                    for n in names {
                        let Some(v) = VERBS.iter().find(|v| **v == n) else {
                            return Err(format!("permission {title:?}: unknown verb {n:?}"));
                        };
                        add_verb(&mut rule.verbs, v);
                    }
                }
            }
            Some(_) => return Err(format!("permission {title:?}: verbs must be a list")),
        }
        match r.get("values") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for v in a {
                    rule.values.push(
                        v.as_str()
                            .ok_or_else(|| format!("permission {title:?}: values must be strings"))?
                            .to_string(),
                    );
                }
            }
            Some(_) => return Err(format!("permission {title:?}: values must be a list")),
        }
        out.push(rule);
    }
    Ok(out)
}

/// Encodes a set (`Set.MarshalJSON`): `{}` when empty.
pub fn to_json(set: &[Rule]) -> Value {
    let mut m = Map::new();
    for (i, r) in set.iter().enumerate() {
        let title = if r.title.is_empty() {
            format!("rule{i}")
        } else {
            r.title.clone()
        };
        let mut o = Map::new();
        o.insert("type".into(), json!(r.typ));
        if !r.description.is_empty() {
            o.insert("description".into(), json!(r.description));
        }
        if !r.verbs.is_empty() {
            o.insert("verbs".into(), json!(r.verbs));
        }
        if !r.selector.is_empty() {
            o.insert("selector".into(), json!(r.selector));
        }
        if !r.values.is_empty() {
            o.insert("values".into(), json!(r.values));
        }
        m.insert(title, Value::Object(o));
    }
    Value::Object(m)
}

/// A `permissions` value normalized as cozy-stack writes it; a value it cannot decode is kept as is.
pub fn normalize(v: Option<&Value>) -> Value {
    match parse(v) {
        Ok(set) => to_json(&set),
        Err(_) => v.cloned().unwrap_or_else(|| json!({})),
    }
}

/// `Set.HasSameRules`.
pub fn same_rules(a: &[Rule], b: &[Rule]) -> bool {
    a.len() == b.len()
        && a.iter().all(|r| {
            b.iter().any(|o| {
                r.values == o.values
                    && r.selector == o.selector
                    && contains_all(&r.verbs, &o.verbs)
                    && contains_all(&o.verbs, &r.verbs)
                    && r.typ == o.typ
            })
        })
}

/// `permission.Diff(set1, set2)`: what `set2` (the permission doc) adds to `set1` (the old
/// manifest's rules).
pub fn diff(set1: &[Rule], set2: &[Rule]) -> Vec<Rule> {
    if same_rules(set1, set2) {
        return set1.to_vec();
    }
    let mut out: Vec<Rule> = set2
        .iter()
        .filter(|r2| !set1.iter().any(|r| r.title == r2.title))
        .cloned()
        .collect();
    for r1 in set1 {
        for r2 in set2.iter().filter(|r2| r2.title == r1.title) {
            let mut n = Rule {
                title: r1.title.clone(),
                typ: r1.typ.clone(),
                ..Rule::default()
            };
            for v in &r2.verbs {
                if !contains(&r1.verbs, v) {
                    add_verb(&mut n.verbs, v);
                }
            }
            for v in &r2.values {
                if !r1.values.contains(v) {
                    n.values.push(v.clone());
                }
            }
            out.push(n);
        }
    }
    out
}

/// `Rule.Merge`: `None` when the types differ.
fn merge_rule(r: &Rule, r2: &Rule) -> Option<Rule> {
    if r.typ != r2.typ {
        return None;
    }
    let mut n = r.clone();
    for v in &r2.verbs {
        if !contains(&n.verbs, v) {
            add_verb(&mut n.verbs, v);
        }
    }
    for v in &r2.values {
        if !n.values.contains(v) {
            n.values.push(v.clone());
        }
    }
    Some(n)
}

/// `permission.MergeExtraPermissions(perms, extra)`.
pub fn merge_extra(perms: &[Rule], extra: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = extra
        .iter()
        .filter(|e| !perms.iter().any(|p| p.title == e.title))
        .cloned()
        .collect();
    for rule in perms {
        let merged = extra
            .iter()
            .filter(|e| e.title == rule.title)
            .find_map(|e| merge_rule(rule, e));
        out.push(merged.unwrap_or_else(|| rule.clone()));
    }
    out
}

/// The rules cozy-stack writes in the permission doc on an update: the new manifest's, merged with
/// `permission.Diff(old manifest's, permission doc's)` when that is not empty.
pub fn updated_set(old_manifest: &[Rule], doc: &[Rule], new_manifest: &[Rule]) -> Vec<Rule> {
    let extra = diff(old_manifest, doc);
    if extra.is_empty() {
        new_manifest.to_vec()
    } else {
        merge_extra(new_manifest, &extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: Value) -> Vec<Rule> {
        parse(Some(&v)).unwrap()
    }

    #[test]
    fn normalizes_as_cozy_stack_marshals() {
        let v = json!({
            "b": {"type": "io.cozy.files", "verbs": ["DELETE", "GET", "GET"], "title": "x", "extra": 1, "values": []},
            "a": {"description": "d", "type": "io.cozy.contacts", "verbs": ["GET", "ALL"], "selector": "", "values": ["v"]},
        });
        let out = normalize(Some(&v));
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"b":{"type":"io.cozy.files","verbs":["GET","DELETE"]},"a":{"type":"io.cozy.contacts","description":"d","values":["v"]}}"#
        );
        assert_eq!(normalize(None), json!({}));
        assert!(parse(Some(&json!({"a": {"type": "t", "verbs": ["GRAB"]}}))).is_err());
    }

    #[test]
    fn an_update_keeps_old_rules_and_added_rights() {
        let old = set(json!({"files": {"type": "io.cozy.files"}, "gone": {"type": "io.cozy.notes", "verbs": ["GET"]}}));
        let new = set(json!({"files": {"type": "io.cozy.files"}, "contacts": {"type": "io.cozy.contacts"}}));
        // The doc as installed: cozy-stack keeps the old rules (Diff returns the old set).
        let out = to_json(&updated_set(&old, &old, &new));
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"gone":{"type":"io.cozy.notes","verbs":["GET"]},"files":{"type":"io.cozy.files"},"contacts":{"type":"io.cozy.contacts"}}"#
        );
        // A doc altered after install: the added values stay.
        let old = set(json!({"c": {"type": "io.cozy.contacts", "verbs": ["GET"], "values": ["a"]}}));
        let doc = set(json!({"c": {"type": "io.cozy.contacts", "verbs": ["GET", "POST"], "values": ["a", "b"]}}));
        let new = set(json!({"c": {"type": "io.cozy.contacts", "verbs": ["GET"], "values": ["a"]}}));
        let out = to_json(&updated_set(&old, &doc, &new));
        assert_eq!(
            out,
            json!({"c": {"type": "io.cozy.contacts", "verbs": ["GET", "POST"], "values": ["a", "b"]}})
        );
        // No rules: nothing to merge.
        assert!(updated_set(&[], &[], &[]).is_empty());
    }
}
