//! `task verify`: compares a table source with its Delta table and reports the rows that
//! differ, while the source keeps taking writes.
//!
//! 1. The source opens a snapshot (PostgreSQL `REPEATABLE READ`, MySQL `WITH CONSISTENT
//!    SNAPSHOT`) and notes its position S; it splits the table into ranges of consecutive keys
//!    and computes each range's row count and checksum in SQL
//!    ([`rtsync_core::verify`] defines the canonical text both sides hash).
//! 2. The target computes the same per range over the Delta table (DataFusion scan, Rust
//!    hashing), recording its version and the task's committed position in it.
//! 3. Only ranges that disagree are read row by row, on both sides (the source still in its
//!    snapshot, the target at the same version): each differing key is *missing in the lake*,
//!    *extra in the lake*, or its *values differ* (naming the columns).
//! 4. A difference may only be the task's lag. The verifier takes the source's position
//!    again, waits until the task's committed position has passed it, and re-reads just the
//!    differing keys on both sides; what still differs, with a source row that did not change
//!    in between, is reported. Rows the source keeps changing get another round.
//!
//! Each source kind answers with its own verifier, through the connector registry
//! ([`crate::connectors::TaskSource::verifier`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rtsync_core::verify::{CanonRow, TableVerifier, VerifyColumn};
use rtsync_sink_lakehouse::verify::{Collect, committed_position, scan};
use serde::{Deserialize, Serialize};

use crate::TaskSpec;
use crate::error::{Error, Result};

