//! Actual-state stage: the compact form in which instance docs are read and kept (see
//! [`crate::actual`]).
//!
//! A large fleet keeps one instance doc per instance for the whole run. As a `serde_json::Map`
//! (an `IndexMap` with `preserve_order`), a doc of five fields takes about 850 bytes in nine
//! allocations: the entries (104 bytes each: a `Value` alone is 72), a hash table, and one
//! allocation per key. [`InstanceDoc`] keeps the fields in order in one boxed slice of 40-byte
//! entries: the key is an index into the layout's known keys (not allocated) or a boxed string,
//! the value is inline when it is null, a boolean, a number or a string, boxed otherwise. About
//! 200 bytes for five fields. Reads give values (`get`, cheap for scalars and strings) or borrow
//! (`get_str`, `get_bool`).
//!
//! Lookups are a linear scan over a few dozen fields at most, as fast as hashing the key. It
//! behaves like the map it replaces: `insert` keeps the position of an existing key (and appends a
//! new one), and `remove` swaps the last field into the hole, as `Map::remove` does with
//! `preserve_order`, so that [`InstanceDoc::to_map`] gives the fields in exactly the order the map
//! would have had.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Number, Value};

use crate::layout;

/// A field name: one of the layout's (not allocated) or any other. 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// An index into [`KNOWN_KEYS`].
    Known(u8),
    Other(Box<str>),
}

impl Key {
    fn new(k: String) -> Key {
        match known_keys().iter().position(|s| **s == k) {
            Some(n) => Key::Known(n as u8),
            None => Key::Other(k.into_boxed_str()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Key::Known(n) => known_keys()[*n as usize],
            Key::Other(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Key::Known(n) => known_keys()[n as usize].to_string(),
            Key::Other(s) => s.into_string(),
        }
    }
}

/// The keys of an instance doc that the layout names, secrets included (at most 256).
fn known_keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut v: Vec<&'static str> = layout::INSTANCE_FIELD_ORDER.to_vec();
        v.extend(
            layout::SECRET_KEYS
                .iter()
                .filter(|k| !layout::INSTANCE_FIELD_ORDER.contains(k)),
        );
        v.truncate(256);
        v
    })
}

/// A field value of an [`InstanceDoc`]: 24 bytes (a `Value` takes 72).
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Null,
    Bool(bool),
    Number(Number),
    String(Box<str>),
    /// Arrays and objects.
    Other(Box<Value>),
}

impl Field {
    fn new(v: Value) -> Field {
        match v {
            Value::Null => Field::Null,
            Value::Bool(b) => Field::Bool(b),
            Value::Number(n) => Field::Number(n),
            Value::String(s) => Field::String(s.into_boxed_str()),
            other => Field::Other(Box::new(other)),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(*b),
            Field::Number(n) => Value::Number(n.clone()),
            Field::String(s) => Value::String(s.to_string()),
            Field::Other(v) => (**v).clone(),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Field::String(s) => Value::String(s.into_string()),
            Field::Other(v) => *v,
            scalar => scalar.to_value(),
        }
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Null => s.serialize_unit(),
            Field::Bool(b) => s.serialize_bool(*b),
            Field::Number(n) => n.serialize(s),
            Field::String(v) => s.serialize_str(v),
            Field::Other(v) => v.serialize(s),
        }
    }
}

/// A field of an [`InstanceDoc`], borrowed: to compare it without building a `Value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    Null,
    Bool(bool),
    Number(&'a Number),
    Str(&'a str),
    /// An array or an object.
    Other(&'a Value),
}

impl FieldRef<'_> {
    pub fn to_value(self) -> Value {
        match self {
            FieldRef::Null => Value::Null,
            FieldRef::Bool(b) => Value::Bool(b),
            FieldRef::Number(n) => Value::Number(n.clone()),
            FieldRef::Str(s) => Value::String(s.to_string()),
            FieldRef::Other(v) => v.clone(),
        }
    }
}

/// The instance doc that the actual state keeps, redacted; see the module doc.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceDoc {
    fields: Box<[(Key, Field)]>,
}

impl InstanceDoc {
    /// The fields of `map`, in its order.
    pub fn from_map(map: Map<String, Value>) -> InstanceDoc {
        InstanceDoc {
            fields: map.into_iter().map(|(k, v)| (Key::new(k), Field::new(v))).collect(),
        }
    }

    /// The fields of an object; anything else gives an empty doc.
    pub fn from_value(v: Value) -> InstanceDoc {
        match v {
            Value::Object(m) => InstanceDoc::from_map(m),
            _ => InstanceDoc::default(),
        }
    }

    fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    }

    /// The value of `key` (a copy: cheap for scalars and strings, which are most fields).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.field(key).map(Field::to_value)
    }

    /// The value of `key`, borrowed.
    pub fn get_ref(&self, key: &str) -> Option<FieldRef<'_>> {
        Some(match self.field(key)? {
            Field::Null => FieldRef::Null,
            Field::Bool(b) => FieldRef::Bool(*b),
            Field::Number(n) => FieldRef::Number(n),
            Field::String(s) => FieldRef::Str(s),
            Field::Other(v) => FieldRef::Other(v),
        })
    }

    /// The value of `key` when it is a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.field(key)? {
            Field::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` when it is an array, borrowed.
    pub fn get_array(&self, key: &str) -> Option<&Vec<Value>> {
        match self.field(key)? {
            Field::Other(v) => v.as_array(),
            _ => None,
        }
    }

    /// The value of `key` when it is a boolean.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.field(key)? {
            Field::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.field(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Sets `key`: in place when present (the old value is returned), else appended.
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        let value = Field::new(value);
        if let Some((_, v)) = self.fields.iter_mut().find(|(k, _)| k.as_str() == key) {
            return Some(std::mem::replace(v, value).into_value());
        }
        let mut fields = std::mem::take(&mut self.fields).into_vec();
        fields.push((Key::new(key), value));
        self.fields = fields.into_boxed_slice();
        None
    }

    /// Removes `key`, moving the last field into its place (`Map::remove` with `preserve_order`).
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.fields.iter().position(|(k, _)| k.as_str() == key)?;
        let mut fields = std::mem::take(&mut self.fields).into_vec();
        let (_, v) = fields.swap_remove(at);
        self.fields = fields.into_boxed_slice();
        Some(v.into_value())
    }

    /// [`InstanceDoc::remove`] of each key in turn, with one reallocation at most.
    pub fn remove_all(&mut self, keys: &[&str]) {
        if !keys.iter().any(|k| self.contains_key(k)) {
            return;
        }
        let mut fields = std::mem::take(&mut self.fields).into_vec();
        for key in keys {
            if let Some(at) = fields.iter().position(|(k, _)| k.as_str() == *key) {
                fields.swap_remove(at);
            }
        }
        // At its exact size: kept for every instance of a fleet.
        self.fields = fields.into_boxed_slice();
    }

    /// The doc as a JSON map, fields in order.
    pub fn to_map(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_value()))
            .collect()
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.fields
            .into_vec()
            .into_iter()
            .map(|(k, v)| (k.into_string(), v.into_value()))
            .collect()
    }
}

impl From<Map<String, Value>> for InstanceDoc {
    fn from(m: Map<String, Value>) -> InstanceDoc {
        InstanceDoc::from_map(m)
    }
}

impl Serialize for InstanceDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (k, v) in self.fields.iter() {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

/// Read access to the fields of a doc, whichever form it is kept in.
pub trait DocFields {
    fn field(&self, key: &str) -> Option<Cow<'_, Value>>;
}

impl DocFields for InstanceDoc {
    fn field(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.get(key).map(Cow::Owned)
    }
}

impl DocFields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.get(key).map(Cow::Borrowed)
    }
}

impl DocFields for Value {
    fn field(&self, key: &str) -> Option<Cow<'_, Value>> {
        self.get(key).map(Cow::Borrowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn keeps_the_fields_and_their_order() {
        let m = map(
            json!({"zeta": 1, "domain": "a.example", "prefix": "cozyabc", "nested": {"x": [1, 2]},
                           "deleting": true, "n": null, "f": 1.5, "neg": -3, "list": ["a", 2]}),
        );
        let d = InstanceDoc::from_map(m.clone());
        assert_eq!(d, InstanceDoc::from_value(Value::Object(m.clone())));
        assert_eq!(d.len(), 9);
        for (k, v) in &m {
            assert_eq!(d.get(k).as_ref(), Some(v), "{k}");
            assert_eq!(d.get_ref(k).map(FieldRef::to_value).as_ref(), Some(v), "{k}");
            assert_eq!(DocFields::field(&d, k).as_deref(), Some(v), "{k}");
        }
        assert_eq!(d.get("missing"), None);
        assert_eq!(d.get_ref("missing"), None);
        assert_eq!(d.get_ref("domain"), Some(FieldRef::Str("a.example")));
        assert_eq!(d.get_ref("deleting"), Some(FieldRef::Bool(true)));
        assert_eq!(d.get_ref("n"), Some(FieldRef::Null));
        assert_eq!(d.get_str("domain"), Some("a.example"));
        assert_eq!(d.get_str("zeta"), None);
        assert_eq!(d.get_bool("deleting"), Some(true));
        assert_eq!(d.get_bool("domain"), None);
        assert_eq!(d.get_array("list"), Some(&vec![json!("a"), json!(2)]));
        assert_eq!(d.get_array("nested"), None);
        assert_eq!(d.get_array("domain"), None);
        assert_eq!(d.to_map(), m);
        assert_eq!(d.clone().into_map(), m);
        assert_eq!(serde_json::to_string(&d).unwrap(), serde_json::to_string(&m).unwrap());
    }

    #[test]
    fn remove_and_insert_order_like_a_preserve_order_map() {
        let src = json!({"_id": "i", "_rev": "1-x", "domain": "a", "register_token": "s", "locale": "en",
                         "prefix": "p", "extra": true, "cli_secret": "t"});
        let mut m = map(src.clone());
        let mut d = InstanceDoc::from_value(src);
        let keys = ["register_token", "_id", "cli_secret", "absent", "_rev"];
        d.remove_all(&keys);
        for k in keys {
            m.remove(k);
        }
        assert_eq!(d.to_map(), m);
        assert_eq!(
            d.insert("locale".into(), json!("de")),
            m.insert("locale".into(), json!("de"))
        );
        assert_eq!(
            d.insert("new_key".into(), json!([1])),
            m.insert("new_key".into(), json!([1]))
        );
        assert_eq!(d.remove("prefix"), m.remove("prefix"));
        assert_eq!(d.remove("prefix"), None);
        assert_eq!(d.remove("domain"), m.remove("domain"));
        assert_eq!(d.to_map(), m);
        assert_eq!(
            d.to_map().keys().cloned().collect::<Vec<_>>(),
            m.keys().cloned().collect::<Vec<_>>()
        );
    }

    #[test]
    fn not_an_object_is_empty() {
        assert!(InstanceDoc::from_value(json!([1])).is_empty());
        assert!(InstanceDoc::from_value(json!("x")).is_empty());
        assert_eq!(InstanceDoc::default().to_map(), Map::new());
    }

    #[test]
    fn fields_are_small() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
        assert_eq!(std::mem::size_of::<Field>(), 24);
    }
}
