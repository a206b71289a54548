//! Streaming from the slot: pgoutput messages decoded into row images, whole transactions
//! at a time.

use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use rtsync_core::{ErrorKind, Op, Position, SyncError, SyncResult};
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::catalog::{ColumnInfo, load_types};
use crate::error::{pg_error, repl_error};
use crate::pgoutput::{self, Message, OldKind, Relation, Tuple, Value};
use crate::position::{Lsn, PgPosition};
use crate::rows::{RowsBuilder, TRUNCATE_OP};
use crate::types::{TypeCatalog, classify};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
/// Inside a transaction the rest of it is already committed and on its way; this long without
/// a message means the connection is dead.
const IN_TRANSACTION_SILENCE: Duration = Duration::from_secs(120);

/// Our table's Relation, mapped onto the emitted columns.
struct RelState {
    id: u32,
    /// Relation column → emitted column.
    map: Vec<usize>,
    /// The key columns' positions in the relation's tuples (to see a key change).
    key: Vec<usize>,
}

/// Why [`StreamReader::fill`] returned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// The builder holds rows to emit.
    Ready,
    /// Nothing arrived before the deadline.
    Idle,
}

pub(crate) struct StreamReader {
    client: ReplicationClient,
    schema: String,
    table: String,
    key_names: Vec<String>,
    rel: Option<RelState>,
    in_txn: bool,
    txn_final_lsn: Lsn,
    txn_commit_ms: i64,
    /// Rows of the open transaction in the builder.
    txn_rows: usize,
    /// End LSN of the last complete transaction received.
    last_commit_end: Lsn,
    /// The position of the last batch emitted (None: none yet in this session), and the
    /// last position the engine said is durable.
    last_batch: Option<PgPosition>,
    acked: Option<PgPosition>,
    max_batch_rows: usize,
}

