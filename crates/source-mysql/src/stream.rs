//! The worker task: snapshot, then the binlog connection with its heartbeats, reconnects and
//! catalog refreshes, feeding the [`Decoder`] and handing batches to the source over a
//! bounded channel (the channel is the backpressure: when the engine is slow the worker
//! stops reading and the server's dump thread waits on its socket).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};
use mysql_common::packets::{GnoInterval, Sid, Tag};
use rtsync_core::{ChangeBatch, ErrorKind, SyncError, SyncResult};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::binlog::{Decoder, Step};
use crate::config::{MySqlSourceConfig, OnPurgedBinlog, ResumeBy};
use crate::decode::RowsBuilder;
use crate::error::my_err;
use crate::gtid::{Gtids, uuid_bytes};
use crate::position::{MySqlPosition, SnapshotProgress};
use crate::preflight::ServerInfo;
use crate::schema::{TableSchema, read_table};
use crate::snapshot::{self, ChunkReader};

pub(crate) type BatchSender = mpsc::Sender<SyncResult<ChangeBatch<MySqlPosition>>>;

/// Where the worker begins.
pub(crate) enum Start {
    /// Copy the table (continuing a copy when the position says so), then stream.
    Snapshot(Option<MySqlPosition>),
    /// Stream from this position.
    Stream(MySqlPosition),
    /// No copy: stream from the server's current position.
    Now,
}

pub(crate) struct Worker {
    pub(crate) cfg: Arc<MySqlSourceConfig>,
    pub(crate) opts: Opts,
    pub(crate) info: ServerInfo,
    pub(crate) table: TableSchema,
    pub(crate) server_id: u32,
    pub(crate) tx: BatchSender,
}

/// Why a streaming session ended.
enum End {
    /// The source was closed (the receiver is gone).
    Closed,
    /// The binlog at the position is gone.
    Purged(SyncError),
    Fatal(SyncError),
}

impl From<SyncError> for End {
    fn from(e: SyncError) -> Self {
        End::Fatal(e)
    }
}

