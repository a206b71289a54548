//! The binlog event state machine: events in, whole transactions of one table out as
//! [`ChangeBatch`]es. It does no I/O (the stream module feeds it), so it is tested with
//! captured and constructed events.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::Arc;

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{
    BinlogEventHeader, Event, GtidEvent, OptionalMetaExtractor, OptionalMetadataField, TableMapEvent,
    TransactionPayloadEvent,
};
use mysql_common::collations::{Collation, CollationId};
use mysql_common::constants::ColumnType;
use mysql_common::proto::MySerialize;
use rtsync_core::{ChangeBatch, ErrorKind, Op, SyncError, SyncResult};

use crate::decode::{RowsBuilder, Wire, image_spans, string_max_len};
use crate::gtid::{Gtids, MariaGtid, MySqlGtidSet, uuid_text};
use crate::position::MySqlPosition;
use crate::schema::{Charset, ColumnKind, ColumnSpec, TableSchema, key_indexes};

// MariaDB event types (mysql_common knows only MySQL's).
const MARIA_ANNOTATE_ROWS: u8 = 160;
const MARIA_BINLOG_CHECKPOINT: u8 = 161;
const MARIA_GTID: u8 = 162;
const MARIA_GTID_LIST: u8 = 163;
const MARIA_START_ENCRYPTION: u8 = 164;
const MARIA_QUERY_COMPRESSED: u8 = 165;
const MARIA_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
const MARIA_DELETE_ROWS_COMPRESSED: u8 = 171;
/// MariaDB GTID flag: a statement without BEGIN/COMMIT (DDL).
const MARIA_FL_STANDALONE: u8 = 1;
/// MariaDB GTID flag: a commit id follows.
const MARIA_FL_GROUP_COMMIT_ID: u8 = 2;
/// A batch is handed over at the next transaction boundary past this many bytes of values.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// Header flag of events the server made up (fake rotate, MariaDB's fake GTID list).
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;

/// What the caller must do after an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    /// Re-read the table's columns (information_schema), [`Decoder::set_catalog`], then hand
    /// the same event to [`Decoder::handle`] again.
    NeedCatalog,
}

/// How one TABLE_MAP of our table is decoded.
struct Plan {
    /// The TABLE_MAP body: an identical one reuses the plan.
    table_map: Vec<u8>,
    columns: Arc<[ColumnSpec]>,
    wires: Vec<Wire>,
    key_idx: Vec<usize>,
}

enum Pending {
    MySql(String, u64),
    Maria(MariaGtid),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RowsKind {
    Write,
    Update,
    Delete,
}

pub(crate) struct Decoder {
    schema: String,
    table: String,
    case_insensitive: bool,
    /// Everything before this is in emitted or buffered rows; the next event group starts here.
    committed: MySqlPosition,
    /// The binlog file the server is sending.
    file: String,
    pending_gtid: Option<Pending>,
    in_txn: bool,
    /// Commit time of the current transaction (ms) when the GTID event gives it.
    txn_time_ms: Option<i64>,
    /// Inside a MySQL TRANSACTION_PAYLOAD: its end position.
    payload_end: Option<u64>,
    seen_fde: bool,
    plans: HashMap<u64, Plan>,
    catalog: TableSchema,
    /// The catalog was read since the last TABLE_MAP that did not fit it.
    catalog_fresh: bool,
    /// A DDL on our table asks for a catalog refresh.
    catalog_stale: bool,
    rows: RowsBuilder,
    /// Rows in `rows` that belong to finished transactions.
    committed_rows: usize,
    max_batch_rows: usize,
    out: VecDeque<ChangeBatch<MySqlPosition>>,
    last_emitted: Option<MySqlPosition>,
    unknown_types_seen: Vec<u8>,
}

impl Decoder {
    pub(crate) fn new(
        schema: &str,
        table: &str,
        case_insensitive: bool,
        catalog: TableSchema,
        start: MySqlPosition,
        max_batch_rows: usize,
    ) -> SyncResult<Self> {
        let rows = RowsBuilder::new(catalog.columns.clone().into(), max_batch_rows.min(64 * 1024))?;
        Ok(Self {
            schema: schema.to_owned(),
            table: table.to_owned(),
            case_insensitive,
            file: start.file.clone(),
            committed: start,
            pending_gtid: None,
            in_txn: false,
            txn_time_ms: None,
            payload_end: None,
            seen_fde: false,
            plans: HashMap::new(),
            catalog,
            catalog_fresh: true,
            catalog_stale: false,
            rows,
            committed_rows: 0,
            max_batch_rows,
            out: VecDeque::new(),
            last_emitted: None,
            unknown_types_seen: Vec::new(),
        })
    }

    /// The end of the last whole transaction read.
    pub(crate) fn committed(&self) -> &MySqlPosition {
        &self.committed
    }

    pub(crate) fn pop(&mut self) -> Option<ChangeBatch<MySqlPosition>> {
        self.out.pop_front()
    }

    pub(crate) fn wants_catalog(&self) -> bool {
        self.catalog_stale
    }

    pub(crate) fn set_catalog(&mut self, catalog: TableSchema) {
        self.catalog = catalog;
        self.catalog_fresh = true;
        self.catalog_stale = false;
    }

    /// Rows of finished transactions are waiting.
    pub(crate) fn has_committed_rows(&self) -> bool {
        self.committed_rows > 0
    }

    /// Hands over buffered rows if they are all committed (never half a transaction).
    pub(crate) fn flush(&mut self) -> SyncResult<()> {
        if !self.rows.is_empty() && self.rows.len() == self.committed_rows {
            self.emit(self.committed.clone())?;
        }
        Ok(())
    }

    /// An empty batch carrying the committed position, when it moved since the last batch and
    /// nothing is buffered: keeps an idle task's checkpoint near the binlog head.
    pub(crate) fn position_only(&mut self) -> SyncResult<()> {
        if self.rows.is_empty() && self.last_emitted.as_ref() != Some(&self.committed) {
            self.emit(self.committed.clone())?;
        }
        Ok(())
    }

    /// The connection was lost: forget the open transaction (it is read again from the
    /// committed position), keep and hand over what was committed.
    pub(crate) fn reset_to_committed(&mut self) -> SyncResult<()> {
        if self.rows.len() > self.committed_rows {
            let keep = self.committed_rows;
            let end = self.committed.clone();
            let (batch, times, bytes) = self.rows.finish()?;
            if keep > 0 {
                let times = times.map(|t| t.slice(0, keep));
                self.push_out(ChangeBatch {
                    rows: batch.slice(0, keep),
                    end,
                    event_time_ms: times,
                    source_bytes: bytes,
                });
            }
        }
        self.committed_rows = self.rows.len();
        self.in_txn = false;
        self.pending_gtid = None;
        self.txn_time_ms = None;
        self.payload_end = None;
        self.seen_fde = false;
        self.file = self.committed.file.clone();
        // Table ids are per server lifetime: after a reconnect (maybe to a restarted server)
        // every TABLE_MAP is new.
        self.plans.clear();
        Ok(())
    }

    fn push_out(&mut self, batch: ChangeBatch<MySqlPosition>) {
        self.last_emitted = Some(batch.end.clone());
        self.out.push_back(batch);
    }

