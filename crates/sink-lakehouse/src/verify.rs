//! `task verify` on the target: the same range checksums the source computes in SQL, computed
//! here in Rust over the Arrow columns DataFusion scans from the Delta table (the scan applies
//! deletion vectors, so what is counted is what a reader sees). Canonical texts and hashes are
//! [`rtsync_core::verify`]'s; a row falls into the source range whose first key is the
//! greatest at or below its own key.

use std::collections::HashSet;

use deltalake::arrow::datatypes::DataType;
use futures::TryStreamExt;
use rtsync_core::verify::{
    CanonRow, KeyPart, VerifyColumn, canonical_text, encode_value, is_comparable, key_order, row_hash,
};
use rtsync_core::{ErrorKind, SyncError, SyncResult};

use crate::read::{load_table, session_for};
use crate::{DeltaSink, LakehouseSinkConfig};

/// Which rows' canonical texts a scan returns besides the checksums.
#[derive(Debug, Clone, Default)]
pub enum Collect {
    #[default]
    Nothing,
    /// Every row of these ranges (indexes into the bounds given).
    Ranges(HashSet<usize>),
    /// The rows with these keys (canonical texts).
    Keys(HashSet<Vec<String>>),
}

/// What one scan of the table found.
#[derive(Debug, Clone)]
pub struct LakeScan {
    /// The table version read.
    pub version: u64,
    /// The task's committed position in that version (as the task serialized it).
    pub position: Option<serde_json::Value>,
    pub rows: u64,
    /// Per range: rows and the sum of their hashes mod 2^64.
    pub ranges: Vec<(u64, u64)>,
    pub collected: Vec<CanonRow>,
    /// Compared source columns the table does not have (their values count as NULL).
    pub missing_columns: Vec<String>,
}

/// The task's committed position in the table's latest version.
pub async fn committed_position(config: &LakehouseSinkConfig, task: &str) -> SyncResult<Option<serde_json::Value>> {
    let table = load_table(config, None).await?;
    let sink = DeltaSink::new(task, config.clone())?;
    Ok(sink.read_checkpoint(&table).await?.map(|c| c.position))
}

/// Scans the table (at `version`, or the latest) and sums its rows per range. `bounds` are
/// the source ranges' first keys (canonical texts), in order; `columns` and `key` are the
/// source's.
pub async fn scan(
    config: &LakehouseSinkConfig,
    task: &str,
    version: Option<u64>,
    columns: &[VerifyColumn],
    key: &[String],
    bounds: &[Vec<String>],
    collect: &Collect,
) -> SyncResult<LakeScan> {
    let location = config.table_location();
    let table = load_table(config, version).await?;
    let version = table.version().unwrap_or(0);
    let position = DeltaSink::new(task, config.clone())?.read_checkpoint(&table).await?.map(|c| c.position);

    let (ctx, provider) = session_for(&table, &location).await?;
    let schema = provider.schema();
    let present = |name: &str| schema.field_with_name(name).is_ok();
    for k in key {
        if !present(k) {
            return Err(SyncError::sink(format!("table {location} has no column {k:?}, a key column of the source")));
        }
    }
    let compared: Vec<&str> = columns.iter().filter(|c| c.is_compared()).map(|c| c.name.as_str()).collect();
    let missing_columns: Vec<String> = compared.iter().filter(|c| !present(c)).map(|c| c.to_string()).collect();
    let mut select: Vec<&str> = key.iter().map(String::as_str).collect();
    for c in &compared {
        if present(c) && !select.contains(c) {
            select.push(c);
        }
    }
    let quoted: Vec<String> = select.iter().map(|c| quote(c)).collect();
    let mut sql = format!("SELECT {} FROM t", quoted.join(", "));
    // A pre-filter DataFusion pushes into the scan (file statistics, vectorized); the loop
    // below still decides row by row.
    if let [k] = key
        && let Ok(field) = schema.field_with_name(k)
        && let Some(filter) = pre_filter(&quote(k), field.data_type(), bounds, collect)
    {
        sql.push_str(" WHERE ");
        sql.push_str(&filter);
    }

    let key_orders =
        key.iter()
            .map(|k| {
                let ty = schema.field_with_name(k).map(|f| f.data_type().clone()).map_err(|e| {
                    SyncError::with_source(ErrorKind::Sink, format!("key column {k:?} of {location}"), e)
                })?;
                key_order(&ty).ok_or_else(|| {
                    SyncError::sink(format!("key column {k:?} of {location} has type {ty}, which verify cannot order"))
                })
            })
            .collect::<SyncResult<Vec<_>>>()?;
    let parse_key = |texts: &[String], parts: &mut Vec<KeyPart>| -> SyncResult<()> {
        parts.clear();
        for (t, order) in texts.iter().zip(&key_orders) {
            parts.push(order(t).ok_or_else(|| SyncError::internal(format!("key value {t:?} does not parse")))?);
        }
        Ok(())
    };
    let bound_parts = bounds
        .iter()
        .map(|b| {
            let mut parts = Vec::new();
            parse_key(b, &mut parts).map(|()| parts)
        })
        .collect::<SyncResult<Vec<_>>>()?;

    let query_err = |e| SyncError::with_source(ErrorKind::Sink, format!("scanning {location} to verify"), e);
    ctx.register_table("t", provider).map_err(query_err)?;
    let frame = ctx.sql(&sql).await.map_err(query_err)?;
    let mut stream = frame.execute_stream().await.map_err(query_err)?;

    let nkeys = key.len();
    // Position of each compared column in the projection; None: missing (NULL).
    let value_at: Vec<Option<usize>> = compared.iter().map(|c| select.iter().position(|s| s == c)).collect();
    let mut ranges = vec![(0u64, 0u64); bound_parts.len().max(1)];
    let mut parts = Vec::with_capacity(nkeys);
    let mut rows = 0u64;
    let mut collected = Vec::new();
    let mut text = String::new();
    let mut encoded = Vec::with_capacity(256);
    let mut key_texts: Vec<String> = vec![String::new(); nkeys];
    let mut values: Vec<Option<String>> = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(query_err)? {
        for (i, col) in batch.columns().iter().enumerate() {
            if !is_comparable(col.data_type()) {
                return Err(SyncError::sink(format!(
                    "column {:?} of {location} has type {}, which has no canonical text",
                    batch.schema().field(i).name(),
                    col.data_type()
                )));
            }
        }
        for row in 0..batch.num_rows() {
            for (k, slot) in key_texts.iter_mut().enumerate() {
                if !canonical_text(batch.column(k), row, slot) {
                    slot.clear();
                    slot.push_str("NULL");
                }
            }
            parse_key(&key_texts, &mut parts)?;
            let range = bound_parts.partition_point(|b| b.as_slice() <= parts.as_slice()).saturating_sub(1);
            encoded.clear();
            let keep = match collect {
                Collect::Nothing => false,
                Collect::Ranges(set) => set.contains(&range),
                Collect::Keys(set) => set.contains(&key_texts),
            };
            values.clear();
            for at in &value_at {
                let value = match at {
                    Some(i) => canonical_text(batch.column(*i), row, &mut text).then_some(text.as_str()),
                    None => None,
                };
                encode_value(&mut encoded, value);
                if keep {
                    values.push(value.map(str::to_string));
                }
            }
            let entry = &mut ranges[range];
            entry.0 += 1;
            entry.1 = entry.1.wrapping_add(row_hash(&encoded));
            rows += 1;
            if keep {
                collected.push(CanonRow { key: key_texts.clone(), values: values.clone() });
            }
        }
    }
    Ok(LakeScan { version, position, rows, ranges, collected, missing_columns })
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A DataFusion literal of type `ty` for a canonical text; None for types this does not cover.
fn sql_literal(ty: &DataType, text: &str) -> Option<String> {
    match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => text.parse::<i128>().ok().map(|v| v.to_string()),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(format!("'{}'", text.replace('\'', "''"))),
        DataType::Decimal128(p, s) if text.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') => {
            Some(format!("CAST('{text}' AS DECIMAL({p}, {s}))"))
        }
        _ => None,
    }
}

