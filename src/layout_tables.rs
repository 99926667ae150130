// Generated from the cozy-stack reference (appendices A and B, plus the global indexes of
// `InitGlobalDB`, reference §3.3); keep byte-exact: cozy-stack compares map strings exactly.
/// Map/reduce views: (doctype, ddoc name = view name, map function, reduce).
pub const VIEWS: &[ViewDef] = &[
    ViewDef {
        doctype: "io.cozy.files",
        name: "disk-usage",
        map: "\nfunction(doc) {\n  if (doc.type === 'file') {\n    emit(doc.dir_id, +doc.size);\n  }\n}\n",
        reduce: Some("_sum"),
    },
    ViewDef {
        doctype: "io.cozy.files.versions",
        name: "old-versions-disk-usage",
        map: "\nfunction(doc) {\n  emit(doc._id, +doc.size);\n}\n",
        reduce: Some("_sum"),
    },
    ViewDef {
        doctype: "io.cozy.files",
        name: "not-synchronized-on",
        map: "\nfunction(doc) {\n  if (doc.type === \"directory\" && isArray(doc.not_synchronized_on)) {\n    for (var i = 0; i < doc.not_synchronized_on.length; i++) {\n      emit([doc.not_synchronized_on[i].type, doc.not_synchronized_on[i].id]);\n    }\n  }\n}",
        reduce: Some("_count"),
    },
    ViewDef {
        doctype: "io.cozy.files",
        name: "referenced-by",
        map: "\nfunction(doc) {\n  if (isArray(doc.referenced_by)) {\n    for (var i = 0; i < doc.referenced_by.length; i++) {\n      emit([doc.referenced_by[i].type, doc.referenced_by[i].id]);\n    }\n  }\n}",
        reduce: Some("_count"),
    },
    ViewDef {
        doctype: "io.cozy.files",
        name: "referenced-by-sorted-by-datetime",
        map: "\nfunction(doc) {\n  if (isArray(doc.referenced_by)) {\n    for (var i = 0; i < doc.referenced_by.length; i++) {\n      var datetime = (doc.metadata && doc.metadata.datetime) || '';\n      emit([doc.referenced_by[i].type, doc.referenced_by[i].id, datetime]);\n    }\n  }\n}",
        reduce: Some("_count"),
    },
    ViewDef {
        doctype: "io.cozy.files",
        name: "by-parent-type-name",
        map: "\nfunction(doc) {\n  emit([doc.dir_id, doc.type, doc.name])\n}",
        reduce: Some("_count"),
    },
    ViewDef {
        doctype: "io.cozy.permissions",
        name: "byToken",
        map: "\nfunction(doc) {\n  if (doc.type && doc.type.slice(0, 5) === \"share\" && doc.codes) {\n    Object.keys(doc.codes).forEach(function(k) {\n      emit(doc.codes[k]);\n    })\n  }\n}",
        reduce: None,
    },
    ViewDef {
        doctype: "io.cozy.permissions",
        name: "by-short-code",
        map: "\nfunction(doc) {\n\tif(doc.shortcodes) {\n\t\tfor(var idx in doc.shortcodes) {\n\t\t\temit(doc.shortcodes[idx], idx);\n\t\t}\n\t}\n}",
        reduce: None,
    },
    ViewDef {
        doctype: "io.cozy.permissions",
        name: "byDoc",
        map: "\nfunction(doc) {\n  if (doc.type === \"share\" && doc.permissions) {\n    Object.keys(doc.permissions).forEach(function(k) {\n      var p = doc.permissions[k];\n      var selector = p.selector || \"_id\";\n      for (var i=0; i<p.values.length; i++) {\n        emit([p.type, selector, p.values[i]], p.verbs);\n      }\n    });\n  }\n}",
        reduce: None,
    },
    ViewDef {
        doctype: "io.cozy.permissions",
        name: "permissions-by-doctype",
        map: "\nfunction(doc) {\n  if (doc.permissions) {\n    Object.keys(doc.permissions).forEach(function(k) {\n\t  emit([doc.permissions[k].type, doc.type]);\n\t});\n  }\n}\n",
        reduce: None,
    },
    ViewDef {
        doctype: "io.cozy.shared",
        name: "shared-docs-by-sharingid",
        map: "\nfunction(doc) {\n  if (doc.infos) {\n    Object.keys(doc.infos).forEach(function(k) {\n      emit(k, doc._id);\n    });\n  }\n}",
        reduce: None,
    },
    ViewDef {
        doctype: "io.cozy.sharings",
        name: "sharings-by-doctype",
        map: "\nfunction(doc) {\n\tif (isArray(doc.rules)) {\n\t\tfor (var i = 0; i < doc.rules.length; i++) {\n\t\t\tif (!doc.rules[i].local) {\n\t\t\t\temit(doc.rules[i].doctype, doc._id);\n\t\t\t}\n\t\t}\n\t}\n}",
        reduce: None,
    },
    ViewDef {
        doctype: "io.cozy.contacts",
        name: "contacts-by-email",
        map: "\nfunction(doc) {\n\tif (isArray(doc.email)) {\n\t\tfor (var i = 0; i < doc.email.length; i++) {\n\t\t\temit(doc.email[i].address, doc._id);\n\t\t}\n\t}\n}\n",
        reduce: None,
    },
    ViewDef {
        doctype: "instances",
        name: "domain-and-aliases",
        map: "\nfunction(doc) {\n  emit(doc.domain);\n  if (isArray(doc.domain_aliases)) {\n    for (var i = 0; i < doc.domain_aliases.length; i++) {\n      emit(doc.domain_aliases[i]);\n    }\n  }\n}\n",
        reduce: None,
    },
];

