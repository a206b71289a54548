//! The initial copy: keyset chunks read with `COPY (SELECT …) TO STDOUT` in text format.
//!
//! Each chunk is one query, `WHERE (key) > (last key) ORDER BY key LIMIT chunk_rows`, served
//! by the primary key's index; its rows stream through the COPY protocol straight into the
//! column builders, so memory holds one chunk at most. COPY's text format is the types' text
//! output, the same text pgoutput sends, so the same parsers serve both.
//!
//! A table without a usable key is copied by one unordered COPY, read in pieces of
//! `chunk_rows`; it cannot resume in the middle (see the crate doc).

use std::pin::Pin;

use futures_util::StreamExt;
use rtsync_core::{SyncError, SyncResult};
use tokio_postgres::{Client, CopyOutStream};

use crate::catalog::{quote_ident, quote_literal, quoted_table};
use crate::error::pg_error;
use crate::position::{Lsn, PgPosition};
use crate::rows::RowsBuilder;

pub(crate) struct SnapshotReader {
    pub slot_lsn: Lsn,
    /// Rows emitted by this snapshot so far (including before a restart).
    pub rows_total: u64,
    /// The key of the last row read (text values), None before the first.
    pub last_key: Option<Vec<String>>,
    table: String,
    /// Indexes of the key columns among the builder's columns; empty: keyless table.
    key_idx: Vec<usize>,
    /// `format_type` of each key column, to cast the last key's literals.
    key_types: Vec<String>,
    select_list: String,
    /// The quoted column names, in builder order.
    quoted: Vec<String>,
    chunk_rows: usize,
    stream: Option<Pin<Box<CopyOutStream>>>,
    /// Rows read from the current chunk query.
    chunk_seen: usize,
    done: bool,
    carry: Vec<u8>,
    field: String,
    key_buf: Vec<String>,
}

