//! The typed fields of an app doc, as cozy-stack's `WebappManifest` / `KonnManifest` re-encode them
//! (`MarshalJSON` in model/app/webapp.go and konnector.go), and the key order Go writes.
//!
//! cozy-stack keeps the whole manifest in a `map[string]interface{}` and overwrites some keys with
//! the values of typed Go structs. So:
//! - the doc's keys, and the keys of every untyped object inside, are sorted (Go sorts map keys);
//! - `terms` is always `{url, version}` (other keys dropped, missing ones `""`);
//! - `intents` is `null` or a list of `{action, type, href}`;
//! - `routes` maps each route to `{folder, index, public}` (absent: the default route);
//! - `services` maps each service to `{type, file, debounce, trigger, trigger_id}`;
//! - `notifications` maps each group to its `notification.Properties` (empty fields left out);
//! - `permissions` is the re-encoded set ([`super::perms`]), rules in the manifest's order.

use serde_json::{Map, Value, json};

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_string()
}

/// Sorts the keys of every object, recursively (Go's encoding of a `map[string]interface{}`).
pub fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                sort_keys(&mut val);
                m.insert(k, val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// A `map[string]T` of structs: keys sorted, each value built by `f`.
fn typed_map(v: Option<&Value>, f: impl Fn(Option<&Value>) -> Value) -> Value {
    match v {
        Some(Value::Object(o)) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), f(o.get(k)))).collect())
        }
        _ => Value::Null,
    }
}

/// `Terms`.
pub fn terms(v: Option<&Value>) -> Value {
    json!({"url": s(v.and_then(|t| t.get("url"))), "version": s(v.and_then(|t| t.get("version")))})
}

/// `[]Intent`.
pub fn intents(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Array(a)) => Value::Array(
            a.iter()
                .map(|i| {
                    let types = match i.get("type") {
                        Some(Value::Array(t)) => Value::Array(t.iter().filter(|x| x.is_string()).cloned().collect()),
                        _ => Value::Null,
                    };
                    json!({"action": s(i.get("action")), "type": types, "href": s(i.get("href"))})
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// `Routes`, with the default route when absent.
pub fn routes(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Object(_)) => typed_map(v, |r| {
            let public = r
                .and_then(|r| r.get("public"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            json!({"folder": s(r.and_then(|r| r.get("folder"))), "index": s(r.and_then(|r| r.get("index"))), "public": public})
        }),
        _ => json!({"/": {"folder": "/", "index": "index.html", "public": false}}),
    }
}

/// `Notifications` (`map[string]notification.Properties`, `omitempty` fields).
pub fn notifications(v: Option<&Value>) -> Value {
    typed_map(v, |p| {
        let mut o = Map::new();
        let Some(p) = p.and_then(Value::as_object) else {
            return Value::Object(o);
        };
        let nonempty_str = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty())
                .map(|x| json!(x))
        };
        let is_true = |k: &str| p.get(k).and_then(Value::as_bool).filter(|b| *b).map(|b| json!(b));
        let nonzero = |k: &str| p.get(k).filter(|n| n.as_f64().is_some_and(|x| x != 0.0)).cloned();
        let fields: [(&str, Option<Value>); 8] = [
            ("description", nonempty_str("description")),
            ("collapsible", is_true("collapsible")),
            ("multiple", is_true("multiple")),
            ("stateful", is_true("stateful")),
            ("default_priority", nonempty_str("default_priority")),
            ("time_to_live", nonzero("time_to_live")),
            (
                "templates",
                p.get("templates")
                    .and_then(Value::as_object)
                    .filter(|t| !t.is_empty())
                    .map(|t| {
                        let mut t = Value::Object(t.clone());
                        sort_keys(&mut t);
                        t
                    }),
            ),
            ("min_interval", nonzero("min_interval")),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                o.insert(k.into(), v);
            }
        }
        Value::Object(o)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_are_re_encoded() {
        assert_eq!(terms(None), json!({"url": "", "version": ""}));
        assert_eq!(
            serde_json::to_string(&terms(Some(&json!({"version": "2", "id": "x", "url": "u"})))).unwrap(),
            r#"{"url":"u","version":"2"}"#
        );
        assert_eq!(
            intents(Some(&json!([{"href": "/p", "action": "PICK", "data": 1}]))),
            json!([{"action": "PICK", "type": null, "href": "/p"}])
        );
        assert_eq!(intents(None), Value::Null);
        assert_eq!(
            serde_json::to_string(&routes(Some(
                &json!({"/z": {"index": "i"}, "/a": {"folder": "/", "public": true}})
            )))
            .unwrap(),
            r#"{"/a":{"folder":"/","index":"","public":true},"/z":{"folder":"","index":"i","public":false}}"#
        );
        assert_eq!(
            notifications(Some(
                &json!({"n": {"collapsible": false, "stateful": true, "x": 1, "description": ""}})
            )),
            json!({"n": {"stateful": true}})
        );
        let mut v = json!({"b": 1, "a": {"d": 1, "c": [{"f": 1, "e": 2}]}});
        sort_keys(&mut v);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"a":{"c":[{"e":2,"f":1}],"d":1},"b":1}"#
        );
    }
}
