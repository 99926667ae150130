//! Command dispatch: wires the pipeline stages together for each subcommand and maps results to
//! exit codes. Output: data on stdout, messages for people on stderr.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::actual::{self, Actual, ReadOptions};
use crate::apply::{self, ApplyOptions, ApplyReport};
use crate::cli::{ApplyArgs, Cli, ColorChoice, Command, PlanArgs, ReadArgs, SchemaKind, ValidateArgs};
use crate::clusters::{Cluster, Stores};
use crate::config::{self, Loaded};
use crate::desired::{Desired, StoreTarget};
use crate::plan::{self, Action, Plan};
use crate::render::{self, Style};
use crate::render_json;
use crate::store::Store;
use crate::store::couch::CouchStore;
use crate::store::embedded::EmbeddedStore;

mod import;
mod machine;
mod saved;
mod show;
mod tooling;

/// An error with a hint for the user, rendered as `error:` / `hint:`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

pub fn user_error(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError {
        message: message.into(),
        hint: Some(hint.into()),
    })
}

/// Request timeout for CouchDB, in seconds.
pub const REQUEST_TIMEOUT_SECS: u64 = 30;

/// The process exit code of a command.
pub type Exit = u8;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Exit> {
    let color = use_color(cli.color);
    let json = match &cli.command {
        Command::Plan(a) => a.json,
        Command::Apply(a) => a.json,
        _ => true,
    };
    crate::progress::configure(!cli.no_progress && !cli.quiet && !json && std::io::stderr().is_terminal());
    match &cli.command {
        Command::Validate(args) => validate(&cli, args),
        Command::ForceUnlock { lock_id } => force_unlock(&cli, lock_id).await,
        Command::Restore { archive } => restore_cmd(&cli, archive).await,
        Command::Plan(args) => plan_cmd(&cli, args, color).await,
        Command::Apply(args) => apply_cmd(&cli, args, color).await,
        Command::Import(args) => import::import_cmd(&cli, args).await,
        Command::Show(args) => show::show_cmd(&cli, args).await,
        Command::Schema { which } => {
            let schema = match which {
                SchemaKind::Config => config::json_schema(),
                SchemaKind::Plan => crate::render_json::plan_json_schema(),
                SchemaKind::Apply => crate::render_json::apply_json_schema(),
                SchemaKind::SavedPlan => crate::saved_plan::json_schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(0)
        }
        Command::Fmt(args) => tooling::fmt(&cli, args),
        Command::Completions { shell } => tooling::completions(*shell),
        Command::Man { command } => tooling::man(command.as_deref()),
    }
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
        }
    }
}

/// Loads the config, printing warnings; errors are printed and turned into exit 1.
fn load_config(cli: &Cli) -> Result<Loaded, Exit> {
    match config::load(&cli.config) {
        Ok(l) => {
            if !cli.quiet {
                for w in &l.warnings {
                    eprintln!("{w}");
                }
            }
            Ok(l)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(1)
        }
    }
}

fn validate(cli: &Cli, args: &ValidateArgs) -> Result<Exit> {
    let (diags, ok) = match config::load(&cli.config) {
        Ok(l) => (l.warnings, true),
        Err(e) => (e.diagnostics, false),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&diags)?);
    } else {
        for d in &diags {
            eprintln!("{d}");
        }
        if ok && !cli.quiet {
            eprintln!("The configuration {} is valid.", cli.config.display());
        }
    }
    Ok(if ok { 0 } else { 1 })
}

/// Opens the store the config names. `None` for an embedded store that does not exist yet when
/// `create` is false: a plan on a fresh machine writes nothing.
pub async fn open_store(desired: &Desired, create: bool, verbose: bool) -> Result<Option<Store>> {
    match &desired.store {
        StoreTarget::Couch { url, user, password } => {
            let s =
                CouchStore::new(url, user.as_deref(), password.as_deref(), REQUEST_TIMEOUT_SECS)?.with_verbose(verbose);
            let store = Store::Couch(Arc::new(s));
            store.ping().await.map_err(|e| {
                user_error(
                    format!("cannot reach CouchDB: {e}"),
                    "check [couchdb] url, and COUCHDB_USER / COUCHDB_PASSWORD; is the server running?",
                )
            })?;
            Ok(Some(store))
        }
        StoreTarget::Embedded { path } => {
            if !create && !path.exists() {
                return Ok(None);
            }
            let s =
                EmbeddedStore::open(path).with_context(|| format!("opening the embedded store {}", path.display()))?;
            Ok(Some(Store::Embedded(Arc::new(s))))
        }
    }
}

