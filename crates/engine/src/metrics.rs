//! Per-task counters, read by the progress line, `task show` and `/metrics`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtsync_core::SnapshotProgress;

/// Freshness buckets are 10 ms wide up to this many ms; slower rows land in the last bucket.
const HISTOGRAM_MAX_MS: u64 = 120_000;
const BUCKET_MS: u64 = 10;

/// Counters updated by the engine; every field is readable while the task runs.
#[derive(Debug, Default)]
pub struct TaskMetrics {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub commits: AtomicU64,
    pub rejected: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub errors: AtomicU64,
    /// Wall-clock time of the last commit, epoch ms (0: none yet).
    pub last_commit_unix_ms: AtomicU64,
    pub last_commit_latency_ms: AtomicU64,
    pub commit_latency_ms_total: AtomicU64,
    /// Commit time minus the oldest event time in the last commit, ms.
    pub last_freshness_ms: AtomicU64,
    pub epoch: AtomicU64,
    position: Mutex<String>,
    freshness: Mutex<FreshnessHistogram>,
    snapshot: Mutex<Option<SnapshotClock>>,
}

/// A running initial copy, and when this attempt first saw it (for its rate).
#[derive(Debug)]
struct SnapshotClock {
    since: Instant,
    rows_since: u64,
    progress: SnapshotProgress,
}

/// An initial copy in progress, as `task show`, the progress line and the UI show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotStatus {
    /// Rows copied so far.
    pub rows: u64,
    /// The server's estimate of the table's rows (None: it has none).
    pub estimated_rows: Option<u64>,
    /// Seconds left at this attempt's rate so far (None until it has a rate, or when the copy
    /// has passed the estimate).
    pub eta_secs: Option<u64>,
}

impl SnapshotStatus {
    /// Percent copied, when there is an estimate the copy has not passed.
    pub fn percent(&self) -> Option<u64> {
        let est = self.estimated_rows.filter(|&e| e >= self.rows && e > 0)?;
        Some(self.rows * 100 / est)
    }
}

/// A point-in-time copy of [`TaskMetrics`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskMetricsSnapshot {
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub commits: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
    pub errors: u64,
    pub last_commit_unix_ms: u64,
    pub last_commit_latency_ms: u64,
    pub commit_latency_ms_total: u64,
    pub last_freshness_ms: u64,
    pub freshness_p50_ms: u64,
    pub freshness_p99_ms: u64,
    pub epoch: u64,
    pub position: String,
    /// Set while the source's initial copy runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
}

impl TaskMetrics {
    pub fn set_position(&self, position: String) {
        if let Ok(mut p) = self.position.lock() {
            *p = position;
        }
    }

    /// What the source says of its initial copy after each read; None once it streams.
    pub fn set_snapshot_progress(&self, progress: Option<SnapshotProgress>) {
        let Ok(mut clock) = self.snapshot.lock() else { return };
        match (progress, clock.as_mut()) {
            (None, _) => *clock = None,
            (Some(p), Some(c)) => c.progress = p,
            (Some(p), None) => *clock = Some(SnapshotClock { since: Instant::now(), rows_since: p.rows, progress: p }),
        }
    }

    fn snapshot_status(&self) -> Option<SnapshotStatus> {
        let clock = self.snapshot.lock().ok()?;
        let c = clock.as_ref()?;
        let SnapshotProgress { rows, estimated_rows } = c.progress;
        let elapsed = c.since.elapsed().as_secs_f64();
        let copied = rows.saturating_sub(c.rows_since);
        let eta_secs = match estimated_rows {
            Some(est) if est >= rows && copied > 0 && elapsed >= 1.0 => {
                Some(((est - rows) as f64 * elapsed / copied as f64).round() as u64)
            }
            _ => None,
        };
        Some(SnapshotStatus { rows, estimated_rows, eta_secs })
    }

    pub fn record_freshness(&self, values_ms: impl Iterator<Item = u64>) {
        if let Ok(mut h) = self.freshness.lock() {
            for v in values_ms {
                h.record(v);
            }
        }
    }

