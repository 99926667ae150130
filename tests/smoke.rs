mod common;
use common::*;

#[test]
fn create_then_plan_is_empty_on_couchdb() {
    let ws = Workspace::new(Backend::Couch);
    ws.write_config(
        "",
        "[instances.\"alice.example.com\"]\nlocale = \"fr\"\nemail = \"a@example.com\"\n",
    );
    let (code, out, _) = ws.plan();
    assert_eq!(code, 2, "{out}");
    let out = ws.apply_ok();
    assert!(out.contains("registerToken="), "{out}");
    ws.assert_no_changes();
}