    fn emit(&mut self, end: MySqlPosition) -> SyncResult<()> {
        let (rows, times, bytes) = self.rows.finish()?;
        self.committed_rows = 0;
        self.push_out(ChangeBatch { rows, end, event_time_ms: times, source_bytes: bytes });
        Ok(())
    }

    fn end_group(&mut self, end_pos: u64) -> SyncResult<()> {
        let end_pos = self.payload_end.take().unwrap_or(end_pos);
        match self.pending_gtid.take() {
            Some(Pending::MySql(source, gno)) => {
                if let Gtids::MySql(set) = &mut self.committed.gtids {
                    set.add(&source, gno);
                } else {
                    let mut set = MySqlGtidSet::default();
                    set.add(&source, gno);
                    self.committed.gtids = Gtids::MySql(set);
                }
            }
            Some(Pending::Maria(g)) => {
                if let Gtids::MariaDb(list) = &mut self.committed.gtids {
                    list.add(g);
                } else {
                    let mut list = crate::gtid::MariaGtidList::default();
                    list.add(g);
                    self.committed.gtids = Gtids::MariaDb(list);
                }
            }
            None => {}
        }
        if end_pos != 0 {
            self.committed.file = self.file.clone();
            self.committed.pos = end_pos;
        }
        self.in_txn = false;
        self.txn_time_ms = None;
        self.committed_rows = self.rows.len();
        if self.rows.len() >= self.max_batch_rows || self.rows.approx_bytes() >= MAX_BATCH_BYTES {
            self.emit(self.committed.clone())?;
        }
        Ok(())
    }

    /// Handles one event from the stream.
    pub(crate) fn handle(&mut self, event: &Event) -> SyncResult<Step> {
        let header = event.header();
        let ty = header.event_type_raw();
        if self.payload_end.is_some() && !allowed_in_payload(ty) {
            return Err(SyncError::source_err(format!(
                "a compressed transaction (TRANSACTION_PAYLOAD ending at {}:{}) was not fully decoded before a {} event; \
                 the client could not decompress it — refusing to skip it (set binlog_transaction_compression=OFF to avoid compression)",
                self.file,
                self.payload_end.unwrap_or_default(),
                event_name(ty)
            )));
        }
        match ty {
            t if t == EventType::FORMAT_DESCRIPTION_EVENT as u8 => self.seen_fde = true,
            t if t == EventType::ROTATE_EVENT as u8 => self.on_rotate(event)?,
            t if t == EventType::QUERY_EVENT as u8 || t == MARIA_QUERY_COMPRESSED => return self.on_query(event),
            t if t == EventType::XID_EVENT as u8 || t == EventType::XA_PREPARE_LOG_EVENT as u8 => {
                self.end_group(u64::from(header.log_pos()))?
            }
            t if t == EventType::GTID_EVENT as u8 || t == EventType::GTID_TAGGED_LOG_EVENT as u8 => {
                let g: GtidEvent = event.read_event().map_err(|e| bad_event("GTID", e))?;
                let mut source = uuid_text(&g.sid());
                if let Some(tag) = g.tag() {
                    source = format!("{source}:{}", tag.as_str().to_ascii_lowercase());
                }
                self.pending_gtid = Some(Pending::MySql(source, g.gno()));
                let ts = g.immediate_commit_timestamp();
                self.txn_time_ms = (ts > 0).then_some((ts / 1000) as i64);
            }
            t if t == EventType::ANONYMOUS_GTID_EVENT as u8 => {
                self.pending_gtid = None;
                self.txn_time_ms = None;
            }
            MARIA_GTID => self.on_maria_gtid(event)?,
            t if t == EventType::TABLE_MAP_EVENT as u8 => return self.on_table_map(event),
            t if is_rows_event(t) => self.on_rows(event)?,
            t if t == EventType::PARTIAL_UPDATE_ROWS_EVENT as u8 => {
                if self.plans.contains_key(&rows_table_id(event.data())?) {
                    return Err(SyncError::source_err(
                        "the server logs partial JSON updates (binlog_row_value_options=PARTIAL_JSON) for the table; run SET GLOBAL binlog_row_value_options = ''",
                    ));
                }
            }
            t if t == EventType::TRANSACTION_PAYLOAD_EVENT as u8 => {
                let p: TransactionPayloadEvent = event.read_event().map_err(|e| bad_event("TRANSACTION_PAYLOAD", e))?;
                tracing::trace!(uncompressed = p.uncompressed_size(), "compressed transaction");
                // The client library yields the decompressed events next; the group they hold
                // ends at the end of this event.
                self.payload_end = Some(u64::from(header.log_pos()));
            }
            t if t == EventType::INCIDENT_EVENT as u8 => {
                return Err(SyncError::source_err(format!(
                    "the server logged an INCIDENT at {}:{} (changes may be missing from the binlog); the table must be copied again",
                    self.file,
                    header.log_pos()
                )));
            }
            t if t == EventType::HEARTBEAT_EVENT as u8
                || t == EventType::STOP_EVENT as u8
                || t == EventType::PREVIOUS_GTIDS_EVENT as u8
                || t == EventType::ROWS_QUERY_EVENT as u8
                || t == EventType::INTVAR_EVENT as u8
                || t == EventType::RAND_EVENT as u8
                || t == EventType::USER_VAR_EVENT as u8
                || t == EventType::IGNORABLE_EVENT as u8
                || t == EventType::TRANSACTION_CONTEXT_EVENT as u8
                || t == EventType::VIEW_CHANGE_EVENT as u8
                || t == MARIA_ANNOTATE_ROWS
                || t == MARIA_BINLOG_CHECKPOINT
                || t == MARIA_GTID_LIST
                || t == MARIA_START_ENCRYPTION => {}
            other => {
                if !self.unknown_types_seen.contains(&other) {
                    self.unknown_types_seen.push(other);
                    tracing::warn!(event_type = other, "skipping binlog events of an unknown type");
                }
            }
        }
        Ok(Step::Continue)
    }

