//! Kafka → Delta end to end, against the real broker (tansu) started by `scripts/services.sh`.
//!
//! The big test produces 100k JSON messages over 3 partitions (nested fields, arrays, unicode,
//! NULLs, missing fields, big integers, decimals, malformed messages) while `rtsync run` syncs
//! them and is SIGKILLed several times; every message must land exactly once, every value as
//! expected, every malformed message in the dead-letter table with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use rtsync_core::arrow::array::{Array, AsArray, RecordBatch};
use rtsync_core::arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};

const MESSAGES: u64 = 100_000;
const PARTITIONS: i32 = 3;
/// Every this many messages one is malformed.
const MALFORMED_EVERY: u64 = 997;

/// What one message should become in the table.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    id: Option<i64>,
    code: Option<String>,
    name: Option<String>,
    sku: Option<String>,
    qty: Option<i32>,
    big: Option<i64>,
    /// decimal(24,4) as its unscaled value
    amount: Option<i128>,
    price: Option<f64>,
    ok: Option<bool>,
    day: Option<i32>,
    at_us: Option<i64>,
    tags: Option<String>,
    skus: Option<String>,
}

/// Message `i`: its JSON text and what must land, or None when it is malformed.
fn message(i: u64) -> (String, Option<Expected>) {
    if i % MALFORMED_EVERY == MALFORMED_EVERY - 1 {
        return (format!("{{\"id\": {i}, \"data\": {{\"code\": \"x\"]"), None);
    }
    let names = [
        "plain",
        "Zürich ü",
        "東京 タワー",
        "emoji 🚀🎉",
        "quote \\\" and \\\\ slash",
        "tab\\tnew\\nline",
        "\\u00e9t\\u00e9",
    ];
    let decoded = ["plain", "Zürich ü", "東京 タワー", "emoji 🚀🎉", "quote \" and \\ slash", "tab\tnew\nline", "été"];
    let k = (i % 7) as usize;
    let mut fields = vec![format!("\"id\":{i}")];
    let mut e = Expected {
        id: Some(i as i64),
        code: None,
        name: None,
        sku: None,
        qty: None,
        big: None,
        amount: None,
        price: None,
        ok: None,
        day: None,
        at_us: None,
        tags: None,
        skus: None,
    };
    // data: present with code, code null, or missing entirely
    match i % 3 {
        0 => {
            fields.push(format!("\"data\":{{\"code\":\"C{i}\",\"name\":\"{}\"}}", names[k]));
            e.code = Some(format!("C{i}"));
            e.name = Some(decoded[k].to_string());
        }
        1 => {
            fields.push(format!("\"data\":{{\"code\":null,\"name\":\"{}\"}}", names[k]));
            e.name = Some(decoded[k].to_string());
        }
        _ => {}
    }
    // items: two, one, or empty
    match i % 4 {
        0 => {
            fields.push(format!("\"items\":[{{\"sku\":\"S{i}\",\"qty\":{}}},{{\"sku\":\"T{i}\",\"qty\":1}}]", i % 50));
            e.sku = Some(format!("S{i}"));
            e.qty = Some((i % 50) as i32);
            e.skus = Some(format!("[\"S{i}\",\"T{i}\"]"));
        }
        1 => {
            fields.push(format!("\"items\":[{{\"sku\":\"S{i}\",\"qty\":{}}}]", i % 50));
            e.sku = Some(format!("S{i}"));
            e.qty = Some((i % 50) as i32);
            e.skus = Some(format!("[\"S{i}\"]"));
        }
        2 => {
            // an empty array: the wildcard matches nothing, which is NULL
            fields.push("\"items\":[]".to_string());
        }
        _ => {}
    }
    let big = i64::MAX - i as i64;
    fields.push(format!("\"big\":{big}"));
    e.big = Some(big);
    // decimal(24,4): exact, bigger than f64 can hold exactly
    let amount_units = 12_345_678_901_234_i128 + i as i128;
    let frac = (i % 10_000) as i128;
    fields.push(format!("\"amount\":{amount_units}.{frac:04}"));
    e.amount = Some(amount_units * 10_000 + frac);
    if !i.is_multiple_of(5) {
        let price = (i as f64) / 8.0;
        fields.push(format!("\"price\":{price}"));
        e.price = Some(price);
    } else {
        fields.push("\"price\":null".to_string());
    }
    fields.push(format!("\"ok\":{}", i.is_multiple_of(2)));
    e.ok = Some(i.is_multiple_of(2));
    let day = 19_000 + (i % 3000) as i32;
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(719_163 + day).unwrap();
    fields.push(format!("\"day\":\"{}\"", date.format("%Y-%m-%d")));
    e.day = Some(day);
    let at_us = 1_700_000_000_000_000_i64 + i as i64 * 1_000_123;
    let at = chrono::DateTime::from_timestamp_micros(at_us).unwrap();
    fields.push(format!("\"at\":\"{}\"", at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
    e.at_us = Some(at_us);
    if i.is_multiple_of(6) {
        fields.push(format!("\"tags\":{{\"n\":{i},\"l\":[1,2]}}"));
        e.tags = Some(format!("{{\"n\":{i},\"l\":[1,2]}}"));
    }
    (format!("{{{}}}", fields.join(",")), Some(e))
}

fn spec_body(name: &str, servers: &str, topic: &str, root: &str, policy: &str) -> String {
    format!(
        r#"
name = "{name}"
error_policy = "{policy}"
commit_interval = "500ms"
[source]
type = "kafka"
bootstrap_servers = "{servers}"
topic = "{topic}"
start_offset = "earliest"
properties = {{ "session.timeout.ms" = "6000" }}
[sink]
root = "{root}"
schema = "public"
table = "{name}"
[[columns]]
name = "k"
expr = "key"
type = "string"
[[columns]]
name = "id"
expr = "$.id"
type = "bigint"
[[columns]]
name = "code"
expr = "$.data.code"
type = "string"
[[columns]]
name = "name"
expr = "$.data.name"
type = "string"
[[columns]]
name = "sku"
expr = "$.items[0].sku"
type = "string"
[[columns]]
name = "qty"
expr = "$.items[0].qty"
type = "int"
[[columns]]
name = "big"
expr = "$.big"
type = "bigint"
[[columns]]
name = "amount"
expr = "$.amount"
type = "decimal(24,4)"
[[columns]]
name = "price"
expr = "$.price"
type = "double"
[[columns]]
name = "ok"
expr = "$.ok"
type = "boolean"
[[columns]]
name = "day"
expr = "$.day"
type = "date"
[[columns]]
name = "at"
expr = "$.at"
type = "timestamp"
[[columns]]
name = "tags"
expr = "$.tags"
type = "json"
[[columns]]
name = "skus"
expr = "$.items[*].sku"
type = "json"
[[columns]]
name = "kp"
expr = "partition"
type = "int"
[[columns]]
name = "ko"
expr = "offset"
type = "bigint"
"#
    )
}

fn opt_str(b: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let c = b.column_by_name(name).unwrap().as_string::<i32>();
    c.is_valid(i).then(|| c.value(i).to_string())
}

fn opt_prim<T: rtsync_core::arrow::datatypes::ArrowPrimitiveType>(
    b: &RecordBatch,
    name: &str,
    i: usize,
) -> Option<T::Native> {
    let c = b.column_by_name(name).unwrap().as_primitive::<T>();
    c.is_valid(i).then(|| c.value(i))
}

/// Every row of the table, keyed by the message key.
async fn read_rows(table: &LakehouseSinkConfig) -> (HashMap<String, Expected>, usize, Vec<(i32, i64)>) {
    let batches = query_table(table, "SELECT * FROM t").await.unwrap();
    let mut rows = HashMap::new();
    let mut total = 0;
    let mut positions = Vec::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            total += 1;
            let amount = {
                let c =
                    b.column_by_name("amount").unwrap().as_primitive::<rtsync_core::arrow::datatypes::Decimal128Type>();
                assert_eq!(c.scale(), 4);
                c.is_valid(i).then(|| c.value(i))
            };
            let ok = {
                let c = b.column_by_name("ok").unwrap().as_boolean();
                c.is_valid(i).then(|| c.value(i))
            };
            let e = Expected {
                id: opt_prim::<Int64Type>(b, "id", i),
                code: opt_str(b, "code", i),
                name: opt_str(b, "name", i),
                sku: opt_str(b, "sku", i),
                qty: opt_prim::<Int32Type>(b, "qty", i),
                big: opt_prim::<Int64Type>(b, "big", i),
                amount,
                price: opt_prim::<Float64Type>(b, "price", i),
                ok,
                day: opt_prim::<Date32Type>(b, "day", i),
                at_us: opt_prim::<TimestampMicrosecondType>(b, "at", i),
                tags: opt_str(b, "tags", i),
                skus: opt_str(b, "skus", i),
            };
            positions.push((opt_prim::<Int32Type>(b, "kp", i).unwrap(), opt_prim::<Int64Type>(b, "ko", i).unwrap()));
            rows.insert(opt_str(b, "k", i).unwrap(), e);
        }
    }
    (rows, total, positions)
}