/// Opens the main store and every `[[couchdb.clusters]]` store (each pinged, concurrently).
pub async fn open_stores(desired: &Desired, create: bool, verbose: bool) -> Result<Option<Stores>> {
    let Some(main) = open_store(desired, create, verbose).await? else {
        return Ok(None);
    };
    let clusters = futures::future::try_join_all(desired.clusters.iter().enumerate().map(|(n, c)| async move {
        let s = CouchStore::new(&c.url, c.user.as_deref(), c.password.as_deref(), REQUEST_TIMEOUT_SECS)?
            .with_verbose(verbose);
        let store = Store::Couch(Arc::new(s));
        store.ping().await.map_err(|e| {
            user_error(
                format!(
                    "cannot reach CouchDB cluster #{n} ([[couchdb.clusters]] {}): {e}",
                    c.url
                ),
                "check the cluster's url and credentials; is the server running?",
            )
        })?;
        Ok::<_, anyhow::Error>(Cluster {
            store,
            instance_creation: c.instance_creation,
        })
    }))
    .await?;
    Ok(Some(Stores { main, clusters }))
}

fn read_options(desired: &Desired, args: &ReadArgs) -> ReadOptions {
    let settings_for: BTreeSet<String> = desired
        .instances
        .values()
        .filter(|i| !i.settings.is_empty())
        .map(|i| i.domain.clone())
        .collect();
    let mut opts = ReadOptions {
        deep: args.deep,
        parallelism: args.parallelism as usize,
        settings_for,
        ..Default::default()
    };
    crate::plan_renames::add_read_options(desired, &mut opts);
    opts
}

/// Reads the actual state and plans.
async fn compute(desired: &Desired, store: Option<&Stores>, args: &ReadArgs) -> Result<(Actual, Plan)> {
    crate::progress::stage(0, "reading global/instances and the database lists");
    let mut actual = match store {
        Some(s) => actual::read_actual_in(s, &desired.fs_root, &read_options(desired, args))
            .await
            .inspect_err(|_| crate::progress::finish())?,
        None => Actual::default(),
    };
    crate::apps::gather(store, desired, &mut actual, args.parallelism as usize)
        .await
        .inspect_err(|_| crate::progress::finish())?;
    crate::progress::message("planning");
    let planning = std::time::Instant::now();
    let mut p = plan::plan(desired, &actual);
    if let Some(t) = crate::targeting::Targets::parse(&args.target)? {
        t.restrict(&mut p, desired, &actual)?;
        // The app changes, and the app source errors, of the targeted instances only.
        p.apps = crate::apps::plan::plan_apps(desired, &actual, &p.instances, &mut p.errors);
        let mut seen = std::collections::HashSet::new();
        p.errors.retain(|e| seen.insert(e.clone()));
    }
    crate::progress::timing("plan", planning);
    crate::progress::finish();
    Ok((actual, p))
}

/// Prints the partial-plan warning when `--target` is in effect.
pub(crate) fn warn_targets(cli: &Cli, p: &Plan) {
    if !cli.quiet
        && !p.targets.is_empty()
        && let Ok(Some(t)) = crate::targeting::Targets::parse(&p.targets)
    {
        eprintln!("{}", t.warning());
    }
}

fn refuse_plan_errors(p: &Plan) -> Result<()> {
    if p.errors.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("the plan cannot be applied:");
    for e in &p.errors {
        msg.push_str("\n  - ");
        msg.push_str(e);
    }
    Err(user_error(msg, "fix the configuration, then run plan again"))
}

