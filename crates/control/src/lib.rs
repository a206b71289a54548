//! The control plane: task specs, the factory that turns a spec into a concrete source,
//! mapping and sinks, the runner that retries transient failures as new attempts, and the
//! daemon (`rtsync serve`) built on them:
//!
//! ```text
//!  CLI ──HTTP/JSON──▶ api ──▶ service (lifecycle) ──▶ catalog (SQLite: data sources, vclusters,
//!                                   │                   folders, tasks, versions, runs, attempts, logs)
//!                                   ▼
//!                              scheduler ──▶ run_task (one attempt) ──▶ engine ──▶ Delta table
//!                                   │                                   (the position lives here)
//!                                   └── logs: the attempt's tracing events → its log in the catalog
//! ```
//!
//! Connectors and the engine never depend on this crate; the CLI does.

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod cluster;
pub mod connectors;
pub mod daemon;
pub mod datasource;
pub mod db;
pub mod duration;
pub mod error;
pub mod guard;
pub mod http;
pub mod logs;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod preview;
pub mod runner;
pub mod scheduler;
pub mod secrets;
pub mod service;
pub mod spec;
pub mod verify;

pub use runner::{RunOptions, run_task};
pub use spec::{SourceSpec, TaskSpec};
