//! rtsync: one Kafka topic or database table, continuously, into one Delta Lake table.
//!
//! This crate is the top of the workspace: the task spec users write, the factory that turns
//! a spec into a concrete source, mapping and sinks, and the runner that retries transient
//! failures. The CLI (`main.rs`) and the tests use it; connectors and the engine never do.

pub mod demo;
pub mod duration;
pub mod progress;
pub mod runner;
pub mod spec;

pub use runner::{RunOptions, run_task};
pub use spec::{SourceSpec, TaskSpec};