impl SnapshotReader {
    pub fn new(
        rows: &RowsBuilder,
        key: &[String],
        schema: &str,
        table: &str,
        chunk_rows: usize,
        slot_lsn: Lsn,
    ) -> SyncResult<Self> {
        let columns = rows.columns();
        let mut key_idx = Vec::with_capacity(key.len());
        let mut key_types = Vec::with_capacity(key.len());
        for k in key {
            let i = columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| SyncError::internal(format!("key column {k:?} is not among the table's columns")))?;
            key_idx.push(i);
            key_types.push(columns[i].type_name.clone());
        }
        let quoted: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        let select_list = quoted.join(", ");
        Ok(Self {
            slot_lsn,
            rows_total: 0,
            last_key: None,
            table: quoted_table(schema, table),
            key_buf: vec![String::new(); key_idx.len()],
            key_idx,
            key_types,
            select_list,
            quoted,
            chunk_rows,
            stream: None,
            chunk_seen: 0,
            done: false,
            carry: Vec::new(),
            field: String::new(),
        })
    }

    /// The reader as it stands after `rows_total` rows up to `last_key` (the keyset query
    /// after a chunk).
    #[cfg(test)]
    fn resume_from(mut self, rows_total: u64, last_key: Option<Vec<String>>) -> Self {
        self.rows_total = rows_total;
        self.last_key = last_key;
        self
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn position(&self) -> PgPosition {
        PgPosition::Snapshot { slot_lsn: self.slot_lsn, rows: self.rows_total, last_key: self.last_key.clone() }
    }

    fn chunk_query(&self) -> String {
        if self.key_idx.is_empty() {
            return format!("COPY (SELECT {} FROM {}) TO STDOUT", self.select_list, self.table);
        }
        let keys = self.key_idx.iter().map(|&i| self.quoted[i].as_str()).collect::<Vec<_>>().join(", ");
        let filter = match &self.last_key {
            Some(last) => {
                let literals = last
                    .iter()
                    .zip(&self.key_types)
                    .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(" WHERE ({keys}) > ({literals})")
            }
            None => String::new(),
        };
        format!(
            "COPY (SELECT {} FROM {}{filter} ORDER BY {keys} LIMIT {}) TO STDOUT",
            self.select_list, self.table, self.chunk_rows
        )
    }

    /// Reads up to `max_rows` rows into `rows` (fewer at the end of the table). Returns how
    /// many were read; `is_done` tells whether the table is exhausted.
    pub async fn read(&mut self, client: &Client, rows: &mut RowsBuilder, max_rows: usize) -> SyncResult<usize> {
        let mut read = 0;
        while read < max_rows && !self.done {
            if self.stream.is_none() {
                let query = self.chunk_query();
                let stream = client
                    .copy_out(query.as_str())
                    .await
                    .map_err(|e| pg_error(e, &format!("reading the snapshot of {}", self.table)))?;
                self.stream = Some(Box::pin(stream));
                self.chunk_seen = 0;
                self.carry.clear();
            }
            let Some(stream) = self.stream.as_mut() else {
                break;
            };
            match stream.next().await {
                Some(Ok(data)) => {
                    rows.add_bytes(data.len());
                    read += self.consume(&data, rows)?;
                }
                Some(Err(e)) => {
                    return Err(pg_error(e, &format!("reading the snapshot of {}", self.table)));
                }
                None => {
                    self.stream = None;
                    if !self.carry.is_empty() {
                        return Err(SyncError::internal(format!(
                            "the snapshot of {} ended in the middle of a row",
                            self.table
                        )));
                    }
                    // A keyset chunk shorter than its LIMIT was the last; an unordered copy
                    // is one query.
                    if self.key_idx.is_empty() || self.chunk_seen < self.chunk_rows {
                        self.done = true;
                    }
                }
            }
        }
        if read > 0 && !self.key_idx.is_empty() {
            self.last_key = Some(self.key_buf.clone());
        }
        Ok(read)
    }

    /// Parses the complete lines of `data` (plus what was carried over); returns rows read.
    fn consume(&mut self, data: &[u8], rows: &mut RowsBuilder) -> SyncResult<usize> {
        let mut n = 0;
        let mut rest = data;
        if !self.carry.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.carry);
                    line.extend_from_slice(&rest[..i]);
                    self.row(&line, rows)?;
                    n += 1;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    return Ok(0);
                }
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.row(&rest[..i], rows)?;
            n += 1;
            rest = &rest[i + 1..];
        }
        self.carry.extend_from_slice(rest);
        Ok(n)
    }

    fn row(&mut self, line: &[u8], rows: &mut RowsBuilder) -> SyncResult<()> {
        let ncols = rows.columns().len();
        let mut col = 0;
        for raw in line.split(|&b| b == b'\t') {
            if col >= ncols {
                return Err(SyncError::internal(format!(
                    "the snapshot of {} returned more columns than expected",
                    self.table
                )));
            }
            if raw == b"\\N" {
                rows.push_null(col);
            } else {
                let text: &str = if raw.contains(&b'\\') {
                    unescape_copy_text(raw, &mut self.field)
                        .map_err(|reason| self.bad_value(rows, col, raw, reason))?;
                    &self.field
                } else {
                    std::str::from_utf8(raw).map_err(|_| self.bad_value(rows, col, raw, "not UTF-8"))?
                };
                if let Some(k) = self.key_idx.iter().position(|&i| i == col) {
                    self.key_buf[k].clear();
                    self.key_buf[k].push_str(text);
                }
                if let Err(reason) = rows.push_text(col, text) {
                    return Err(self.bad_value(rows, col, text.as_bytes(), reason));
                }
            }
            col += 1;
        }
        if col != ncols {
            return Err(SyncError::internal(format!(
                "the snapshot of {} returned {col} columns, expected {ncols}",
                self.table
            )));
        }
        rows.finish_row(rtsync_core::Op::Read.code(), None);
        self.chunk_seen += 1;
        self.rows_total += 1;
        Ok(())
    }

    fn bad_value(&self, rows: &RowsBuilder, col: usize, raw: &[u8], reason: &str) -> SyncError {
        let c = &rows.columns()[col];
        let shown: String = String::from_utf8_lossy(raw).chars().take(100).collect();
        SyncError::data(format!(
            "snapshot of {}: column {:?} ({}) value {shown:?} cannot be read: {reason}",
            self.table, c.name, c.type_name
        ))
    }
}

