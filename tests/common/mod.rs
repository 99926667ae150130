//! Test harness: starts the CouchDB-compatible test server (tools/couch-test-server) on a free
//! loopback port, one per test, and builds workspaces (a temp dir with a config file) to run the
//! real `cozyform` binary in, against that server or the embedded store.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cozyform::store::Store;
use cozyform::store::couch::CouchStore;
use cozyform::store::embedded::EmbeddedStore;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "t3st-s3cret-pw";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running test server; stopped on drop.
pub struct TestCouch {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl TestCouch {
    /// Starts a fresh in-memory server with an admin.
    pub fn start() -> TestCouch {
        Self::start_in(tempfile::tempdir().expect("tempdir"), true, 0)
    }

    /// Starts a server keeping its data under `dir` (on disk unless `in_memory`), on `port` (0 = any).
    pub fn start_in(dir: tempfile::TempDir, in_memory: bool, port: u16) -> TestCouch {
        let server_dir = repo_root().join("tools/couch-test-server");
        assert!(
            server_dir.join("node_modules").is_dir(),
            "the test CouchDB server is not installed: run `npm ci --prefix tools/couch-test-server` (the README's test command does it)"
        );
        let mut cmd = Command::new("node");
        cmd.arg(server_dir.join("couch-shim.js"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .args(["--admin", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if in_memory {
            cmd.arg("--in-memory");
        }
        let mut child = cmd
            .spawn()
            .expect("node must be installed to run the test CouchDB server");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the test CouchDB server did not start within 30 s");
        let url = line
            .trim()
            .strip_prefix("couch-shim listening on ")
            .unwrap_or_else(|| panic!("unexpected server output: {line:?}"))
            .to_string();
        TestCouch {
            child,
            url: format!("{url}/"),
            dir,
        }
    }

    /// A client of this server (the same client cozyform uses), to inspect and tamper with state.
    pub fn store(&self) -> Store {
        Store::Couch(Arc::new(
            CouchStore::new(&self.url, Some(ADMIN_USER), Some(ADMIN_PASSWORD), 30).unwrap(),
        ))
    }

    /// Stops the server, keeping its directory (for a restart test).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        dir
    }
}

impl Drop for TestCouch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which store a workspace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Couch,
    Embedded,
}

/// A temp dir with `instances.toml`, `fs/` (the fs_root) and, for CouchDB, a running server.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub couch: Option<TestCouch>,
    pub backend: Backend,
}

impl Workspace {
    pub fn new(backend: Backend) -> Workspace {
        let couch = (backend == Backend::Couch).then(TestCouch::start);
        Workspace {
            dir: tempfile::tempdir().unwrap(),
            couch,
            backend,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("instances.toml")
    }

    pub fn fs_root(&self) -> PathBuf {
        self.path().join("fs")
    }

    /// The `[couchdb]` and `[storage]` header for this backend.
    pub fn header(&self) -> String {
        let mut h = String::new();
        if let Some(c) = &self.couch {
            h.push_str(&format!("[couchdb]\nurl = \"{}\"\n", c.url));
        }
        h.push_str("[storage]\nfs_root = \"fs\"\n");
        h
    }

    /// Writes `instances.toml`: `top` (top-level keys such as `prune = true`), the backend header,
    /// then `body` (tables).
    pub fn write_config(&self, top: &str, body: &str) {
        std::fs::write(self.config_path(), format!("{top}\n{}\n{body}", self.header())).unwrap();
    }

    /// The cozyform binary with `-c instances.toml`, credentials in the environment, no colors.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("cozyform").unwrap();
        c.current_dir(self.path())
            .arg("-c")
            .arg(self.config_path())
            .env("COUCHDB_USER", ADMIN_USER)
            .env("COUCHDB_PASSWORD", ADMIN_PASSWORD)
            .env("NO_COLOR", "1")
            .env_remove("COZYFORM_CONFIG")
            .timeout(Duration::from_secs(300));
        c
    }

    /// A client of the actual store (CouchDB, or the embedded file) to inspect and tamper with.
    pub fn store(&self) -> Store {
        match &self.couch {
            Some(c) => c.store(),
            None => Store::Embedded(Arc::new(
                EmbeddedStore::open(&self.path().join(".cozyform/store.sqlite")).unwrap(),
            )),
        }
    }

    /// Runs `apply --auto-approve` and asserts success; returns stdout.
    pub fn apply_ok(&self) -> String {
        let out = self.cmd().args(["apply", "--auto-approve"]).output().unwrap();
        assert!(
            out.status.success(),
            "apply failed:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `plan --detailed-exitcode`; returns (exit code, stdout, stderr).
    pub fn plan(&self) -> (i32, String, String) {
        let out = self.cmd().args(["plan", "--detailed-exitcode"]).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Asserts that the plan is empty (exit 0, "No changes.").
    pub fn assert_no_changes(&self) {
        let (code, out, err) = self.plan();
        assert_eq!(code, 0, "expected no changes:\n{out}\n{err}");
        assert!(out.contains("No changes."), "{out}");
    }
}

/// Runs a future on a fresh runtime (tests are synchronous; the library is async).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Declares `mod <scenario> { couchdb, embedded }`, two tests running `fn <scenario>(Backend)`
/// (attributes such as `#[ignore]` before a name go on both tests).
#[macro_export]
macro_rules! both {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        mod $name {
            #[test]
            $(#[$m])*
            fn couchdb() {
                super::$name($crate::common::Backend::Couch)
            }
            #[test]
            $(#[$m])*
            fn embedded() {
                super::$name($crate::common::Backend::Embedded)
            }
        }
    )*};
}