    fn on_rotate(&mut self, event: &Event) -> SyncResult<()> {
        let data = event.data();
        if data.len() < 8 {
            return Err(bad_event("ROTATE", std::io::Error::other("too short")));
        }
        let pos = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
        let mut name = &data[8..];
        // Before the FORMAT_DESCRIPTION the reader does not know that events carry a CRC32,
        // so the first (fake) ROTATE's name may end with its checksum.
        if !self.seen_fde && name.len() > 4 && crc_matches(&event.header(), data) {
            name = &name[..name.len() - 4];
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let header = event.header();
        let fake = header.log_pos() == 0 || header.flags_raw() & LOG_EVENT_ARTIFICIAL_F != 0;
        tracing::debug!(file = %name, pos, fake, "binlog rotate");
        self.file = name;
        if !fake && !self.in_txn {
            // A real rotate ends the old file: the position moves to the new one.
            self.committed.file = self.file.clone();
            self.committed.pos = pos;
        }
        Ok(())
    }

    fn on_maria_gtid(&mut self, event: &Event) -> SyncResult<()> {
        let d = event.data();
        if d.len() < 13 {
            return Err(bad_event("MariaDB GTID", std::io::Error::other("too short")));
        }
        let seq = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
        let domain = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
        let flags = d[12];
        let _ = flags & MARIA_FL_GROUP_COMMIT_ID;
        self.pending_gtid = Some(Pending::Maria(MariaGtid { domain, server: event.header().server_id(), seq }));
        self.txn_time_ms = Some(i64::from(event.header().timestamp()) * 1000);
        // Without FL_STANDALONE the group is a transaction that ends with XID or COMMIT;
        // MariaDB writes no BEGIN after its GTID event.
        self.in_txn = flags & MARIA_FL_STANDALONE == 0;
        Ok(())
    }

    fn on_query(&mut self, event: &Event) -> SyncResult<Step> {
        let header = event.header();
        let (db, query) = parse_query(event.data(), header.event_type_raw() == MARIA_QUERY_COMPRESSED)?;
        let q = strip_comments(&query);
        let upper: String = q.chars().take(24).collect::<String>().to_ascii_uppercase();
        let first = upper.split_whitespace().next().unwrap_or("");
        if upper == "BEGIN"
            || upper.starts_with("BEGIN ")
            || upper.starts_with("START TRANSACTION")
            || upper.starts_with("XA START")
        {
            self.in_txn = true;
            return Ok(Step::Continue);
        }
        if upper.starts_with("XA END") {
            return Ok(Step::Continue);
        }
        if first == "COMMIT"
            || first == "ROLLBACK"
            || upper.starts_with("XA COMMIT")
            || upper.starts_with("XA ROLLBACK")
            || upper.starts_with("XA PREPARE")
        {
            // A ROLLBACK in the binlog closes a group whose non-transactional changes stay.
            self.end_group(u64::from(header.log_pos()))?;
            return Ok(Step::Continue);
        }
        if self.mentions_our_table(&q, &db) {
            let at = format!("{}:{}", self.file, header.log_pos());
            match first {
                "ALTER" | "CREATE" => {
                    tracing::info!(query = %q, at = %at, "DDL on the table; re-reading its columns");
                    self.catalog_stale = true;
                    self.catalog_fresh = false;
                }
                "TRUNCATE" => {
                    // No row events follow a TRUNCATE: hand the sink a truncate marker.
                    tracing::info!(at = %at, "TRUNCATE of the table");
                    self.rows.push_truncate(Some(i64::from(header.timestamp()) * 1000));
                }
                "DROP" | "RENAME" => {
                    return Err(SyncError::source_err(format!(
                        "{}.{} was dropped or renamed at {at} ({q:.120}); the task cannot follow it",
                        self.schema, self.table
                    )));
                }
                "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" => {
                    return Err(SyncError::source_err(format!(
                        "a change to {}.{} at {at} was logged as a statement, not as rows; every session must use binlog_format=ROW",
                        self.schema, self.table
                    )));
                }
                _ => {}
            }
        }
        if !self.in_txn {
            // A statement outside BEGIN…COMMIT (DDL) is a group of its own.
            self.end_group(u64::from(header.log_pos()))?;
        }
        Ok(Step::Continue)
    }

    /// Does `sql` (run with default database `db`) name our table?
    fn mentions_our_table(&self, sql: &str, db: &str) -> bool {
        let eq = |a: &str, b: &str| if self.case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b };
        identifiers(sql).iter().any(|parts| match parts.as_slice() {
            [t] => eq(db, &self.schema) && eq(t, &self.table),
            [d, t] => eq(d, &self.schema) && eq(t, &self.table),
            _ => false,
        })
    }

    fn is_our_table(&self, db: &[u8], table: &[u8]) -> bool {
        if self.case_insensitive {
            db.eq_ignore_ascii_case(self.schema.as_bytes()) && table.eq_ignore_ascii_case(self.table.as_bytes())
        } else {
            db == self.schema.as_bytes() && table == self.table.as_bytes()
        }
    }

    fn on_table_map(&mut self, event: &Event) -> SyncResult<Step> {
        let data = event.data();
        let Some((table_id, db, table)) = table_map_names(data) else {
            return Err(bad_event("TABLE_MAP", std::io::Error::other("too short")));
        };
        if !self.is_our_table(db, table) {
            return Ok(Step::Continue);
        }
        if self.plans.get(&table_id).is_some_and(|p| p.table_map == data) {
            return self.use_plan(table_id).map(|()| Step::Continue);
        }
        let tme: TableMapEvent = event.read_event().map_err(|e| bad_event("TABLE_MAP", e))?;
        let plan = match self.build_plan(&tme, data) {
            Ok(plan) => plan,
            Err(PlanError::Mismatch(why)) if !self.catalog_fresh => {
                tracing::info!(why = %why, "the binlog's table layout differs from the catalog; re-reading the columns");
                self.catalog_stale = true;
                return Ok(Step::NeedCatalog);
            }
            Err(PlanError::Mismatch(why)) => {
                return Err(SyncError::source_err(format!(
                    "the binlog's layout of {}.{} at {}:{} does not match the table's columns ({why}); \
                     set binlog_row_metadata=FULL so events name their columns",
                    self.schema,
                    self.table,
                    self.file,
                    event.header().log_pos()
                )));
            }
            Err(PlanError::Fatal(e)) => return Err(e),
        };
        self.plans.insert(table_id, plan);
        self.use_plan(table_id)?;
        Ok(Step::Continue)
    }

    /// Switches the row builder to the plan's columns when they changed (a schema change).
    fn use_plan(&mut self, table_id: u64) -> SyncResult<()> {
        let Some(plan) = self.plans.get(&table_id) else { return Ok(()) };
        if plan.columns[..] == self.rows.columns[..] {
            return Ok(());
        }
        let columns = plan.columns.clone();
        if self.rows.len() > self.committed_rows {
            return Err(SyncError::source_err(format!(
                "the columns of {}.{} changed in the middle of a transaction at {}; cannot decode it",
                self.schema, self.table, self.file
            )));
        }
        if !self.rows.is_empty() {
            self.emit(self.committed.clone())?;
        }
        tracing::info!(
            columns = %columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
            "the table's columns changed; following batches carry the new schema"
        );
        self.rows = RowsBuilder::new(columns, self.max_batch_rows.min(64 * 1024))?;
        self.committed_rows = 0;
        Ok(())
    }

