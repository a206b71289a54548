//! Writes Arrow batches into a Delta table with rtsync's sink as a library: no daemon, no
//! engine, no server.
//!
//! Each commit is ONE Delta transaction holding the rows and a checkpoint (task, epoch, source
//! position). The example commits a few batches, then opens the table again the way a
//! restarted program does and reads the committed checkpoint back: that is where the program
//! resumes its source. Last, it queries the rows.
//!
//! ```text
//! cargo run -p rtsync-sink-lakehouse --example delta_write -- [--path DIR] [--batches N]
//! ```
//!
//! Without `--path` the table goes to a new directory under the system's temp dir, removed at
//! the end. With `--path`, run it twice: the second run continues after the first one's epoch.

use std::error::Error;
use std::sync::Arc;

use rtsync_sink_lakehouse::arrow::array::{Int64Array, RecordBatch, StringArray};
use rtsync_sink_lakehouse::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtsync_sink_lakehouse::arrow::util::pretty::pretty_format_batches;
use rtsync_sink_lakehouse::{Checkpoint, DeltaSink, LakehouseSinkConfig, Sink, query_table};

/// The task name: the Delta `txn` app id its checkpoints are recorded under.
const TASK: &str = "example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse()?;
    let temporary = args.path.is_none();
    let root = args.path.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rtsync-example-{}", std::process::id())).display().to_string()
    });
    let config = LakehouseSinkConfig::new(&root, "public", "orders");
    let schema: SchemaRef =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("item", DataType::Utf8, true)]));

    // open() creates the table when it is missing and returns this task's last checkpoint.
    let mut sink = DeltaSink::new(TASK, config.clone())?;
    let resumed = sink.open(schema.clone()).await?;
    let (mut epoch, mut next_id) = match &resumed {
        Some(cp) => (cp.epoch, cp.position["next_id"].as_i64().unwrap_or(0)),
        None => (0, 0),
    };
    println!("table {}: checkpoint on open: {}", config.table_location(), show(resumed.as_ref()));

    for _ in 0..args.batches {
        let ids: Vec<i64> = (next_id..next_id + 2).collect();
        let items: Vec<String> = ids.iter().map(|id| format!("item {id}")).collect();
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(items))],
        )?;
        next_id += 2;
        epoch += 1;
        sink.write(rows).await?; // buffered: neither visible nor durable yet
        // The position is the source's (here a made-up counter); it commits with the rows.
        let checkpoint = Checkpoint { task: TASK.into(), epoch, position: serde_json::json!({ "next_id": next_id }) };
        let stats = sink.commit(&checkpoint).await?;
        println!("epoch {epoch}: {} rows committed as table version {:?}", stats.rows, stats.version);
    }
    drop(sink);

    // A restarted program: the table says where the task stands.
    let mut sink = DeltaSink::new(TASK, config.clone())?;
    let committed = sink.open(schema).await?;
    println!("checkpoint read back: {}", show(committed.as_ref()));

    let rows = query_table(&config, "SELECT id, item FROM t ORDER BY id").await?;
    println!("{}", pretty_format_batches(&rows)?);
    if temporary {
        std::fs::remove_dir_all(&root)?;
    }
    Ok(())
}

fn show(checkpoint: Option<&Checkpoint>) -> String {
    match checkpoint {
        Some(cp) => format!("task {} epoch {} position {}", cp.task, cp.epoch, cp.position),
        None => "(none: the task never committed here)".to_string(),
    }
}

struct Args {
    path: Option<String>,
    batches: u64,
}

impl Args {
    fn parse() -> Result<Self, Box<dyn Error>> {
        let mut args = Args { path: None, batches: 3 };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--path" => args.path = Some(value()?),
                "--batches" => args.batches = value()?.parse()?,
                _ => return Err(format!("unknown argument {flag}").into()),
            }
        }
        Ok(args)
    }
}
