//! The one-line progress display of `rtsync run` on a terminal.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtsync_engine::TaskMetrics;

/// Redraws `rows 1,234,567 | 250,123 rows/s | last commit 0.3s ago (epoch 42) | freshness 0.8s`
/// on stderr every second until the returned handle is aborted.
pub fn spawn(metrics: Arc<TaskMetrics>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_rows = 0u64;
        let mut last_at = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let s = metrics.snapshot();
            let elapsed = last_at.elapsed().as_secs_f64().max(1e-3);
            let rate = (s.rows_out.saturating_sub(last_rows)) as f64 / elapsed;
            last_rows = s.rows_out;
            last_at = Instant::now();
            let line = status_line(&s, rate);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        }
    })
}

pub fn status_line(s: &rtsync_engine::TaskMetricsSnapshot, rows_per_sec: f64) -> String {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let last_commit = if s.last_commit_unix_ms == 0 {
        "no commit yet".to_string()
    } else {
        format!(
            "last commit {:.1}s ago (epoch {})",
            now_ms.saturating_sub(s.last_commit_unix_ms) as f64 / 1000.0,
            s.epoch
        )
    };
    let mut line = format!(
        "rows {} | {} rows/s | {} | freshness {:.2}s",
        thousands(s.rows_out),
        thousands(rows_per_sec as u64),
        last_commit,
        s.last_freshness_ms as f64 / 1000.0
    );
    if s.rejected > 0 {
        line.push_str(&format!(" | rejected {} (dead-lettered {})", thousands(s.rejected), thousands(s.dead_lettered)));
    }
    line
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
