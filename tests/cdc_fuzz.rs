//! The differential CDC fuzzer: a seeded random workload on a PostgreSQL, a MariaDB and an Oracle
//! MySQL table with every interesting type, mirrored by `rtsync run` that is SIGKILLed and restarted at
//! random points; after each round the source table (read with its SQL client) and the Delta
//! table (read with the independent Python reader, `tests/common/delta_cells.py`) must be equal
//! value by value.
//!
//! The workload (`cdc_fuzz/workload.rs`): inserts; updates of one column, of every column, of
//! the small columns only (PostgreSQL does not send the unchanged out-of-line TOAST values),
//! and to all NULLs; primary-key changes alone (the big value not in the SET list), in chains
//! (`a → b → c`) and as swaps of two keys in one transaction; deletes and re-inserts of deleted
//! keys; transactions of one statement to a few hundred; TRUNCATE; an ADD COLUMN; idle gaps of
//! up to eight seconds. Values: large incompressible text and bytes, JSON (large, nested,
//! unicode), decimals at their limits, floats with NaN, infinities, -0 and subnormals (where the
//! source has them), timestamps with time zones written at random offsets, dates at the ends of
//! their ranges, NULLs.
//!
//! The task is killed first while it copies the snapshot, then once or twice per round, between
//! two source transactions at a random point of the workload; every [`RESNAPSHOT_EVERY`] rounds
//! a new task copies the table as the rounds left it (TOAST values, the added column, gaps of
//! deleted keys) and is killed while it does. Each round ends by upserting a
//! sentinel row (`id = 0`) with a new mark; once the target shows the mark, everything before it
//! has been committed, and the two tables are compared.
//!
//! On Oracle MySQL the seed also decides whether the writer's transactions are zstd-compressed
//! in the binlog (`binlog_transaction_compression`).
//!
//! Environment: `RTSYNC_FUZZ_SEED` (random otherwise; always printed), `RTSYNC_FUZZ_ROUNDS`
//! (default [`CI_ROUNDS`]), `RTSYNC_FUZZ_NO_KEY_CHANGES=1` (no primary-key changes, to isolate
//! other failures from those). `scripts/fuzz.sh --rounds N` runs a long soak. A failure prints
//! the seed, every operation that touched each differing key, and a command that replays it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/cells.rs"]
mod cells;
mod common;
#[path = "cdc_fuzz/compare.rs"]
mod compare;
#[path = "cdc_fuzz/sources.rs"]
mod sources;
#[path = "cdc_fuzz/workload.rs"]
mod workload;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};

use common::MySqlServer;
use sources::{Db, INITIAL_COLUMNS};
use workload::{Applied, Generator, History, Options, Rng, Step};

/// Rounds per source when `RTSYNC_FUZZ_ROUNDS` is not set: what CI runs on every run.
const CI_ROUNDS: usize = 10;
/// Rows in the table before the task starts (its snapshot).
const INITIAL_ROWS: usize = 250;
/// A new task snapshots the table after this many rounds (from round 6 on, every 5 rounds).
const RESNAPSHOT_EVERY: usize = 5;
/// How long a round may take to reach the target before the comparison runs anyway.
const CONVERGE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Postgres,
    Mysql(MySqlServer),
    /// The SQL Server CDC simulator behind its TDS endpoint (no SQL Server runs here).
    SqlServer,
}

impl Source {
    /// As `scripts/fuzz.sh --source` takes it.
    fn name(self) -> &'static str {
        match self {
            Source::Postgres => "postgres",
            Source::Mysql(MySqlServer::MariaDb) => "mariadb",
            Source::Mysql(MySqlServer::OracleMySql) => "oracle_mysql",
            Source::SqlServer => "sqlserver",
        }
    }
}

struct Settings {
    seed: u64,
    rounds: usize,
    key_changes: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let seed = match std::env::var("RTSYNC_FUZZ_SEED") {
            Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("RTSYNC_FUZZ_SEED={s}: not a number")),
            Err(_) => {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                Rng::new(nanos as u64 ^ u64::from(std::process::id()) << 32).next_u64() >> 12
            }
        };
        let rounds = match std::env::var("RTSYNC_FUZZ_ROUNDS") {
            Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("RTSYNC_FUZZ_ROUNDS={s}: not a number")),
            Err(_) => CI_ROUNDS,
        };
        let key_changes = match std::env::var("RTSYNC_FUZZ_NO_KEY_CHANGES") {
            Ok(v) => v.is_empty() || v == "0",
            Err(_) => true,
        };
        Settings { seed, rounds: rounds.max(1), key_changes }
    }

    fn replay(&self, source: Source) -> String {
        format!(
            "scripts/fuzz.sh --source {} --seed {} --rounds {}{}",
            source.name(),
            self.seed,
            self.rounds,
            if self.key_changes { "" } else { " --no-key-changes" }
        )
    }
}