    fn build_plan(&self, tme: &TableMapEvent<'_>, raw: &[u8]) -> Result<Plan, PlanError> {
        let n = tme.columns_count() as usize;
        let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
            .map_err(|e| PlanError::Fatal(bad_event("TABLE_MAP metadata", e)))?;
        let names: Vec<String> =
            meta.iter_column_name().filter_map(Result::ok).map(|c| c.name().into_owned()).collect();
        let names = (names.len() == n).then_some(names);
        let mut enums: Vec<Vec<String>> = Vec::new();
        let mut sets: Vec<Vec<String>> = Vec::new();
        for field in tme.iter_optional_meta() {
            match field {
                Ok(OptionalMetadataField::EnumStrValue(v)) => {
                    for e in v.iter_values().flatten() {
                        enums.push(e.values().iter().map(|s| s.value().into_owned()).collect());
                    }
                }
                Ok(OptionalMetadataField::SetStrValue(v)) => {
                    for s in v.iter_values().flatten() {
                        sets.push(s.values().iter().map(|x| x.value().into_owned()).collect());
                    }
                }
                _ => {}
            }
        }
        let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
        let mut signedness = meta.iter_signedness();
        let mut charsets = meta.iter_charset();
        let mut enum_charsets = meta.iter_enum_and_set_charset();
        let catalog_by_position = names.is_none() && self.catalog.columns.len() == n;
        let mut columns = Vec::with_capacity(n);
        let mut wires = Vec::with_capacity(n);
        for i in 0..n {
            let ty = tme
                .get_column_type(i)
                .map_err(|e| {
                    PlanError::Fatal(SyncError::with_source(ErrorKind::Source, "a TABLE_MAP column type is unknown", e))
                })?
                .ok_or_else(|| PlanError::Fatal(SyncError::source_err("a TABLE_MAP lacks a column type")))?;
            let col_meta = tme.get_column_metadata(i).unwrap_or(&[]);
            let wire =
                Wire::from_table_map(ty, col_meta).map_err(|why| PlanError::Fatal(SyncError::source_err(why)))?;
            let unsigned = if ty.is_numeric_type() { signedness.next().unwrap_or(false) } else { false };
            let charset_id = if ty.is_character_type() {
                charsets.next().and_then(Result::ok)
            } else if ty.is_enum_or_set_type() {
                enum_charsets.next().and_then(Result::ok)
            } else {
                None
            };
            let tm_enum = if ty == ColumnType::MYSQL_TYPE_ENUM { enums.next() } else { None };
            let tm_set = if ty == ColumnType::MYSQL_TYPE_SET { sets.next() } else { None };
            let (name, catalog_kind) = match &names {
                Some(names) => (names[i].clone(), self.catalog.column(&names[i]).map(|c| c.kind.clone())),
                None if catalog_by_position => {
                    (self.catalog.columns[i].name.clone(), Some(self.catalog.columns[i].kind.clone()))
                }
                None => {
                    return Err(PlanError::Mismatch(format!(
                        "the event has {n} columns, the catalog {}",
                        self.catalog.columns.len()
                    )));
                }
            };
            let kind = match catalog_kind.filter(|k| wire.fits(k)) {
                Some(mut k) => {
                    // The event's own member lists describe its rows exactly.
                    match (&mut k, tm_enum, tm_set) {
                        (ColumnKind::Enum { names }, Some(e), _) => *names = e.into(),
                        (ColumnKind::Set { names }, _, Some(s)) => *names = s.into(),
                        _ => {}
                    }
                    k
                }
                None if names.is_some() => kind_from_wire(ty, col_meta, unsigned, charset_id, tm_enum, tm_set)
                    .ok_or_else(|| PlanError::Mismatch(format!("column {name:?} has no member list in the event")))?,
                None => return Err(PlanError::Mismatch(format!("column {name:?} has another type in the catalog"))),
            };
            columns.push(ColumnSpec { name, kind });
            wires.push(wire);
        }
        let key_idx = key_indexes(&columns, &self.catalog.primary_key).map_err(|_| {
            PlanError::Mismatch(format!(
                "the primary key ({}) is not among the event's columns",
                self.catalog.primary_key.join(", ")
            ))
        })?;
        Ok(Plan { table_map: raw.to_vec(), columns: columns.into(), wires, key_idx })
    }

    fn on_rows(&mut self, event: &Event) -> SyncResult<()> {
        let header = event.header();
        let ty = header.event_type_raw();
        let parsed = parse_rows(ty, event.data())?;
        let Some(plan) = self.plans.get(&parsed.table_id) else { return Ok(()) };
        if parsed.ncols != plan.wires.len() {
            return Err(SyncError::source_err(format!(
                "a rows event of {}.{} has {} columns but its TABLE_MAP {}",
                self.schema,
                self.table,
                parsed.ncols,
                plan.wires.len()
            )));
        }
        let rows = parsed.rows()?;
        let time = Some(self.txn_time_ms.unwrap_or(i64::from(header.timestamp()) * 1000));
        let wires = &plan.wires;
        let key_idx = &plan.key_idx;
        let at = |e: SyncError| {
            e.context_prefix(format!(
                "decoding a row of {}.{} at {}:{}",
                self.schema,
                self.table,
                self.file,
                header.log_pos()
            ))
        };
        let mut off = 0usize;
        while off < rows.len() {
            let rest = &rows[off..];
            match parsed.kind {
                RowsKind::Write => {
                    off += self.rows.push_image(wires, parsed.after, rest, Op::Create, time).map_err(at)?
                }
                RowsKind::Delete => {
                    off += self.rows.push_image(wires, parsed.before, rest, Op::Delete, time).map_err(at)?
                }
                RowsKind::Update => {
                    let (before_keys, before_len) = image_spans(wires, parsed.before, rest, key_idx).map_err(at)?;
                    let after = &rest[before_len..];
                    let (after_keys, after_len) = image_spans(wires, parsed.after, after, key_idx).map_err(at)?;
                    let same_key = before_keys.iter().zip(&after_keys).all(|(b, a)| match (b, a) {
                        (Some((bs, be)), Some((as_, ae))) => rest[*bs..*be] == after[*as_..*ae],
                        (None, None) => true,
                        _ => false,
                    });
                    if same_key {
                        self.rows.push_image(wires, parsed.after, after, Op::Update, time).map_err(at)?;
                    } else {
                        // A changed key: the old row goes, the new one comes.
                        self.rows.push_image(wires, parsed.before, rest, Op::Delete, time).map_err(at)?;
                        self.rows.push_image(wires, parsed.after, after, Op::Create, time).map_err(at)?;
                    }
                    off += before_len + after_len;
                }
            }
        }
        // A huge transaction is handed over in parts; each part ends at the position BEFORE
        // the transaction, so a restart replays it whole (idempotent under upserts).
        if self.in_txn
            && (self.rows.len() >= self.max_batch_rows.saturating_mul(2)
                || self.rows.approx_bytes() >= 2 * MAX_BATCH_BYTES)
        {
            self.emit(self.committed.clone())?;
        }
        Ok(())
    }
}

enum PlanError {
    /// The catalog describes another version of the table than the event.
    Mismatch(String),
    Fatal(SyncError),
}

fn bad_event(what: &str, e: std::io::Error) -> SyncError {
    SyncError::with_source(ErrorKind::Source, format!("undecodable {what} event in the binlog"), e)
}

fn event_name(ty: u8) -> String {
    EventType::try_from(ty).map(|t| format!("{t:?}")).unwrap_or_else(|_| format!("type {ty}"))
}

/// Events that may sit inside a MySQL TRANSACTION_PAYLOAD.
fn allowed_in_payload(ty: u8) -> bool {
    use EventType as E;
    [
        E::QUERY_EVENT,
        E::TABLE_MAP_EVENT,
        E::WRITE_ROWS_EVENT,
        E::UPDATE_ROWS_EVENT,
        E::DELETE_ROWS_EVENT,
        E::WRITE_ROWS_EVENT_V1,
        E::UPDATE_ROWS_EVENT_V1,
        E::DELETE_ROWS_EVENT_V1,
        E::PARTIAL_UPDATE_ROWS_EVENT,
        E::XID_EVENT,
        E::XA_PREPARE_LOG_EVENT,
        E::ROWS_QUERY_EVENT,
        E::INTVAR_EVENT,
        E::RAND_EVENT,
        E::USER_VAR_EVENT,
    ]
    .iter()
    .any(|t| *t as u8 == ty)
}

fn is_rows_event(ty: u8) -> bool {
    (0x17..=0x19).contains(&ty)
        || (0x1e..=0x20).contains(&ty)
        || (MARIA_WRITE_ROWS_COMPRESSED_V1..=MARIA_DELETE_ROWS_COMPRESSED).contains(&ty)
}

/// Does the event's trailing 4 bytes hold the CRC32 of header + the rest?
fn crc_matches(header: &BinlogEventHeader, data: &[u8]) -> bool {
    let mut bytes = Vec::with_capacity(19 + data.len());
    header.serialize(&mut bytes);
    let body = &data[..data.len() - 4];
    bytes.extend_from_slice(body);
    let mut crc = flate2::Crc::new();
    crc.update(&bytes);
    crc.sum().to_le_bytes() == data[data.len() - 4..]
}

/// table id, database and table name of a TABLE_MAP body, without parsing the rest.
fn table_map_names(data: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let id = data.get(..6)?;
    let table_id = id.iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    let db_len = *data.get(8)? as usize;
    let db = data.get(9..9 + db_len)?;
    let t = 9 + db_len + 1;
    let table_len = *data.get(t)? as usize;
    let table = data.get(t + 1..t + 1 + table_len)?;
    Some((table_id, db, table))
}

fn rows_table_id(data: &[u8]) -> SyncResult<u64> {
    let id = data.get(..6).ok_or_else(|| SyncError::source_err("a rows event is too short"))?;
    Ok(id.iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
}

struct RowsEventParts<'a> {
    kind: RowsKind,
    table_id: u64,
    ncols: usize,
    before: &'a [u8],
    after: &'a [u8],
    body: &'a [u8],
    compressed: bool,
}

impl RowsEventParts<'_> {
    /// The row images; MariaDB's compressed events are inflated here.
    fn rows(&self) -> SyncResult<std::borrow::Cow<'_, [u8]>> {
        if self.compressed {
            Ok(std::borrow::Cow::Owned(maria_uncompress(self.body)?))
        } else {
            Ok(std::borrow::Cow::Borrowed(self.body))
        }
    }
}

