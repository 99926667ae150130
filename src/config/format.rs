//! `cozyform fmt`: the canonical layout of a config file, computed with `toml_edit` so that comments
//! and the formatting of values are kept.
//!
//! The canonical layout: top-level keys and tables in the order of [`TOP_KEYS`]; the keys of
//! `[couchdb]`, `[storage]`, `[defaults]` and of each instance in the order of their key lists
//! ([`COUCHDB_KEYS`], [`STORAGE_KEYS`], [`DEFAULT_KEYS`], [`INSTANCE_KEYS`]), unknown keys last in
//! alphabetical order; instances sorted by domain; `settings` keys sorted; one blank line before
//! each table header. A comment moves with the key or table header it sits above. Comments that
//! follow the content of a table (its last key, or its header when it has none), up to a blank line,
//! stay at the end of that table. The comment block at the top of the file (up to its last blank
//! line, and a leading `#:schema` line) stays at the top.
//!
//! Only TOML syntax is required: a file with configuration errors (an unknown key) is still
//! formatted, as `rustfmt` formats code that does not compile.

use std::cmp::Ordering;
use std::path::Path;

use toml_edit::{DocumentMut, Item, Key, Table, Value};

use super::diagnostics::{ConfigError, Diagnostic, Severity};
use super::{COUCHDB_KEYS, DEFAULT_KEYS, INSTANCE_KEYS, STORAGE_KEYS, TOP_KEYS};

/// How the keys of one table are ordered.
#[derive(Clone, Copy)]
enum Order {
    /// By position in the list, then unknown keys alphabetically.
    Keys(&'static [&'static str]),
    /// Alphabetically (instance domains, `settings` keys), case-insensitively.
    Alpha,
}

fn order_for(path: &[String]) -> Order {
    match path {
        [] => Order::Keys(TOP_KEYS),
        [a] if a == "couchdb" => Order::Keys(COUCHDB_KEYS),
        [a] if a == "storage" => Order::Keys(STORAGE_KEYS),
        [a] if a == "defaults" => Order::Keys(DEFAULT_KEYS),
        [a, _] if a == "instances" => Order::Keys(INSTANCE_KEYS),
        _ => Order::Alpha,
    }
}

fn compare(order: Order, a: &str, b: &str) -> Ordering {
    let alpha = |a: &str, b: &str| a.to_lowercase().cmp(&b.to_lowercase()).then_with(|| a.cmp(b));
    match order {
        Order::Alpha => alpha(a, b),
        Order::Keys(list) => {
            let rank = |k: &str| list.iter().position(|x| *x == k).unwrap_or(list.len());
            rank(a).cmp(&rank(b)).then_with(|| alpha(a, b))
        }
    }
}

/// Formats config text. A file that is not valid TOML is refused with the positioned error.
pub fn format_str(src: &str, file: &Path) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = src.parse().map_err(|e: toml_edit::TomlError| ConfigError {
        diagnostics: vec![Diagnostic::at(
            Severity::Error,
            file,
            src,
            e.span(),
            format!("invalid TOML: {}", e.message().trim()),
            Some("fix the TOML syntax at this position; fmt formats only a file that parses".into()),
        )],
    })?;
    let header = detach_header(&mut doc);
    let mut trailers = detach_trailers(&mut doc);
    let mut path = Vec::new();
    order_table(doc.as_table_mut(), &mut path);
    attach_trailers(doc.as_table_mut(), &mut trailers);
    let mut pos = 0;
    number_tables(doc.as_table_mut(), &mut pos);
    let mut emitted = doc.as_table().get_values().iter().any(|_| true);
    space_tables(doc.as_table_mut(), true, &mut emitted);
    let root_prefix = doc.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
    doc.decor_mut().set_prefix(format!("{header}{root_prefix}"));
    let mut out = doc.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Splits a leading whitespace-and-comments prefix into the file header (kept at the top) and