/// A task (its own name, replication slot and Delta table) and its `rtsync run` child,
/// restarted after each kill.
struct Task {
    name: String,
    spec: PathBuf,
    log: PathBuf,
    target: LakehouseSinkConfig,
    child: Option<Child>,
    kills: usize,
}

impl Task {
    /// A new task on the source table, its spec and target under `dir`.
    fn new(dir: &Path, source: &str, kills: usize) -> Task {
        let name = common::unique("fuzz").to_lowercase();
        let dir = dir.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let options = "commit_interval = \"300ms\"\nmax_buffered_rows = 60";
        let common::CdcTask { spec, log, target } = common::cdc_task(&dir, &name, options, source, "fuzz");
        Task { name, spec, log, target, child: None, kills }
    }

    /// Stops the child (SIGTERM, SIGKILL on failure) and drops what the task holds at the
    /// source (PostgreSQL: its slot and publication, which would hold WAL on the shared server).
    /// The exit status of a SIGTERM, if it was sent.
    async fn retire(&mut self, gracefully: bool) -> Option<std::process::ExitStatus> {
        let status = match self.child.take() {
            Some(mut child) if gracefully => {
                common::sigterm(&child);
                Some(common::wait_exit(&mut child, Duration::from_secs(60)))
            }
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
            None => None,
        };
        if let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(&self.spec).unwrap().source
            && let Err(e) = rtsync_source_postgres::drop_replication_objects(&config, &self.name).await
        {
            eprintln!("dropping the slot and publication of {}: {e}", self.name);
        }
        status
    }

    fn start(&mut self) {
        self.child = Some(common::spawn_run(&self.spec, &self.log));
    }