/// The rows `collect` asks for as a SQL condition on the (single) key column `k`, when its
/// type has literals: the differing ranges' key intervals, or the keys themselves.
fn pre_filter(k: &str, ty: &DataType, bounds: &[Vec<String>], collect: &Collect) -> Option<String> {
    match collect {
        Collect::Nothing => None,
        Collect::Keys(keys) => {
            let list = keys.iter().map(|key| sql_literal(ty, key.first()?)).collect::<Option<Vec<_>>>()?;
            Some(if list.is_empty() { "FALSE".to_string() } else { format!("{k} IN ({})", list.join(", ")) })
        }
        Collect::Ranges(set) => {
            let mut ranges: Vec<usize> = set.iter().copied().collect();
            ranges.sort_unstable();
            let mut parts = Vec::with_capacity(ranges.len());
            for r in ranges {
                // Range 0 also holds every key below the source's first one.
                let lo = if r == 0 { None } else { Some(sql_literal(ty, bounds.get(r)?.first()?)?) };
                let hi = match bounds.get(r + 1) {
                    Some(b) => Some(sql_literal(ty, b.first()?)?),
                    None => None,
                };
                parts.push(match (lo, hi) {
                    (Some(lo), Some(hi)) => format!("({k} >= {lo} AND {k} < {hi})"),
                    (Some(lo), None) => format!("{k} >= {lo}"),
                    (None, Some(hi)) => format!("{k} < {hi}"),
                    (None, None) => "TRUE".to_string(),
                });
            }
            Some(if parts.is_empty() { "FALSE".to_string() } else { parts.join(" OR ") })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pre_filters_cover_the_ranges_and_keys_asked_for() {
        let bounds: Vec<Vec<String>> = ["1", "1001", "2001"].iter().map(|b| vec![b.to_string()]).collect();
        let ranges = Collect::Ranges([0, 2].into_iter().collect());
        assert_eq!(
            pre_filter("\"id\"", &DataType::Int64, &bounds, &ranges).unwrap(),
            "\"id\" < 1001 OR \"id\" >= 2001"
        );
        let ranges = Collect::Ranges([1].into_iter().collect());
        assert_eq!(
            pre_filter("\"id\"", &DataType::Int64, &bounds, &ranges).unwrap(),
            "(\"id\" >= 1001 AND \"id\" < 2001)"
        );
        let keys = Collect::Keys([vec!["o'k".to_string()]].into_iter().collect());
        assert_eq!(pre_filter("\"k\"", &DataType::Utf8, &bounds, &keys).unwrap(), "\"k\" IN ('o''k')");
        assert!(pre_filter("\"t\"", &DataType::Binary, &bounds, &keys).is_none());
        assert!(pre_filter("\"id\"", &DataType::Int64, &bounds, &Collect::Nothing).is_none());
    }
}
