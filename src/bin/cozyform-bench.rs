//! `cozyform-bench`: fleet-scale figures of cozyform next to their floors.
//!
//! ```text
//! cargo run --release --bin cozyform-bench -- [--url URL] [--plan-n 10000] [--apply-n 1000]
//!     [--embedded-n 100000] [--parallelism 10] [--repeat 3] [--json-out FILE] [--quick]
//! ```
//!
//! It starts the test CouchDB-compatible server (tools/couch-test-server; or uses `--url`, with
//! `COUCHDB_USER`/`COUCHDB_PASSWORD`), seeds instances, runs the real cozyform command line in a
//! child process (this same binary re-executed as `cozyform-bench __cozyform …`, so that its peak
//! RSS is its own) with `-v`, counts the HTTP requests from the `http:` log lines, and measures:
//!
//! 1. `plan` of N instances already up to date: wall, requests, peak RSS;
//! 2. the read floor: the same requests (ping, lock, `global/instances` pages, `_all_dbs` pages,
//!    global design docs, settings docs) by a minimal reqwest loop, with the same concurrency;
//! 3. `apply` creating M instances, and the write floor: the same creation requests by a minimal
//!    concurrent client, on other domains;
//! 4. `plan --deep` over those M instances;
//! 5. peak RSS of `plan` for K declared instances on the embedded store (K instance docs and their
//!    databases seeded in the SQLite file).
//!
//! Seeding writes what apply would write, built by the layout module: instance docs (in
//! `_bulk_docs` pages), settings docs where settings are declared, instance folders. The 16
//! databases of each plan instance are *registered* on the test server (`/_cozyform_bench/
//! register_dbs`: listed by `_all_dbs` without opening them) so that 160,000 databases fit in its
//! memory; against another server (`--url`) they are created with `PUT /db`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use cozyform::layout;
use cozyform::store::Store;
use cozyform::store::couch::{CouchStore, PAGE_SIZE, seg};
use cozyform::store::embedded::EmbeddedStore;

const CHILD_FLAG: &str = "__cozyform";
const RSS_TAG: &str = "cozyform-bench: peak-rss-kb ";
const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "bench-pw";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        std::process::exit(child_main(&args[1..]));
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(opts)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The cozyform command line, run in this process; prints the peak RSS (VmHWM) on stderr at the end.
fn child_main(args: &[String]) -> i32 {
    use clap::Parser;
    let cli = cozyform::cli::Cli::parse_from(std::iter::once("cozyform".to_string()).chain(args.iter().cloned()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = match rt.block_on(cozyform::commands::run(cli)) {
        Ok(c) => c as i32,
        Err(e) => {
            eprint!("{}", cozyform::commands::render_error(&e));
            1
        }
    };
    eprintln!("{RSS_TAG}{}", peak_rss_kb().unwrap_or(0));
    code
}

/// VmHWM of this process, in kB (Linux).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const USAGE: &str = "usage: cozyform-bench [--url URL] [--plan-n N] [--apply-n N] [--embedded-n N] [--settings-every K]
                      [--parallelism P] [--repeat R] [--json-out FILE] [--quick] [--skip-embedded]
  defaults: --plan-n 10000 --apply-n 1000 --embedded-n 100000 --settings-every 10 --parallelism 10 --repeat 3
  --quick: --plan-n 1000 --apply-n 100 --embedded-n 10000 --repeat 1";

#[derive(Debug, Clone)]
struct Opts {
    url: Option<String>,
    plan_n: usize,
    apply_n: usize,
    embedded_n: usize,
    settings_every: usize,
    parallelism: usize,
    repeat: usize,
    json_out: Option<PathBuf>,
    skip_embedded: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            url: None,
            plan_n: 10_000,
            apply_n: 1_000,
            embedded_n: 100_000,
            settings_every: 10,
            parallelism: 10,
            repeat: 3,
            json_out: None,
            skip_embedded: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().ok_or_else(|| anyhow!("{a} needs a value"));
            let num = |v: String| v.parse::<usize>().map_err(|_| anyhow!("{a}: not a number: {v}"));
            match a.as_str() {
                "--url" => o.url = Some(val()?),
                "--plan-n" => o.plan_n = num(val()?)?,
                "--apply-n" => o.apply_n = num(val()?)?,
                "--embedded-n" => o.embedded_n = num(val()?)?,
                "--settings-every" => o.settings_every = num(val()?)?.max(1),
                "--parallelism" => o.parallelism = num(val()?)?.clamp(1, 256),
                "--repeat" => o.repeat = num(val()?)?.max(1),
                "--json-out" => o.json_out = Some(PathBuf::from(val()?)),
                "--skip-embedded" => o.skip_embedded = true,
                "--quick" => {
                    o.plan_n = 1_000;
                    o.apply_n = 100;
                    o.embedded_n = 10_000;
                    o.repeat = 1;
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other}"),
            }
        }
        Ok(o)
    }
}