async fn plan_cmd(cli: &Cli, args: &PlanArgs, color: bool) -> Result<Exit> {
    let started = std::time::Instant::now();
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    crate::progress::timing("config loaded", started);
    let store = open_stores(&loaded.desired, false, cli.verbose > 0).await?;
    crate::progress::timing("stores opened", started);
    if let Some(s) = &store
        && let Ok(Some(held)) = crate::lock::current(&s.main).await
    {
        eprintln!("warning: an apply holds the lock; this plan may change when it ends:\n  {held}");
    }
    crate::progress::timing("lock read", started);
    let (actual, p) = compute(&loaded.desired, store.as_ref(), &args.read).await?;
    warn_targets(cli, &p);
    if args.json {
        print!("{}", render_json::to_pretty(&render_json::PlanDocument::new(&p)));
    } else if args.markdown {
        print!("{}", crate::render_markdown::render_markdown(&p));
    } else {
        print!("{}", render::render_plan(&p, Style::new(color)));
    }
    std::io::stdout().flush()?;
    crate::progress::timing("plan command (rendered)", started);
    refuse_plan_errors(&p)?;
    if let Some(out) = &args.out {
        saved::save(
            cli,
            args,
            &loaded.desired,
            store.as_ref().map(|s| &s.main),
            &actual,
            &p,
            out,
        )
        .await?;
    }
    Ok(if args.detailed_exitcode && p.has_changes() {
        2
    } else {
        0
    })
}