/// Undoes COPY text-format escaping: `\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`, octal `\NNN`
/// and hex `\xHH`.
pub(crate) fn unescape_copy_text(raw: &[u8], out: &mut String) -> Result<(), &'static str> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            bytes.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = raw.get(i + 1) else {
            return Err("dangling backslash");
        };
        i += 2;
        match e {
            b'b' => bytes.push(8),
            b'f' => bytes.push(12),
            b'n' => bytes.push(b'\n'),
            b'r' => bytes.push(b'\r'),
            b't' => bytes.push(b'\t'),
            b'v' => bytes.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                bytes.push((v & 0xff) as u8);
            }
            b'x' => {
                let mut v = 0u8;
                let mut digits = 0;
                while digits < 2 {
                    match raw.get(i).and_then(|&d| (d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d as u8;
                            i += 1;
                            digits += 1;
                        }
                        None => break,
                    }
                }
                if digits == 0 {
                    bytes.push(b'x');
                } else {
                    bytes.push(v);
                }
            }
            other => bytes.push(other),
        }
    }
    out.clear();
    out.push_str(std::str::from_utf8(&bytes).map_err(|_| "not UTF-8")?);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::ColumnInfo;
    use crate::types::ValueKind;
    use rtsync_core::arrow::array::{Array, AsArray};
    use rtsync_core::arrow::datatypes::Int64Type;

    #[test]
    fn unescapes_copy_text() {
        let mut s = String::new();
        unescape_copy_text(b"a\\tb\\nc\\\\d\\101\\x41", &mut s).unwrap();
        assert_eq!(s, "a\tb\nc\\dAA");
        assert!(unescape_copy_text(b"x\\", &mut s).is_err());
    }

    fn reader() -> (SnapshotReader, RowsBuilder) {
        let cols = vec![
            ColumnInfo {
                name: "id".into(),
                type_oid: 20,
                typmod: -1,
                type_name: "bigint".into(),
                kind: ValueKind::Int64,
            },
            ColumnInfo {
                name: "Note".into(),
                type_oid: 25,
                typmod: -1,
                type_name: "text".into(),
                kind: ValueKind::Text,
            },
        ];
        let rows = RowsBuilder::new(cols, 8);
        let r = SnapshotReader::new(&rows, &["id".to_string()], "public", "t", 2, Lsn(5)).unwrap();
        (r, rows)
    }

    #[test]
    fn builds_keyset_queries() {
        let (r, _) = reader();
        assert_eq!(r.chunk_query(), r#"COPY (SELECT "id", "Note" FROM "public"."t" ORDER BY "id" LIMIT 2) TO STDOUT"#);
        let r = r.resume_from(2, Some(vec!["4'2".into()]));
        assert_eq!(
            r.chunk_query(),
            r#"COPY (SELECT "id", "Note" FROM "public"."t" WHERE ("id") > ('4''2'::bigint) ORDER BY "id" LIMIT 2) TO STDOUT"#
        );
    }

    #[test]
    fn parses_rows_split_across_messages() {
        let (mut r, mut rows) = reader();
        assert_eq!(r.consume(b"1\thello\\tworld\n2\t\\N\n3\tpar", &mut rows).unwrap(), 2);
        assert_eq!(r.consume(b"tial\n", &mut rows).unwrap(), 1);
        assert_eq!(r.key_buf, vec!["3".to_string()]);
        let (batch, _, _) = rows.finish().unwrap();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 2, 3]);
        let notes = batch.column(1).as_string::<i32>();
        assert_eq!(notes.value(0), "hello\tworld");
        assert!(notes.is_null(1));
        assert_eq!(notes.value(2), "partial");
        assert_eq!(batch.column(2).as_string::<i32>().value(0), "r");
        let (mut r, mut rows) = reader();
        let err = r.consume(b"x\ty\n", &mut rows).unwrap_err();
        assert!(err.to_string().contains("\"id\""), "{err}");
    }
}