/// Splits a rows event (v1, v2, MariaDB compressed v1/v2) into its parts.
fn parse_rows(ty: u8, data: &[u8]) -> SyncResult<RowsEventParts<'_>> {
    let short = || SyncError::source_err("a rows event is too short");
    let (kind, v2, compressed) = match ty {
        0x17 => (RowsKind::Write, false, false),
        0x18 => (RowsKind::Update, false, false),
        0x19 => (RowsKind::Delete, false, false),
        0x1e => (RowsKind::Write, true, false),
        0x1f => (RowsKind::Update, true, false),
        0x20 => (RowsKind::Delete, true, false),
        166 => (RowsKind::Write, false, true),
        167 => (RowsKind::Update, false, true),
        168 => (RowsKind::Delete, false, true),
        169 => (RowsKind::Write, true, true),
        170 => (RowsKind::Update, true, true),
        171 => (RowsKind::Delete, true, true),
        other => return Err(SyncError::internal(format!("event type {other} is not a rows event"))),
    };
    let table_id = rows_table_id(data)?;
    let mut p = 8usize;
    if v2 {
        let extra = data.get(p..p + 2).ok_or_else(short)?;
        let extra_len = u16::from_le_bytes([extra[0], extra[1]]) as usize;
        p += extra_len.max(2);
    }
    let (ncols, n) = lenenc(data.get(p..).ok_or_else(short)?).ok_or_else(short)?;
    p += n;
    let width = (ncols as usize).div_ceil(8);
    let first = data.get(p..p + width).ok_or_else(short)?;
    p += width;
    let (before, after) = match kind {
        RowsKind::Write => (&[][..], first),
        RowsKind::Delete => (first, &[][..]),
        RowsKind::Update => {
            let second = data.get(p..p + width).ok_or_else(short)?;
            p += width;
            (first, second)
        }
    };
    Ok(RowsEventParts { kind, table_id, ncols: ncols as usize, before, after, body: &data[p..], compressed })
}

fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| b.get(1..1 + n).map(|s| s.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x)));
    match *b.first()? {
        x if x < 0xfb => Some((u64::from(x), 1)),
        0xfc => Some((le(2)?, 3)),
        0xfd => Some((le(3)?, 4)),
        0xfe => Some((le(8)?, 9)),
        _ => None,
    }
}

/// MariaDB's compressed payload: `0x80 | alg<<4 | lenlen`, the uncompressed length in
/// `lenlen` big-endian bytes, then a zlib stream.
pub(crate) fn maria_uncompress(buf: &[u8]) -> SyncResult<Vec<u8>> {
    let bad = |why: &str| SyncError::source_err(format!("undecodable MariaDB compressed event: {why}"));
    let head = *buf.first().ok_or_else(|| bad("empty"))?;
    if head & 0x80 == 0 {
        return Err(bad("no compression header"));
    }
    if (head & 0x70) >> 4 != 0 {
        return Err(bad("unknown compression algorithm (only zlib is defined)"));
    }
    let lenlen = usize::from(head & 0x07);
    if !(1..=4).contains(&lenlen) {
        return Err(bad("bad length size"));
    }
    let len_bytes = buf.get(1..1 + lenlen).ok_or_else(|| bad("truncated"))?;
    let len = len_bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
    let mut out = Vec::with_capacity(len);
    flate2::read::ZlibDecoder::new(&buf[1 + lenlen..])
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| SyncError::with_source(ErrorKind::Source, "undecodable MariaDB compressed event (zlib)", e))?;
    if out.len() != len {
        return Err(bad(&format!("inflated to {} bytes, header says {len}", out.len())));
    }
    Ok(out)
}

/// (default database, statement text) of a QUERY event (or MariaDB QUERY_COMPRESSED).
fn parse_query(data: &[u8], compressed: bool) -> SyncResult<(String, String)> {
    let short = || SyncError::source_err("a QUERY event is too short");
    // thread id 4, exec time 4, db len 1, error code 2, status vars len 2
    let db_len = *data.get(8).ok_or_else(short)? as usize;
    let status_len = u16::from_le_bytes([*data.get(11).ok_or_else(short)?, *data.get(12).ok_or_else(short)?]) as usize;
    let db_start = 13 + status_len;
    let db = data.get(db_start..db_start + db_len).ok_or_else(short)?;
    let q_start = db_start + db_len + 1;
    let q = data.get(q_start..).ok_or_else(short)?;
    let query = if compressed {
        String::from_utf8_lossy(&maria_uncompress(q)?).into_owned()
    } else {
        String::from_utf8_lossy(q).into_owned()
    };
    Ok((String::from_utf8_lossy(db).into_owned(), query))
}