// ------------------------------------------------------------------------------------------------
// The server

/// The test server started by the bench (stopped on drop), or a given URL.
/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "cozyform-bench-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("COZYFORM_BENCH_KEEP").is_some() {
            eprintln!("bench: kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    child: Option<std::process::Child>,
    _dir: Option<TempDir>,
    url: String,
    user: String,
    password: String,
    registers: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    fn start_test_server() -> Result<Server> {
        let server_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/couch-test-server");
        if !server_dir.join("node_modules").is_dir() {
            bail!("the test server is not installed: run `npm ci --prefix tools/couch-test-server`");
        }
        let dir = TempDir::new("server")?;
        let mut child = Command::new("node")
            .arg("--max-old-space-size=4096")
            .arg(server_dir.join("couch-shim.js"))
            .args(["--host", "127.0.0.1", "--port", "0", "--in-memory"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--admin", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting node (needed for the test server)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("couch-shim listening on ")
            .ok_or_else(|| anyhow!("unexpected test server output: {line:?}"))?;
        Ok(Server {
            child: Some(child),
            _dir: Some(dir),
            url: format!("{url}/"),
            user: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
            registers: true,
        })
    }

    fn given(url: &str) -> Server {
        Server {
            child: None,
            _dir: None,
            url: if url.ends_with('/') {
                url.to_string()
            } else {
                format!("{url}/")
            },
            user: std::env::var("COUCHDB_USER").unwrap_or_default(),
            password: std::env::var("COUCHDB_PASSWORD").unwrap_or_default(),
            registers: false,
        }
    }

    fn store(&self) -> Result<Store> {
        Ok(Store::Couch(Arc::new(CouchStore::new(
            &self.url,
            Some(&self.user),
            Some(&self.password),
            120,
        )?)))
    }
}

// ------------------------------------------------------------------------------------------------
// Measures

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Run {
    wall_s: f64,
    requests: u64,
    peak_rss_mb: f64,
    exit_code: i32,
}

/// Runs the cozyform command line in a child process with `-v`; counts `http:` lines.
fn run_cozyform(ws: &Path, server: Option<&Server>, args: &[&str]) -> Result<Run> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_FLAG)
        .arg("-c")
        .arg(ws.join("instances.toml"))
        .arg("-v")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(s) = server {
        cmd.env("COUCHDB_USER", &s.user).env("COUCHDB_PASSWORD", &s.password);
    }
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let mut stderr = String::new();
    child.stderr.take().expect("piped").read_to_string(&mut stderr)?;
    let status = child.wait()?;
    let wall = started.elapsed();
    let requests = stderr.lines().filter(|l| l.starts_with("http: ")).count() as u64;
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix(RSS_TAG))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    for l in stderr.lines().filter(|l| l.starts_with("timing: ")) {
        eprintln!("bench: {} {l}", args.first().copied().unwrap_or(""));
    }
    let code = status.code().unwrap_or(-1);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("http: ") && !l.starts_with(RSS_TAG))
        .take(20)
        .collect();
    if code == 1 {
        bail!("cozyform {} failed:\n{}", args.join(" "), errors.join("\n"));
    }
    Ok(Run {
        wall_s: wall.as_secs_f64(),
        requests,
        peak_rss_mb: rss as f64 / 1024.0,
        exit_code: code,
    })
}

