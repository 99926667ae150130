//! Leftovers: databases and folders no instance doc claims. Only those that hold nothing but
//! cozyform's own writes (and, for databases, carry cozyform's create mark) are removed; the
//! others are reported and kept. Both backends.

mod common;

use common::*;
use cozyform::layout::{self, GLOBAL_INSTANCES_DB, db_name, instance_prefix};
use serde_json::json;

both! {
    leftovers_of_an_interrupted_create_are_removed_and_others_kept;
}

/// What an interrupted create leaves: the mark, the databases, the settings doc.
fn interrupted_create(store: &cozyform::store::Store, domain: &str, mark: bool) {
    let prefix = instance_prefix(domain);
    if mark {
        block_on(store.put_doc(
            GLOBAL_INSTANCES_DB,
            &json!({"_id": cozyform::orphans::create_mark_id(&prefix), "domain": domain}),
        ))
        .unwrap();
    }
    for dt in layout::INSTANCE_DOCTYPES {
        block_on(store.create_db(&db_name(&prefix, dt))).unwrap();
    }
    block_on(store.put_doc(
        &db_name(&prefix, layout::SETTINGS),
        &json!({"_id": layout::SETTINGS_DOC_ID, "email": "x@example.com"}),
    ))
    .unwrap();
}

fn dbs_of(store: &cozyform::store::Store, domain: &str) -> usize {
    let p = instance_prefix(domain);
    block_on(store.all_dbs(&format!("{p}/"), &format!("{p}0")))
        .unwrap()
        .len()
}

fn leftovers_of_an_interrupted_create_are_removed_and_others_kept(b: Backend) {
    let ws = Workspace::new(b);
    ws.write_config("", "[instances.\"kept.example.com\"]\n");
    ws.apply_ok();
    let store = ws.store();
    // 1. cozyform's interrupted create of an instance since removed from the file: removable.
    interrupted_create(&store, "gone.example.com", true);
    // 2. The same, but someone wrote data in it since: kept.
    interrupted_create(&store, "data.example.com", true);
    block_on(store.put_doc(
        &db_name(&instance_prefix("data.example.com"), layout::CONTACTS),
        &json!({"_id": "someone", "fn": "x"}),
    ))
    .unwrap();
    // 3. A create cozy-stack has under way (no cozyform mark): kept.
    interrupted_create(&store, "stack.example.com", false);
    // 4. Folders: only empty directories (removable), and one with a file (kept).
    std::fs::create_dir_all(ws.fs_root().join("empty.example.com/.cozy_trash")).unwrap();
    std::fs::create_dir_all(ws.fs_root().join("files.example.com")).unwrap();
    std::fs::write(ws.fs_root().join("files.example.com/a.txt"), "data").unwrap();
    // 5. An interrupted create of a declared instance: the create reuses it, not a leftover.
    interrupted_create(&store, "new.example.com", true);
    ws.write_config(
        "",
        "[instances.\"kept.example.com\"]\n[instances.\"new.example.com\"]\nemail = \"n@example.com\"\n",
    );

    let (code, out, _) = ws.plan();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("apply removes it"), "{out}");
    assert!(out.contains("left alone"), "{out}");
    assert!(out.contains("folder empty.example.com"), "{out}");
    ws.apply_ok();
    assert_eq!(dbs_of(&store, "gone.example.com"), 0, "the leftover was removed");
    assert!(!ws.fs_root().join("empty.example.com").exists());
    assert_eq!(
        dbs_of(&store, "data.example.com"),
        layout::INSTANCE_DOCTYPES.len(),
        "data kept"
    );
    assert_eq!(
        dbs_of(&store, "stack.example.com"),
        layout::INSTANCE_DOCTYPES.len(),
        "cozy-stack's kept"
    );
    assert!(ws.fs_root().join("files.example.com/a.txt").exists());
    assert_eq!(dbs_of(&store, "new.example.com"), layout::INSTANCE_DOCTYPES.len());
    assert!(
        block_on(store.get_doc(
            GLOBAL_INSTANCES_DB,
            &cozyform::orphans::create_mark_id(&instance_prefix("gone.example.com"))
        ))
        .unwrap()
        .is_none(),
        "the mark goes with the leftover"
    );
    // What is kept stays a warning, not a change.
    ws.assert_no_changes();
    let (_, out, _) = ws.plan();
    assert!(out.contains("warning:") && out.contains("left alone"), "{out}");
}
