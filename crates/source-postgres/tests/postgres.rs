//! The PostgreSQL source against a real server (RTSYNC_PG_URL, started by
//! `scripts/services.sh start postgres`). Each test makes its own table, slot and publication.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use rtsync_core::{ErrorKind, Position, Source};
use rtsync_source_postgres::{Lsn, PgPosition, SnapshotMode, UNCHANGED_COLUMN};
use support::{Fixture, Row, apply, connect, drain, open, rows_of, seen};

const WAIT: Duration = Duration::from_secs(60);

fn row(op: &str, values: &[Option<&str>]) -> Row {
    Row {
        op: op.into(),
        values: values.iter().map(|v| v.map(str::to_string)).collect(),
        unchanged: Vec::new(),
        before: None,
    }
}

async fn confirmed_flush(fx: &Fixture, slot: &str) -> Lsn {
    let r = fx
        .client
        .query_one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .unwrap();
    r.get::<_, String>(0).parse().unwrap()
}

async fn current_wal(fx: &Fixture) -> Lsn {
    let r = fx.client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap();
    r.get::<_, String>(0).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_with_concurrent_writes_then_stream_converges() {
    let fx = Fixture::new(
        "snap",
        "CREATE TABLE {t} (id bigint PRIMARY KEY, v text, n int); \
         INSERT INTO {t} SELECT i, 'v' || i, i FROM generate_series(1, 5000) i",
    )
    .await;
    let mut cfg = fx.config();
    cfg.snapshot_chunk_rows = 1000;
    let mut src = fx.source(cfg.clone());
    src.check().await.unwrap();
    let desc = src.describe().await.unwrap().unwrap();
    assert_eq!(desc.primary_key, vec!["id".to_string()]);
    open(&mut src, None).await;
    assert!(matches!(src.start_position(), Some(PgPosition::Snapshot { rows: 0, last_key: None, .. })));

    // Writes race the snapshot: updates, deletes and inserts in 150 transactions, then a marker.
    let table = format!("public.{}", fx.table);
    let writer = tokio::spawn(async move {
        let c = connect().await;
        for i in 0..150_i64 {
            let sql = format!(
                "BEGIN; UPDATE {table} SET v = 'w{i}', n = n + 1 WHERE id = {u}; DELETE FROM {table} WHERE id = {d}; \
                 INSERT INTO {table} VALUES ({ins}, 'new{i}', {i}); COMMIT",
                u = (i * 37) % 5000 + 1,
                d = (i * 53) % 5000 + 2,
                ins = 10_000 + i
            );
            c.batch_execute(&sql).await.unwrap();
        }
        c.batch_execute(&format!("INSERT INTO {table} VALUES (99999, 'end', 0)")).await.unwrap();
    });
    let cols = ["id", "v", "n"];
    let batches = drain(&mut src, true, WAIT, |b| {
        rows_of(b, &["id"]).iter().any(|r| r.op == "c" && r.values[0].as_deref() == Some("99999"))
    })
    .await;
    writer.await.unwrap();

    // The snapshot is the table as of the slot's consistent point: exactly the 5000 initial
    // rows, in key order, untouched by the concurrent writes.
    let rows = rows_of(&batches, &cols);
    let reads: Vec<&Row> = rows.iter().filter(|r| r.op == "r").collect();
    assert_eq!(reads.len(), 5000);
    for (i, r) in reads.iter().enumerate() {
        let id = (i + 1).to_string();
        assert_eq!(r.values, vec![Some(id.clone()), Some(format!("v{id}")), Some(id.clone())]);
    }
    // Snapshot positions carry the progress; positions never go back.
    let mut copied = 0;
    for pair in batches.windows(2) {
        assert!(pair[1].end.covers(&pair[0].end), "{} then {}", pair[0].end, pair[1].end);
    }
    for b in &batches {
        let r = rows_of(std::slice::from_ref(b), &["id"]);
        let n = r.iter().filter(|r| r.op == "r").count();
        assert!(n <= 1000);
        copied += n;
        if let PgPosition::Snapshot { rows, last_key, .. } = &b.end {
            assert_eq!(*rows as usize, copied);
            assert_eq!(last_key.as_ref().unwrap(), &vec![copied.to_string()]);
        } else {
            assert!(b.event_time_ms.is_some() || r.iter().all(|r| r.op == "r"));
        }
    }
    assert!(matches!(batches.last().unwrap().end, PgPosition::Streaming { .. }));
    // 5000 rows end exactly at a chunk boundary: the snapshot's end comes as an empty batch
    // carrying the stream position, so that the engine commits it.
    let first_stream = batches.iter().position(|b| matches!(b.end, PgPosition::Streaming { .. })).unwrap();
    assert_eq!(batches[first_stream].num_rows(), 0);
    assert!(matches!(batches[first_stream - 1].end, PgPosition::Snapshot { rows: 5000, .. }));

    // Applied as upserts, the changes give exactly the source table.
    let mut state = BTreeMap::new();
    apply(&mut state, &rows, &cols);
    let expected = fx.state("id", &["v", "n"]).await;
    assert_eq!(state.len(), expected.len());
    assert!(state == expected, "target differs from source");
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_inserts_updates_deletes_key_changes_toast_and_truncate() {
    let fx = Fixture::new(
        "chg",
        "CREATE TABLE {t} (id int PRIMARY KEY, name text, big text); \
         ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL; \
         INSERT INTO {t} VALUES (1, 'a', NULL)",
    )
    .await;
    let cfg = fx.config();
    let mut src = fx.source(cfg.clone());
    src.check().await.unwrap();
    open(&mut src, None).await;
    let snap = drain(&mut src, true, WAIT, |b| b.iter().any(|b| matches!(b.end, PgPosition::Streaming { .. }))).await;
    assert_eq!(rows_of(&snap, &["id", "name"]), vec![row("r", &[Some("1"), Some("a")])]);

    for sql in [
        "INSERT INTO {t} VALUES (2, 'b', NULL)",
        "UPDATE {t} SET name = 'b2' WHERE id = 2",
        "UPDATE {t} SET id = 20 WHERE id = 2",
        "DELETE FROM {t} WHERE id = 1",
        "INSERT INTO {t} SELECT 3, 'c', string_agg(md5(i::text), '') FROM generate_series(1, 2000) i",
        "UPDATE {t} SET name = 'c2' WHERE id = 3",
        "TRUNCATE {t}",
        "INSERT INTO {t} VALUES (4, 'd', '')",
    ] {
        fx.exec(sql).await;
    }
    let batches = drain(&mut src, true, WAIT, |b| seen(b, "id", "4")).await;
    let rows = rows_of(&batches, &["id", "name"]);
    let big: String = fx
        .client
        .query_one("SELECT string_agg(md5(i::text), '') FROM generate_series(1, 2000) i", &[])
        .await
        .unwrap()
        .get(0);
    let mut expected = vec![
        row("c", &[Some("2"), Some("b")]),
        row("u", &[Some("2"), Some("b2")]),
        // The key change: one update row, the old key in __before_id.
        Row { before: Some("2".into()), ..row("u", &[Some("20"), Some("b2")]) },
        row("d", &[Some("1"), None]),
        row("c", &[Some("3"), Some("c")]),
        // The TOASTed value was not sent: NULL, and listed as unchanged.
        Row { unchanged: vec!["big".into()], ..row("u", &[Some("3"), Some("c2")]) },
        row("t", &[None, None]),
        row("c", &[Some("4"), Some("d")]),
    ];
    assert_eq!(rows, expected);
    let bigs = rows_of(&batches, &["big"]);
    assert_eq!(bigs[4].values[0].as_deref(), Some(big.as_str()));
    assert_eq!(bigs[5].values[0], None);
    assert_eq!(bigs[7].values[0].as_deref(), Some(""), "an empty string stays an empty string");
    // Stream batches carry commit times and their schema has __unchanged only where needed.
    for b in &batches {
        assert_eq!(b.event_time_ms.as_ref().map(Array::len), Some(b.num_rows()));
        let has_unchanged = b.rows.column_by_name(UNCHANGED_COLUMN).is_some();
        let needs = render_unchanged(&b.rows);
        assert_eq!(has_unchanged, needs);
    }

    // With REPLICA IDENTITY FULL the unchanged value comes from the old row image.
    fx.exec("ALTER TABLE {t} REPLICA IDENTITY FULL").await;
    fx.exec("INSERT INTO {t} SELECT 5, 'e', string_agg(md5(i::text), '') FROM generate_series(1, 2000) i").await;
    fx.exec("UPDATE {t} SET name = 'e2' WHERE id = 5").await;
    fx.exec("DELETE FROM {t} WHERE id = 5").await;
    let batches = drain(&mut src, true, WAIT, |b| rows_of(b, &["id"]).iter().any(|r| r.op == "d")).await;
    let rows = rows_of(&batches, &["id", "name", "big"]);
    expected = vec![
        row("c", &[Some("5"), Some("e"), Some(&big)]),
        row("u", &[Some("5"), Some("e2"), Some(&big)]),
        row("d", &[Some("5"), Some("e2"), Some(&big)]),
    ];
    assert_eq!(rows, expected);
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

fn render_unchanged(batch: &rtsync_core::arrow::array::RecordBatch) -> bool {
    batch.column_by_name(UNCHANGED_COLUMN).is_some_and(|c| c.null_count() < c.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_value_by_value() {
    let fx = Fixture::new(
        "types",
        "CREATE TYPE {t}_mood AS ENUM ('sad', 'happy'); \
         CREATE TABLE {t} (id int PRIMARY KEY, i2 int2, i8 int8, num numeric(12,3), num_free numeric, f4 float4, f8 float8, \
           b bool, t text, vc varchar(10), ch char(4), by bytea, d date, tm time, ts timestamp, tstz timestamptz, u uuid, \
           j json, jb jsonb, arr int[], tarr text[], mood {t}_mood, iv interval); \
         INSERT INTO {t} VALUES \
           (1, -32768, 9223372036854775807, 123456789.123, 3.14159265358979323846264338327950288419716939937510, 1.5, 'NaN', \
            true, E'h\\u00e9llo\\t\"x\"\\n', 'abc', 'ab', '\\x00ff', '2024-02-29', '13:45:00.5', '2024-02-29 12:34:56.789012', \
            '2024-02-29 12:34:56.789012+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2]}', '{\"b\": 1, \"a\": \"x\"}', \
            '{1,NULL,3}', '{\"a b\",\"c\\\"d\",NULL}', 'happy', '1 day 2 hours'), \
           (2, NULL, NULL, 'NaN', 'NaN', '-Infinity', 'Infinity', false, NULL, NULL, NULL, '\\x', 'infinity', NULL, '-infinity', \
            'infinity', NULL, NULL, NULL, '{}', NULL, NULL, NULL), \
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL, '0044-03-15 BC', NULL, NULL, NULL, NULL, NULL, \
            NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let cfg = fx.config();
    let mut src = fx.source(cfg.clone());
    src.check().await.unwrap();
    let desc = src.describe().await.unwrap().unwrap();
    let types: Vec<(String, DataType)> =
        desc.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let expected_types = [
        ("id", DataType::Int32),
        ("i2", DataType::Int16),
        ("i8", DataType::Int64),
        ("num", DataType::Decimal128(12, 3)),
        ("num_free", DataType::Utf8),
        ("f4", DataType::Float32),
        ("f8", DataType::Float64),
        ("b", DataType::Boolean),
        ("t", DataType::Utf8),
        ("vc", DataType::Utf8),
        ("ch", DataType::Utf8),
        ("by", DataType::Binary),
        ("d", DataType::Date32),
        ("tm", DataType::Utf8),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("tstz", utc),
        ("u", DataType::Utf8),
        ("j", DataType::Utf8),
        ("jb", DataType::Utf8),
        ("arr", DataType::Utf8),
        ("tarr", DataType::Utf8),
        ("mood", DataType::Utf8),
        ("iv", DataType::Utf8),
    ];
    assert_eq!(types, expected_types.iter().map(|(n, t)| (n.to_string(), t.clone())).collect::<Vec<_>>());
    open(&mut src, None).await;
    let snap = drain(&mut src, true, WAIT, |b| b.iter().any(|b| matches!(b.end, PgPosition::Streaming { .. }))).await;
    // The same rows again, through the stream.
    fx.exec("INSERT INTO {t} SELECT id + 100, i2, i8, num, num_free, f4, f8, b, t, vc, ch, by, d, tm, ts, tstz, u, j, jb, arr, tarr, mood, iv FROM {t}").await;
    let streamed = drain(&mut src, true, WAIT, |b| seen(b, "id", "103")).await;
    for (batches, base) in [(&snap, 0), (&streamed, 100)] {
        let rows: Vec<_> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        assert_eq!(rows.len(), 1, "one batch");
        let b = &rows[0].rows;
        assert_eq!(b.num_rows(), 3);
        let id = b.column_by_name("id").unwrap().as_primitive::<rtsync_core::arrow::datatypes::Int32Type>();
        assert_eq!(id.values().to_vec(), vec![base + 1, base + 2, base + 3]);
        check_types_batch(b);
    }
    // The snapshot and the stream agree column by column.
    let (a, b) = (&snap.iter().find(|b| b.num_rows() > 0).unwrap().rows, &streamed[0].rows);
    for name in expected_types.iter().map(|(n, _)| *n).filter(|n| *n != "id") {
        assert_eq!(
            a.column_by_name(name).unwrap().to_data(),
            b.column_by_name(name).unwrap().to_data(),
            "column {name}"
        );
    }
    support::close(src).await.unwrap();
    fx.exec("DROP TABLE {t}; DROP TYPE {t}_mood").await;
    fx.cleanup(&cfg).await;
}

fn check_types_batch(b: &rtsync_core::arrow::array::RecordBatch) {
    let col = |n: &str| b.column_by_name(n).unwrap().clone();
    let text = |n: &str, i: usize| {
        let c = col(n);
        c.is_valid(i).then(|| c.as_string::<i32>().value(i).to_string())
    };
    assert_eq!(col("i2").as_primitive::<Int16Type>().value(0), -32768);
    assert_eq!(col("i8").as_primitive::<Int64Type>().value(0), i64::MAX);
    let num = col("num");
    let num = num.as_primitive::<Decimal128Type>();
    assert_eq!(num.value(0), 123_456_789_123);
    assert!(num.is_null(1), "numeric NaN → NULL");
    assert_eq!(text("num_free", 0).as_deref(), Some("3.14159265358979323846264338327950288419716939937510"));
    assert_eq!(text("num_free", 1).as_deref(), Some("NaN"));
    let f4 = col("f4");
    assert_eq!(f4.as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(f4.as_primitive::<Float32Type>().value(1), f32::NEG_INFINITY);
    let f8 = col("f8");
    assert!(f8.as_primitive::<Float64Type>().value(0).is_nan());
    assert_eq!(f8.as_primitive::<Float64Type>().value(1), f64::INFINITY);
    let bools = col("b");
    assert!(bools.as_boolean().value(0) && !bools.as_boolean().value(1) && bools.is_null(2));
    assert_eq!(text("t", 0).as_deref(), Some("h\u{e9}llo\t\"x\"\n"));
    assert_eq!(text("t", 1), None);
    assert_eq!(text("t", 2).as_deref(), Some(""));
    assert_eq!(text("vc", 0).as_deref(), Some("abc"));
    assert_eq!(text("ch", 0).as_deref(), Some("ab  "));
    let by = col("by");
    assert_eq!(by.as_binary::<i32>().value(0), &[0x00, 0xff]);
    assert_eq!(by.as_binary::<i32>().value(1), b"");
    let d = col("d");
    assert_eq!(d.as_primitive::<Date32Type>().value(0), 19_782);
    // 'infinity' is 9999-12-31, the last date of Delta's range
    assert_eq!(d.as_primitive::<Date32Type>().value(1), 2_932_896);
    // 44 BC is before Delta's first date: NULL.
    assert!(d.is_null(2));
    assert_eq!(text("tm", 0).as_deref(), Some("13:45:00.5"));
    let ts = col("ts");
    assert_eq!(ts.as_primitive::<TimestampMicrosecondType>().value(0), 1_709_210_096_789_012);
    assert_eq!(ts.as_primitive::<TimestampMicrosecondType>().value(1), i64::MIN);
    let tstz = col("tstz");
    assert_eq!(tstz.as_primitive::<TimestampMicrosecondType>().value(0), 1_709_210_096_789_012 - 7_200_000_000);
    assert_eq!(tstz.as_primitive::<TimestampMicrosecondType>().value(1), i64::MAX);
    assert_eq!(text("u", 0).as_deref(), Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(text("j", 0).as_deref(), Some(r#"{"a": [1, 2]}"#));
    assert_eq!(text("jb", 0).as_deref(), Some(r#"{"a": "x", "b": 1}"#));
    assert_eq!(text("arr", 0).as_deref(), Some("[1,null,3]"));
    assert_eq!(text("arr", 1).as_deref(), Some("[]"));
    assert_eq!(text("tarr", 0).as_deref(), Some(r#"["a b","c\"d",null]"#));
    assert_eq!(text("mood", 0).as_deref(), Some("happy"));
    assert_eq!(text("iv", 0).as_deref(), Some("P1DT2H"));
    for n in ["i2", "i8", "num", "f4", "f8", "tm", "ts", "tstz", "u", "j", "jb", "arr", "tarr", "mood", "iv"] {
        assert!(col(n).is_null(2), "{n} NULL stays NULL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_mid_stream_loses_and_duplicates_nothing() {
    let fx = Fixture::new("resume", "CREATE TABLE {t} (id int PRIMARY KEY, v text)").await;
    let mut cfg = fx.config();
    cfg.max_batch_rows = 4;
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    for i in 1..=20 {
        fx.exec(&format!("INSERT INTO {{t}} VALUES ({i}, 'v{i}')")).await;
    }
    // Read everything, but "commit" only up to the batch holding id 8.
    let batches = drain(&mut src, false, WAIT, |b| seen(b, "id", "20")).await;
    let k = batches.iter().position(|b| seen(std::slice::from_ref(b), "id", "8")).unwrap();
    let committed = batches[k].end.clone();
    assert!(batches.len() > 2, "small batches");
    src.ack(&committed).await.unwrap();
    // Never acknowledged on receipt: the slot stays at or before the committed position.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(src.next_batch(Duration::from_millis(300)).await.unwrap().is_none());
    let slot = src.slot_name().to_string();
    let flushed = confirmed_flush(&fx, &slot).await;
    assert!(flushed <= committed.lsn(), "slot confirmed {flushed} beyond the committed {}", committed.lsn());
    let mut ids: Vec<i64> =
        rows_of(&batches[..=k], &["id"]).iter().map(|r| r.values[0].as_ref().unwrap().parse().unwrap()).collect();
    drop(src); // a crash: nothing after `committed` was made durable

    for i in 21..=25 {
        fx.exec(&format!("INSERT INTO {{t}} VALUES ({i}, 'v{i}')")).await;
    }
    let mut src = fx.source(cfg.clone());
    open(&mut src, Some(committed.clone())).await;
    let rest = drain(&mut src, true, WAIT, |b| seen(b, "id", "25")).await;
    assert!(rest.iter().all(|b| b.end.covers(&committed)));
    ids.extend(rows_of(&rest, &["id"]).iter().map(|r| r.values[0].as_ref().unwrap().parse::<i64>().unwrap()));
    assert_eq!(ids, (1..=25).collect::<Vec<_>>(), "every change exactly once, in order");
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_starts_over_from_a_new_slot() {
    let fx = Fixture::new(
        "resnap",
        "CREATE TABLE {t} (id int PRIMARY KEY, v text); INSERT INTO {t} SELECT i, 'v' || i FROM generate_series(1, 5000) i",
    )
    .await;
    let mut cfg = fx.config();
    cfg.snapshot_chunk_rows = 1000;
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    let first = drain(&mut src, true, WAIT, |b| b.len() == 2).await;
    let committed = first[1].end.clone();
    let PgPosition::Snapshot { slot_lsn: first_slot, rows: 2000, last_key: Some(k) } = &committed else {
        panic!("{committed:?}")
    };
    assert_eq!(k, &vec!["2000".to_string()]);
    // The copy's progress: rows emitted, of the planner's estimate (from the table's size:
    // it was never analyzed).
    let progress = src.snapshot_progress().expect("a snapshot is running");
    assert_eq!(progress.rows, 2000);
    let estimate = progress.estimated_rows.expect("the planner estimates every table");
    assert!((2000..=20_000).contains(&estimate), "estimate {estimate} for 5000 rows");
    drop(src); // crash mid-snapshot

    // A key swap with an out-of-line TOAST value left unchanged: replayed over a fresh read,
    // the value would come from the later state of the other key.
    let big = "x".repeat(100_000);
    fx.exec("ALTER TABLE {t} ALTER COLUMN v SET STORAGE EXTERNAL").await; // out of line, uncompressed
    fx.exec(&format!("UPDATE {{t}} SET v = '{big}' WHERE id = 3000")).await;
    for sql in [
        "UPDATE {t} SET v = 'changed' WHERE id = 10",
        "UPDATE {t} SET id = -3000 WHERE id = 3000",
        "UPDATE {t} SET id = 3000 WHERE id = 10",
        "UPDATE {t} SET id = 10 WHERE id = -3000",
        "DELETE FROM {t} WHERE id = 4000",
        "INSERT INTO {t} VALUES (6000, 'new')",
        "INSERT INTO {t} VALUES (7000, 'marker')",
    ] {
        fx.exec(sql).await;
    }
    let mut src = fx.source(cfg.clone());
    open(&mut src, Some(committed.clone())).await;
    let restarted = src.snapshot_progress().expect("the snapshot runs again");
    assert_eq!(restarted.rows, 0, "the copy starts over");
    let rest = drain(&mut src, true, WAIT, |b| {
        rows_of(b, &["id"]).iter().any(|r| r.op == "r" && r.values[0].as_deref() == Some("7000"))
    })
    .await;
    let PgPosition::Snapshot { slot_lsn, .. } = &rest[0].end else { panic!("{:?}", rest[0].end) };
    assert!(slot_lsn > first_slot, "a new slot with a new consistent point");
    let rows = rows_of(&rest, &["id", "v"]);
    assert_eq!(rows[0].op, "t", "the rows copied before go first");
    let reads: Vec<i64> =
        rows[1..].iter().filter(|r| r.op == "r").map(|r| r.values[0].as_ref().unwrap().parse().unwrap()).collect();
    let mut expected: Vec<i64> = (1..=5000).filter(|&i| i != 4000).collect();
    expected.extend([6000, 7000]);
    assert_eq!(reads, expected, "the whole table, as it is now");
    assert!(rows.iter().all(|r| r.op == "r" || r.op == "t"), "nothing before the new slot is replayed");
    let mut all = rows_of(&first, &["id", "v"]);
    all.extend(rows);
    let mut state = BTreeMap::new();
    apply(&mut state, &all, &["id", "v"]);
    assert!(state == fx.state("id", &["v"]).await, "target differs from source");
    assert_eq!(state["10"][0].as_deref(), Some(big.as_str()), "the swapped TOAST value under its new key");

    // Changes after the new consistent point stream as usual.
    fx.exec("UPDATE {t} SET id = 9000 WHERE id = 10").await;
    let more = drain(&mut src, true, WAIT, |b| seen(b, "id", "9000")).await;
    apply(&mut state, &rows_of(&more, &["id", "v"]), &["id", "v"]);
    assert!(state == fx.state("id", &["v"]).await, "target differs from source after streaming");
    assert_eq!(src.snapshot_progress(), None, "streaming: no snapshot");
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slot_advances_and_unacknowledged_batches_hold_it() {
    let fx = Fixture::new("idle", "CREATE TABLE {t} (id int PRIMARY KEY); CREATE TABLE {t}_other (x int)").await;
    let mut cfg = fx.config();
    cfg.snapshot = SnapshotMode::Never;
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    let slot = src.slot_name().to_string();

    // WAL written elsewhere while the task idles: the slot follows the server's WAL end.
    for i in 0..5 {
        fx.exec(&format!("INSERT INTO {{t}}_other VALUES ({i})")).await;
    }
    let target = current_wal(&fx).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while confirmed_flush(&fx, &slot).await < target {
        assert!(std::time::Instant::now() < deadline, "the idle slot did not advance to {target}");
        assert!(src.next_batch(Duration::from_millis(200)).await.unwrap().is_none());
    }

    // A batch emitted but not committed holds the slot, however much WAL follows.
    fx.exec("INSERT INTO {t} VALUES (1)").await;
    let batch = drain(&mut src, false, WAIT, |b| !b.is_empty()).await.remove(0);
    for i in 0..5 {
        fx.exec(&format!("INSERT INTO {{t}}_other VALUES ({i})")).await;
    }
    for _ in 0..10 {
        assert!(src.next_batch(Duration::from_millis(200)).await.unwrap().is_none());
    }
    assert!(confirmed_flush(&fx, &slot).await < batch.end.lsn());
    // Once committed, it moves on, up to the WAL end again.
    src.ack(&batch.end).await.unwrap();
    let target = current_wal(&fx).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    fx.exec("INSERT INTO {t}_other VALUES (99)").await;
    while confirmed_flush(&fx, &slot).await < target {
        assert!(std::time::Instant::now() < deadline, "the slot did not advance after the ack");
        assert!(src.next_batch(Duration::from_millis(200)).await.unwrap().is_none());
    }
    support::close(src).await.unwrap();
    fx.exec("DROP TABLE {t}_other").await;
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_replication_objects_cleans_up() {
    let fx = Fixture::new("drop", "CREATE TABLE {t} (id int PRIMARY KEY)").await;
    let cfg = fx.config();
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    let (slot, publication) = (src.slot_name().to_string(), src.publication_name().to_string());
    let count = |sql: &'static str, name: String| {
        let c = &fx.client;
        async move { c.query_one(sql, &[&name]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot.clone()).await, 1);
    assert_eq!(count("SELECT count(*) FROM pg_publication WHERE pubname = $1", publication.clone()).await, 1);
    let dropped = src.drop_replication_objects().await.unwrap();
    assert_eq!(dropped.slot.as_deref(), Some(slot.as_str()));
    assert_eq!(dropped.publication.as_deref(), Some(publication.as_str()));
    assert_eq!(count("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot.clone()).await, 0);
    assert_eq!(count("SELECT count(*) FROM pg_publication WHERE pubname = $1", publication.clone()).await, 0);
    // Idempotent.
    let again = rtsync_source_postgres::drop_replication_objects(&cfg, &fx.task).await.unwrap();
    assert_eq!((again.slot, again.publication), (None, None));

    // A publication the user named is theirs: never dropped.
    let user_pub = format!("{}_userpub", fx.table);
    fx.exec(&format!("CREATE PUBLICATION {user_pub} FOR TABLE {{t}}")).await;
    let mut cfg2 = fx.config();
    cfg2.publication_name = Some(user_pub.clone());
    let mut src = fx.source(cfg2.clone());
    open(&mut src, None).await;
    support::close(src).await.unwrap();
    let dropped = rtsync_source_postgres::drop_replication_objects(&cfg2, &fx.task).await.unwrap();
    assert!(dropped.slot.is_some() && dropped.publication.is_none());
    assert_eq!(count("SELECT count(*) FROM pg_publication WHERE pubname = $1", user_pub.clone()).await, 1);
    fx.exec(&format!("DROP PUBLICATION {user_pub}")).await;
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_errors_name_the_cause_and_the_fix() {
    let fx = Fixture::new("pre", "CREATE TABLE {t} (a int, b text)").await;
    // No primary key and REPLICA IDENTITY DEFAULT.
    let mut src = fx.source(fx.config());
    let err = src.check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.to_string().contains("no primary key") && err.to_string().contains("REPLICA IDENTITY FULL"), "{err}");
    fx.exec("ALTER TABLE {t} REPLICA IDENTITY FULL").await;
    src.check().await.unwrap();
    assert!(src.describe().await.unwrap().unwrap().primary_key.is_empty());

    // Missing table.
    let mut cfg = fx.config();
    cfg.table = format!("{}_missing", fx.table);
    let err = fx.source(cfg).check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.to_string().contains("does not exist"), "{err}");

    // Refused credentials are definite; an unreachable server is transient.
    let mut cfg = fx.config();
    cfg.password = Some("wrong-password".into());
    let err = fx.source(cfg).check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source, "{}", err.report());
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert!(!err.report().contains("wrong-password"));
    let mut cfg = fx.config();
    cfg.url = "postgres://rtsync:rtsync@127.0.0.1:1/rtsync".into();
    let err = fx.source(cfg).check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{}", err.report());
    assert!(err.to_string().contains("unreachable"), "{err}");
    let cfg = fx.config();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_table_with_replica_identity_full() {
    let fx = Fixture::new(
        "keyless",
        "CREATE TABLE {t} (a int, b text); ALTER TABLE {t} REPLICA IDENTITY FULL; INSERT INTO {t} VALUES (1, 'x'), (2, 'y')",
    )
    .await;
    let cfg = fx.config();
    let mut src = fx.source(cfg.clone());
    src.check().await.unwrap();
    open(&mut src, None).await;
    fx.exec("UPDATE {t} SET b = 'z' WHERE a = 2").await;
    let batches = drain(&mut src, true, WAIT, |b| rows_of(b, &["a"]).iter().any(|r| r.op == "u")).await;
    let mut rows = rows_of(&batches, &["a", "b"]);
    rows[..2].sort_by(|x, y| x.values.cmp(&y.values));
    assert_eq!(
        rows,
        vec![row("r", &[Some("1"), Some("x")]), row("r", &[Some("2"), Some("y")]), row("u", &[Some("2"), Some("z")])]
    );
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_slot_is_reported_or_resnapshotted() {
    let fx =
        Fixture::new("lost", "CREATE TABLE {t} (id int PRIMARY KEY, v text); INSERT INTO {t} VALUES (1, 'a')").await;
    let mut cfg = fx.config();
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    fx.exec("INSERT INTO {t} VALUES (2, 'b')").await;
    let batches = drain(&mut src, true, WAIT, |b| seen(b, "id", "2")).await;
    let committed = batches.last().unwrap().end.clone();
    let slot = src.slot_name().to_string();
    support::close(src).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while fx.client.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "could not drop the slot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fx.exec("DELETE FROM {t} WHERE id = 1; INSERT INTO {t} VALUES (3, 'c')").await;

    let mut src = fx.source(cfg.clone());
    let err = src.open(Some(committed.clone())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.to_string().contains("does not exist") && err.to_string().contains("Re-snapshot"), "{err}");

    cfg.resnapshot_on_lost_slot = true;
    let mut src = fx.source(cfg.clone());
    open(&mut src, Some(committed.clone())).await;
    let again = drain(&mut src, true, WAIT, |b| seen(b, "id", "3")).await;
    assert!(again[0].end.covers(&committed), "the new snapshot orders after the old stream");
    assert_eq!(
        rows_of(&again, &["id", "v"]),
        vec![row("t", &[None, None]), row("r", &[Some("2"), Some("b")]), row("r", &[Some("3"), Some("c")])]
    );
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn columns_added_and_dropped_at_the_source() {
    let fx = Fixture::new("ddl", "CREATE TABLE {t} (id int PRIMARY KEY, v text, gone int)").await;
    let cfg = fx.config();
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    fx.exec("INSERT INTO {t} VALUES (1, 'a', 5)").await;
    let _ = drain(&mut src, true, WAIT, |b| seen(b, "id", "1")).await;
    fx.exec("ALTER TABLE {t} ADD COLUMN extra numeric(10,2)").await;
    fx.exec("ALTER TABLE {t} DROP COLUMN gone").await;
    fx.exec("INSERT INTO {t} VALUES (2, 'b', 7.25)").await;
    let batches = drain(&mut src, true, WAIT, |b| seen(b, "id", "2")).await;
    let b = &batches.last().unwrap().rows;
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, vec!["id", "v", "gone", "extra", "__op"]);
    assert_eq!(schema.field_with_name("extra").unwrap().data_type(), &DataType::Decimal128(10, 2));
    assert_eq!(
        rows_of(&batches, &["id", "v", "gone", "extra"]),
        vec![row("c", &[Some("2"), Some("b"), None, Some("7.25")])]
    );
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_transaction_is_split_but_the_position_moves_only_at_its_commit() {
    let fx = Fixture::new("huge", "CREATE TABLE {t} (id int PRIMARY KEY)").await;
    let mut cfg = fx.config();
    cfg.max_batch_rows = 4;
    cfg.snapshot = SnapshotMode::Never;
    let mut src = fx.source(cfg.clone());
    open(&mut src, None).await;
    let start = src.start_position().unwrap();
    fx.exec("INSERT INTO {t} SELECT i FROM generate_series(1, 10) i").await;
    let batches = drain(&mut src, true, WAIT, |b| seen(b, "id", "10")).await;
    let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    assert_eq!(batches[0].end, start);
    assert_eq!(batches[1].end, start);
    assert!(batches[2].end.lsn() > start.lsn());
    support::close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}