fn best(runs: Vec<Run>) -> Run {
    runs.into_iter()
        .min_by(|a, b| a.wall_s.total_cmp(&b.wall_s))
        .expect("at least one run")
}

// ------------------------------------------------------------------------------------------------
// Seeding

fn domain(kind: &str, n: usize) -> String {
    format!("{kind}{n:06}.bench.example")
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b
}

/// The instance doc apply writes for a plain instance (locale en), at rev 1.
fn instance_doc(domain: &str) -> Value {
    let prefix = layout::instance_prefix(domain);
    let secrets = layout::InstanceSecrets {
        register_token: random_bytes(layout::REGISTER_TOKEN_LEN),
        session_secret: random_bytes(layout::SESSION_SECRET_LEN),
        oauth_secret: random_bytes(layout::OAUTH_SECRET_LEN),
        cli_secret: random_bytes(layout::CLI_SECRET_LEN),
    };
    let new = layout::NewInstance {
        domain,
        domain_aliases: &[],
        prefix: &prefix,
        locale: layout::DEFAULT_LOCALE,
        uuid: None,
        context: None,
        blocked: false,
        blocking_reason: None,
        disk_quota: 0,
    };
    layout::instance_doc(&layout::derived_id("instance", domain), &new, &secrets)
}

fn settings_of(domain: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("email".to_string(), format!("owner@{domain}"))])
}

/// Writes `instances.toml` declaring `domains`; every `settings_every`-th declares an email.
fn write_config(ws: &Path, header: &str, domains: &[String], settings_every: usize) -> Result<()> {
    let mut s = String::with_capacity(domains.len() * 64);
    s.push_str(header);
    s.push_str("\n[storage]\nfs_root = \"fs\"\n");
    for (n, d) in domains.iter().enumerate() {
        s.push_str(&format!("\n[instances.\"{d}\"]\n"));
        if settings_every > 0 && n % settings_every == 0 {
            s.push_str(&format!("email = \"owner@{d}\"\n"));
        }
    }
    std::fs::create_dir_all(ws)?;
    std::fs::write(ws.join("instances.toml"), s)?;
    Ok(())
}

fn couch_header(server: &Server) -> String {
    format!("[couchdb]\nurl = \"{}\"\n", server.url)
}

/// Seeds `domains` as up-to-date instances (as apply leaves them, apart from indexes and views,
/// which only `--deep` reads).
async fn seed_couch(
    server: &Server,
    store: &Store,
    fs_root: &Path,
    domains: &[String],
    settings_every: usize,
) -> Result<()> {
    cozyform::apply::ensure_global(store).await?;
    // Instance docs, in pages.
    for chunk in domains.chunks(1000) {
        let docs: Vec<Value> = chunk.iter().map(|d| instance_doc(d)).collect();
        store.bulk_docs(layout::GLOBAL_INSTANCES_DB, &docs).await?;
    }
    // Databases: the settings database (with its doc) for instances with settings, for real;
    // the others registered (test server) or created.
    let mut names = Vec::new();
    let mut with_settings = Vec::new();
    for (n, d) in domains.iter().enumerate() {
        let prefix = layout::instance_prefix(d);
        let has_settings = n % settings_every == 0;
        if has_settings {
            with_settings.push(d.clone());
        }
        for dt in layout::INSTANCE_DOCTYPES {
            if has_settings && *dt == layout::SETTINGS {
                continue;
            }
            names.push(layout::db_name(&prefix, dt));
        }
    }
    if server.registers {
        let client = http_client(server)?;
        for chunk in names.chunks(20_000) {
            let resp = client
                .post(format!("{}_cozyform_bench/register_dbs", server.url))
                .json(&json!({ "names": chunk }))
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("registering databases: {}", resp.status());
            }
        }
    } else {
        run_all(20, names.iter().map(|n| store.create_db(n))).await?;
    }
    let tasks = with_settings.iter().map(|d| async move {
        let db = layout::db_name(&layout::instance_prefix(d), layout::SETTINGS);
        store.create_db(&db).await?;
        store.put_doc(&db, &layout::settings_doc(&settings_of(d))).await?;
        Ok::<_, anyhow::Error>(())
    });
    run_all(10, tasks).await?;
    seed_folders(fs_root, domains)
}