    /// SIGKILL; an error if rtsync had already exited on its own.
    fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("rtsync exited on its own ({status}); its log ends:\n{}", self.log_tail(30)));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            self.kills += 1;
        }
        Ok(())
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the sentinel row carries `mark`; an error if rtsync exits or time runs out.
    async fn wait_mark(&mut self, mark: i64) -> Result<(), String> {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Err(format!("rtsync exited ({status}); its log ends:\n{}", self.log_tail(30)));
            }
            let sql = "SELECT CAST(num AS BIGINT) FROM t WHERE id = 0";
            if let Ok(batches) = query_table(&self.target, sql).await {
                let seen =
                    batches.iter().find(|b| b.num_rows() > 0).map(|b| b.column(0).as_primitive::<Int64Type>().value(0));
                if seen == Some(mark) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the target did not reach the end of the round within {CONVERGE:?}; rtsync's log ends:\n{}",
                    self.log_tail(30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn sleep_ms(ms: i64) {
    tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
}

/// Counts for the summary line.
#[derive(Default)]
struct Tally {
    txns: usize,
    ops: usize,
    /// Cells compared equal, summed over the rounds.
    cells: usize,
}

async fn fuzz(source: Source) {
    let settings = Settings::from_env();
    let started = Instant::now();
    let columns = match source {
        Source::Postgres => sources::postgres_columns(),
        Source::Mysql(_) => sources::mysql_columns(),
        Source::SqlServer => sources::sqlserver_columns(),
    };
    eprintln!(
        "cdc fuzz {}: seed {} rounds {} key changes {}; replay: {}",
        source.name(),
        settings.seed,
        settings.rounds,
        if settings.key_changes { "on" } else { "off" },
        settings.replay(source)
    );
    let mut generator = Generator::new(
        settings.seed,
        columns.clone(),
        INITIAL_COLUMNS,
        Options { key_changes: settings.key_changes, ddl_alone: !matches!(source, Source::Postgres) },
    );
    let mut chance = generator.rng.fork();
    let add_column_round = generator.rng.range(1, settings.rounds as i64) as usize;

    let name = common::unique("fuzz").to_lowercase();
    let (mut db, table, source_spec, database) = match source {
        Source::Postgres => {
            let url = std::env::var("RTSYNC_PG_URL").expect("RTSYNC_PG_URL is not set: run the README's test command");
            let spec = format!(
                "type = \"postgresql\"\nurl = \"{url}\"\nschema = \"public\"\ntable = \"{name}\"\nsnapshot_chunk_rows = 20"
            );
            (Db::postgres(&url).await, name.clone(), spec, None)
        }
        Source::Mysql(server) => {
            let url = server.url();
            let offset = 15 * chance.range(-48, 52);
            let compress = !server.is_mariadb() && chance.chance(0.5);
            eprintln!(
                "cdc fuzz {}: session time zone {offset:+} min, compressed binlog transactions: {compress}",
                source.name()
            );
            let mut db = Db::mysql(&url, offset, compress).await;
            db.batch(&format!("CREATE DATABASE {name}")).await.unwrap();
            let spec = format!(
                "type = \"mysql\"\nurl = \"{url}\"\nschema = \"{name}\"\ntable = \"fuzz\"\nsnapshot_chunk_rows = 20\nidle_position_secs = 2"
            );
            (db, format!("{name}.fuzz"), spec, Some(name.clone()))
        }
        Source::SqlServer => {
            let sim = sources::SqlServerSim::start(&columns[..INITIAL_COLUMNS]).await;
            let spec = format!(
                "type = \"sqlserver\"\nurl = \"{}\"\nschema = \"dbo\"\ntable = \"fuzz\"\nsnapshot_chunk_rows = 20\npoll_interval_ms = 50\nidle_advance_secs = 2",
                sim.endpoint.url()
            );
            (Db::SqlServer(sim), "fuzz".to_string(), spec, None)
        }
    };
    db.create_table(&table, &columns[..INITIAL_COLUMNS]).await.unwrap();

    let mut history = History::default();
    for (index, txn) in generator.initial(INITIAL_ROWS).into_iter().enumerate() {
        db.apply(&table, &generator.columns[..generator.active], &txn).await.unwrap();
        history.0.push(Applied { round: 0, index, txn });
    }

    let dir = tempfile::tempdir().unwrap();
    let task = Task::new(dir.path(), &source_spec, 0);

    // Kill it while it copies the snapshot (or as it starts), once or twice.
    let mut run = Run { db, table, generator, chance, task, history, tally: Tally::default() };
    let mut failure = run.snapshot_kills().await.err().map(|e| (0, e));
    for round in 1..=settings.rounds {
        if failure.is_some() {
            break;
        }
        if round > 1 && (round - 1) % RESNAPSHOT_EVERY == 0 {
            // a new task copies the table as the rounds left it, and is killed doing so
            run.task.retire(false).await;
            run.task = Task::new(dir.path(), &source_spec, run.task.kills);
            eprintln!("cdc fuzz {}: a new task, {}, snapshots the table", source.name(), run.task.name);
            if let Err(e) = run.snapshot_kills().await {
                failure = Some((round, e));
                break;
            }
        }
        if let Err(e) = run.round(round, round == add_column_round).await {
            failure = Some((round, e));
            break;
        }
        eprintln!(
            "cdc fuzz {}: round {round} equal ({} transactions, {} statements, {} cells compared, {} kills so far, {:.0?})",
            source.name(),
            run.tally.txns,
            run.tally.ops,
            run.tally.cells,
            run.task.kills,
            started.elapsed()
        );
    }
    let Run { mut db, table, mut task, tally, .. } = run;
    let clean_exit = task.retire(failure.is_none()).await;
    if let Some((round, report)) = failure {
        panic!(
            "CDC fuzz failure ({}): seed {}, round {round} of {} (round 0: the snapshot)\nreplay: {}\n{report}",
            source.name(),
            settings.seed,
            settings.rounds,
            settings.replay(source)
        );
    }
    if let Some(status) = clean_exit {
        assert!(status.success(), "rtsync exited with {status} on SIGTERM:\n{}", task.log_tail(30));
    }
    match (database, &db) {
        (_, Db::SqlServer(_)) => {}
        (Some(db_name), _) => db.batch(&format!("DROP DATABASE {db_name}")).await.unwrap(),
        (None, _) => db.batch(&format!("DROP TABLE {table}")).await.unwrap(),
    }
    eprintln!(
        "cdc fuzz {}: seed {}: {} rounds equal, {} transactions, {} statements, {} cells compared, {} kills, {:.0?}",
        source.name(),
        settings.seed,
        settings.rounds,
        tally.txns,
        tally.ops,
        tally.cells,
        task.kills,
        started.elapsed()
    );
    assert!(tally.ops > 0 && tally.cells > 0, "the workload ran and the tables were compared");
    assert!(task.kills > settings.rounds, "the task was killed in the snapshot and in every round");
}

/// One fuzz run's state: the source, the generator, the kill schedule, the task, the history.
struct Run {
    db: Db,
    table: String,
    generator: Generator,
    /// Kill points and pauses; a stream of its own so the workload does not depend on it.
    chance: Rng,
    task: Task,
    history: History,
    tally: Tally,
}

impl Run {
    /// Starts the task and kills it once or twice while it copies the snapshot (or starts).
    async fn snapshot_kills(&mut self) -> Result<(), String> {
        self.task.start();
        for _ in 0..self.chance.range(1, 2) {
            sleep_ms(self.chance.range(50, 1_500)).await;
            self.task.kill()?;
            let rows = common::count_rows(&self.task.target).await;
            eprintln!("cdc fuzz: killed as it copied the snapshot, {rows} rows committed");
            sleep_ms(self.chance.range(0, 300)).await;
            self.task.start();
        }
        Ok(())
    }

    /// One round: its steps with a kill (sometimes two) at a random point among them, then the
    /// sentinel mark, and the comparison once the target shows it. Err: the failure report.
    async fn round(&mut self, round: usize, add_column: bool) -> Result<(), String> {
        let steps = self.generator.round(add_column);
        let kill_at = self.chance.below(steps.len());
        let kill_again = self.chance.chance(0.3);
        for (index, step) in steps.into_iter().enumerate() {
            if index == kill_at {
                sleep_ms(self.chance.range(0, 400)).await;
                self.task.kill()?;
                sleep_ms(self.chance.range(0, 300)).await;
                self.task.start();
                if kill_again {
                    sleep_ms(self.chance.range(50, 1_500)).await;
                    self.task.kill()?;
                    self.task.start();
                }
            }
            match step {
                Step::Txn(txn) => {
                    let columns = &self.generator.columns[..self.generator.active];
                    self.db.apply(&self.table, columns, &txn).await.map_err(|e| {
                        format!("the source refused transaction {index} ({} statements): {e}", txn.ops.len())
                    })?;
                    self.tally.txns += 1;
                    self.tally.ops += txn.ops.len();
                    self.history.0.push(Applied { round, index, txn });
                    sleep_ms(self.chance.range(0, 120)).await;
                }
                Step::Idle { millis } => sleep_ms(millis as i64).await,
            }
        }
        let mark = round as i64;
        self.db.mark(&self.table, mark).await?;
        let converged = self.task.wait_mark(mark).await;
        let diffs = compare_round(&mut self.db, &self.table, &self.generator, &self.task, &self.history).await;
        match (converged, diffs) {
            (Ok(()), Ok(cells)) => {
                self.tally.cells += cells;
                Ok(())
            }
            (Ok(()), Err(diffs)) => Err(diffs),
            (Err(e), Ok(_)) => Err(e),
            (Err(e), Err(diffs)) => Err(format!("{e}\n{diffs}")),
        }
    }
}

/// Compares the source with the target: the number of cells found equal, or the report of
/// what differs, with each differing key's history.
async fn compare_round(
    db: &mut Db,
    table: &str,
    generator: &Generator,
    task: &Task,
    history: &History,
) -> Result<usize, String> {
    let columns = &generator.columns[..generator.active];
    let source = db.read(table, columns).await.map_err(|e| format!("reading the source failed: {e}"))?;
    let read = cells::read_delta(&task.target, "id");
    let target = compare::delta_rows(&read, columns)?;
    let diffs = compare::differences(&source, &target);
    if diffs.is_empty() {
        return Ok(source.values().map(|row| row.len()).sum());
    }
    let mut out = format!("{} of {} source keys differ in the Delta table:\n", diffs.len(), source.len());
    for d in diffs.iter().take(12) {
        let _ = writeln!(out, "key {}:", d.key);
        for w in &d.what {
            let _ = writeln!(out, "  {w}");
        }
        match d.key.parse::<i64>() {
            Ok(0) => {
                let _ = writeln!(out, "  (the driver's sentinel row, upserted at the end of each round)");
            }
            Ok(key) => {
                let _ = write!(
                    out,
                    "  history (through the keys its row had before):\n{}",
                    history.of_key(key, &generator.columns)
                );
            }
            Err(_) => {}
        }
    }
    if diffs.len() > 12 {
        let _ = writeln!(out, "… and {} more keys", diffs.len() - 12);
    }
    Err(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_random_workload_through_kills() {
    fuzz(Source::Postgres).await;
}

per_mysql_server!(async mysql_random_workload_through_kills);

async fn mysql_random_workload_through_kills(server: MySqlServer) {
    fuzz(Source::Mysql(server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlserver_random_workload_through_kills() {
    fuzz(Source::SqlServer).await;
}