impl StreamReader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: ReplicationClient,
        schema: &str,
        table: &str,
        key_names: Vec<String>,
        start: Lsn,
        last_batch: Option<PgPosition>,
        acked: Option<PgPosition>,
        max_batch_rows: usize,
    ) -> Self {
        Self {
            client,
            schema: schema.to_string(),
            table: table.to_string(),
            key_names,
            rel: None,
            in_txn: false,
            txn_final_lsn: Lsn::ZERO,
            txn_commit_ms: 0,
            txn_rows: 0,
            last_commit_end: start,
            last_batch,
            acked,
            max_batch_rows,
        }
    }

    /// The position of the batch about to be emitted: the last complete transaction. Rows of
    /// an open transaction in the batch (a huge one, split) do not advance it.
    pub fn take_position(&mut self) -> PgPosition {
        self.txn_rows = 0;
        PgPosition::Streaming { lsn: self.last_commit_end }
    }

    pub fn emitted(&mut self, position: &PgPosition) {
        self.last_batch = Some(position.clone());
    }

    /// The engine committed everything up to `durable`: tell the server (the worker sends
    /// it within a second). Only stream positions reach the slot; snapshot progress does not.
    pub fn ack(&mut self, durable: &PgPosition) {
        match &mut self.acked {
            Some(a) => a.advance(durable),
            None => self.acked = Some(durable.clone()),
        }
        if let PgPosition::Streaming { lsn } = durable {
            self.client.update_applied_lsn((*lsn).into());
        }
    }

    /// Receives until the builder holds a batch worth emitting or `deadline` passes. Returns
    /// at a transaction boundary, except when one transaction alone exceeds the batch size
    /// (so a batch holds at most about twice `max_batch_rows`).
    pub async fn fill(
        &mut self,
        rows: &mut RowsBuilder,
        sql: &Client,
        types: &mut TypeCatalog,
        deadline: Instant,
    ) -> SyncResult<Fill> {
        loop {
            let full =
                if self.in_txn { self.txn_rows >= self.max_batch_rows } else { rows.len() >= self.max_batch_rows };
            if full {
                return Ok(Fill::Ready);
            }
            if !self.in_txn && Instant::now() >= deadline {
                return Ok(if rows.is_empty() { Fill::Idle } else { Fill::Ready });
            }
            let received = if self.in_txn {
                tokio::time::timeout(IN_TRANSACTION_SILENCE, self.client.recv()).await.map_err(|_| {
                    SyncError::transient(format!(
                        "the replication stream was silent for {}s in the middle of transaction {}",
                        IN_TRANSACTION_SILENCE.as_secs(),
                        self.txn_final_lsn
                    ))
                })?
            } else {
                match tokio::time::timeout_at(deadline, self.client.recv()).await {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            };
            let event = received
                .map_err(|e| repl_error(e, "streaming from the replication slot"))?
                .ok_or_else(|| SyncError::transient("the server ended the replication stream"))?;
            self.handle(event, rows, sql, types).await?;
        }
    }

    async fn handle(
        &mut self,
        event: ReplicationEvent,
        rows: &mut RowsBuilder,
        sql: &Client,
        types: &mut TypeCatalog,
    ) -> SyncResult<()> {
        match event {
            ReplicationEvent::Begin { final_lsn, commit_time_micros, .. } => {
                self.in_txn = true;
                self.txn_final_lsn = final_lsn.into();
                self.txn_commit_ms = (commit_time_micros + PG_EPOCH_UNIX_MICROS) / 1000;
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                self.in_txn = false;
                self.txn_rows = 0;
                self.last_commit_end = self.last_commit_end.max(end_lsn.into());
            }
            ReplicationEvent::XLogData { data, .. } => {
                rows.add_bytes(data.len());
                let msg = pgoutput::decode(&data).map_err(|e| {
                    SyncError::with_source(
                        ErrorKind::Internal,
                        format!("decoding the replication stream in transaction {}", self.txn_final_lsn),
                        e,
                    )
                })?;
                let before = rows.len();
                self.apply(msg, rows, sql, types).await?;
                self.txn_rows += rows.len() - before;
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => self.on_keepalive(wal_end.into(), rows),
            // pg_logical_emit_message and stop markers mean nothing to a table mirror.
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// Between transactions, with nothing buffered and every emitted batch acknowledged,
    /// every transaction of our table that commits before the server's WAL end has been
    /// received and made durable: confirm that end so an idle table never holds WAL. This is
    /// what PostgreSQL's own subscriber does when it has no pending transactions. (With no
    /// batch emitted yet there is nothing to lose: a restart without a checkpoint creates a
    /// new slot, one with a checkpoint had nothing of ours between it and the WAL end.)
    fn on_keepalive(&mut self, wal_end: Lsn, rows: &RowsBuilder) {
        let settled = match (&self.last_batch, &self.acked) {
            (None, _) => true,
            (Some(b), Some(a)) => a.covers(b),
            (Some(_), None) => false,
        };
        if !self.in_txn && rows.is_empty() && settled && wal_end > self.last_commit_end {
            self.client.update_applied_lsn(wal_end.into());
        }
    }

    async fn apply(
        &mut self,
        msg: Message<'_>,
        rows: &mut RowsBuilder,
        sql: &Client,
        types: &mut TypeCatalog,
    ) -> SyncResult<()> {
        let ts = Some(self.txn_commit_ms);
        match msg {
            Message::Relation(r) => {
                if r.namespace == self.schema && r.name == self.table {
                    self.on_relation(r, rows, sql, types).await?;
                }
            }
            Message::Insert { rel, new } => {
                if let Some(state) = self.ours(rel) {
                    self.put_tuple(state, new, None, rows)?;
                    rows.finish_row(Op::Create.code(), ts);
                }
            }
            Message::Update { rel, old, new } => {
                if let Some(state) = self.ours(rel) {
                    self.put_update(state, old, new, rows, ts)?;
                }
            }
            Message::Delete { rel, old: (_, old) } => {
                if let Some(state) = self.ours(rel) {
                    self.put_tuple(state, old, None, rows)?;
                    rows.finish_row(Op::Delete.code(), ts);
                }
            }
            Message::Truncate { rels } => {
                if rels.iter().any(|&r| self.rel.as_ref().is_some_and(|s| s.id == r)) {
                    rows.finish_row(TRUNCATE_OP, ts);
                }
            }
            Message::Begin { .. } | Message::Commit { .. } | Message::Ignored(_) => {}
        }
        Ok(())
    }

    /// The Relation state when `rel` is our table.
    fn ours(&self, rel: u32) -> Option<&RelState> {
        self.rel.as_ref().filter(|s| s.id == rel)
    }

    /// Maps the relation's columns onto the emitted ones; a column new to us is added (rows
    /// already buffered get NULL for it), a dropped one stays and gets NULL from now on.
    async fn on_relation(
        &mut self,
        r: Relation,
        rows: &mut RowsBuilder,
        sql: &Client,
        types: &mut TypeCatalog,
    ) -> SyncResult<()> {
        let missing: Vec<u32> = r.columns.iter().map(|c| c.type_oid).filter(|o| !types.contains_key(o)).collect();
        if !missing.is_empty() {
            types.extend(load_types(sql, &missing).await?);
        }
        let mut map = Vec::with_capacity(r.columns.len());
        for c in &r.columns {
            let kind = classify(c.type_oid, c.typmod, types);
            match rows.columns().iter().position(|x| x.name == c.name) {
                Some(i) => {
                    let existing = &rows.columns()[i];
                    if existing.kind.arrow_type() != kind.arrow_type() {
                        return Err(SyncError::source_err(format!(
                            "column {:?} of {}.{} changed type at the source (now emitted as {}, was {}); rtsync cannot change a \
                             target column's type: re-snapshot into a new target table",
                            c.name,
                            self.schema,
                            self.table,
                            kind.arrow_type(),
                            existing.kind.arrow_type()
                        )));
                    }
                    map.push(i);
                }
                None => {
                    let row = sql
                        .query_one("SELECT format_type($1, $2)", &[&c.type_oid, &c.typmod])
                        .await
                        .map_err(|e| pg_error(e, "reading the type of a new column"))?;
                    let info = ColumnInfo {
                        name: c.name.clone(),
                        type_oid: c.type_oid,
                        typmod: c.typmod,
                        type_name: row.get(0),
                        kind,
                    };
                    tracing::info!(table = %format!("{}.{}", self.schema, self.table), column = %c.name, r#type = %info.type_name, "column added at the source");
                    map.push(rows.add_column(info));
                }
            }
        }
        let key = self.key_names.iter().filter_map(|k| r.columns.iter().position(|c| &c.name == k)).collect::<Vec<_>>();
        let key = if key.len() == self.key_names.len() { key } else { Vec::new() };
        self.rel = Some(RelState { id: r.id, map, key });
        Ok(())
    }

    /// Writes a tuple's values into the current row. `old` (a full old image) supplies values
    /// the new tuple marks as unchanged TOAST; without it they are listed as unchanged.
    fn put_tuple(
        &self,
        state: &RelState,
        tuple: Tuple<'_>,
        old: Option<&[Value<'_>]>,
        rows: &mut RowsBuilder,
    ) -> SyncResult<()> {
        if tuple.len() != state.map.len() {
            return Err(SyncError::internal(format!(
                "a change of {}.{} has {} columns, its Relation message {}",
                self.schema,
                self.table,
                tuple.len(),
                state.map.len()
            )));
        }
        for (i, v) in tuple.iter().enumerate() {
            let col = state.map[i];
            let v = match (v, old.and_then(|o| o.get(i))) {
                (Value::Unchanged, Some(Value::Text(t))) => Value::Text(t),
                (v, _) => v,
            };
            match v {
                Value::Null => rows.push_null(col),
                Value::Unchanged => rows.push_unchanged(col),
                Value::Text(t) => {
                    let text = std::str::from_utf8(t).map_err(|_| self.bad_value(rows, col, t, "not UTF-8"))?;
                    rows.push_text(col, text).map_err(|reason| self.bad_value(rows, col, t, reason))?;
                }
                Value::Binary(_) => {
                    return Err(SyncError::internal("the server sent a binary value though text format was requested"));
                }
            }
        }
        Ok(())
    }

    /// An update. One that changes the key is one `'u'` row carrying the old key in the
    /// `__before_<key>` columns (the change-row contract of `rtsync_core::batch`), so that the
    /// sink removes the old row AND carries over the values this update did not send (TOAST
    /// stored out of line, which pgoutput marks unchanged and sends only under the old key).
    fn put_update(
        &self,
        state: &RelState,
        old: Option<(OldKind, Tuple<'_>)>,
        new: Tuple<'_>,
        rows: &mut RowsBuilder,
        ts: Option<i64>,
    ) -> SyncResult<()> {
        let Some((kind, old)) = old else {
            self.put_tuple(state, new, None, rows)?;
            rows.finish_row(Op::Update.code(), ts);
            return Ok(());
        };
        let old_values: Vec<Value<'_>> = old.iter().collect();
        let full = (kind == OldKind::Full).then_some(&old_values[..]);
        let key_changed = !state.key.is_empty() && {
            let new_values: Vec<Value<'_>> = new.iter().collect();
            state.key.iter().any(|&k| match (old_values.get(k), new_values.get(k)) {
                (_, Some(Value::Unchanged)) => false,
                (a, b) => a != b,
            })
        };
        self.put_tuple(state, new, full, rows)?;
        if key_changed {
            for &k in &state.key {
                let col = state.map[k];
                let text = match old_values.get(k) {
                    Some(Value::Text(t)) => {
                        Some(std::str::from_utf8(t).map_err(|_| self.bad_value(rows, col, t, "not UTF-8"))?)
                    }
                    _ => None,
                };
                rows.push_before_text(col, text)
                    .map_err(|reason| self.bad_value(rows, col, text.unwrap_or_default().as_bytes(), reason))?;
            }
        }
        rows.finish_row(Op::Update.code(), ts);
        Ok(())
    }

    fn bad_value(&self, rows: &RowsBuilder, col: usize, raw: &[u8], reason: &str) -> SyncError {
        let c = &rows.columns()[col];
        let shown: String = String::from_utf8_lossy(raw).chars().take(100).collect();
        SyncError::data(format!(
            "{}.{}: column {:?} ({}) value {shown:?} in transaction {} cannot be read: {reason}",
            self.schema, self.table, c.name, c.type_name, self.txn_final_lsn
        ))
    }

    /// Stops the stream cleanly (CopyDone), waiting briefly.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.shutdown()).await;
    }
}
