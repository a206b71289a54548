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
//! The loop is a pipeline over three threads: the source's own reader fills a bounded channel,
//! the mapping of batch N+1 runs on a blocking thread while the loop writes batch N into the
//! sink (for Delta: Arrow to Parquet encoding), and at most one mapped batch waits between
//! the two. A batch's position joins the pending checkpoint only once its rows are written.
//!
//! The engine owns the exactly-once protocol: the position it commits is always the end of
//! the last batch written, the commit is one sink transaction, and the source hears about it
//! only afterwards. It knows traits, never concrete connectors.

mod metrics;
mod retry;
mod task;

pub use metrics::{FreshnessHistogram, SnapshotStatus, TaskMetrics, TaskMetricsSnapshot};
pub use retry::{Backoff, DEFAULT_MAX_BACKOFF};
pub use task::{
    DEFAULT_COMMIT_INTERVAL, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_BUFFERED_ROWS, EngineConfig, Task,
    dead_letter_schema,
};
