//! Tails one MySQL or MariaDB table with rtsync's binlog source as a library: no daemon, no
//! engine.
//!
//! It snapshots the table and streams its binlog changes as Arrow [`ChangeBatch`]es, keeps the
//! position of the last batch as text (where a real program stores it durably together with
//! what it did with the rows), acknowledges it, stops, then resumes from that text and reads
//! only the changes made meanwhile. MySQL keeps no state for a replica, so there is nothing to
//! drop on the server afterwards.
//!
//! ```text
//! cargo run -p rtsync-source-mysql --example mysql_tail -- [--url URL] [--table DATABASE.TABLE]
//!     [--max-batches N] [--idle-secs S]
//! ```
//!
//! `--url` defaults to `$RTSYNC_MARIADB_URL`, else the test server of `scripts/services.sh`
//! (`mysql://rtsync:rtsync@127.0.0.1:13306/rtsync`; binlog on, ROW format). Without `--table`
//! it creates and fills `rtsync.rtsync_example` and changes it between the two runs. Each run
//! ends after N batches or after S seconds without one.

use std::error::Error;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rtsync_source_mysql::arrow::util::pretty::pretty_format_batches;
use rtsync_source_mysql::{ChangeBatch, MySqlPosition, MySqlSource, MySqlSourceConfig, Source, SyncResult};

/// The task name: it picks the server id the source registers with as a replica.
const TASK: &str = "example";
const DEMO_DB: &str = "rtsync";
const DEMO_TABLE: &str = "rtsync_example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse()?;
    let demo = args.table.is_none();
    let (schema, table) = match &args.table {
        Some(name) => name.split_once('.').ok_or("--table takes SCHEMA.TABLE")?,
        None => (DEMO_DB, DEMO_TABLE),
    };
    if demo {
        sql(
            &args.url,
            &format!(
                "DROP TABLE IF EXISTS {DEMO_DB}.{DEMO_TABLE};
             CREATE TABLE {DEMO_DB}.{DEMO_TABLE} (id int PRIMARY KEY, name text, price decimal(10,2));
             INSERT INTO {DEMO_DB}.{DEMO_TABLE} VALUES (1, 'apple', 1.20), (2, 'pear', 0.80), (3, 'fig', 2.50);"
            ),
        )
        .await?;
    }
    let config = MySqlSourceConfig::new(&args.url, schema, table);

    println!("== first run: snapshot, then streaming");
    let mut source = MySqlSource::new(TASK, config.clone())?;
    source.check().await?; // pre-flight: binlog on, ROW format, privileges, the table and its key
    if let Some(table) = source.describe().await? {
        println!("primary key: {:?}", table.primary_key);
    }
    source.open(None).await?; // None: a first start, so the source takes a snapshot
    let checkpoint: Option<String> = tail(&mut source, &args).await?.map(|p| p.to_string());
    source.close().await?;
    println!("checkpoint: {}", checkpoint.as_deref().unwrap_or("(none)"));

    if demo {
        sql(
            &args.url,
            &format!(
                "UPDATE {DEMO_DB}.{DEMO_TABLE} SET price = 0.95 WHERE id = 2;
             DELETE FROM {DEMO_DB}.{DEMO_TABLE} WHERE id = 3;
             INSERT INTO {DEMO_DB}.{DEMO_TABLE} VALUES (4, 'kiwi', 0.40);"
            ),
        )
        .await?;
    }

    println!("== second run: resumed from the checkpoint");
    let resume = checkpoint.map(|text| text.parse::<MySqlPosition>()).transpose()?;
    let mut source = MySqlSource::new(TASK, config)?;
    source.check().await?;
    source.open(resume).await?;
    tail(&mut source, &args).await?;
    source.close().await?;

    if demo {
        sql(&args.url, &format!("DROP TABLE {DEMO_DB}.{DEMO_TABLE}")).await?;
    }
    Ok(())
}

/// Reads and prints batches until `--max-batches` or `--idle-secs` without data; acknowledges
/// each one (here: as soon as it is printed) and returns the position of the last.
async fn tail<S: Source>(source: &mut S, args: &Args) -> SyncResult<Option<S::Position>> {
    let mut last = None;
    let mut batches = 0;
    let mut idle_since = Instant::now();
    while batches < args.max_batches && idle_since.elapsed() < args.idle {
        let Some(batch) = source.next_batch(Duration::from_millis(500)).await? else { continue };
        print_batch(&batch);
        // A real program makes the rows and `batch.end` durable first (the Delta sink commits
        // both in one transaction); only then may the source tell the server.
        source.ack(&batch.end).await?;
        last = Some(batch.end);
        batches += 1;
        idle_since = Instant::now();
    }
    Ok(last)
}

fn print_batch<P: std::fmt::Display>(batch: &ChangeBatch<P>) {
    match pretty_format_batches(std::slice::from_ref(&batch.rows)) {
        Ok(table) if batch.num_rows() > 0 => println!("{table}"),
        _ => {}
    }
    println!("{} rows, position {}", batch.num_rows(), batch.end);
}

/// Runs SQL statements on the demo table with a plain client (not part of the source's API).
async fn sql(url: &str, sql: &str) -> Result<(), Box<dyn Error>> {
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(url)?).await?;
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.query_drop(statement).await?;
    }
    conn.disconnect().await?;
    Ok(())
}

struct Args {
    url: String,
    table: Option<String>,
    max_batches: usize,
    idle: Duration,
}

impl Args {
    fn parse() -> Result<Self, Box<dyn Error>> {
        let mut args = Args {
            url: std::env::var("RTSYNC_MARIADB_URL")
                .unwrap_or_else(|_| "mysql://rtsync:rtsync@127.0.0.1:13306/rtsync".to_string()),
            table: None,
            max_batches: 100,
            idle: Duration::from_secs(3),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--url" => args.url = value()?,
                "--table" => args.table = Some(value()?),
                "--max-batches" => args.max_batches = value()?.parse()?,
                "--idle-secs" => args.idle = Duration::from_secs(value()?.parse()?),
                _ => return Err(format!("unknown argument {flag}").into()),
            }
        }
        Ok(args)
    }
}