/// the comment that belongs to the item below it.
fn split_header(prefix: &str) -> (String, String) {
    let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    let blank = |l: &str| l.ends_with('\n') && l.trim().is_empty();
    let mut n = lines.iter().rposition(|l| blank(l)).map(|i| i + 1).unwrap_or(0);
    if n == 0
        && lines
            .first()
            .is_some_and(|l| l.ends_with('\n') && l.trim_start().starts_with("#:schema"))
    {
        n = 1;
    }
    let header: String = lines[..n].iter().skip_while(|l| blank(l)).copied().collect();
    (header, lines[n..].concat())
}

/// Takes the file header off the first item printed (the first top-level key, or else the first
/// table header), so that it does not move with that item.
fn detach_header(doc: &mut DocumentMut) -> String {
    let root = doc.as_table_mut();
    let first_value = root.iter().find(|(_, v)| v.is_value()).map(|(k, _)| k.to_string());
    if let Some(k) = first_value {
        let Some(mut key) = root.key_mut(&k) else {
            return String::new();
        };
        let decor = key.leaf_decor_mut();
        let prefix = decor.prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
        let (header, rest) = split_header(&prefix);
        decor.set_prefix(rest);
        return header;
    }
    let mut best: Option<(isize, Vec<String>)> = None;
    find_first_table(root, &mut Vec::new(), &mut best);
    let Some((_, path)) = best else {
        return String::new();
    };
    let mut t = root;
    for k in &path {
        match t.get_mut(k) {
            Some(Item::Table(sub)) => t = sub,
            _ => return String::new(),
        }
    }
    let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
    let (header, rest) = split_header(&prefix);
    t.decor_mut().set_prefix(rest);
    header
}

fn shown(t: &Table) -> bool {
    !t.is_dotted() && (!t.is_implicit() || !t.get_values().is_empty())
}

fn find_first_table(t: &Table, path: &mut Vec<String>, best: &mut Option<(isize, Vec<String>)>) {
    for (k, item) in t.iter() {
        if let Item::Table(sub) = item {
            path.push(k.to_string());
            let p = sub.position().unwrap_or(isize::MAX);
            if shown(sub) && best.as_ref().is_none_or(|(b, _)| p < *b) {
                *best = Some((p, path.clone()));
            }
            find_first_table(sub, path, best);
            path.pop();
        }
    }
}

/// Sorts the keys of a table and of everything under it.
fn order_table(t: &mut Table, path: &mut Vec<String>) {
    let order = order_for(path);
    t.sort_values_by(|a: &Key, _: &Item, b: &Key, _: &Item| compare(order, a.get(), b.get()));
    for (k, item) in t.iter_mut() {
        path.push(k.get().to_string());
        match item {
            Item::Table(sub) => order_table(sub, path),
            Item::ArrayOfTables(arr) => {
                for sub in arr.iter_mut() {
                    order_table(sub, path);
                }
            }
            Item::Value(Value::InlineTable(it)) => order_inline(it, path),
            _ => {}
        }
        path.pop();
    }
}

fn order_inline(t: &mut toml_edit::InlineTable, path: &mut Vec<String>) {
    let order = order_for(path);
    t.sort_values_by(|a, _, b, _| compare(order, a.get(), b.get()));
    // Inline tables hold no comment: their spacing is normalized (`{ a = "1", b = "2" }`).
    t.fmt();
    for (k, v) in t.iter_mut() {
        if let Value::InlineTable(sub) = v {
            path.push(k.get().to_string());
            order_inline(sub, path);
            path.pop();
        }
    }
}

/// Gives the tables positions in tree order: a table's header comes right after its parent's
/// content, in the sorted order.
fn number_tables(t: &mut Table, pos: &mut isize) {
    if !t.is_dotted() {
        t.set_position(*pos);
        *pos += 1;
    }
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => number_tables(sub, pos),
            Item::ArrayOfTables(arr) => {
                for sub in arr.iter_mut() {
                    number_tables(sub, pos);
                }
            }
            _ => {}
        }
    }
}