    pub fn freshness(&self) -> FreshnessHistogram {
        self.freshness.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn snapshot(&self) -> TaskMetricsSnapshot {
        let h = self.freshness();
        TaskMetricsSnapshot {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_commit_unix_ms: self.last_commit_unix_ms.load(Ordering::Relaxed),
            last_commit_latency_ms: self.last_commit_latency_ms.load(Ordering::Relaxed),
            commit_latency_ms_total: self.commit_latency_ms_total.load(Ordering::Relaxed),
            last_freshness_ms: self.last_freshness_ms.load(Ordering::Relaxed),
            freshness_p50_ms: h.quantile(0.50),
            freshness_p99_ms: h.quantile(0.99),
            epoch: self.epoch.load(Ordering::Relaxed),
            position: self.position.lock().map(|p| p.clone()).unwrap_or_default(),
            snapshot: self.snapshot_status(),
        }
    }
}

/// Per-row freshness (commit time minus event time) at 10 ms resolution.
#[derive(Debug, Clone)]
pub struct FreshnessHistogram {
    buckets: Vec<u64>,
    count: u64,
}

impl Default for FreshnessHistogram {
    fn default() -> Self {
        Self { buckets: vec![0; (HISTOGRAM_MAX_MS / BUCKET_MS + 1) as usize], count: 0 }
    }
}

impl FreshnessHistogram {
    pub fn record(&mut self, ms: u64) {
        let idx = (ms.min(HISTOGRAM_MAX_MS) / BUCKET_MS) as usize;
        self.buckets[idx] += 1;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The rows recorded after `earlier` (a copy of this histogram taken before).
    pub fn since(&self, earlier: &Self) -> Self {
        let buckets: Vec<u64> =
            self.buckets.iter().zip(&earlier.buckets).map(|(now, then)| now.saturating_sub(*then)).collect();
        let count = buckets.iter().sum();
        Self { buckets, count }
    }

    /// The upper edge (ms) of the bucket holding quantile `q`; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return (i as u64 + 1) * BUCKET_MS;
            }
        }
        HISTOGRAM_MAX_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_gets_a_percentage_and_an_eta_from_its_own_rate() {
        let m = TaskMetrics::default();
        assert_eq!(m.snapshot().snapshot, None);
        // A resumed copy: 40,000 rows were committed by an earlier attempt.
        m.set_snapshot_progress(Some(SnapshotProgress { rows: 40_000, estimated_rows: Some(100_000) }));
        let first = m.snapshot().snapshot.unwrap();
        assert_eq!((first.rows, first.percent(), first.eta_secs), (40_000, Some(40), None), "no rate yet");

        // 10 s later this attempt has copied 20,000 more: 40,000 left at 2,000 rows/s.
        m.snapshot.lock().unwrap().as_mut().unwrap().since -= std::time::Duration::from_secs(10);
        m.set_snapshot_progress(Some(SnapshotProgress { rows: 60_000, estimated_rows: Some(100_000) }));
        let s = m.snapshot().snapshot.unwrap();
        assert_eq!((s.rows, s.estimated_rows, s.percent(), s.eta_secs), (60_000, Some(100_000), Some(60), Some(20)));

        // A stale estimate the copy has passed: rows only.
        m.set_snapshot_progress(Some(SnapshotProgress { rows: 120_000, estimated_rows: Some(100_000) }));
        let s = m.snapshot().snapshot.unwrap();
        assert_eq!((s.percent(), s.eta_secs), (None, None));

        // Streaming: no snapshot any more, and the JSON leaves the field out.
        m.set_snapshot_progress(None);
        assert_eq!(m.snapshot().snapshot, None);
        assert!(!serde_json::to_string(&m.snapshot()).unwrap().contains("snapshot"));
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = FreshnessHistogram::default();
        for ms in 0..1000 {
            h.record(ms);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile(0.5), 500);
        assert_eq!(h.quantile(0.99), 990);
        h.record(10_000_000);
        assert_eq!(h.quantile(1.0), HISTOGRAM_MAX_MS + BUCKET_MS);
    }
}