/// The statement without leading/trailing whitespace and `/* … */` / `-- …` / `# …` comments
/// (executable `/*!…*/` comments are kept as text).
fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let b = sql.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            out.push(c as char);
            if c == b'\\' && q != b'`' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'\'' | b'"' | b'`' => {
                quote = Some(c);
                out.push(c as char);
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') && b.get(i + 2) != Some(&b'!') => {
                let end = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                out.push(' ');
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') && b.get(i + 2).is_none_or(|x| x.is_ascii_whitespace()) => {
                i = sql[i..].find('\n').map_or(b.len(), |e| i + e);
            }
            b'#' => {
                i = sql[i..].find('\n').map_or(b.len(), |e| i + e);
            }
            _ => {
                // Keep non-ASCII text intact.
                let ch = sql[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out.trim().to_owned()
}

/// Identifiers (with their `db.` qualifier) in a statement: `` `a`.`b` ``, `a.b`, `b`.
/// String literals are skipped.
fn identifiers(sql: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut current: Vec<String> = Vec::new();
    let mut expect_part = false;
    let flush = |current: &mut Vec<String>, out: &mut Vec<Vec<String>>| {
        if !current.is_empty() {
            out.push(std::mem::take(current));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '`' {
            let mut name = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '`' {
                    if chars.get(i + 1) == Some(&'`') {
                        name.push('`');
                        i += 2;
                        continue;
                    }
                    break;
                }
                name.push(chars[i]);
                i += 1;
            }
            i += 1;
            if !expect_part {
                flush(&mut current, &mut out);
            }
            current.push(name);
            expect_part = false;
        } else if c == '\'' || c == '"' {
            flush(&mut current, &mut out);
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            expect_part = false;
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut name = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                name.push(chars[i]);
                i += 1;
            }
            if !expect_part {
                flush(&mut current, &mut out);
            }
            current.push(name);
            expect_part = false;
        } else if c == '.' && !current.is_empty() {
            expect_part = true;
            i += 1;
        } else {
            flush(&mut current, &mut out);
            expect_part = false;
            i += 1;
        }
    }
    flush(&mut current, &mut out);
    out
}

