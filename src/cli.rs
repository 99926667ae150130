//! Command-line interface: the clap definitions. Dispatch lives in [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Declarative plan/apply for cozy-stack instances: declare instances in TOML, see what differs
/// from CouchDB and the disk, and apply exactly what cozy-stack itself would write.
#[derive(Debug, Parser)]
#[command(name = "cozyform", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "COZYFORM_CONFIG",
        default_value = "instances.toml"
    )]
    pub config: PathBuf,

    /// When to use colors: auto (a terminal without NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Print only errors and the data asked for.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More output: -v logs every HTTP request (method, URL without credentials, status, time).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Do not show progress bars (they are shown on stderr when it is a terminal, without --json or -q).
    #[arg(long, global = true)]
    pub no_progress: bool,

    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "Exit codes:\n  0  success; for `plan --detailed-exitcode`, no changes\n  1  error (bad configuration, unreachable store, a failed apply, a refused or stale saved plan, a refused destroy, `fmt --check` on an unformatted file)\n  2  `plan --detailed-exitcode` only: the plan has changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would create, change or destroy.
    Plan(PlanArgs),
    /// Make reality match the configuration.
    Apply(ApplyArgs),
    /// Check the configuration file without touching CouchDB or the disk.
    Validate(ValidateArgs),
    /// Release the apply lock, only when given its exact ID (shown by the run that is blocked).
    ForceUnlock {
        /// The lock ID.
        lock_id: String,
    },
    /// Bring back an instance from an archive written by a destroy with --backup-dir (refused
    /// when the domain exists).
    Restore {
        /// The `.tar.gz` archive.
        archive: PathBuf,
    },
    /// Declare existing instances as they are: print their TOML, or add it to the config file.
    Import(ImportArgs),
    /// Print one instance's actual state (instance doc, databases, folder, settings), secrets redacted.
    Show(ShowArgs),
    /// Print a JSON Schema: `config` (the instances file), `plan` (`plan --json`), `apply` (`apply --json`).
    Schema {
        #[arg(value_enum)]
        which: SchemaKind,
    },
    /// Normalize the configuration file: instances sorted by domain, keys in canonical order,
    /// comments kept. Rewrites the file in place (atomically).
    Fmt(FmtArgs),
    /// Print a shell completion script (e.g. `cozyform completions bash > /etc/bash_completion.d/cozyform`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff) on stdout: cozyform(1), or cozyform-COMMAND(1) for one command
    /// (e.g. `cozyform man plan > cozyform-plan.1; man ./cozyform-plan.1`).
    Man {
        /// A subcommand (plan, apply, fmt, …); without it, the main page.
        command: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Change nothing: exit 1 and print a diff when the file is not formatted, 0 when it is.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The configuration file (`schemas/instances.schema.json`).
    Config,
    /// The output of `plan --json` (`schemas/plan.schema.json`).
    Plan,
    /// The output of `apply --json` (`schemas/apply.schema.json`).
    Apply,
    /// A saved plan file written by `plan --out` (`schemas/saved-plan.schema.json`).
    SavedPlan,
}

#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Also verify every index, view, directory doc and settings doc of every instance (by default,
    /// cozyform trusts `indexes_version` as cozy-stack does).
    #[arg(long)]
    pub deep: bool,

    /// How many instances are read or applied at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,

    /// Restrict to the instances with this domain (repeatable; globs such as `*.example.com`).
    /// For exceptional cases: the rest of the fleet is neither shown nor changed.
    #[arg(long = "target", value_name = "DOMAIN")]
    pub target: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Exit 0 when there are no changes, 1 on error, 2 when there are changes.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Print the plan as one JSON document on stdout (schema: `cozyform schema plan`).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,

    /// Print a Markdown summary for a pull-request comment, with the full plan folded in.
    #[arg(long)]
    pub markdown: bool,

    /// Also save the plan to this file, for `cozyform apply FILE` (applies exactly this plan, or
    /// refuses it when anything it was computed from changed).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `plan --out`: apply exactly it, without asking (it was reviewed when saved).
    #[arg(value_name = "PLAN_FILE")]
    pub plan_file: Option<PathBuf>,

    #[command(flatten)]
    pub read: ReadArgs,

    /// Apply without asking for confirmation.
    #[arg(long)]
    pub auto_approve: bool,

    /// Print the plan and the result as one JSON document on stdout (needs --auto-approve; schema:
    /// `cozyform schema apply`).
    #[arg(long)]
    pub json: bool,

    /// How long to wait for the lock held by another run (e.g. 30s, 5m).
    #[arg(long, default_value = "0s", value_parser = crate::lock::parse_duration)]
    pub lock_timeout: std::time::Duration,

    /// Allow a plan to destroy up to N instances (overrides `max_destroy`, default 1). Beyond it,
    /// apply asks to type the number of instances, and --auto-approve refuses.
    #[arg(long, value_name = "N")]
    pub max_destroy: Option<u64>,

    /// Before destroying an instance, write a verified archive of it in DIR (overrides
    /// `backup_dir`); `cozyform restore` brings it back.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the findings as JSON: a list of {file, line, column, severity, message, hint}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// An instance to import (its domain); repeatable.
    #[arg(long = "domain", value_name = "DOMAIN", required_unless_present = "all")]
    pub domains: Vec<String>,

    /// Import every existing instance the config file does not declare.
    #[arg(long, conflicts_with = "domains")]
    pub all: bool,

    /// Add the instances to the config file (keeping its comments) instead of printing them.
    #[arg(long)]
    pub write: bool,

    /// How many instances are read at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The instance (its domain, or one of its aliases).
    pub domain: String,

    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also verify its indexes, views and root/trash directory docs.
    #[arg(long)]
    pub deep: bool,
}
