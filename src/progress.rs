//! The one-line progress display of `rtsync run` on a terminal.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtsync_engine::TaskMetrics;

/// The progress line on the terminal, if one is shown: log lines clear it, print, and draw it
/// again, so the two never interleave.
static LINE: Mutex<Option<String>> = Mutex::new(None);

/// Where log lines go: stderr, around the progress line.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

/// One log event, written whole when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let line = LINE.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if line.is_some() {
            let _ = err.write_all(b"\r\x1b[2K");
        }
        let _ = err.write_all(&self.0);
        if let Some(progress) = line.as_deref() {
            let _ = err.write_all(progress.as_bytes());
        }
        let _ = err.flush();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::with_capacity(256))
    }
}

/// Draws `text` as the progress line (replacing the previous one).
fn draw(text: String) {
    let mut line = LINE.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{text}");
    let _ = err.flush();
    *line = Some(text);
}

/// Ends the progress line: the cursor moves to a new line and log lines print plainly again.
pub fn finish() {
    let mut line = LINE.lock().unwrap_or_else(|e| e.into_inner());
    if line.take().is_some() {
        let _ = writeln!(std::io::stderr());
    }
}

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
            draw(status_line(&s, rate));
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
    let mut line = String::new();
    if let Some(snap) = &s.snapshot {
        line.push_str(&format!(
            "snapshot {} | ",
            snapshot_text(snap.rows, snap.estimated_rows, snap.percent(), snap.eta_secs)
        ));
    }
    line.push_str(&format!(
        "rows {} | {} rows/s | {} | freshness {:.2}s",
        thousands(s.rows_out),
        thousands(rows_per_sec as u64),
        last_commit,
        s.last_freshness_ms as f64 / 1000.0
    ));
    if s.rejected > 0 {
        line.push_str(&format!(" | rejected {} (dead-lettered {})", thousands(s.rejected), thousands(s.dead_lettered)));
    }
    line
}

/// An initial copy's progress: `120,000 of ~1,000,000 rows (12%), about 1m 30s left`.
pub fn snapshot_text(rows: u64, estimated: Option<u64>, percent: Option<u64>, eta_secs: Option<u64>) -> String {
    match (estimated, percent) {
        (Some(est), Some(pct)) => {
            let left =
                eta_secs.map_or("time left not known yet".to_string(), |s| format!("about {} left", duration(s)));
            format!("{} of ~{} rows ({pct}%), {left}", thousands(rows), thousands(est))
        }
        (Some(est), None) => format!("{} rows copied (more than the estimate of ~{})", thousands(rows), thousands(est)),
        (None, _) => format!("{} rows copied (no estimate of the table's size)", thousands(rows)),
    }
}

/// `45s`, `12m 05s`, `3h 10m`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
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
    fn snapshot_progress_in_words() {
        assert_eq!(
            snapshot_text(120_000, Some(1_000_000), Some(12), Some(90)),
            "120,000 of ~1,000,000 rows (12%), about 1m 30s left"
        );
        assert_eq!(snapshot_text(5, Some(100), Some(5), None), "5 of ~100 rows (5%), time left not known yet");
        assert_eq!(snapshot_text(150, Some(100), None, None), "150 rows copied (more than the estimate of ~100)");
        assert_eq!(snapshot_text(7, None, None, None), "7 rows copied (no estimate of the table's size)");
        assert_eq!(duration(3 * 3600 + 600 + 5), "3h 10m");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
