//! cozyform: declarative plan/apply for cozy-stack instances.
//!
//! The pipeline: [`config`] → [`desired`]; [`store`] + [`fsops`] → [`actual`]; [`plan`] (pure);
//! [`render`]; [`apply`] (the executor).

pub mod actual;
pub mod apply;
pub mod apply_renames;
pub mod apps;
pub mod atomic_file;
pub mod backup;
pub mod cli;
pub mod clusters;
pub mod commands;
pub mod config;
pub mod dbset;
pub mod desired;
pub mod domain;
pub mod fsops;
pub mod import;
pub mod layout;
pub mod lock;
pub mod orphans;
pub mod plan;
pub mod plan_renames;
pub mod progress;
pub mod quota;
pub mod render;
pub mod render_json;
pub mod render_markdown;
pub mod retry;
pub mod saved_plan;
pub mod store;
pub mod targeting;