/// At least one blank line before every table header that follows something, none before the first.
fn space_tables(t: &mut Table, is_root: bool, emitted: &mut bool) {
    if !is_root && shown(t) {
        let prefix = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_string();
        if *emitted {
            if !prefix.starts_with('\n') && !prefix.starts_with("\r\n") {
                t.decor_mut().set_prefix(format!("\n{prefix}"));
            }
        } else {
            // The first thing in the file (after its header): no blank line before it.
            t.decor_mut()
                .set_prefix(prefix.trim_start_matches(['\n', '\r']).to_string());
        }
        *emitted = true;
    }
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => space_tables(sub, false, emitted),
            Item::ArrayOfTables(arr) => {
                for sub in arr.iter_mut() {
                    space_tables(sub, false, emitted);
                }
            }
            _ => {}
        }
    }
}

/// A line with nothing but white space (a line without its `\n` is the indentation of what follows).
fn is_blank_line(l: &str) -> bool {
    l.ends_with('\n') && l.trim().is_empty()
}

/// Splits `s` (whitespace and comments) at its last blank line: the part before it, when it holds a
/// comment, is the trailer of what comes before (its trailing blank lines dropped); the rest (from
/// the blank line on) stays. `None` when there is no such trailer.
fn split_trailer(s: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = s.split_inclusive('\n').collect();
    let n = lines.iter().rposition(|l| is_blank_line(l))?;
    if !lines[..n].iter().any(|l| l.trim_start().starts_with('#')) {
        return None;
    }
    let end = lines[..n].iter().rposition(|l| !is_blank_line(l)).map_or(0, |i| i + 1);
    Some((lines[..end].concat(), lines[n..].concat()))
}

/// The comments that follow the content of a table (its last key, or its header), up to a blank
/// line: in `toml_edit` they belong to the next table header (or to the end of the document), so
/// they would move with it and get a blank line put above them. `root` is the top-level keys';
/// `tables` is by original position.
#[derive(Default)]
struct Trailers {
    root: Option<String>,
    tables: std::collections::BTreeMap<isize, String>,
}

/// Calls `f` on every table under `t` (sub-tables and the elements of arrays of tables, recursively).
fn walk_tables(t: &mut Table, f: &mut impl FnMut(&mut Table)) {
    for (_, item) in t.iter_mut() {
        let subs: Vec<&mut Table> = match item {
            Item::Table(sub) => vec![sub],
            Item::ArrayOfTables(arr) => arr.iter_mut().collect(),
            _ => continue,
        };
        for sub in subs {
            f(sub);
            walk_tables(sub, f);
        }
    }
}

/// Takes the trailers off the table headers (and the end of the document) that hold them.
fn detach_trailers(doc: &mut DocumentMut) -> Trailers {
    // The positions of the tables that have a header in the file, in file order.
    let mut positions = Vec::new();
    walk_tables(doc.as_table_mut(), &mut |t| {
        positions.extend(t.position().filter(|_| shown(t)))
    });
    positions.sort_unstable();
    let root_has_values = !doc.as_table().get_values().is_empty();
    let mut trailers = Trailers::default();
    walk_tables(doc.as_table_mut(), &mut |t| {
        let Some(p) = t.position().filter(|_| shown(t)) else {
            return;
        };
        // Whose content comes right before this header: the previous header's table, or the
        // top-level keys.
        let owner = match positions.partition_point(|&q| q < p) {
            0 if root_has_values => None,
            0 => return,
            i => Some(positions[i - 1]),
        };
        let prefix = t.decor().prefix().and_then(|s| s.as_str()).unwrap_or("").to_string();
        if let Some((trailer, rest)) = split_trailer(&prefix) {
            t.decor_mut().set_prefix(rest);
            match owner {
                None => trailers.root = Some(trailer),
                Some(q) => {
                    trailers.tables.insert(q, trailer);
                }
            }
        }
    });
    // The end of the document: up to its last blank line (all of it, without one), it follows the
    // last table.
    if let Some(&last) = positions.last() {
        let trailing = doc.trailing().as_str().unwrap_or("").to_string();
        let split = if trailing.split_inclusive('\n').any(is_blank_line) {
            split_trailer(&trailing)
        } else if trailing.trim_start().starts_with('#') {
            Some((trailing.clone(), String::new()))
        } else {
            None
        };
        if let Some((trailer, rest)) = split {
            trailers.tables.insert(last, trailer);
            doc.set_trailing(rest);
        }
    }
    trailers
}