fn confirm(p: &Plan) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(user_error(
            "apply needs a confirmation, and standard input is not a terminal",
            "review the plan, then run apply --auto-approve",
        ));
    }
    let s = p.summary();
    eprint!(
        "\nDo you want to perform these actions? ({} to add, {} to change, {} to destroy)\n  Only 'yes' will be accepted: ",
        s.add, s.change, s.destroy
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

async fn apply_cmd(cli: &Cli, args: &ApplyArgs, color: bool) -> Result<Exit> {
    if let Some(file) = &args.plan_file {
        return saved::apply_saved(cli, args, file, color).await;
    }
    if args.json {
        return machine::apply_json(cli, args).await;
    }
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let desired = &loaded.desired;
    // An embedded store that does not exist yet is created only once the plan is approved.
    let existing = open_stores(desired, false, cli.verbose > 0).await?;
    let (_actual, p) = compute(desired, existing.as_ref(), &args.read).await?;
    warn_targets(cli, &p);
    let st = Style::new(color);
    let rendered = render::render_plan(&p, st);
    refuse_plan_errors(&p).inspect_err(|_| print!("{rendered}"))?;
    if !p.has_changes() {
        print!("{rendered}");
        println!("\nApply complete! Instances: 0 added, 0 changed, 0 destroyed.");
        // Nothing to do needs no lock; but a lock left by a killed run would block the next change.
        if let Some(s) = &existing
            && let Ok(Some(held)) = crate::lock::current(&s.main).await
        {
            eprintln!(
                "warning: a lock is held:\n  {held}\nIf no cozyform run is active (it was killed), release it: cozyform force-unlock {}",
                held.id
            );
        }
        return Ok(0);
    }
    print!("{rendered}");
    std::io::stdout().flush()?;
    let safety = effective_safety(&loaded.safety, args);
    let over_limit = destroy_limit(&p, &safety, args.auto_approve)?;
    if !args.auto_approve {
        let ok = if over_limit { confirm_count(&p)? } else { confirm(&p)? };
        if !ok {
            eprintln!("Apply cancelled.");
            return Ok(1);
        }
    }
    match apply_under_lock(existing, desired, args, &p, cli.verbose > 0, None, &safety).await? {
        Locked::Applied(report) => {
            print_report(&report, st);
            Ok(if report.failed() > 0 { 1 } else { 0 })
        }
        Locked::StateChanged | Locked::Stale(_) => Err(state_changed()),
    }
}

/// What happened under the lock.
pub(crate) enum Locked {
    Applied(ApplyReport),
    /// The plan computed under the lock differs from the one shown: nothing was applied.
    StateChanged,
    /// A saved plan is stale, for these reasons: nothing was applied.
    Stale(Vec<String>),
}

pub(crate) fn state_changed() -> anyhow::Error {
    user_error(
        "the state changed since the plan was shown (another run or cozy-stack wrote meanwhile); nothing was applied",
        "run apply again to see the new plan",
    )
}

/// Takes the lock, re-plans (the state may have changed while the operator read the plan),
/// applies if the plan is the one shown, stopping new work on Ctrl-C, and releases the lock.
/// `existing` is the store the plan was read from; `None` for an embedded store that does not
/// exist yet, which is created now that the plan is approved.
pub(crate) async fn apply_under_lock(
    existing: Option<Stores>,
    desired: &Desired,
    args: &ApplyArgs,
    shown: &Plan,
    verbose: bool,
    saved: Option<&crate::saved_plan::SavedGuard>,
    safety: &crate::backup::Safety,
) -> Result<Locked> {
    // Taking the lock creates the embedded store and `global/instances`. When they do not exist yet,
    // the checks run once before, so that a refused plan leaves no trace; they run again under the
    // lock, as always.
    let existing = match existing {
        Some(s) => Some(s),
        None => open_stores(desired, false, verbose).await?,
    };
    let nothing_yet = match &existing {
        None => true,
        Some(s) => !s.main.db_exists(crate::layout::GLOBAL_INSTANCES_DB).await?,
    };
    if nothing_yet && let Err(refused) = check_unchanged(existing.as_ref(), desired, args, shown, saved).await? {
        return Ok(refused);
    }
    let stores = match existing {
        Some(s) => s,
        None => open_stores(desired, true, verbose)
            .await?
            .context("the store could not be created")?,
    };
    let store = &stores.main;
    // Ctrl-C is caught from before the lock is taken, so that it can never kill a run holding it.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The handler is registered here, synchronously, not when the task is first polled.
    let sigint =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let watcher = tokio::spawn(watch_ctrl_c(sigint, cancel.clone()));
    let lock = crate::lock::acquire(store, "apply", args.lock_timeout).await.map_err(|e| {
        match e.downcast_ref::<crate::lock::Locked>().map(|l| l.0.id.clone()) {
            Some(id) => user_error(
                format!("{e}"),
                format!("wait for that run to end (or pass --lock-timeout 5m); if it died, run: cozyform force-unlock {id}"),
            ),
            None => e,
        }
    })?;
    let mut opts = ApplyOptions::new(args.read.parallelism as usize, desired.fs_root.clone());
    opts.cancel = cancel;
    opts.backup_dir = safety.backup_dir.clone();
    let result = apply_locked(&stores, desired, args, shown, saved, &lock.holder, opts).await;
    let released = crate::lock::release(store, &lock).await;
    watcher.abort();
    let how = format!(
        "the lock {} is still held, and the next run will be refused: once no cozyform run is active, release it with: cozyform force-unlock {}",
        lock.id, lock.id
    );
    match (result, released) {
        (Ok(outcome), Ok(())) => Ok(outcome),
        (Ok(Locked::Applied(mut report)), Err(e)) => {
            report.lock_error = Some(format!("releasing the lock failed ({e:#}); {how}"));
            Ok(Locked::Applied(report))
        }
        (Ok(_), Err(e)) => Err(e.context(how)),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(_)) => Err(e.context(how)),
    }
}

/// Sets `cancel` on the first Ctrl-C; a second one exits at once (the next apply repairs).
async fn watch_ctrl_c(mut sigint: tokio::signal::unix::Signal, cancel: Arc<std::sync::atomic::AtomicBool>) {
    if sigint.recv().await.is_some() {
        eprintln!(
            "\nInterrupted: finishing the instances under way, starting no new ones (Ctrl-C again kills; the next apply repairs)..."
        );
        cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        if sigint.recv().await.is_some() {
            std::process::exit(130);
        }
    }
}