/// Mango indexes: (doctype, ddoc, fields, partial filter selector as JSON).
pub const INDEXES: &[IndexDef] = &[
    IndexDef {
        doctype: "io.cozy.permissions",
        ddoc: "by-source-and-type",
        fields: &["source_id", "type"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.files",
        ddoc: "dir-children",
        fields: &["dir_id", "_id"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.files",
        ddoc: "dir-by-path",
        fields: &["path"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.files",
        ddoc: "by-mime-updated-at",
        fields: &["mime", "trashed", "updated_at"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.files",
        ddoc: "with-conflicts",
        fields: &["_conflicts"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.files",
        ddoc: "by-sharing-status",
        fields: &["metadata.sharing.status"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.files",
        ddoc: "by-dir-id-updated-at",
        fields: &["dir_id", "updated_at"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.jobs",
        ddoc: "by-worker-and-state",
        fields: &["worker", "state"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.jobs",
        ddoc: "by-trigger-id",
        fields: &["trigger_id", "queued_at"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.jobs",
        ddoc: "by-queued-at",
        fields: &["queued_at"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.triggers",
        ddoc: "by-worker-and-type",
        fields: &["worker", "type"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.oauth.clients",
        ddoc: "by-client-name",
        fields: &["client_name"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.oauth.clients",
        ddoc: "by-notification-platform",
        fields: &["notification_platform"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.oauth.clients",
        ddoc: "connected-user-clients",
        fields: &["client_kind", "client_name"],
        partial_filter_selector: Some(r#"{"$and":[{"client_kind":{"$in":["browser","desktop","mobile"]}},{"pending":{"$exists":false}}]}"#),
    },
    IndexDef {
        doctype: "io.cozy.sessions.logins",
        ddoc: "by-os-browser-ip",
        fields: &["os", "browser", "ip"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.notifications",
        ddoc: "by-source-id",
        fields: &["source_id", "created_at"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.contacts",
        ddoc: "by-me",
        fields: &["me"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "com.bitwarden.ciphers",
        ddoc: "by-folder-id",
        fields: &["folder_id"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "com.bitwarden.ciphers",
        ddoc: "by-organization-id",
        fields: &["organization_id"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.contacts",
        ddoc: "by-groups",
        fields: &["relationships.groups.data"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.sharings",
        ddoc: "active",
        fields: &["active"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "io.cozy.nextcloud.migrations",
        ddoc: "by-status",
        fields: &["status"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "instances",
        ddoc: "by-oidcid",
        fields: &["oidc_id"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "instances",
        ddoc: "by-olddomain",
        fields: &["old_domain"],
        partial_filter_selector: None,
    },
    IndexDef {
        doctype: "instances",
        ddoc: "by-orgdomain",
        fields: &["org_domain"],
        partial_filter_selector: None,
    },
];
