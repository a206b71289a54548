//! `/metrics`: Prometheus text exposition of every task the daemon has run since it started,
//! labelled by task name, plus vcluster capacity. Counters restart at zero with the daemon
//! (Prometheus handles counter resets).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::service::Control;

pub const ROWS_IN: &str = "rtsync_task_rows_in_total";
pub const ROWS_OUT: &str = "rtsync_task_rows_out_total";
pub const BYTES_IN: &str = "rtsync_task_bytes_in_total";
pub const BYTES_OUT: &str = "rtsync_task_bytes_out_total";
pub const COMMITS: &str = "rtsync_task_commits_total";
pub const COMMIT_LATENCY_SUM: &str = "rtsync_task_commit_latency_seconds_sum";
pub const COMMIT_LATENCY_LAST: &str = "rtsync_task_commit_latency_seconds";
pub const FRESHNESS: &str = "rtsync_task_freshness_seconds";
pub const FRESHNESS_P50: &str = "rtsync_task_freshness_p50_seconds";
pub const FRESHNESS_P99: &str = "rtsync_task_freshness_p99_seconds";
pub const CHECKPOINT_AGE: &str = "rtsync_task_checkpoint_age_seconds";
pub const ERRORS: &str = "rtsync_task_errors_total";
pub const REJECTED: &str = "rtsync_task_rejected_total";
pub const DEAD_LETTERED: &str = "rtsync_task_dead_lettered_total";
pub const EPOCH: &str = "rtsync_task_epoch";
pub const RUNNING: &str = "rtsync_task_running";
pub const VCLUSTER_SLOTS: &str = "rtsync_vcluster_slots";
pub const VCLUSTER_SLOTS_USED: &str = "rtsync_vcluster_slots_used";

/// (name, type, help) of each metric, in output order.
const FAMILIES: &[(&str, &str, &str)] = &[
    (ROWS_IN, "counter", "Rows read from the source."),
    (ROWS_OUT, "counter", "Rows committed to the target table."),
    (BYTES_IN, "counter", "Payload bytes read from the source."),
    (BYTES_OUT, "counter", "Bytes written to the target table."),
    (COMMITS, "counter", "Delta commits made."),
    (COMMIT_LATENCY_SUM, "counter", "Total time spent in commits (divide by the commits counter for the mean)."),
    (COMMIT_LATENCY_LAST, "gauge", "Duration of the last commit."),
    (
        FRESHNESS,
        "gauge",
        "Age of the oldest row of the last commit when it was committed (source timestamp to commit).",
    ),
    (FRESHNESS_P50, "gauge", "Median freshness over the daemon's life."),
    (FRESHNESS_P99, "gauge", "99th percentile freshness over the daemon's life."),
    (CHECKPOINT_AGE, "gauge", "Seconds since the last commit."),
    (ERRORS, "counter", "Failed attempts and source acknowledgement errors."),
    (REJECTED, "counter", "Records the mapping rejected (malformed JSON, failed casts)."),
    (DEAD_LETTERED, "counter", "Rejected records written to the dead-letter table."),
    (EPOCH, "gauge", "The task's last committed epoch (Delta txn version)."),
    (RUNNING, "gauge", "1 while the task has an active run."),
];

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub async fn render(control: &Control) -> Result<String> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut slots = control.scheduler.slots();
    slots.sort_by_key(|(id, _)| *id);
    let rows: Vec<(String, rtsync_engine::TaskMetricsSnapshot, bool)> = slots
        .iter()
        .map(|(_, s)| {
            let name = s.name.lock().map(|n| n.clone()).unwrap_or_default();
            (name, s.metrics.snapshot(), s.live().phase.is_some())
        })
        .collect();
    let mut out = String::new();
    for (metric, ty, help) in FAMILIES {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {ty}");
        for (task, m, running) in &rows {
            let value: f64 = match *metric {
                ROWS_IN => m.rows_in as f64,
                ROWS_OUT => m.rows_out as f64,
                BYTES_IN => m.bytes_in as f64,
                BYTES_OUT => m.bytes_out as f64,
                COMMITS => m.commits as f64,
                COMMIT_LATENCY_SUM => m.commit_latency_ms_total as f64 / 1000.0,
                COMMIT_LATENCY_LAST => m.last_commit_latency_ms as f64 / 1000.0,
                FRESHNESS => m.last_freshness_ms as f64 / 1000.0,
                FRESHNESS_P50 => m.freshness_p50_ms as f64 / 1000.0,
                FRESHNESS_P99 => m.freshness_p99_ms as f64 / 1000.0,
                CHECKPOINT_AGE => {
                    if m.last_commit_unix_ms == 0 {
                        continue;
                    }
                    now_ms.saturating_sub(m.last_commit_unix_ms) as f64 / 1000.0
                }
                ERRORS => m.errors as f64,
                REJECTED => m.rejected as f64,
                DEAD_LETTERED => m.dead_lettered as f64,
                EPOCH => m.epoch as f64,
                RUNNING => f64::from(u8::from(*running)),
                _ => continue,
            };
            let _ = writeln!(out, "{metric}{{task=\"{}\"}} {value}", escape(task));
        }
    }
    let tables = rtsync_sink_lakehouse::maintenance::table_metrics();
    type TableValue = fn(&rtsync_sink_lakehouse::maintenance::TableMetricsSnapshot) -> f64;
    let table_families: [(&str, &str, &str, TableValue); 9] = [
        ("rtsync_table_active_files", "gauge", "Data files in the table's current version.", |m| m.active_files as f64),
        ("rtsync_table_bytes", "gauge", "Bytes of the table's current data files.", |m| m.table_bytes as f64),
        ("rtsync_table_small_files", "gauge", "Data files under half of the target file size.", |m| {
            m.small_files as f64
        }),
        ("rtsync_table_compactions_total", "counter", "Compactions committed by the table's maintenance.", |m| {
            m.compactions as f64
        }),
        ("rtsync_table_compaction_seconds_total", "counter", "Time spent compacting.", |m| {
            m.compaction_ms_total as f64 / 1000.0
        }),
        ("rtsync_table_files_compacted_total", "counter", "Small files rewritten by compactions.", |m| {
            m.files_compacted as f64
        }),
        ("rtsync_table_vacuums_total", "counter", "Vacuums run by the table's maintenance.", |m| m.vacuums as f64),
        ("rtsync_table_vacuum_seconds_total", "counter", "Time spent vacuuming.", |m| {
            m.vacuum_ms_total as f64 / 1000.0
        }),
        ("rtsync_table_maintenance_errors_total", "counter", "Failed maintenance runs (retried later).", |m| {
            m.errors as f64
        }),
    ];
    for (metric, ty, help, value) in table_families {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {ty}");
        for (table, m) in &tables {
            let _ = writeln!(out, "{metric}{{table=\"{}\"}} {}", escape(table), value(m));
        }
    }
    let vcs = control.vclusters().await?;
    for (metric, help) in
        [(VCLUSTER_SLOTS, "Slots of the vcluster."), (VCLUSTER_SLOTS_USED, "Slots taken by running tasks.")]
    {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for v in &vcs {
            let value = if metric == VCLUSTER_SLOTS { v.slots } else { v.slots_used };
            let _ = writeln!(
                out,
                "{metric}{{vcluster=\"{}\",type=\"{}\"}} {value}",
                escape(&v.name),
                escape(&v.vcluster_type)
            );
        }
    }
    Ok(out)
}