/// Puts each trailer back right after the content of its table, now that the keys are sorted: after
/// the last key's value (as the end of its decor), or after the header of a table without keys.
fn attach_trailers(root: &mut Table, trailers: &mut Trailers) {
    if let Some(trailer) = trailers.root.take()
        && let Some(v) = last_value_mut(root)
    {
        append_trailer(v.decor_mut(), &trailer);
    }
    walk_tables(root, &mut |t| {
        if let Some(trailer) = t
            .position()
            .filter(|_| shown(t))
            .and_then(|p| trailers.tables.remove(&p))
        {
            match last_value_mut(t) {
                Some(v) => append_trailer(v.decor_mut(), &trailer),
                None => append_trailer(t.decor_mut(), &trailer),
            }
        }
    });
}

/// The value printed last in a table's body (dotted keys included), if any.
fn last_value_mut(t: &mut Table) -> Option<&mut Value> {
    let items: Vec<&mut Item> = t.iter_mut().map(|(_, item)| item).collect();
    for item in items.into_iter().rev() {
        match item {
            Item::Value(v) => return Some(v),
            Item::Table(sub) if sub.is_dotted() => {
                if let Some(v) = last_value_mut(sub) {
                    return Some(v);
                }
            }
            _ => {}
        }
    }
    None
}