impl Worker {
    pub(crate) async fn run(self, start: Start) {
        let tx = self.tx.clone();
        if let Err(e) = self.run_inner(start).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn run_inner(mut self, start: Start) -> SyncResult<()> {
        let mut pos = match start {
            Start::Snapshot(resume) => match self.snapshot(resume, 0).await? {
                Some(p) => p,
                None => return Ok(()),
            },
            Start::Stream(p) => p,
            Start::Now => {
                let mut conn = snapshot::connect(&self.opts, &self.cfg).await?;
                let p = snapshot::current_position(&mut conn, &self.info.flavor, Some(&self.info)).await?;
                let _ = conn.disconnect().await;
                tracing::info!(position = %p, "no snapshot: streaming from the current binlog position");
                // Hand the start over at once: a crash before the first change must not
                // move the start to a later "now".
                if !self.send(self.empty_batch(p.clone())?).await {
                    return Ok(());
                }
                p
            }
        };
        loop {
            match self.stream(pos.clone()).await {
                End::Closed => return Ok(()),
                End::Fatal(e) => return Err(e),
                End::Purged(e) => match self.cfg.on_purged_binlog {
                    OnPurgedBinlog::Fail => return Err(e),
                    OnPurgedBinlog::Resnapshot => {
                        tracing::warn!(error = %e.report(), "the binlog position was purged; copying the table again");
                        self.refresh_table().await?;
                        pos = match self.snapshot(None, pos.generation + 1).await? {
                            Some(p) => p,
                            None => return Ok(()),
                        };
                    }
                },
            }
        }
    }

    /// False when the source is gone.
    async fn send(&self, batch: ChangeBatch<MySqlPosition>) -> bool {
        self.tx.send(Ok(batch)).await.is_ok()
    }

    fn empty_batch(&self, end: MySqlPosition) -> SyncResult<ChangeBatch<MySqlPosition>> {
        let (rows, _, _) = RowsBuilder::new(self.table.columns.clone().into(), 0)?.finish()?;
        Ok(ChangeBatch { rows, end, event_time_ms: None, source_bytes: 0 })
    }

    async fn refresh_table(&mut self) -> SyncResult<()> {
        let mut conn = snapshot::connect(&self.opts, &self.cfg).await?;
        if let Some(t) = read_table(&mut conn, &self.cfg.schema, &self.cfg.table, self.info.flavor.mariadb).await? {
            self.table = t;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// Copies the table (or the rest of it, after `resume`'s last key). Returns the position
    /// to stream from, or None when the source was closed.
    async fn snapshot(&mut self, resume: Option<MySqlPosition>, generation: u32) -> SyncResult<Option<MySqlPosition>> {
        let (conn, consistent_at) = snapshot::begin(&self.cfg, &self.opts, &self.info).await?;
        // A resumed copy keeps the ORIGINAL binlog position: the rows copied before the crash
        // are as of that position, and streaming from it replays everything after it. The new
        // snapshot only reads rows after the last committed key; they are at least as new as
        // the original position, and replaying the binlog over them converges (crate docs).
        let (base, mut progress) = match resume {
            Some(mut p) => {
                let progress = p.snapshot.take().unwrap_or(SnapshotProgress { rows: 0, last_key: None });
                tracing::info!(position = %p, rows = progress.rows, "resuming the snapshot after the last copied key");
                (p, progress)
            }
            None => {
                let mut p = consistent_at;
                p.generation = generation;
                (p, SnapshotProgress { rows: 0, last_key: None })
            }
        };
        let columns: Arc<[_]> = self.table.columns.clone().into();
        let key_idx = self.table.key_indexes()?;
        let chunk = self.cfg.snapshot_chunk_rows;
        let mut reader = ChunkReader::new(conn, &self.cfg, columns.clone(), key_idx).await?;
        if generation > 0 && progress.rows == 0 && progress.last_key.is_none() {
            // Copying again over a target that holds the old copy: rows deleted while the
            // binlog was lost must go too, so the new copy starts with a truncate marker.
            let mut rows = RowsBuilder::new(columns, 1)?;
            rows.push_truncate(None);
            let (batch, _, _) = rows.finish()?;
            let mut end = base.clone();
            end.snapshot = Some(progress.clone());
            if !self.send(ChangeBatch { rows: batch, end, event_time_ms: None, source_bytes: 0 }).await {
                return Ok(None);
            }
        }
        let started = std::time::Instant::now();
        let copied_before = progress.rows;
        loop {
            let (rows, last) = reader.next_chunk(progress.last_key.as_deref(), chunk).await?;
            let n = rows.len();
            if n == 0 {
                break;
            }
            progress.rows += n as u64;
            progress.last_key = last;
            let (batch, bytes) = rows.into_batch()?;
            let mut end = base.clone();
            end.snapshot = Some(progress.clone());
            if !self.send(ChangeBatch { rows: batch, end, event_time_ms: None, source_bytes: bytes }).await {
                return Ok(None);
            }
            if n < chunk {
                break;
            }
        }
        reader.finish().await?;
        let mut done = base;
        done.snapshot = None;
        tracing::info!(
            rows = progress.rows - copied_before,
            secs = started.elapsed().as_secs_f64(),
            position = %done,
            "snapshot copied; streaming from its binlog position"
        );
        if !self.send(self.empty_batch(done.clone())?).await {
            return Ok(None);
        }
        Ok(Some(done))
    }

    /// Streams from `start` until the source closes or an error that reconnecting cannot fix.
    async fn stream(&mut self, start: MySqlPosition) -> End {
        let mut decoder = match Decoder::new(
            &self.cfg.schema,
            &self.cfg.table,
            self.info.case_insensitive_names(),
            self.table.clone(),
            start,
            self.cfg.max_batch_rows,
        ) {
            Ok(d) => d,
            Err(e) => return End::Fatal(e),
        };
        let mut catalog: Option<Conn> = None;
        let reconnect_timeout = Duration::from_secs(self.cfg.reconnect_timeout_secs);
        let mut lost_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(250);
        loop {
            let lost = match self.open_stream(decoder.committed()).await {
                Ok(mut binlog) => {
                    tracing::info!(position = %decoder.committed(), server_id = self.server_id, "streaming the binlog");
                    let outcome =
                        self.pump(&mut decoder, &mut binlog, &mut catalog, &mut lost_since, &mut backoff).await;
                    // Dropping the stream closes its connection; the server ends the dump.
                    drop(binlog);
                    match outcome {
                        Ok(lost) => lost,
                        Err(end) => return end,
                    }
                }
                Err(e) => match classify(e) {
                    Err(end) => return end,
                    Ok(lost) => lost,
                },
            };
            if let Err(e) = decoder.reset_to_committed() {
                return End::Fatal(e);
            }
            while let Some(b) = decoder.pop() {
                if !self.send(b).await {
                    return End::Closed;
                }
            }
            let since = *lost_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= reconnect_timeout {
                return End::Fatal(lost.context_prefix(format!(
                    "the binlog connection to {} stayed lost for {}s",
                    self.cfg.endpoint(),
                    reconnect_timeout.as_secs()
                )));
            }
            tracing::warn!(error = %lost.report(), retry_in_ms = backoff.as_millis() as u64, "binlog connection lost; reconnecting");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn open_stream(&self, pos: &MySqlPosition) -> SyncResult<BinlogStream> {
        let mut conn = snapshot::connect(&self.opts, &self.cfg).await?;
        let doing = |what: &str| format!("preparing the binlog connection ({what})");
        let hb_ns = self.cfg.heartbeat_secs * 1_000_000_000;
        conn.query_drop(format!("SET @master_heartbeat_period = {hb_ns}"))
            .await
            .map_err(|e| my_err(doing("heartbeat"), e))?;
        if self.info.flavor.mariadb {
            // 4 = MARIA_SLAVE_CAPABILITY_GTID: send GTID events (and binlog checkpoints) as is.
            conn.query_drop("SET @mariadb_slave_capability = 4").await.map_err(|e| my_err(doing("capability"), e))?;
        }
        let use_gtid = match self.cfg.resume_by {
            ResumeBy::FilePosition => false,
            ResumeBy::Auto => !pos.gtids.is_empty() && self.info.gtid_enabled(),
            ResumeBy::Gtid => {
                if pos.gtids.is_empty() {
                    return Err(SyncError::config(format!(
                        "source.resume_by = \"gtid\" but the position {pos} carries no GTIDs (gtid_mode off?); use \"auto\""
                    )));
                }
                true
            }
        };
        let mut request = BinlogStreamRequest::new(self.server_id);
        let sids: Vec<Sid<'static>>;
        let file = pos.file.clone().into_bytes();
        match (&pos.gtids, use_gtid) {
            (Gtids::MariaDb(list), true) => {
                // MariaDB resumes by GTID through session variables, with an empty file name.
                conn.exec_drop(
                    "SET @slave_connect_state = ?, @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0",
                    (list.to_string(),),
                )
                .await
                .map_err(|e| my_err(doing("GTID connect state"), e))?;
                request = request.with_pos(4u64);
            }
            (Gtids::MySql(set), true) => {
                sids = set
                    .iter()
                    .filter_map(|(uuid, tag, intervals)| {
                        let mut sid = Sid::new(uuid_bytes(uuid)?)
                            .with_intervals(intervals.iter().map(|&(s, e)| GnoInterval::new(s, e)).collect());
                        if let Some(tag) = tag {
                            sid = sid.with_tag(Tag::new(tag.to_owned()).ok()?);
                        }
                        Some(sid)
                    })
                    .collect();
                request = request.with_gtid().with_gtid_set(sids).with_pos(4u64);
            }
            _ => request = request.with_filename(&file).with_pos(pos.pos),
        }
        conn.get_binlog_stream(request).await.map_err(|e| my_err(format!("requesting the binlog from {pos}"), e))
    }

    /// Reads events until the connection is lost (Ok, with why) or the session must end.
    async fn pump(
        &self,
        decoder: &mut Decoder,
        binlog: &mut BinlogStream,
        catalog: &mut Option<Conn>,
        lost_since: &mut Option<Instant>,
        backoff: &mut Duration,
    ) -> Result<SyncError, End> {
        let silence = Duration::from_secs(self.cfg.heartbeat_secs * 3 + 5);
        let linger = Duration::from_millis(self.cfg.linger_ms);
        let idle = Duration::from_secs(self.cfg.idle_position_secs.max(1));
        let mut last_event = Instant::now();
        let mut last_emit = Instant::now();
        let mut linger_from: Option<Instant> = None;
        loop {
            while let Some(b) = decoder.pop() {
                if !self.send(b).await {
                    return Err(End::Closed);
                }
                last_emit = Instant::now();
            }
            if decoder.has_committed_rows() {
                linger_from.get_or_insert_with(Instant::now);
            } else {
                linger_from = None;
            }
            let mut deadline = (last_event + silence).min(last_emit + idle);
            if let Some(l) = linger_from {
                deadline = deadline.min(l + linger);
            }
            match tokio::time::timeout_at(deadline, binlog.next()).await {
                Err(_) => {
                    let now = Instant::now();
                    if linger_from.is_some_and(|l| now >= l + linger) {
                        decoder.flush()?;
                    }
                    if now >= last_emit + idle {
                        decoder.position_only()?;
                        last_emit = now;
                    }
                    if now >= last_event + silence {
                        return Ok(SyncError::transient(format!(
                            "no binlog event or heartbeat from {} for {}s",
                            self.cfg.endpoint(),
                            silence.as_secs()
                        )));
                    }
                }
                Ok(None) => {
                    return Ok(SyncError::transient(format!("{} ended the binlog stream", self.cfg.endpoint())));
                }
                Ok(Some(Err(e))) => {
                    return classify(my_err(format!("reading the binlog from {}", decoder.committed()), e));
                }
                Ok(Some(Ok(event))) => {
                    last_event = Instant::now();
                    // A healthy stream resets the reconnect budget.
                    *lost_since = None;
                    *backoff = Duration::from_millis(250);
                    while decoder.handle(&event)? == Step::NeedCatalog {
                        self.refresh_catalog(decoder, catalog).await?;
                    }
                    if decoder.wants_catalog() {
                        self.refresh_catalog(decoder, catalog).await?;
                    }
                }
            }
        }
    }

    async fn refresh_catalog(&self, decoder: &mut Decoder, catalog: &mut Option<Conn>) -> SyncResult<()> {
        if catalog.is_none() {
            *catalog = Some(snapshot::connect(&self.opts, &self.cfg).await?);
        }
        let Some(conn) = catalog.as_mut() else { return Ok(()) };
        let table = match read_table(conn, &self.cfg.schema, &self.cfg.table, self.info.flavor.mariadb).await {
            Ok(t) => t,
            Err(e) => {
                *catalog = None;
                return Err(e);
            }
        };
        match table {
            Some(t) => decoder.set_catalog(t),
            None => {
                tracing::warn!(
                    "the table is gone from information_schema; decoding with the binlog's own column metadata"
                );
                decoder.set_catalog(self.table.clone());
            }
        }
        Ok(())
    }
}

/// Sorts a failed request into "reconnect" (Ok) and "stop" (Err).
fn classify(e: SyncError) -> Result<SyncError, End> {
    if e.kind() == ErrorKind::Transient {
        return Ok(e);
    }
    let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
    let server_1236 = std::error::Error::source(&e)
        .and_then(|c| c.downcast_ref::<mysql_async::Error>())
        .and_then(crate::error::server_code)
        == Some(1236);
    if server_1236 {
        let lower = cause.to_ascii_lowercase();
        if lower.contains("purged")
            || lower.contains("could not find first log file")
            || lower.contains("could not find gtid state")
            || lower.contains("not in the master's binlog")
        {
            return Err(End::Purged(SyncError::new(
                ErrorKind::Source,
                format!(
                    "{}: the server no longer has the binlog at this position ({cause}); set source.on_purged_binlog = \"resnapshot\" to copy the table again, \
                     and keep binlogs longer (binlog_expire_logs_seconds) than a task may be stopped",
                    e.context()
                ),
            )));
        }
        if lower.contains("server_id") || lower.contains("server_uuid") {
            return Err(End::Fatal(SyncError::new(
                ErrorKind::Source,
                format!(
                    "{}: another replica uses this task's server id ({cause}); set source.server_id or source.server_id_range",
                    e.context()
                ),
            )));
        }
    }
    Err(End::Fatal(e))
}