/// A column kind from the TABLE_MAP alone (binlog_row_metadata=FULL, column not in the
/// catalog as read): None for ENUM/SET without member lists.
fn kind_from_wire(
    ty: ColumnType,
    meta: &[u8],
    unsigned: bool,
    charset_id: Option<u16>,
    enum_names: Option<Vec<String>>,
    set_names: Option<Vec<String>>,
) -> Option<ColumnKind> {
    use ColumnType::*;
    let charset = match charset_id {
        Some(63) => Charset::Binary,
        Some(id) => match Collation::from(CollationId::from(id)).charset() {
            "latin1" => Charset::Latin1,
            "binary" => Charset::Binary,
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "unknown" => Charset::Utf8,
            other => Charset::Other(other.to_owned()),
        },
        None => Charset::Utf8,
    };
    let text_or_binary = |fixed: Option<u32>| match &charset {
        Charset::Binary => ColumnKind::Binary { fixed },
        c => ColumnKind::Text { charset: c.clone() },
    };
    Some(match ty {
        MYSQL_TYPE_TINY => ColumnKind::Int { bytes: 1, unsigned },
        MYSQL_TYPE_SHORT => ColumnKind::Int { bytes: 2, unsigned },
        MYSQL_TYPE_INT24 => ColumnKind::Int { bytes: 3, unsigned },
        MYSQL_TYPE_LONG => ColumnKind::Int { bytes: 4, unsigned },
        MYSQL_TYPE_LONGLONG => ColumnKind::Int { bytes: 8, unsigned },
        MYSQL_TYPE_FLOAT => ColumnKind::Float,
        MYSQL_TYPE_DOUBLE => ColumnKind::Double,
        MYSQL_TYPE_NEWDECIMAL => ColumnKind::Decimal { precision: *meta.first()?, scale: *meta.get(1)? },
        MYSQL_TYPE_BIT => ColumnKind::Bit { bits: u16::from(*meta.get(1)?) * 8 + u16::from(*meta.first()?) },
        MYSQL_TYPE_YEAR => ColumnKind::Year,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => ColumnKind::Date,
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => ColumnKind::Time,
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => ColumnKind::DateTime,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => ColumnKind::Timestamp,
        MYSQL_TYPE_ENUM => ColumnKind::Enum { names: enum_names?.into() },
        MYSQL_TYPE_SET => ColumnKind::Set { names: set_names?.into() },
        MYSQL_TYPE_STRING => text_or_binary(string_max_len(meta).ok().map(|n| n as u32)),
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => text_or_binary(None),
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB | MYSQL_TYPE_BLOB => text_or_binary(None),
        MYSQL_TYPE_GEOMETRY => ColumnKind::Geometry,
        MYSQL_TYPE_VECTOR => ColumnKind::Binary { fixed: None },
        MYSQL_TYPE_JSON => ColumnKind::Json,
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use mysql_common::binlog::BinlogFile;
    use mysql_common::binlog::consts::{BinlogVersion, TransactionPayloadCompressionType};
    use mysql_common::binlog::events::FormatDescriptionEvent;
    use rtsync_core::arrow::util::display::array_value_to_string;

    use crate::schema::ColumnSpec;

    fn spec(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec { name: name.into(), kind }
    }

    /// `(op, "col=value,…")` for every row of the batches.
    fn rows_of(batches: &[ChangeBatch<MySqlPosition>]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let rows = &b.rows;
            for r in 0..rows.num_rows() {
                let mut cells = Vec::new();
                for (i, f) in rows.schema().fields().iter().enumerate() {
                    let col = rows.column(i);
                    let v = if col.is_null(r) { "NULL".to_owned() } else { array_value_to_string(col, r).unwrap() };
                    cells.push(format!("{}={v}", f.name()));
                }
                out.push(cells.join(","));
            }
        }
        out
    }

    fn drain(d: &mut Decoder) -> Vec<ChangeBatch<MySqlPosition>> {
        std::iter::from_fn(|| d.pop()).collect()
    }

    /// A binlog file MariaDB 10.11 wrote with log_bin_compress=ON (compressed write, update,
    /// PK-changing update and delete rows events, a compressed ALTER and TRUNCATE), then an
    /// uncompressed insert and the closing rotate; binlog_row_metadata=FULL.
    #[test]
    fn captured_mariadb_compressed_binlog_decodes() {
        let bytes: &[u8] = include_bytes!("../tests/fixtures/mariadb-10.11-compressed.binlog");
        let events: Vec<Event> =
            BinlogFile::new(BinlogVersion::Version4, bytes).unwrap().collect::<Result<_, _>>().unwrap();
        let set =
            |names: &[&str]| ColumnKind::Set { names: names.iter().map(|s| s.to_string()).collect::<Vec<_>>().into() };
        let before = TableSchema {
            columns: vec![
                spec("id", ColumnKind::Int { bytes: 4, unsigned: false }),
                spec("name", ColumnKind::Text { charset: Charset::Utf8 }),
                spec("amount", ColumnKind::Decimal { precision: 10, scale: 2 }),
                spec("at", ColumnKind::DateTime),
                spec("tags", set(&["a", "b"])),
                spec("big", ColumnKind::Int { bytes: 8, unsigned: true }),
            ],
            primary_key: vec!["id".into()],
        };
        let mut after = before.clone();
        after.columns.push(spec("extra", ColumnKind::Text { charset: Charset::Utf8 }));
        let start = MySqlPosition::new("mariadb-bin.000014", 4, "0-1-3235".parse().unwrap());
        let mut d = Decoder::new("fixture", "t", false, before, start, 1000).unwrap();
        let mut batches = Vec::new();
        for ev in &events {
            assert_eq!(d.handle(ev).unwrap(), Step::Continue);
            if d.wants_catalog() {
                d.set_catalog(after.clone());
            }
            batches.extend(drain(&mut d));
        }
        d.flush().unwrap();
        batches.extend(drain(&mut d));
        assert_eq!(batches.len(), 2, "one batch before the ALTER's new layout, one after");
        assert_eq!(batches[0].end.to_string(), "mariadb-bin.000014:2130;gtid=0-1-3240");
        assert_eq!(batches[1].end.to_string(), "mariadb-bin.000015:4;gtid=0-1-3243");
        assert_eq!(
            rows_of(&batches[..1]),
            vec![
                "id=1,name=first row with a long enough name,amount=12.50,at=2024-01-02T03:04:05.678,tags=a,b,big=18446744073709551615,__op=c",
                "id=2,name=second,amount=-0.01,at=NULL,tags=,big=0,__op=c",
                "id=2,name=renamed and long enough to compress,amount=-0.01,at=NULL,tags=,big=0,__op=u",
                "id=2,name=renamed and long enough to compress,amount=-0.01,at=NULL,tags=,big=0,__op=d",
                "id=20,name=renamed and long enough to compress,amount=-0.01,at=NULL,tags=,big=0,__op=c",
                "id=1,name=first row with a long enough name,amount=12.50,at=2024-01-02T03:04:05.678,tags=a,b,big=18446744073709551615,__op=d",
            ]
        );
        assert_eq!(
            rows_of(&batches[1..]),
            vec![
                "id=3,name=after the alter,amount=NULL,at=NULL,tags=NULL,big=NULL,extra=x,__op=c",
                "id=NULL,name=NULL,amount=NULL,at=NULL,tags=NULL,big=NULL,extra=NULL,__op=t",
                "id=4,name=uncompressed,amount=NULL,at=NULL,tags=NULL,big=NULL,extra=d,__op=c",
            ]
        );
        let times = batches[0].event_time_ms.as_ref().unwrap();
        assert!(times.value(0) > 1_700_000_000_000);
    }

    /// A corrupted compressed event is an error, never a silent skip.
    #[test]
    fn corrupt_compressed_rows_are_refused() {
        let bytes: &[u8] = include_bytes!("../tests/fixtures/mariadb-10.11-compressed.binlog");
        let events: Vec<Event> =
            BinlogFile::new(BinlogVersion::Version4, bytes).unwrap().collect::<Result<_, _>>().unwrap();
        let catalog = TableSchema { columns: Vec::new(), primary_key: vec!["id".into()] };
        let mut d = Decoder::new(
            "fixture",
            "t",
            false,
            catalog,
            MySqlPosition::new("mariadb-bin.000014", 4, Gtids::None),
            1000,
        )
        .unwrap();
        let write = events.iter().position(|e| e.header().event_type_raw() == 166).unwrap();
        for ev in &events[..write] {
            d.handle(ev).unwrap();
        }
        let ev = &events[write];
        let mut data = ev.data().to_vec();
        let last = data.len() - 3;
        data[last] ^= 0xff;
        let corrupt = raw_event(166, ev.header().log_pos(), 0, &data);
        let err = d.handle(&corrupt).unwrap_err();
        assert!(err.report().contains("compressed"), "{}", err.report());
    }

    fn raw_event(ty: u8, log_pos: u32, flags: u16, body: &[u8]) -> Event {
        let mut b = Vec::new();
        b.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        b.push(ty);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&(19 + body.len() as u32).to_le_bytes());
        b.extend_from_slice(&log_pos.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(body);
        Event::read(&FormatDescriptionEvent::new(BinlogVersion::Version4), &b[..]).unwrap()
    }

    fn query(sql: &str, log_pos: u32) -> Event {
        let mut body = vec![0u8; 13];
        body[8] = 2;
        body.extend_from_slice(b"db\0");
        body.extend_from_slice(sql.as_bytes());
        raw_event(EventType::QUERY_EVENT as u8, log_pos, 0, &body)
    }

    /// TABLE_MAP of `db.t (id INT, v INT UNSIGNED)` with column names (row metadata FULL).
    fn table_map(log_pos: u32) -> Event {
        let mut body = vec![9, 0, 0, 0, 0, 0, 1, 0];
        body.extend_from_slice(b"\x02db\0\x01t\0");
        body.extend_from_slice(&[2, 3, 3, 0, 0]); // 2 columns, LONG LONG, no metadata, null bitmap
        body.extend_from_slice(&[1, 1, 0b0100_0000]); // SIGNEDNESS: second column unsigned
        body.extend_from_slice(&[4, 5, 2, b'i', b'd', 1, b'v']); // COLUMN_NAME
        raw_event(EventType::TABLE_MAP_EVENT as u8, log_pos, 0, &body)
    }

    fn write_rows(log_pos: u32, id: i32, v: u32) -> Event {
        let mut body = vec![9, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0b11, 0];
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(&v.to_le_bytes());
        raw_event(EventType::WRITE_ROWS_EVENT as u8, log_pos, 0, &body)
    }

    fn xid(log_pos: u32) -> Event {
        raw_event(EventType::XID_EVENT as u8, log_pos, 0, &42u64.to_le_bytes())
    }

    fn mysql_decoder() -> Decoder {
        let catalog = TableSchema {
            columns: vec![
                spec("id", ColumnKind::Int { bytes: 4, unsigned: false }),
                spec("v", ColumnKind::Int { bytes: 4, unsigned: true }),
            ],
            primary_key: vec!["id".into()],
        };
        Decoder::new("db", "t", false, catalog, MySqlPosition::new("binlog.000001", 4, Gtids::None), 1000).unwrap()
    }

    /// MySQL 8 events built byte by byte: the first fake ROTATE with its CRC32 still attached
    /// to the name, a GTID event, v2 rows, XID; the GTID lands in the position's set.
    #[test]
    fn mysql_gtid_transactions_and_the_fake_rotate() {
        let mut d = mysql_decoder();
        // Fake rotate: log_pos 0, artificial flag, name followed by its CRC32.
        let name = b"binlog.000007";
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(name);
        let mut header = Vec::new();
        header.extend_from_slice(&0u32.to_le_bytes());
        header.push(EventType::ROTATE_EVENT as u8);
        header.extend_from_slice(&1u32.to_le_bytes());
        header.extend_from_slice(&(19 + body.len() as u32 + 4).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&0x20u16.to_le_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&header);
        crc.update(&body);
        let mut full = header.clone();
        full.extend_from_slice(&body);
        full.extend_from_slice(&crc.sum().to_le_bytes());
        let rotate = Event::read(&FormatDescriptionEvent::new(BinlogVersion::Version4), &full[..]).unwrap();
        d.handle(&rotate).unwrap();
        assert_eq!(d.file, "binlog.000007", "the CRC is stripped from the fake rotate's name");

        let sid = crate::gtid::uuid_bytes("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        let mut gtid_body = Vec::new();
        GtidEvent::new(sid, 17).with_immediate_commit_timestamp(1_700_000_000_123_456).serialize(&mut gtid_body);
        for ev in [
            raw_event(EventType::GTID_EVENT as u8, 200, 0, &gtid_body),
            query("BEGIN", 280),
            table_map(340),
            write_rows(400, -5, u32::MAX),
            xid(431),
        ] {
            d.handle(&ev).unwrap();
        }
        d.flush().unwrap();
        let batches = drain(&mut d);
        assert_eq!(rows_of(&batches), vec!["id=-5,v=4294967295,__op=c"]);
        assert_eq!(batches[0].end.to_string(), "binlog.000007:431;gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:17");
        assert_eq!(batches[0].event_time_ms.as_ref().unwrap().value(0), 1_700_000_000_123);
    }

    /// MySQL 8 TRANSACTION_PAYLOAD: the client yields the decompressed events after the
    /// payload event; the transaction's position is the payload's end. A payload whose events
    /// never came (the client failed to decompress it) is an error, not a skip.
    #[test]
    fn mysql_transaction_payloads_are_followed_or_refused() {
        let payload = TransactionPayloadEvent::new(10, TransactionPayloadCompressionType::ZSTD, 500, &[1u8; 10][..]);
        let mut body = Vec::new();
        payload.serialize(&mut body);
        let payload_event = raw_event(EventType::TRANSACTION_PAYLOAD_EVENT as u8, 900, 0, &body);

        let mut d = mysql_decoder();
        d.handle(&raw_event(EventType::ANONYMOUS_GTID_EVENT as u8, 100, 0, &[0u8; 42])).ok();
        d.handle(&payload_event).unwrap();
        for ev in [query("BEGIN", 0), table_map(0), write_rows(0, 1, 2), xid(0)] {
            d.handle(&ev).unwrap();
        }
        d.flush().unwrap();
        let batches = drain(&mut d);
        assert_eq!(rows_of(&batches), vec!["id=1,v=2,__op=c"]);
        assert_eq!(batches[0].end.pos, 900);

        let mut d = mysql_decoder();
        d.handle(&payload_event).unwrap();
        let sid = crate::gtid::uuid_bytes("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        let mut gtid_body = Vec::new();
        GtidEvent::new(sid, 18).serialize(&mut gtid_body);
        let err = d.handle(&raw_event(EventType::GTID_EVENT as u8, 1000, 0, &gtid_body)).unwrap_err();
        assert!(err.to_string().contains("TRANSACTION_PAYLOAD"), "{}", err.report());
    }

    /// An UPDATE whose key changes becomes delete + insert; a big transaction waits for its
    /// commit; a lost connection drops the half-read transaction only.
    #[test]
    fn key_changes_and_lost_connections() {
        let mut d = mysql_decoder();
        for ev in [query("BEGIN", 100), table_map(150), write_rows(200, 1, 1)] {
            d.handle(&ev).unwrap();
        }
        d.flush().unwrap();
        assert!(d.pop().is_none(), "half a transaction is never handed over");
        d.handle(&xid(250)).unwrap();
        d.handle(&query("BEGIN", 300)).unwrap();
        d.handle(&table_map(350)).unwrap();
        d.handle(&write_rows(400, 2, 2)).unwrap();
        // The connection drops before the COMMIT: the committed row goes out alone.
        d.reset_to_committed().unwrap();
        let batches = drain(&mut d);
        assert_eq!(rows_of(&batches), vec!["id=1,v=1,__op=c"]);
        assert_eq!(batches[0].end.pos, 250);
        assert_eq!(d.committed().pos, 250);

        // UPDATE v2 changing id 1 → 3.
        d.handle(&query("BEGIN", 300)).unwrap();
        d.handle(&table_map(350)).unwrap();
        let mut body = vec![9, 0, 0, 0, 0, 0, 1, 0, 2, 0, 2, 0b11, 0b11];
        for (id, v) in [(1i32, 1u32), (3, 1)] {
            body.push(0);
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&v.to_le_bytes());
        }
        d.handle(&raw_event(EventType::UPDATE_ROWS_EVENT as u8, 420, 0, &body)).unwrap();
        d.handle(&query("COMMIT", 450)).unwrap();
        d.flush().unwrap();
        assert_eq!(rows_of(&drain(&mut d)), vec!["id=1,v=1,__op=d", "id=3,v=1,__op=c"]);
    }

    #[test]
    fn statements_name_tables() {
        let ids = identifiers("ALTER TABLE `shop`.`orders` ADD COLUMN note varchar(10) DEFAULT 'x.y'");
        assert!(ids.contains(&vec!["shop".to_string(), "orders".to_string()]));
        assert!(!ids.iter().any(|p| p.contains(&"x".to_string())));
        let ids = identifiers("rename table orders to shop.old_orders");
        assert!(ids.contains(&vec!["orders".to_string()]));
        assert!(ids.contains(&vec!["shop".to_string(), "old_orders".to_string()]));
        assert_eq!(strip_comments("/* app */ ALTER TABLE t -- why\n ADD x int"), "ALTER TABLE t \n ADD x int");
        assert_eq!(strip_comments("  # note\nCOMMIT"), "COMMIT");
        assert_eq!(strip_comments("INSERT INTO t VALUES ('/* not */')"), "INSERT INTO t VALUES ('/* not */')");
    }

    #[test]
    fn mariadb_compression_round_trips() {
        use std::io::Write;
        let payload = b"hello hello hello hello rows".repeat(10);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&payload).unwrap();
        let compressed = z.finish().unwrap();
        let mut framed = vec![0x80 | 2, (payload.len() >> 8) as u8, payload.len() as u8];
        framed.extend_from_slice(&compressed);
        assert_eq!(maria_uncompress(&framed).unwrap(), payload);
        framed[2] ^= 1;
        assert!(maria_uncompress(&framed).is_err(), "a wrong length is refused");
        assert!(maria_uncompress(&[0x90 | 1, 1, 0]).is_err(), "an unknown algorithm is refused");
    }

    #[test]
    fn rows_event_headers_split() {
        // v2 write rows: table id 5, flags 1, extra len 2, 3 columns, bitmap 0b111, one row.
        let mut data = vec![5, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0b111];
        data.extend_from_slice(&[0, 1, 2, 3]);
        let p = parse_rows(0x1e, &data).unwrap();
        assert_eq!(p.table_id, 5);
        assert_eq!(p.ncols, 3);
        assert!(p.kind == RowsKind::Write);
        assert_eq!(p.after, &[0b111]);
        assert_eq!(p.body, &[0, 1, 2, 3]);
        // v1 update: two bitmaps.
        let data = vec![7, 0, 0, 0, 0, 0, 0, 0, 2, 0b11, 0b01, 9];
        let p = parse_rows(0x18, &data).unwrap();
        assert!(p.kind == RowsKind::Update);
        assert_eq!((p.before, p.after, p.body), (&[0b11][..], &[0b01][..], &[9][..]));
        assert!(parse_rows(0x18, &data[..9]).is_err());
    }

    #[test]
    fn query_events_parse() {
        let mut data = vec![0u8; 13];
        data[8] = 4; // db len
        data[11] = 2; // status len
        data.extend_from_slice(&[0xAA, 0xBB]);
        data.extend_from_slice(b"shop\0COMMIT");
        assert_eq!(parse_query(&data, false).unwrap(), ("shop".to_string(), "COMMIT".to_string()));
    }
}