/// Reads the state again and plans: the plan, or the refusal when a saved plan is stale or the plan
/// is no longer the one shown.
async fn check_unchanged(
    store: Option<&Stores>,
    desired: &Desired,
    args: &ApplyArgs,
    shown: &Plan,
    saved: Option<&crate::saved_plan::SavedGuard>,
) -> Result<std::result::Result<Plan, Locked>> {
    let read = saved.map_or(&args.read, |g| &g.read);
    let (actual, p) = compute(desired, store, read).await?;
    if let Some(g) = saved {
        let reasons = g.check_store(store.map(|s| &s.main), &actual).await?;
        if !reasons.is_empty() {
            return Ok(Err(Locked::Stale(reasons)));
        }
    }
    // The global design docs are defined idempotently whatever the plan says; what the operator
    // approved is what happens to each instance.
    if p.instances != shown.instances || p.errors != shown.errors || p.apps != shown.apps {
        return Ok(Err(Locked::StateChanged));
    }
    Ok(Ok(p))
}

async fn apply_locked(
    stores: &Stores,
    desired: &Desired,
    args: &ApplyArgs,
    shown: &Plan,
    saved: Option<&crate::saved_plan::SavedGuard>,
    holder: &str,
    opts: ApplyOptions,
) -> Result<Locked> {
    let store = &stores.main;
    let p = match check_unchanged(Some(stores), desired, args, shown, saved).await? {
        Ok(p) => p,
        Err(refused) => return Ok(refused),
    };
    // Before changing anything: every apply makes every saved plan stale, its own included.
    crate::saved_plan::record_apply(store, saved.map(|g| g.saved.plan_id.as_str()), holder).await?;
    let mut report = apply::apply_in(stores, desired, &p, &opts).await;
    report.apps = crate::apps::install::apply_apps(stores, &p, &opts, &report).await;
    crate::progress::finish();
    Ok(Locked::Applied(report))
}

fn print_report(report: &ApplyReport, st: Style) {
    println!();
    if let Some(e) = &report.global_error {
        println!("{}Error{}: global/instances: {e}", st.red, st.reset);
    }
    for o in &report.outcomes {
        match (&o.error, &o.registration_link) {
            (Some(e), link) => {
                println!("{}Error{}: {}: {e}", st.red, st.reset, o.domain);
                if let Some(link) = link {
                    println!(
                        "{}: the instance doc was written; the next apply repairs the rest.",
                        o.domain
                    );
                    println!("{}: created. Registration link (shown only once): {link}", o.domain);
                }
            }
            (None, Some(link)) => println!("{}: created. Registration link (shown only once): {link}", o.domain),
            (None, None) if o.backup.is_some() => println!(
                "{}: destroyed, after a verified backup in {}",
                o.domain,
                o.backup.as_deref().unwrap_or_default()
            ),
            (None, None) if o.renamed_from.is_some() => println!(
                "{}: renamed from {}.",
                o.domain,
                o.renamed_from.as_deref().unwrap_or_default()
            ),
            (None, None) => {
                let what = match o.action {
                    Action::Update => "updated",
                    Action::Repair => "repaired",
                    Action::Destroy => "destroyed",
                    _ => "done",
                };
                println!("{}: {what}.", o.domain)
            }
        }
    }
    if let Some(e) = &report.lock_error {
        println!("{}Error{}: {e}", st.red, st.reset);
    }
    for e in &report.leftover_errors {
        println!("{}Error{}: leftover {e}", st.red, st.reset);
    }
    if report.leftovers_removed > 0 {
        println!(
            "Removed {} leftover(s) of interrupted creates.",
            report.leftovers_removed
        );
    }
    crate::apps::render::render_app_outcomes(&report.apps, st);
    let added = report.count(Action::Create);
    let changed = report.count(Action::Update) + report.count(Action::Repair);
    let destroyed = report.count(Action::Destroy);
    if report.failed() == 0 {
        println!(
            "\n{}Apply complete!{} Instances: {added} added, {changed} changed, {destroyed} destroyed.",
            st.bold, st.reset
        );
    } else {
        println!(
            "\n{}Apply failed{} for {} instance(s). Done: {added} added, {changed} changed, {destroyed} destroyed. Run plan to see what remains.",
            st.red,
            st.reset,
            report.failed()
        );
    }
}

