//! cozyform: declarative plan/apply for cozy-stack instances.
//!
//! The pipeline: [`config`] → [`desired`]; [`store`] + [`fsops`] → [`actual`]; [`plan`] (pure);
//! [`render`]; [`apply`] (the executor).

pub mod config;
pub mod desired;
pub mod domain;
pub mod layout;
pub mod quota;
pub mod store;
pub mod actual;
pub mod apply;
pub mod fsops;
pub mod plan;
pub mod render;
pub mod cli;
pub mod commands;
