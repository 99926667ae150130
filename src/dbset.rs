//! Compact per-instance database sets for large fleets.
//!
//! An instance's databases are almost always the 16 of [`layout::INSTANCE_DOCTYPES`]: they are kept
//! as a bitset ([`DoctypeSet`], 2 bytes) instead of 16 `String`s, and only unexpected names are kept
//! as strings. [`DbGrouper`] builds these sets page by page from an `_all_dbs` scan, so a scan of
//! millions of names is never held in memory at once.

use std::collections::HashMap;

use crate::layout;

/// A set of doctypes among [`layout::INSTANCE_DOCTYPES`] (there are 16: one bit each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DoctypeSet(u16);

fn bit(doctype: &str) -> Option<u16> {
    layout::INSTANCE_DOCTYPES
        .iter()
        .position(|d| *d == doctype)
        .map(|n| 1u16 << n)
}

impl DoctypeSet {
    /// Every layout doctype.
    pub fn all() -> DoctypeSet {
        DoctypeSet(((1u32 << layout::INSTANCE_DOCTYPES.len()) - 1) as u16)
    }

    pub fn contains(&self, doctype: &str) -> bool {
        bit(doctype).is_some_and(|b| self.0 & b != 0)
    }

    /// Adds a layout doctype; `false` when it is not one of the layout's or was already there.
    pub fn insert(&mut self, doctype: &str) -> bool {
        match bit(doctype) {
            Some(b) if self.0 & b == 0 => {
                self.0 |= b;
                true
            }
            _ => false,
        }
    }

    /// Removes a doctype; `true` when it was there.
    pub fn remove(&mut self, doctype: &str) -> bool {
        match bit(doctype) {
            Some(b) if self.0 & b != 0 => {
                self.0 &= !b;
                true
            }
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The doctypes, sorted by name (the order of a `BTreeSet<String>`).
    pub fn iter(&self) -> impl Iterator<Item = &'static str> {
        let mut v: Vec<&'static str> = layout::INSTANCE_DOCTYPES
            .iter()
            .enumerate()
            .filter(|(n, _)| self.0 & (1 << n) != 0)
            .map(|(_, d)| *d)
            .collect();
        v.sort_unstable();
        v.into_iter()
    }
}

impl<S: AsRef<str>> FromIterator<S> for DoctypeSet {
    /// Names that are not layout doctypes are ignored.
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut s = DoctypeSet::default();
        for d in iter {
            s.insert(d.as_ref());
        }
        s
    }
}

impl serde::Serialize for DoctypeSet {
    /// A sorted array of doctype names, as a `BTreeSet<String>` serializes.
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.iter())
    }
}

/// The databases of one prefix: the layout ones as a bitset, any other name in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixDbs {
    pub doctypes: DoctypeSet,
    pub other: Vec<String>,
}

/// The escaped suffix (`/io-cozy-files`) of each layout doctype's database name, in layout order.
fn suffixes() -> &'static [String] {
    static S: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        layout::INSTANCE_DOCTYPES
            .iter()
            .map(|d| format!("/{}", layout::escape_couchdb_name(d)))
            .collect()
    })
}

impl PrefixDbs {
    /// Adds one database name of this prefix (`<escaped prefix>/<rest>`).
    pub fn add(&mut self, name: String) {
        let rest = name.find('/').map(|i| &name[i..]).unwrap_or("");
        match suffixes().iter().position(|s| s == rest) {
            Some(n) => self.doctypes.0 |= 1 << n,
            None => self.other.push(name),
        }
    }

    /// Groups a list of names of one prefix.
    pub fn from_names(names: Vec<String>) -> PrefixDbs {
        let mut p = PrefixDbs::default();
        for n in names {
            p.add(n);
        }
        p
    }

    /// Every database name, sorted, given the instance's (unescaped) db prefix.
    pub fn names(&self, db_prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .doctypes
            .iter()
            .map(|d| layout::db_name(db_prefix, d))
            .chain(self.other.iter().cloned())
            .collect();
        v.sort_unstable();
        v
    }
}

/// Groups `_all_dbs` names by escaped prefix (the part before `/`), page by page.
#[derive(Debug, Default)]
pub struct DbGrouper {
    pub by_prefix: HashMap<String, PrefixDbs>,
}

impl DbGrouper {
    /// Adds one page of names; names without `/` are ignored.
    pub fn add_page(&mut self, page: Vec<String>) {
        for name in page {
            let Some(i) = name.find('/') else { continue };
            match self.by_prefix.get_mut(&name[..i]) {
                Some(p) => p.add(name),
                None => {
                    let key = name[..i].to_string();
                    self.by_prefix.entry(key).or_default().add(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctype_set_behaves_like_a_sorted_set() {
        let mut s: DoctypeSet = layout::INSTANCE_DOCTYPES.iter().collect();
        assert_eq!(s, DoctypeSet::all());
        assert_eq!(s.len(), 16);
        assert!(s.remove("io.cozy.jobs"));
        assert!(!s.remove("io.cozy.jobs"));
        assert!(!s.contains("io.cozy.jobs"));
        assert!(!s.insert("io.cozy.unknown"));
        let mut want: Vec<&str> = layout::INSTANCE_DOCTYPES
            .iter()
            .copied()
            .filter(|d| *d != "io.cozy.jobs")
            .collect();
        want.sort();
        assert_eq!(s.iter().collect::<Vec<_>>(), want);
        assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(want));
    }

    #[test]
    fn grouper_keeps_layout_databases_as_bits_and_others_as_names() {
        let prefix = layout::instance_prefix("alice.example");
        let mut names: Vec<String> = layout::INSTANCE_DOCTYPES
            .iter()
            .map(|d| layout::db_name(&prefix, d))
            .collect();
        names.push(format!("{prefix}/io-cozy-bank-accounts"));
        names.push("cozyother/io-cozy-files".into());
        names.push("noslash".into());
        let mut g = DbGrouper::default();
        g.add_page(names[..5].to_vec());
        g.add_page(names[5..].to_vec());
        let p = &g.by_prefix[&layout::escaped_db_prefix(&prefix)];
        assert_eq!(p.doctypes, DoctypeSet::all());
        assert_eq!(p.other, vec![format!("{prefix}/io-cozy-bank-accounts")]);
        let mut want = names[..17].to_vec();
        want.sort();
        assert_eq!(p.names(&prefix), want);
        assert_eq!(g.by_prefix["cozyother"].doctypes.len(), 1);
        assert_eq!(g.by_prefix.len(), 2);
    }
}