const PY_SUMMARY: &str = r#"
import json, sys
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
# QueryBuilder applies deletion vectors (to_pyarrow_table() refuses tables that have them)
t = pa.RecordBatchReader.from_stream(QueryBuilder().register("t", DeltaTable(sys.argv[1])).execute("SELECT * FROM t")).read_all()
ids = t.column("id").to_pylist()
keys = t.column("k").to_pylist()
rows = {k: i for i, k in enumerate(keys)}
sample = {}
for k in sys.argv[2:]:
    i = rows[k]
    sample[k] = {"name": t.column("name")[i].as_py(), "amount": str(t.column("amount")[i].as_py()),
                 "big": t.column("big")[i].as_py(), "at": t.column("at")[i].as_py().isoformat(),
                 "code": t.column("code")[i].as_py(), "skus": t.column("skus")[i].as_py()}
print(json.dumps({"count": t.num_rows, "distinct_keys": len(set(keys)), "sum_id": sum(x for x in ids if x is not None), "sample": sample}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_messages_survive_sigkills_exactly_once() {
    let servers = bootstrap();
    let topic = unique("orders");
    let name = unique("sync");
    create_topic(&servers, &topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let spec =
        write_spec(dir.path(), &name, &spec_body(&name, &servers, &topic, root.to_str().unwrap(), "dead_letter"));
    let log = dir.path().join("rtsync.log");
    let table = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", &name);
    let dlq = table.sibling(format!("{name}__dlq"));

    // Produce over ~10 s while the task runs and is killed.
    let producer_servers = servers.clone();
    let producer_topic = topic.clone();
    let producing = std::thread::spawn(move || {
        let p = producer(&producer_servers);
        let started = Instant::now();
        for i in 0..MESSAGES {
            let (value, _) = message(i);
            send(&p, &producer_topic, (i % PARTITIONS as u64) as i32, &i.to_string(), Some(value.as_bytes()), None);
            if i % 1000 == 999 {
                p.poll(Duration::ZERO);
                let due = Duration::from_millis(i / 10);
                if let Some(w) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(w);
                }
            }
        }
        flush(&p);
    });

    let mut child = spawn_run(&spec, &log);
    for kill_after in [2500u64, 1700, 3100, 900, 2200] {
        std::thread::sleep(Duration::from_millis(kill_after));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = spawn_run(&spec, &log);
    }
    producing.join().unwrap();
    let malformed: Vec<u64> = (0..MESSAGES).filter(|i| message(*i).1.is_none()).collect();
    let good = MESSAGES - malformed.len() as u64;
    let landed = wait_rows(&table, good, Duration::from_secs(240)).await;
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "rtsync exited with {status}; log:\n{log_text}");
    assert_eq!(landed, good, "rows landed; log:\n{log_text}");

    // Exactly once, value by value.
    let (rows, total, mut positions) = read_rows(&table).await;
    assert_eq!(total as u64, good, "no duplicates");
    assert_eq!(rows.len() as u64, good, "one row per message key");
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len() as u64, good, "(partition, offset) unique");
    for i in 0..MESSAGES {
        let (_, expected) = message(i);
        let got = rows.get(&i.to_string());
        match expected {
            Some(e) => assert_eq!(got, Some(&e), "message {i}"),
            None => assert!(got.is_none(), "malformed message {i} must not be in the table"),
        }
    }

    // Dead letters: each malformed message once, with its reason and raw bytes.
    let letters = query_table(&dlq, "SELECT raw, reason, \"partition\", \"offset\" FROM t").await.unwrap();
    let mut dead: BTreeMap<u64, String> = BTreeMap::new();
    for b in &letters {
        let raw = b.column(0).as_binary::<i32>();
        let reason = b.column(1).as_string::<i32>();
        for r in 0..b.num_rows() {
            let text = String::from_utf8(raw.value(r).to_vec()).unwrap();
            let id: u64 = text.split(&[':', ','][..]).nth(1).unwrap().trim().parse().unwrap();
            assert_eq!(text, message(id).0);
            assert!(dead.insert(id, reason.value(r).to_string()).is_none(), "message {id} dead-lettered twice");
        }
    }
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), malformed);
    assert!(dead.values().all(|r| r.contains("not valid JSON")), "{:?}", dead.values().next());

    // Six runs, each resumed from the table; the consumer group's offsets were committed
    // after the Delta commits and stand where the table does.
    assert_eq!(log_text.matches("kafka source opened").count(), 6, "one start per run");
    let committed = committed_offsets(&servers, &format!("rtsync-{name}"), &topic, PARTITIONS);
    let per_partition: Vec<i64> =
        (0..PARTITIONS as u64).map(|p| (0..MESSAGES).filter(|i| i % PARTITIONS as u64 == p).count() as i64).collect();
    assert_eq!(committed, per_partition);

    // The independent reader agrees.
    let sample_keys = ["0", "9", "18", "99998"];
    let mut args = vec![table.table_location()];
    args.extend(sample_keys.iter().map(|k| k.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let py = python_json(PY_SUMMARY, &args);
    assert_eq!(py["count"].as_u64(), Some(good));
    assert_eq!(py["distinct_keys"].as_u64(), Some(good));
    let sum_id: u64 = (0..MESSAGES).filter(|i| message(*i).1.is_some()).sum();
    assert_eq!(py["sum_id"].as_u64(), Some(sum_id));
    assert_eq!(py["sample"]["18"]["name"], "quote \" and \\ slash");
    assert_eq!(py["sample"]["9"]["name"], "東京 タワー");
    assert_eq!(py["sample"]["18"]["amount"], "12345678901252.0018");
    assert_eq!(py["sample"]["9"]["big"].as_i64(), Some(i64::MAX - 9));
    assert_eq!(py["sample"]["0"]["at"], "2023-11-14T22:13:20+00:00");
    assert_eq!(py["sample"]["0"]["code"], "C0");
    assert!(py["sample"]["99998"]["code"].is_null());
    assert_eq!(py["sample"]["0"]["skus"], "[\"S0\",\"T0\"]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_policy_stops_naming_the_bad_message() {
    let servers = bootstrap();
    let topic = unique("bad");
    let name = unique("failing");
    create_topic(&servers, &topic, 1).await;
    let p = producer(&servers);
    for i in 0..5u64 {
        let value = if i == 3 { b"not json at all".to_vec() } else { format!("{{\"id\":{i}}}").into_bytes() };
        send(&p, &topic, 0, &i.to_string(), Some(&value), None);
    }
    flush(&p);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let body = format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"{topic}\"\n\
         [sink]\nroot = \"{}\"\ntable = \"t\"\n[[columns]]\nname = \"id\"\nexpr = \"$.id\"\ntype = \"bigint\"\n",
        root.display()
    );
    let spec = write_spec(dir.path(), &name, &body);
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&spec, &log);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(text.contains("at partition 0 offset 3"), "{text}");
    assert!(text.contains("not valid JSON"), "{text}");
    assert!(text.contains("dead_letter"), "the message says how to go on: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_a_definite_error() {
    let servers = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "name = \"missing\"\n[source]\ntype = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"{}\"\n\
         [sink]\nroot = \"{}\"\ntable = \"t\"\n",
        unique("nope"),
        dir.path().join("lake").display()
    );
    let spec = write_spec(dir.path(), "missing", &body);
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&spec, &log);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success());
    assert!(text.contains("does not exist"), "{text}");
}
