//! The control plane: task specs, the factory that turns a spec into a concrete source,
//! mapping and sinks, and the runner that retries transient failures as new attempts.
//! Connectors and the engine never depend on this crate; the CLI and the daemon do.

pub mod duration;
pub mod runner;
pub mod spec;

pub use runner::{RunOptions, run_task};
pub use spec::{SourceSpec, TaskSpec};
