//! Test harness: a real PostgreSQL (RTSYNC_PG_URL), a uniquely named table per test, and a
//! small "engine" that drains the source, acknowledges what it pretends to commit, and
//! applies change rows with upsert semantics.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rtsync_core::arrow::array::{Array, AsArray, RecordBatch};
use rtsync_core::arrow::util::display::array_value_to_string;
use rtsync_core::{ChangeBatch, ErrorKind, OP_COLUMN, Source, SyncResult};
use rtsync_source_postgres::{PgPosition, PostgresSource, PostgresSourceConfig, UNCHANGED_COLUMN};
use tokio_postgres::Client;

pub fn pg_url() -> String {
    std::env::var("RTSYNC_PG_URL").unwrap_or_else(|_| {
        panic!(
            "RTSYNC_PG_URL is not set: start PostgreSQL with `scripts/services.sh start postgres` and run \
             `eval \"$(scripts/services.sh env)\"` before the PostgreSQL source tests"
        )
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (of this or another run) uses: `t_<pid>_<n>_<tag>`.
pub fn unique(tag: &str) -> String {
    format!("t_{}_{}_{tag}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub async fn connect() -> Client {
    let (client, conn) =
        tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.expect("connecting to RTSYNC_PG_URL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Drops inactive test slots left by earlier runs (other pids) so that they do not use up
/// max_replication_slots.
pub async fn drop_stale_slots(client: &Client) {
    let mine = format!("rtsync_t_{}_", std::process::id());
    let _ = client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE NOT active AND slot_name LIKE 'rtsync\\_t\\_%' AND slot_name NOT LIKE $1 || '%'",
            &[&mine],
        )
        .await;
}

/// One test's table and task.
pub struct Fixture {
    pub client: Client,
    pub table: String,
    pub task: String,
}

impl Fixture {
    pub async fn new(tag: &str, ddl: &str) -> Self {
        let client = connect().await;
        drop_stale_slots(&client).await;
        let table = unique(tag);
        let task = table.clone();
        client.batch_execute(&ddl.replace("{t}", &format!("public.{table}"))).await.expect("creating the test table");
        Fixture { client, table, task }
    }

    pub fn config(&self) -> PostgresSourceConfig {
        PostgresSourceConfig::new(pg_url(), "public", &self.table)
    }

    pub fn source(&self, config: PostgresSourceConfig) -> PostgresSource {
        PostgresSource::new(&self.task, config).unwrap()
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(&sql.replace("{t}", &format!("public.{}", self.table)))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The table's rows as `key → [column texts]` via `SELECT key, cols::text ORDER BY key`.
    pub async fn state(&self, key: &str, cols: &[&str]) -> BTreeMap<String, Vec<Option<String>>> {
        let select = cols.iter().map(|c| format!("{c}::text")).collect::<Vec<_>>().join(", ");
        let rows = self
            .client
            .query(&format!("SELECT {key}::text, {select} FROM public.{} ORDER BY {key}", self.table), &[])
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.get::<_, String>(0), (1..=cols.len()).map(|i| r.get::<_, Option<String>>(i)).collect()))
            .collect()
    }

    pub async fn cleanup(self, config: &PostgresSourceConfig) {
        rtsync_source_postgres::drop_replication_objects(config, &self.task).await.unwrap();
        self.client.batch_execute(&format!("DROP TABLE IF EXISTS public.{} CASCADE", self.table)).await.unwrap();
    }
}

/// Opens the source, retrying transient errors (a slot still held by the walsender of a
/// source dropped a moment ago), as the engine's retry would.
pub async fn open(source: &mut PostgresSource, resume: Option<PgPosition>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match source.open(resume.clone()).await {
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::Transient && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("open failed: {}", e.report()),
        }
    }
}

/// One emitted row, rendered: op, the named columns as display strings (None = NULL), and the
/// `__unchanged` list, and the old key of a key change (`__before_<first column>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub op: String,
    pub values: Vec<Option<String>>,
    pub unchanged: Vec<String>,
    pub before: Option<String>,
}

pub fn render(batch: &RecordBatch, cols: &[&str]) -> Vec<Row> {
    let ops = batch.column_by_name(OP_COLUMN).expect("__op column").as_string::<i32>();
    let unchanged = batch.column_by_name(UNCHANGED_COLUMN).map(|c| c.as_list::<i32>().clone());
    let before = cols.first().and_then(|k| batch.column_by_name(&rtsync_core::before_key_column(k)));
    (0..batch.num_rows())
        .map(|i| Row {
            before: before.filter(|b| b.is_valid(i)).map(|b| array_value_to_string(b, i).unwrap()),
            op: ops.value(i).to_string(),
            values: cols
                .iter()
                .map(|c| {
                    let col = batch.column_by_name(c);
                    match col {
                        Some(col) if col.is_valid(i) => Some(array_value_to_string(col, i).unwrap()),
                        _ => None,
                    }
                })
                .collect(),
            unchanged: match &unchanged {
                Some(u) if u.is_valid(i) => {
                    u.value(i).as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect()
                }
                _ => Vec::new(),
            },
        })
        .collect()
}

/// Drains the source until `done(rows so far)` or the timeout; acknowledges every batch (as if
/// committed) when `ack` is set. Returns the batches.
pub async fn drain(
    source: &mut PostgresSource,
    ack: bool,
    timeout: Duration,
    mut done: impl FnMut(&[ChangeBatch<PgPosition>]) -> bool,
) -> Vec<ChangeBatch<PgPosition>> {
    let deadline = Instant::now() + timeout;
    let mut batches = Vec::new();
    while !done(&batches) {
        assert!(Instant::now() < deadline, "timed out draining the source; got {} batches", batches.len());
        if let Some(batch) =
            source.next_batch(Duration::from_millis(200)).await.unwrap_or_else(|e| panic!("next_batch: {}", e.report()))
        {
            if ack {
                source.ack(&batch.end).await.unwrap();
            }
            batches.push(batch);
        }
    }
    batches
}

/// All rows of the batches, rendered.
pub fn rows_of(batches: &[ChangeBatch<PgPosition>], cols: &[&str]) -> Vec<Row> {
    batches.iter().flat_map(|b| render(&b.rows, cols)).collect()
}

/// True once some row has `values[0] == key`.
pub fn seen(batches: &[ChangeBatch<PgPosition>], key_col: &str, key: &str) -> bool {
    rows_of(batches, &[key_col]).iter().any(|r| r.values[0].as_deref() == Some(key))
}

/// Applies rows as an upsert sink would (the first column is the key): `r`/`c`/`u` replace,
/// `d` removes, `t` clears; unchanged columns keep the stored value.
pub fn apply(state: &mut BTreeMap<String, Vec<Option<String>>>, rows: &[Row], cols: &[&str]) {
    for r in rows {
        match r.op.as_str() {
            "t" => state.clear(),
            "d" => {
                state.remove(r.values[0].as_ref().unwrap());
            }
            _ => {
                let key = r.values[0].clone().unwrap();
                let mut values: Vec<Option<String>> = r.values[1..].to_vec();
                // a key change: the old key's row goes, and lends the values not sent
                let moved = r.before.as_ref().and_then(|old| state.remove(old));
                if let Some(old) = moved.as_ref().or(state.get(&key)) {
                    for (i, c) in cols[1..].iter().enumerate() {
                        if r.unchanged.iter().any(|u| u == c) {
                            values[i] = old[i].clone();
                        }
                    }
                }
                state.insert(key, values);
            }
        }
    }
}

pub async fn close(mut source: PostgresSource) -> SyncResult<()> {
    source.close().await
}