/// Ranges the key space is split into (fewer for a small table: see [`MIN_ROWS_PER_RANGE`]).
pub const TARGET_RANGES: u64 = 128;
pub const MIN_ROWS_PER_RANGE: u64 = 1_000;
/// Differences listed in a report; the total is always given.
pub const MAX_LISTED: usize = 100;
/// Keys re-read after the first comparison; beyond that, differences are reported unconfirmed.
pub const MAX_RECHECKED: usize = 10_000;
/// How long each re-check waits for the task to pass the source's position.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
const RECHECK_ROUNDS: u32 = 3;
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub task: String,
    /// `schema.table` at the source.
    pub source_table: String,
    /// The Delta table's location.
    pub target: String,
    /// No difference persisted.
    pub equal: bool,
    pub source_rows: u64,
    pub target_rows: u64,
    pub key_columns: Vec<String>,
    pub compared_columns: Vec<String>,
    pub not_compared: Vec<NotCompared>,
    /// The source's position at the snapshot the ranges were computed on.
    pub source_position: String,
    pub target_version: u64,
    /// The task's committed position in that target version.
    pub target_position: Option<String>,
    pub rows_per_range: u64,
    pub ranges: Vec<RangeReport>,
    pub ranges_differing: usize,
    /// The persisting differences, at most [`MAX_LISTED`], in key order.
    pub differences: Vec<Difference>,
    pub differences_total: usize,
    /// Differences of the first comparison that the re-checks found were lag.
    pub resolved_on_recheck: usize,
    pub rechecks: u32,
    pub note: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotCompared {
    pub column: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RangeReport {
    /// Canonical texts of the range's first key at the source (empty: the source has no rows).
    pub first_key: Vec<String>,
    pub source_rows: u64,
    pub target_rows: u64,
    pub equal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    MissingInLake,
    ExtraInLake,
    ValuesDiffer,
    /// The key is more than once in the lake.
    DuplicateInLake,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    /// Canonical texts of the key columns.
    pub key: Vec<String>,
    pub kind: DiffKind,
    /// For `values_differ`: the columns whose values differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// The source's verifier, from its connector.
async fn open_verifier(spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)> {
    spec.source.source().verifier(spec).await
}

/// Compares the task's source table with its Delta table (see the module doc).
pub async fn verify(spec: &TaskSpec) -> Result<VerifyReport> {
    let started = Instant::now();
    let (mut source, source_table) = open_verifier(spec).await?;
    let columns: Vec<VerifyColumn> = source.columns().to_vec();
    let key: Vec<String> = source.key().to_vec();
    let compared: Vec<String> = columns.iter().filter(|c| c.is_compared()).map(|c| c.name.clone()).collect();

    let snapshot_position = source.begin_snapshot().await?;
    let count = source.count().await?;
    let rows_per_range = count.div_ceil(TARGET_RANGES).max(MIN_ROWS_PER_RANGE);
    // The source sums its ranges in SQL while the target is summed here.
    let bounds = source.bounds(rows_per_range).await?;
    let (sums, lake) = tokio::join!(
        source.checksums(rows_per_range),
        scan(&spec.sink, &spec.name, None, &columns, &key, &bounds, &Collect::Nothing)
    );
    let (sums, lake) = (sums?, lake?);
    tracing::info!(task = %spec.name, ranges = sums.len(), rows = count, target_rows = lake.rows, version = lake.version, ms = started.elapsed().as_millis() as u64, "verify: checksums");
    let firsts: Vec<&Vec<String>> = sums.iter().map(|r| &r.first_key).collect();
    if firsts.len() != bounds.len() || firsts.iter().zip(&bounds).any(|(a, b)| *a != b) {
        return Err(Error::internal(format!(
            "the source's ranges moved within one snapshot of {source_table}: verify cannot compare"
        )));
    }
    let mut ranges = Vec::with_capacity(lake.ranges.len());
    let mut differing = Vec::new();
    for (i, &(lake_rows, lake_sum)) in lake.ranges.iter().enumerate() {
        let (src_rows, src_sum, first_key) = match sums.get(i) {
            Some(r) => (r.rows, r.sum, r.first_key.clone()),
            None => (0, 0, Vec::new()),
        };
        let equal = src_rows == lake_rows && src_sum == lake_sum;
        if !equal {
            differing.push(i);
        }
        ranges.push(RangeReport { first_key, source_rows: src_rows, target_rows: lake_rows, equal });
    }

    let mut diffs = BTreeMap::new();
    let mut last_source: HashMap<Vec<String>, Option<Vec<Option<String>>>> = HashMap::new();
    if !differing.is_empty() {
        let wanted: Vec<u64> = differing.iter().map(|&i| i as u64).collect();
        let collect = Collect::Ranges(differing.iter().copied().collect());
        let (src_rows, lake_rows) = tokio::join!(
            source.rows_in_ranges(rows_per_range, &bounds, &wanted),
            scan(&spec.sink, &spec.name, Some(lake.version), &columns, &key, &bounds, &collect)
        );
        let (src_rows, lake_rows) = (src_rows?, lake_rows?);
        diffs = compare_rows(&src_rows, &lake_rows.collected, &compared);
        remember(&mut last_source, &src_rows, &diffs);
        tracing::info!(task = %spec.name, differences = diffs.len(), ms = started.elapsed().as_millis() as u64, "verify: first comparison");
    }
    source.end_snapshot().await?;
    let initial = diffs.len();

    let mut rechecks = 0;
    let mut confirmed: BTreeMap<Vec<String>, Difference> = BTreeMap::new();
    let mut note = None;
    while !diffs.is_empty() && rechecks < RECHECK_ROUNDS {
        rechecks += 1;
        let target = source.position().await?;
        let caught_up = wait_until_reached(source.as_mut(), spec, &target).await?;
        tracing::info!(task = %spec.name, caught_up, ms = started.elapsed().as_millis() as u64, "verify: waited for the task");
        let keys: Vec<Vec<String>> = diffs.keys().take(MAX_RECHECKED).cloned().collect();
        let collect = Collect::Keys(keys.iter().cloned().collect());
        let (src_rows, lake_rows) = tokio::join!(
            source.rows_by_key(&keys),
            scan(&spec.sink, &spec.name, None, &columns, &key, &bounds, &collect)
        );
        let (src_rows, lake_rows) = (src_rows?, lake_rows?);
        let now = compare_rows(&src_rows, &lake_rows.collected, &compared);
        let unchecked: Vec<_> = diffs.into_iter().skip(MAX_RECHECKED).collect();
        tracing::info!(task = %spec.name, round = rechecks, differences = now.len(), ms = started.elapsed().as_millis() as u64, "verify: re-check");
        let by_key: HashMap<&Vec<String>, &CanonRow> = src_rows.iter().map(|r| (&r.key, r)).collect();
        // A difference is confirmed once the task has passed the source's position and the
        // source row did not change since the previous read; otherwise it is read again.
        let mut pending = BTreeMap::new();
        for (k, d) in now {
            let current = by_key.get(&k).map(|r| r.values.clone());
            let stable = last_source.get(&k).is_some_and(|before| *before == current);
            if (stable && (caught_up || rechecks >= 2)) || rechecks == RECHECK_ROUNDS {
                if !caught_up && note.is_none() {
                    note = Some(format!(
                        "the task did not reach the source position {} within {}s: some differences may still be lag (is the task running?)",
                        source.describe_position(&target),
                        CATCH_UP_WAIT.as_secs()
                    ));
                }
                confirmed.insert(k, d);
            } else {
                pending.insert(k, d);
            }
        }
        remember(&mut last_source, &src_rows, &pending);
        diffs = pending;
        confirmed.extend(unchecked);
    }
    confirmed.extend(diffs);
    let differences_total = confirmed.len();
    let not_compared = columns
        .iter()
        .filter_map(|c| c.not_compared.clone().map(|reason| NotCompared { column: c.name.clone(), reason }))
        .collect();
    if !lake.missing_columns.is_empty() && note.is_none() {
        note = Some(format!("the target has no column {:?}: compared as NULL", lake.missing_columns));
    }
    Ok(VerifyReport {
        task: spec.name.clone(),
        source_table,
        target: spec.sink.table_location(),
        equal: differences_total == 0,
        source_rows: count,
        target_rows: lake.rows,
        key_columns: key,
        compared_columns: compared,
        not_compared,
        source_position: source.describe_position(&snapshot_position),
        target_version: lake.version,
        target_position: lake.position.as_ref().map(|p| source.describe_position(p)),
        rows_per_range,
        ranges_differing: differing.len(),
        ranges,
        differences: confirmed.into_values().take(MAX_LISTED).collect(),
        differences_total,
        resolved_on_recheck: initial.saturating_sub(differences_total),
        rechecks,
        note,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn remember(
    last: &mut HashMap<Vec<String>, Option<Vec<Option<String>>>>,
    rows: &[CanonRow],
    diffs: &BTreeMap<Vec<String>, Difference>,
) {
    let by_key: HashMap<&Vec<String>, &CanonRow> = rows.iter().map(|r| (&r.key, r)).collect();
    for k in diffs.keys() {
        last.insert(k.clone(), by_key.get(k).map(|r| r.values.clone()));
    }
}

/// Polls the task's committed position until it has passed `target`; false when it did not
/// within [`CATCH_UP_WAIT`] (or that cannot be told).
async fn wait_until_reached(
    source: &mut dyn TableVerifier,
    spec: &TaskSpec,
    target: &serde_json::Value,
) -> Result<bool> {
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let committed = committed_position(&spec.sink, &spec.name).await?;
        match source.reached(committed.as_ref(), target).await? {
            Some(true) => return Ok(true),
            None => {
                // Positions that do not compare: give the task one wait to catch up.
                tokio::time::sleep(CATCH_UP_WAIT / 4).await;
                return Ok(false);
            }
            Some(false) => {}
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The differences between two sets of rows (canonical texts), by key.
pub fn compare_rows(source: &[CanonRow], lake: &[CanonRow], columns: &[String]) -> BTreeMap<Vec<String>, Difference> {
    let mut out = BTreeMap::new();
    let mut lake_by_key: HashMap<&Vec<String>, &CanonRow> = HashMap::with_capacity(lake.len());
    let mut duplicates = HashSet::new();
    for r in lake {
        if lake_by_key.insert(&r.key, r).is_some() {
            duplicates.insert(&r.key);
        }
    }
    let source_keys: HashSet<&Vec<String>> = source.iter().map(|r| &r.key).collect();
    for s in source {
        let diff = match lake_by_key.get(&s.key) {
            _ if duplicates.contains(&s.key) => {
                Some(Difference { key: s.key.clone(), kind: DiffKind::DuplicateInLake, columns: Vec::new() })
            }
            None => Some(Difference { key: s.key.clone(), kind: DiffKind::MissingInLake, columns: Vec::new() }),
            Some(l) => {
                let differ: Vec<String> = s
                    .values
                    .iter()
                    .zip(&l.values)
                    .zip(columns)
                    .filter(|((a, b), _)| a != b)
                    .map(|(_, c)| c.clone())
                    .collect();
                (!differ.is_empty()).then(|| Difference {
                    key: s.key.clone(),
                    kind: DiffKind::ValuesDiffer,
                    columns: differ,
                })
            }
        };
        if let Some(d) = diff {
            out.insert(s.key.clone(), d);
        }
    }
    for l in lake {
        if !source_keys.contains(&l.key) {
            let kind = if duplicates.contains(&l.key) { DiffKind::DuplicateInLake } else { DiffKind::ExtraInLake };
            out.insert(l.key.clone(), Difference { key: l.key.clone(), kind, columns: Vec::new() });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(key: &str, values: &[Option<&str>]) -> CanonRow {
        CanonRow { key: vec![key.into()], values: values.iter().map(|v| v.map(str::to_string)).collect() }
    }

    #[test]
    fn classifies_differences_by_key() {
        let cols = vec!["name".to_string(), "qty".to_string()];
        let source =
            vec![row("1", &[Some("a"), Some("1")]), row("2", &[Some("b"), None]), row("3", &[Some("c"), None])];
        let lake = vec![
            row("1", &[Some("a"), Some("1")]),
            row("2", &[Some("b"), Some("")]),
            row("4", &[Some("d"), None]),
            row("5", &[None, None]),
            row("5", &[None, None]),
        ];
        let d: Vec<Difference> = compare_rows(&source, &lake, &cols).into_values().collect();
        assert_eq!(
            d,
            vec![
                Difference { key: vec!["2".into()], kind: DiffKind::ValuesDiffer, columns: vec!["qty".into()] },
                Difference { key: vec!["3".into()], kind: DiffKind::MissingInLake, columns: vec![] },
                Difference { key: vec!["4".into()], kind: DiffKind::ExtraInLake, columns: vec![] },
                Difference { key: vec!["5".into()], kind: DiffKind::DuplicateInLake, columns: vec![] },
            ]
        );
        let json = serde_json::to_value(&d[1]).unwrap();
        assert_eq!(json, serde_json::json!({"key": ["3"], "kind": "missing_in_lake"}));
    }
}