/// Appends `trailer` (whole lines) to the end of a line: to the suffix of a value or a table header.
fn append_trailer(decor: &mut toml_edit::Decor, trailer: &str) {
    let nl = if trailer.ends_with("\r\n") { "\r\n" } else { "\n" };
    let body = trailer.strip_suffix(nl).unwrap_or(trailer);
    let suffix = decor.suffix().and_then(|s| s.as_str()).unwrap_or("").to_string();
    decor.set_suffix(format!("{suffix}{nl}{body}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fmt(s: &str) -> String {
        format_str(s, Path::new("instances.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The checks every case must pass: idempotent, and the same desired state.
    fn check(src: &str) -> String {
        let once = fmt(src);
        assert_eq!(fmt(&once), once, "not idempotent:\n{once}");
        let env = |_: &str| None;
        let base = PathBuf::from("/base");
        let a = crate::config::load_str(src, Path::new("i.toml"), &base, &env).map(|l| l.desired);
        let b = crate::config::load_str(&once, Path::new("i.toml"), &base, &env).map(|l| l.desired);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.instances, b.instances);
                assert_eq!(a.prune, b.prune);
                assert_eq!(a.store, b.store);
                assert_eq!(a.fs_root, b.fs_root);
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("loading changed: {a:?} vs {b:?}"),
        }
        once
    }

    #[test]
    fn sorts_instances_and_keys_keeping_comments() {
        let src = r#"#:schema ./schemas/instances.schema.json
# The fleet.

[instances."b.example.com"]
# the owner
email = "b@example.com"
locale = "fr" # French
[instances."a.example.com"]
public_name = "A"
locale = "en"

[couchdb]
url = "http://127.0.0.1:5984/"
prune = false
"#;
        // `prune` after [couchdb] is couchdb.prune: an unknown key, still formatted.
        let out = check(src);
        let expected = r#"#:schema ./schemas/instances.schema.json
# The fleet.

[couchdb]
url = "http://127.0.0.1:5984/"
prune = false

[instances."a.example.com"]
locale = "en"
public_name = "A"

[instances."b.example.com"]
locale = "fr" # French
# the owner
email = "b@example.com"
"#;
        assert_eq!(out, expected);
    }

    #[test]
    fn a_formatted_file_is_unchanged() {
        let src = "prune = true\n\n[storage]\nfs_root = \"fs\"\n\n[defaults]\nlocale = \"fr\"\n\n[instances.\"a.test\"]\nlocale = \"en\"\nsettings = { b = \"2\", a = \"1\" }\n";
        let out = check(src);
        assert_eq!(out, src.replace("{ b = \"2\", a = \"1\" }", "{ a = \"1\", b = \"2\" }"));
    }

    #[test]
    fn subtables_follow_their_instance() {
        let src = "[instances.\"b.test\".settings]\nz = \"1\"\na = \"2\"\n[instances.\"a.test\"]\nlocale = \"en\"\n[instances.\"b.test\"]\nprevent_destroy = true\nstate = \"present\"\n";
        let out = check(src);
        assert_eq!(
            out,
            "[instances.\"a.test\"]\nlocale = \"en\"\n\n[instances.\"b.test\"]\nstate = \"present\"\nprevent_destroy = true\n\n[instances.\"b.test\".settings]\na = \"2\"\nz = \"1\"\n"
        );
    }

    #[test]
    fn top_level_keys_come_first_and_the_header_stays() {
        let src = "# header\n\n# about prune\nprune = true\n[instances.\"a.test\"]\n";
        let out = check(src);
        assert_eq!(
            out,
            "# header\n\n# about prune\nprune = true\n\n[instances.\"a.test\"]\n"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_refused_with_its_position() {
        let e = format_str("[instances.\"a.test\"]\nlocale = \n", Path::new("i.toml")).unwrap_err();
        let d = &e.diagnostics[0];
        assert_eq!((d.line, d.severity), (2, Severity::Error));
        assert!(d.message.starts_with("invalid TOML"), "{}", d.message);
    }

    #[test]
    fn dotted_and_inline_forms_are_formatted_too() {
        check("[instances]\n\"b.test\".locale = \"en\"\n\"a.test\" = { locale = \"fr\", email = \"a@x.test\" }\n");
        check("instances.\"b.test\".locale = \"en\"\ninstances.\"a.test\".locale = \"fr\"\nprune = true\n");
        check("");
        check("# only a comment\n");
    }

    #[test]
    fn comments_after_the_last_key_of_a_table_stay_there_without_a_blank_line() {
        let src = "[defaults]\nlocale = \"en\"   # the default\n# context = \"default\"\n#   (commented out)\n\n# about a\n[instances.\"a.test\"]\nlocale = \"fr\"\n";
        assert_eq!(check(src), src);
    }

    #[test]
    fn comments_under_a_header_without_keys_stay_under_it() {
        let src = "[instances.\"a.test\"]\n# Nothing but the domain.\n\n[instances.\"b.test\"]\n# To rename it:\n# renamed_from = \"x.test\"\n";
        assert_eq!(check(src), src);
    }

    #[test]
    fn trailing_comments_move_with_their_table_and_follow_its_sorted_keys() {
        let src = "[instances.\"b.test\"]\nemail = \"b@x.test\"\nlocale = \"fr\"\n# end of b\n\n# about a\n[instances.\"a.test\"]\n# end of a\n\n[storage]\nfs_root = \"fs\"\n# end of storage\n";
        assert_eq!(
            check(src),
            "[storage]\nfs_root = \"fs\"\n# end of storage\n\n# about a\n[instances.\"a.test\"]\n# end of a\n\n[instances.\"b.test\"]\nlocale = \"fr\"\nemail = \"b@x.test\"\n# end of b\n"
        );
    }

    #[test]
    fn comments_after_the_top_level_keys_stay_after_them() {
        let src = "prune = true\n# more about prune\n\n[instances.\"b.test\"]\n[storage]\nfs_root = \"fs\"\n";
        assert_eq!(
            check(src),
            "prune = true\n# more about prune\n\n[storage]\nfs_root = \"fs\"\n\n[instances.\"b.test\"]\n"
        );
    }

    #[test]
    fn a_comment_right_above_a_header_belongs_to_it_and_a_footer_stays_last() {
        // No blank line between the comment and the header below: it is that header's.
        let src =
            "[instances.\"b.test\"]\nlocale = \"fr\"\n# about a\n[instances.\"a.test\"]\nlocale = \"en\"\n\n# footer\n";
        assert_eq!(
            check(src),
            "# about a\n[instances.\"a.test\"]\nlocale = \"en\"\n\n[instances.\"b.test\"]\nlocale = \"fr\"\n\n# footer\n"
        );
    }

    #[test]
    fn trailing_comments_of_arrays_of_tables_and_crlf_files_are_kept() {
        let src =
            "[[couchdb.clusters]]\nurl = \"http://a/\"\n# end of a\n\n[[couchdb.clusters]]\nurl = \"http://b/\"\n";
        assert_eq!(check(src), src);
        let crlf = "[defaults]\r\nlocale = \"en\"\r\n# tz = \"UTC\"\r\n\r\n[instances.\"a.test\"]\r\n";
        // (toml_edit writes LF line ends.)
        assert_eq!(check(crlf), crlf.replace("\r\n", "\n"));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn instance() -> impl Strategy<Value = Vec<(usize, String)>> {
            let values: Vec<(&str, &str)> = vec![
                ("state", "\"present\""),
                ("locale", "\"fr\""),
                ("email", "\"o@example.com\""),
                ("public_name", "\"Owner\""),
                ("tz", "\"Europe/Paris\""),
                ("context", "\"dev\""),
                ("disk_quota", "\"5GB\""),
                ("uuid", "\"u-1\""),
                ("blocked", "false"),
                ("prevent_destroy", "true"),
                ("settings", "{ b = \"2\", a = \"1\" }"),
            ];
            let n = values.len();
            proptest::sample::subsequence((0..n).collect::<Vec<_>>(), 0..n)
                .prop_shuffle()
                .prop_flat_map(move |keys| {
                    let values = values.clone();
                    proptest::collection::vec(any::<bool>(), keys.len()).prop_map(move |comments| {
                        keys.iter()
                            .zip(comments)
                            .map(|(k, c)| {
                                let (key, v) = values[*k];
                                let comment = if c { format!("# about {key}\n") } else { String::new() };
                                (*k, format!("{comment}{key} = {v}\n"))
                            })
                            .collect()
                    })
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn fmt_is_idempotent_and_keeps_the_desired_state(
                domains in proptest::sample::subsequence(vec!["a.test", "b.test", "c.example.com", "d.test", "e.org"], 1..5).prop_shuffle(),
                bodies in proptest::collection::vec(instance(), 5),
                prune_first in any::<bool>(),
                blank in any::<bool>(),
                trailers in proptest::collection::vec(any::<bool>(), 5),
            ) {
                let mut src = String::new();
                if prune_first {
                    src.push_str("prune = false\n");
                }
                for (i, (d, body)) in domains.iter().zip(&bodies).enumerate() {
                    src.push_str(&format!("# instance {d}\n[instances.\"{d}\"]\n"));
                    for (_, line) in body {
                        src.push_str(line);
                    }
                    if trailers[i] {
                        // Comments after the last key, then a blank line: they stay with this instance.
                        src.push_str(&format!("# end of {d}\n\n"));
                    }
                    if blank {
                        src.push('\n');
                    }
                }
                src.push_str("[storage]\nfs_root = \"fs\"\n# trailing comment\n");
                let out = check(&src);
                // Every comment survives.
                for line in src.lines().filter(|l| l.starts_with('#')) {
                    prop_assert!(out.contains(line), "lost {line:?} in\n{out}");
                }
                // A trailing comment stays in its instance's section: after its header, before the next one.
                for d in &domains {
                    if let Some(at) = out.find(&format!("# end of {d}\n")) {
                        let header = out.find(&format!("[instances.\"{d}\"]\n")).unwrap();
                        prop_assert!(header < at && !out[header + 1..at].contains("\n["), "misplaced in\n{out}");
                    }
                }
            }
        }
    }
}