/// Runs `tasks`, `parallelism` at a time, all of them to the end; then the first error, if any.
async fn run_all<T, E>(
    parallelism: usize,
    tasks: impl Iterator<Item = impl Future<Output = Result<T, E>>>,
) -> Result<Vec<T>, E> {
    futures::stream::iter(tasks)
        .buffer_unordered(parallelism)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

fn seed_folders(fs_root: &Path, domains: &[String]) -> Result<()> {
    let names = layout::default_dir_names(layout::DEFAULT_LOCALE);
    for d in domains {
        cozyform::fsops::ensure_dirs(
            fs_root,
            d,
            &[layout::TRASH_DIR_NAME, names.administrative, names.photos],
        )?;
    }
    Ok(())
}

/// Seeds the embedded store: instance docs through the store, database names in one transaction.
async fn seed_embedded(path: &Path, fs_root: &Path, domains: &[String], settings_every: usize) -> Result<()> {
    {
        let store = Store::Embedded(Arc::new(EmbeddedStore::open(path)?));
        cozyform::apply::ensure_global(&store).await?;
        for chunk in domains.chunks(1000) {
            let docs: Vec<Value> = chunk.iter().map(|d| instance_doc(d)).collect();
            store.bulk_docs(layout::GLOBAL_INSTANCES_DB, &docs).await?;
        }
        for (n, d) in domains.iter().enumerate() {
            if n % settings_every == 0 {
                let db = layout::db_name(&layout::instance_prefix(d), layout::SETTINGS);
                store.create_db(&db).await?;
                store.put_doc(&db, &layout::settings_doc(&settings_of(d))).await?;
            }
        }
    }
    let mut conn = rusqlite::Connection::open(path)?;
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare("INSERT OR IGNORE INTO dbs (name) VALUES (?1)")?;
        for d in domains {
            let prefix = layout::instance_prefix(d);
            for dt in layout::INSTANCE_DOCTYPES {
                stmt.execute([layout::db_name(&prefix, dt)])?;
            }
        }
    }
    tx.commit()?;
    seed_folders(fs_root, domains)
}

// ------------------------------------------------------------------------------------------------
// The floors: minimal reqwest clients

fn http_client(server: &Server) -> Result<reqwest::Client> {
    use base64::Engine;
    let mut headers = reqwest::header::HeaderMap::new();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", server.user, server.password));
    headers.insert(reqwest::header::AUTHORIZATION, format!("Basic {auth}").parse()?);
    headers.insert(reqwest::header::CONTENT_TYPE, "application/json".parse()?);
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(4))
        .build()?)
}

struct Floor {
    client: reqwest::Client,
    base: String,
    requests: AtomicU64,
}