/// Renders an error for people: `error: …`, then each cause as `caused by: …`, then `hint: …`.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e}\n");
    let mut hint = None;
    for (n, cause) in e.chain().enumerate() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            hint = hint.or(u.hint.clone());
        }
        if n > 0 {
            out.push_str(&format!("caused by: {cause}\n"));
        }
    }
    if let Some(h) = hint {
        out.push_str(&format!("hint: {h}\n"));
    }
    out
}

async fn force_unlock(cli: &Cli, id: &str) -> Result<Exit> {
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let Some(store) = open_store(&loaded.desired, false, cli.verbose > 0).await? else {
        return Err(user_error("no lock is held", "the embedded store does not exist yet"));
    };
    let info = crate::lock::force_unlock(&store, id).await?;
    eprintln!("Released the lock:\n  {info}");
    Ok(0)
}

/// `max_destroy` and `backup_dir`, flags over the config.
pub(crate) fn effective_safety(config: &crate::backup::Safety, args: &ApplyArgs) -> crate::backup::Safety {
    crate::backup::Safety {
        max_destroy: args.max_destroy.unwrap_or(config.max_destroy),
        backup_dir: args
            .backup_dir
            .as_ref()
            .map(|d| crate::config::parse::normalize_path(&std::path::absolute(d).unwrap_or_else(|_| d.clone())))
            .or_else(|| config.backup_dir.clone()),
    }
}

/// Whether the plan destroys more than `max_destroy` instances. With --auto-approve that is
/// refused: approving a mass destroy needs the limit raised on purpose (`--max-destroy N`).
pub(crate) fn destroy_limit(p: &Plan, safety: &crate::backup::Safety, auto_approve: bool) -> Result<bool> {
    let n = p.summary().destroy as u64;
    if n <= safety.max_destroy {
        return Ok(false);
    }
    if auto_approve {
        return Err(user_error(
            format!(
                "the plan destroys {n} instances, more than max_destroy = {}; nothing was done",
                safety.max_destroy
            ),
            format!(
                "check the plan; if these destroys are intended, run apply again with --max-destroy {n} (or set max_destroy in the config)"
            ),
        ));
    }
    Ok(true)
}

/// Confirmation of a plan over the destroy limit: the operator types the number of destroys.
fn confirm_count(p: &Plan) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(user_error(
            "apply needs a confirmation, and standard input is not a terminal",
            "review the plan, then run apply --auto-approve --max-destroy N",
        ));
    }
    let s = p.summary();
    eprint!(
        "\nThis plan DESTROYS {} instances ({} to add, {} to change).\n  Type the number of instances to destroy to confirm: ",
        s.destroy, s.add, s.change
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == s.destroy.to_string())
}

async fn restore_cmd(cli: &Cli, archive: &std::path::Path) -> Result<Exit> {
    let loaded = match load_config(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let desired = &loaded.desired;
    // Every cluster: the databases go back to the server the archived instance doc names.
    let stores = open_stores(desired, true, cli.verbose > 0)
        .await?
        .context("the store could not be opened")?;
    let store = stores.main.clone();
    let lock = crate::lock::acquire(&store, "restore", std::time::Duration::ZERO)
        .await
        .map_err(
            |e| match e.downcast_ref::<crate::lock::Locked>().map(|l| l.0.id.clone()) {
                Some(id) => user_error(
                    format!("{e}"),
                    format!("wait for that run to end; if it died, run: cozyform force-unlock {id}"),
                ),
                None => e,
            },
        )?;
    let result = crate::backup::restore(&stores, &desired.fs_root, archive).await;
    let released = crate::lock::release(&store, &lock).await;
    let domain = result.map_err(|e| {
        let hint = if e.to_string().contains("already exists") {
            "restore only brings back an instance that does not exist; destroy it first if you mean to replace it"
        } else {
            "fix the cause, then run restore again: what was restored is kept, the rest is completed"
        };
        anyhow::Error::new(UserError {
            message: format!("{e:#}"),
            hint: Some(hint.into()),
        })
    })?;
    released.context("releasing the lock")?;
    if !cli.quiet {
        eprintln!(
            "Restored {domain} from {}. Declare it in the configuration to manage it.",
            archive.display()
        );
    }
    Ok(0)
}
