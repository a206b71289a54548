//! The generic task runner.
//!
//! One [`Task`] drives one source, one mapping and one sink:
//!
//! ```text
//! sink.open ─▶ checkpoint ─▶ source.open(resume) ─▶ loop { next_batch ─▶ map ─▶ write }
//!                                       every commit_interval or size bound:
//!                                       dead-letter commit (epoch) ─▶ sink.commit(epoch, position) ─▶ source.ack
//! ```
//!
//! The engine owns the exactly-once protocol: the position it commits is always the end of
//! the last batch written, the commit is one sink transaction, and the source hears about it
//! only afterwards. It knows traits, never concrete connectors.

mod metrics;
mod retry;
mod task;

pub use metrics::{FreshnessHistogram, TaskMetrics, TaskMetricsSnapshot};
pub use retry::{Backoff, DEFAULT_MAX_BACKOFF};
pub use task::{
    DEFAULT_COMMIT_INTERVAL, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_BUFFERED_ROWS, EngineConfig, Task,
    dead_letter_schema,
};
