//! rtsync: one Kafka topic or database table, continuously, into one Delta Lake table.
//!
//! The top of the workspace: the CLI's pieces (demo, progress line) over the control plane.

pub mod cli;
pub mod demo;
pub mod mcp;
pub mod progress;
pub mod signals;

pub use rtsync_control::{RunOptions, SourceSpec, TaskSpec, run_task};