impl Floor {
    fn new(server: &Server) -> Result<Self> {
        Ok(Floor {
            client: http_client(server)?,
            base: server.url.trim_end_matches('/').to_string(),
            requests: AtomicU64::new(0),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.body(serde_json::to_vec(b)?);
        }
        // The test server closes idle keep-alive connections after 5 s; a request sent on one just
        // as it closes fails without reaching the server, so it is sent again (cozyform retries too).
        let resp = match req.try_clone().expect("bodies are bytes").send().await {
            Ok(r) => r,
            Err(e) if e.is_request() || e.is_connect() => req.send().await?,
            Err(e) => return Err(e.into()),
        };
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_server_error() {
            bail!("{path}: {status}");
        }
        Ok(bytes.to_vec())
    }
}

#[derive(serde::Deserialize)]
struct Rows {
    rows: Vec<Row>,
}
#[derive(serde::Deserialize)]
struct Row {
    id: String,
}

/// The read floor: what `plan` requests, with no planning.
async fn read_floor(server: &Server, settings_domains: &[String], parallelism: usize) -> Result<(f64, u64)> {
    // Building the HTTP client (TLS setup included) is part of reading, as it is for cozyform.
    let started = Instant::now();
    let f = Floor::new(server)?;
    floor_timing("client built", started);
    let global = format!("/{}", seg(layout::GLOBAL_INSTANCES_DB));
    f.send(reqwest::Method::GET, "/", &[], None).await?;
    f.send(
        reqwest::Method::GET,
        &format!("{global}/{}", seg("_local/cozyform-lock")),
        &[],
        None,
    )
    .await?;
    f.send(reqwest::Method::GET, &global, &[], None).await?;
    let docs = async {
        let mut after: Option<String> = None;
        loop {
            let mut q = vec![("include_docs", "true".to_string()), ("limit", "1000".to_string())];
            if let Some(a) = &after {
                q.push(("start_key", json!(a).to_string()));
                q.push(("skip", "1".into()));
            }
            let page: Rows = serde_json::from_slice(
                &f.send(reqwest::Method::GET, &format!("{global}/_all_docs"), &q, None)
                    .await?,
            )?;
            if page.rows.len() < 1000 {
                return Ok::<_, anyhow::Error>(());
            }
            after = page.rows.last().map(|r| r.id.clone());
        }
    };
    let dbs = async {
        let mut from = "cozy".to_string();
        let mut skip = 0;
        loop {
            let q = [
                ("start_key", json!(from).to_string()),
                ("end_key", json!("cozy\u{fff0}").to_string()),
                ("limit", PAGE_SIZE.to_string()),
                ("skip", skip.to_string()),
            ];
            let page: Vec<String> =
                serde_json::from_slice(&f.send(reqwest::Method::GET, "/_all_dbs", &q, None).await?)?;
            if page.len() < PAGE_SIZE {
                return Ok::<_, anyhow::Error>(());
            }
            from = page.last().cloned().unwrap_or_default();
            skip = 1;
        }
    };
    let design = async {
        let views: Vec<String> = layout::global_views().map(|v| format!("_design/{}", v.name)).collect();
        f.send(reqwest::Method::GET, &format!("{global}/_index"), &[], None)
            .await?;
        f.send(
            reqwest::Method::POST,
            &format!("{global}/_all_docs"),
            &[("include_docs", "true".into())],
            Some(&json!({ "keys": views })),
        )
        .await?;
        Ok::<_, anyhow::Error>(())
    };
    tokio::try_join!(docs, dbs, design)?;
    floor_timing("bulk requests", started);
    let f = &f;
    let tasks = settings_domains.iter().map(|d| async move {
        let db = layout::db_name(&layout::instance_prefix(d), layout::SETTINGS);
        f.send(
            reqwest::Method::GET,
            &format!("/{}/{}", seg(&db), seg(layout::SETTINGS_DOC_ID)),
            &[],
            None,
        )
        .await
    });
    run_all(parallelism, tasks).await?;
    floor_timing("settings reads", started);
    Ok((started.elapsed().as_secs_f64(), f.requests.load(Ordering::Relaxed)))
}

/// With `COZYFORM_TIMINGS` set, the read floor's phases, next to cozyform's phase log.
fn floor_timing(phase: &str, since: Instant) {
    if std::env::var_os("COZYFORM_TIMINGS").is_some() {
        eprintln!("bench: floor timing: {phase} {:?}", since.elapsed());
    }
}

/// The write floor: the requests apply makes to create each instance (same order, same
/// concurrency inside an instance, `parallelism` instances at once), built by the layout module.
async fn write_floor(server: &Server, fs_root: &Path, domains: &[String], parallelism: usize) -> Result<(f64, u64)> {
    let f = Floor::new(server)?;
    let f = &f;
    let started = Instant::now();
    let tasks = domains.iter().map(|d| async move {
        let prefix = layout::instance_prefix(d);
        let path = |dt: &str| format!("/{}", seg(&layout::db_name(&prefix, dt)));
        // 1. databases, settings doc, contact.
        futures::future::try_join_all(layout::INSTANCE_DOCTYPES.iter().map(|dt| {
            let p = path(dt);
            async move { f.send(reqwest::Method::PUT, &p, &[], None).await }
        }))
        .await?;
        let settings = layout::settings_doc(&BTreeMap::new());
        f.send(
            reqwest::Method::PUT,
            &format!("{}/{}", path(layout::SETTINGS), seg(layout::SETTINGS_DOC_ID)),
            &[],
            Some(&settings),
        )
        .await?;
        let cid = layout::derived_id("contact-myself", &prefix);
        let contact = layout::myself_contact(&cid, d, None, None);
        f.send(
            reqwest::Method::PUT,
            &format!("{}/{}", path(layout::CONTACTS), seg(&cid)),
            &[],
            Some(&contact),
        )
        .await?;
        // 2. indexes and views.
        let idx = layout::instance_indexes().map(|i| {
            let p = format!("{}/_index", path(i.doctype));
            async move { f.send(reqwest::Method::POST, &p, &[], Some(&i.request())).await }
        });
        let views = layout::instance_views().map(|v| {
            let p = format!("{}/{}", path(v.doctype), seg(&format!("_design/{}", v.name)));
            async move { f.send(reqwest::Method::PUT, &p, &[], Some(&v.design_doc())).await }
        });
        futures::future::try_join(futures::future::try_join_all(idx), futures::future::try_join_all(views)).await?;
        // 3. directory docs.
        let t = layout::rfc3339_nano(&chrono::Local::now());
        let names = layout::default_dir_names(layout::DEFAULT_LOCALE);
        let dirs = vec![
            layout::root_dir_doc(&t),
            layout::trash_dir_doc(&t),
            layout::default_dir_doc(
                &layout::derived_id("dir-administrative", &prefix),
                names.administrative,
                d,
                &t,
                true,
            ),
            layout::default_dir_doc(&layout::derived_id("dir-photos", &prefix), names.photos, d, &t, false),
        ];
        f.send(
            reqwest::Method::POST,
            &format!("{}/_bulk_docs", path(layout::FILES)),
            &[],
            Some(&json!({ "docs": dirs })),
        )
        .await?;
        // 4. the instance doc, 5. folders, 6. the final update.
        let mut doc = instance_doc(d);
        let global = format!(
            "/{}/{}",
            seg(layout::GLOBAL_INSTANCES_DB),
            seg(doc["_id"].as_str().unwrap_or_default())
        );
        let answer: Value = serde_json::from_slice(&f.send(reqwest::Method::PUT, &global, &[], Some(&doc)).await?)?;
        cozyform::fsops::ensure_dirs(
            fs_root,
            d,
            &[layout::TRASH_DIR_NAME, names.administrative, names.photos],
        )?;
        doc["_rev"] = answer["rev"].clone();
        f.send(reqwest::Method::PUT, &global, &[], Some(&doc)).await?;
        Ok::<_, anyhow::Error>(())
    });
    run_all(parallelism, tasks).await?;
    Ok((started.elapsed().as_secs_f64(), f.requests.load(Ordering::Relaxed)))
}

// ------------------------------------------------------------------------------------------------

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { (a / b * 100.0).round() / 100.0 } else { 0.0 }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn open_server(opts: &Opts) -> Result<Server> {
    match &opts.url {
        Some(u) => Ok(Server::given(u)),
        None => Server::start_test_server(),
    }
}

async fn run(opts: Opts) -> Result<()> {
    let work = TempDir::new("work")?;
    let p = opts.parallelism.to_string();
    let mut table: Vec<(String, String, String, String)> = Vec::new();
    let mut out = serde_json::Map::new();
    out.insert(
        "parameters".into(),
        json!({
            "plan_n": opts.plan_n, "apply_n": opts.apply_n, "embedded_n": opts.embedded_n,
            "settings_every": opts.settings_every, "parallelism": opts.parallelism, "repeat": opts.repeat,
            "server": if opts.url.is_some() { "given URL" } else { "tools/couch-test-server (in memory)" },
        }),
    );

    // 3 and 4: apply creating M instances, its write floor, then plan --deep on them.
    if opts.apply_n > 0 {
        let server = open_server(&opts)?;
        let ws = work.path().join("apply");
        let domains: Vec<String> = (0..opts.apply_n).map(|n| domain("apply", n)).collect();
        write_config(&ws, &couch_header(&server), &domains, 0)?;
        // The global database exists before either run, so both measure only creations.
        cozyform::apply::ensure_global(&server.store()?).await?;
        eprintln!("bench: apply creating {} instances…", opts.apply_n);
        let apply = run_cozyform(&ws, Some(&server), &["apply", "--auto-approve", "--parallelism", &p])?;
        let n = opts.apply_n as f64;
        eprintln!("bench: plan --deep over {} instances…", opts.apply_n);
        let deep = best(
            (0..opts.repeat)
                .map(|_| {
                    run_cozyform(
                        &ws,
                        Some(&server),
                        &["plan", "--deep", "--detailed-exitcode", "--parallelism", &p],
                    )
                })
                .collect::<Result<Vec<_>>>()?,
        );
        if deep.exit_code != 0 {
            bail!("plan --deep after apply is not empty (exit {})", deep.exit_code);
        }
        table.push((
            format!("plan --deep: {} up to date", opts.apply_n),
            format!(
                "{:.2} s, {} req ({:.1}/instance), {:.0} MB",
                deep.wall_s,
                deep.requests,
                deep.requests as f64 / n,
                deep.peak_rss_mb
            ),
            "-".into(),
            "-".into(),
        ));
        out.insert(
            "plan_deep".into(),
            json!({
                "instances": opts.apply_n, "wall_s": round3(deep.wall_s), "requests": deep.requests,
                "requests_per_instance": round3(deep.requests as f64 / n), "peak_rss_mb": round3(deep.peak_rss_mb),
            }),
        );
        eprintln!("bench: write floor for {} instances…", opts.apply_n);
        let floor_domains: Vec<String> = (0..opts.apply_n).map(|n| domain("floor", n)).collect();
        let (floor_s, floor_req) =
            write_floor(&server, &work.path().join("floor-fs"), &floor_domains, opts.parallelism).await?;
        let r = ratio(apply.wall_s, floor_s);
        table.push((
            format!("apply: create {}", opts.apply_n),
            format!(
                "{:.2} s, {} req ({:.1}/instance), {:.1} inst/s, {:.0} MB",
                apply.wall_s,
                apply.requests,
                apply.requests as f64 / n,
                n / apply.wall_s,
                apply.peak_rss_mb
            ),
            format!(
                "{floor_s:.2} s, {floor_req} req ({:.1}/instance), {:.1} inst/s",
                floor_req as f64 / n,
                n / floor_s
            ),
            format!("{r:.2}"),
        ));
        out.insert("apply".into(), json!({
            "instances": opts.apply_n, "wall_s": round3(apply.wall_s), "requests": apply.requests,
            "requests_per_instance": round3(apply.requests as f64 / n), "instances_per_s": round3(n / apply.wall_s),
            "peak_rss_mb": round3(apply.peak_rss_mb),
            "floor": { "wall_s": round3(floor_s), "requests": floor_req, "requests_per_instance": round3(floor_req as f64 / n), "instances_per_s": round3(n / floor_s) },
            "ratio": r,
        }));
    }

    // 1 and 2: plan of N up-to-date instances, and the read floor.
    if opts.plan_n > 0 {
        let server = open_server(&opts)?;
        let ws = work.path().join("plan");
        let domains: Vec<String> = (0..opts.plan_n).map(|n| domain("plan", n)).collect();
        write_config(&ws, &couch_header(&server), &domains, opts.settings_every)?;
        eprintln!("bench: seeding {} instances…", opts.plan_n);
        let seed_started = Instant::now();
        seed_couch(&server, &server.store()?, &ws.join("fs"), &domains, opts.settings_every).await?;
        let seed_s = seed_started.elapsed().as_secs_f64();
        eprintln!("bench: plan of {} instances (best of {})…", opts.plan_n, opts.repeat);
        let mut plans = Vec::new();
        let mut floors = Vec::new();
        let settings_domains: Vec<String> = domains.iter().step_by(opts.settings_every).cloned().collect();
        for _ in 0..opts.repeat {
            // Alternate so that both see the same server state and warmth.
            plans.push(run_cozyform(
                &ws,
                Some(&server),
                &["plan", "--detailed-exitcode", "--parallelism", &p],
            )?);
            floors.push(read_floor(&server, &settings_domains, opts.parallelism).await?);
        }
        let plan = best(plans);
        if plan.exit_code != 0 {
            bail!(
                "the plan of the seeded fleet is not empty (exit {}): the seeding differs from apply",
                plan.exit_code
            );
        }
        let (floor_s, floor_req) = floors.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)).expect("one");
        let r = ratio(plan.wall_s, floor_s);
        table.push((
            format!("plan: {} up to date", opts.plan_n),
            format!(
                "{:.2} s, {} req, {:.0} MB",
                plan.wall_s, plan.requests, plan.peak_rss_mb
            ),
            format!("{floor_s:.2} s, {floor_req} req"),
            format!("{r:.2}"),
        ));
        out.insert(
            "plan".into(),
            json!({
                "instances": opts.plan_n, "with_settings": settings_domains.len(), "seed_s": round3(seed_s),
                "wall_s": round3(plan.wall_s), "requests": plan.requests, "peak_rss_mb": round3(plan.peak_rss_mb),
                "floor": { "wall_s": round3(floor_s), "requests": floor_req },
                "ratio": r,
            }),
        );
    }

    // 5: peak RSS of plan for K declared instances on the embedded store.
    if !opts.skip_embedded && opts.embedded_n > 0 {
        let ws = work.path().join("embedded");
        let domains: Vec<String> = (0..opts.embedded_n).map(|n| domain("emb", n)).collect();
        write_config(&ws, "", &domains, opts.settings_every)?;
        eprintln!("bench: seeding {} instances in the embedded store…", opts.embedded_n);
        seed_embedded(
            &ws.join(".cozyform/store.sqlite"),
            &ws.join("fs"),
            &domains,
            opts.settings_every,
        )
        .await?;
        eprintln!("bench: plan of {} instances on the embedded store…", opts.embedded_n);
        let run = run_cozyform(&ws, None, &["plan", "--detailed-exitcode", "--parallelism", &p])?;
        if run.exit_code != 0 {
            bail!(
                "the plan of the seeded embedded store is not empty (exit {})",
                run.exit_code
            );
        }
        table.push((
            format!("plan, embedded: {} up to date", opts.embedded_n),
            format!("{:.2} s, peak RSS {:.0} MB", run.wall_s, run.peak_rss_mb),
            "-".into(),
            "-".into(),
        ));
        out.insert(
            "embedded".into(),
            json!({
                "instances": opts.embedded_n, "wall_s": round3(run.wall_s),
                "peak_rss_mb": round3(run.peak_rss_mb),
            }),
        );
    }

    // Output: a table on stdout, then the JSON.
    let w0 = table.iter().map(|r| r.0.len()).max().unwrap_or(0).max(7);
    let w1 = table.iter().map(|r| r.1.len()).max().unwrap_or(0).max(9);
    let w2 = table.iter().map(|r| r.2.len()).max().unwrap_or(0).max(5);
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "| {:w0$} | {:w1$} | {:w2$} | ratio |",
        "measure", "cozyform", "floor"
    )?;
    writeln!(
        stdout,
        "|-{}-|-{}-|-{}-|-------|",
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(w2)
    )?;
    for (a, b, c, d) in &table {
        writeln!(stdout, "| {a:w0$} | {b:w1$} | {c:w2$} | {d:>5} |")?;
    }
    let json = serde_json::to_string_pretty(&Value::Object(out))?;
    writeln!(stdout, "\n{json}")?;
    if let Some(path) = &opts.json_out {
        std::fs::write(path, format!("{json}\n"))?;
    }
    Ok(())
}
