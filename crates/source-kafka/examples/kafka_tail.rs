//! Tails one Kafka topic with rtsync's source as a library: no daemon, no engine.
//!
//! It reads the topic as Arrow [`ChangeBatch`]es (key, value, timestamp, partition, offset,
//! headers), keeps the offsets after the last batch as text (where a real program stores them
//! durably together with what it did with the messages), acknowledges them (which commits the
//! consumer group's offsets on the broker), stops, then resumes from that text and reads only
//! the messages produced meanwhile.
//!
//! ```text
//! cargo run -p rtsync-source-kafka --example kafka_tail -- [--bootstrap HOST:PORT] [--topic TOPIC]
//!     [--max-batches N] [--idle-secs S]
//! ```
//!
//! `--bootstrap` defaults to `$RTSYNC_KAFKA_BOOTSTRAP`, else the test broker of
//! `scripts/services.sh` (`127.0.0.1:19092`). Without `--topic` it creates the topic
//! `rtsync-example-<pid>`, produces to it before each run and deletes it at the end. Each run
//! ends after N batches or after S seconds without one.

use std::error::Error;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rtsync_source_kafka::arrow::util::pretty::pretty_format_batches;
use rtsync_source_kafka::{ChangeBatch, KafkaOffsets, KafkaSource, KafkaSourceConfig, Source, StartOffset, SyncResult};

/// The task name: it names the consumer group (`rtsync-example`).
const TASK: &str = "example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse()?;
    let demo = args.topic.is_none();
    let topic = args.topic.clone().unwrap_or_else(|| format!("rtsync-example-{}", std::process::id()));
    let admin: Option<AdminClient<DefaultClientContext>> = if demo {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &args.bootstrap).create()?;
        for result in
            admin.create_topics(&[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))], &AdminOptions::new()).await?
        {
            result.map_err(|(topic, code)| format!("creating topic {topic}: {code}"))?;
        }
        produce(&args.bootstrap, &topic, &[("apple", "1.20"), ("pear", "0.80"), ("fig", "2.50")])?;
        Some(admin)
    } else {
        None
    };
    let mut config = KafkaSourceConfig::new(&args.bootstrap, &topic);
    config.start_offset = StartOffset::Earliest; // where a first start begins

    println!("== first run: from the earliest offsets");
    let mut source = KafkaSource::new(TASK, config.clone())?;
    source.check().await?; // pre-flight: the cluster answers and the topic exists
    source.open(None).await?; // None: a first start, from `start_offset`
    let checkpoint: Option<String> = tail(&mut source, &args).await?.map(|p| p.to_string());
    source.close().await?;
    println!("checkpoint: {}", checkpoint.as_deref().unwrap_or("(none)"));

    if demo {
        produce(&args.bootstrap, &topic, &[("pear", "0.95"), ("kiwi", "0.40")])?;
    }

    println!("== second run: resumed from the checkpoint");
    let resume = checkpoint.map(|text| text.parse::<KafkaOffsets>()).transpose()?;
    let mut source = KafkaSource::new(TASK, config)?;
    source.check().await?;
    source.open(resume).await?;
    tail(&mut source, &args).await?;
    source.close().await?;

    if let Some(admin) = admin {
        for result in admin.delete_topics(&[topic.as_str()], &AdminOptions::new()).await? {
            result.map_err(|(topic, code)| format!("deleting topic {topic}: {code}"))?;
        }
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

/// Produces keyed messages with a plain producer (not part of the source's API).
fn produce(bootstrap: &str, topic: &str, messages: &[(&str, &str)]) -> Result<(), Box<dyn Error>> {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    for (key, value) in messages {
        producer.send(BaseRecord::to(topic).key(*key).payload(*value)).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}

struct Args {
    bootstrap: String,
    topic: Option<String>,
    max_batches: usize,
    idle: Duration,
}

impl Args {
    fn parse() -> Result<Self, Box<dyn Error>> {
        let mut args = Args {
            bootstrap: std::env::var("RTSYNC_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".to_string()),
            topic: None,
            max_batches: 100,
            idle: Duration::from_secs(3),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bootstrap" => args.bootstrap = value()?,
                "--topic" => args.topic = Some(value()?),
                "--max-batches" => args.max_batches = value()?.parse()?,
                "--idle-secs" => args.idle = Duration::from_secs(value()?.parse()?),
                _ => return Err(format!("unknown argument {flag}").into()),
            }
        }
        Ok(args)
    }
}
