//! Against each real MySQL-family server of `scripts/services.sh` (MariaDB, RTSYNC_MARIADB_URL;
//! Oracle MySQL, RTSYNC_MYSQL_URL), one test per server (`…::mariadb`, `…::oracle_mysql`).
//! Each test has its own database and replica server id, so they run in parallel.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rtsync_core::arrow::datatypes::DataType;
use rtsync_core::{Position, Source};
use rtsync_source_mysql::{MySqlPosition, MySqlSource, ResumeBy, SnapshotLocking, SnapshotMode};

const WAIT: Duration = Duration::from_secs(60);

fn snapshot_done(batches: &[rtsync_core::ChangeBatch<MySqlPosition>]) -> bool {
    batches.last().is_some_and(|b| !b.end.is_snapshot())
}

per_mysql_server!(async inserts_updates_deletes_and_key_changes);

async fn inserts_updates_deletes_and_key_changes(server: MySqlServer) {
    let mut db = TestDb::new(server, "crud").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))").await;
    db.exec("INSERT INTO t VALUES (1, 'one')").await;
    let mut src = open("crud", db.config("t"), None).await;
    let snap = read_until(&mut src, WAIT, snapshot_done).await;
    let rows = flatten(&snap);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "r");
    assert_eq!(rows[0].1["id"], "1");
    assert_eq!(rows[0].1["v"], "one");
    let snapshot_end = snap.last().unwrap().end.clone();

    db.exec("START TRANSACTION").await;
    db.exec("INSERT INTO t VALUES (2, 'two'), (3, 'three')").await;
    db.exec("UPDATE t SET v = 'uno' WHERE id = 1").await;
    db.exec("COMMIT").await;
    db.exec("UPDATE t SET id = 10 WHERE id = 2").await;
    db.exec("DELETE FROM t WHERE id = 3").await;
    db.exec("UPDATE t SET v = NULL WHERE id = 1").await;
    db.exec("TRUNCATE TABLE t").await;
    db.exec("INSERT INTO t VALUES (4, 'four')").await;

    let batches = read_until(&mut src, WAIT, |b| count_rows(b) >= 9).await;
    let got: Vec<(String, String, String)> =
        flatten(&batches).into_iter().map(|(o, r)| (o, r["id"].clone(), r["v"].clone())).collect();
    let want: Vec<(String, String, String)> = [
        ("c", "2", "two"),
        ("c", "3", "three"),
        ("u", "1", "uno"),
        ("d", "2", "two"),
        ("c", "10", "two"),
        ("d", "3", "three"),
        ("u", "1", "NULL"),
        ("t", "NULL", "NULL"),
        ("c", "4", "four"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    // Positions only move forward and always name whole transactions.
    let mut last = snapshot_end;
    for b in &batches {
        assert!(!b.end.is_snapshot());
        assert!(b.end.covers(&last), "{} should cover {}", b.end, last);
        assert!(!b.end.gtids.is_empty(), "positions carry GTIDs (MariaDB always, MySQL with gtid_mode=ON): {}", b.end);
        last = b.end.clone();
    }
    // Stream rows carry their commit time.
    assert!(batches.iter().any(|b| b.event_time_ms.is_some()));
    src.close().await.unwrap();
    db.drop_db().await;
}

per_mysql_server!(async every_type_round_trips_through_snapshot_and_binlog);

/// Every supported type, copied by the snapshot (row 1) and streamed (row 2): both paths
/// must yield the same values, and those values must be the ones inserted.
async fn every_type_round_trips_through_snapshot_and_binlog(server: MySqlServer) {
    let mut db = TestDb::new(server, "types").await;
    db.exec("SET time_zone = '+00:00', sql_mode = ''").await;
    db.exec(
        "CREATE TABLE types (
            id BIGINT UNSIGNED PRIMARY KEY,
            ti TINYINT, tiu TINYINT UNSIGNED, b1 TINYINT(1), si SMALLINT, siu SMALLINT UNSIGNED,
            mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
            d1 DECIMAL(10,2), d2 DECIMAL(38,10), d3 DECIMAL(65,5), f FLOAT, dbl DOUBLE,
            bit1 BIT(1), bit12 BIT(12),
            c CHAR(5), vc VARCHAR(300), tx TEXT, lat VARCHAR(10) CHARACTER SET latin1,
            bn BINARY(4), vb VARBINARY(10), bl BLOB,
            dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL, yr YEAR,
            en ENUM('small','medium','large'), st SET('a','b','c'), js JSON
        )",
    )
    .await;
    let values = "-128, 255, 2, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, \
        -12345678.90, 1234567890123456789012345678.0123456789, -123456789012345678901234567890123456789012345678901234567890.12345, 1.5, 3.141592653589793, \
        b'1', b'101010101010', 'ab', 'héllo wörld 🚀', 'long text', 'café€', x'0102', x'00ff', x'deadbeef', \
        '2024-02-29', '-838:59:59', '12:34:56.789012', '1999-12-31 23:59:59', '2024-02-29 23:59:59.123456', '2024-02-29 12:00:00.123', 2155, \
        'medium', 'a,c', '{\"a\": 1, \"b\": [true, null, \"x\"]}'";
    db.exec(&format!("INSERT INTO types VALUES (1, {values})")).await;
    db.exec("INSERT INTO types (id) VALUES (3)").await;
    db.exec("INSERT INTO types (id, dt, dtm, en) VALUES (5, '0000-00-00', '0000-00-00 00:00:00', '')").await;

    let mut src = open("types", db.config("types"), None).await;
    let schema = src.describe().await.unwrap().unwrap();
    let ty = |n: &str| schema.schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("id"), DataType::Decimal128(20, 0));
    assert_eq!(ty("b1"), DataType::Int8);
    assert_eq!(ty("tiu"), DataType::Int16);
    assert_eq!(ty("iu"), DataType::Int64);
    assert_eq!(ty("d3"), DataType::Utf8);
    assert_eq!(ty("bit1"), DataType::Boolean);
    assert_eq!(ty("tm"), DataType::Int64);
    assert_eq!(ty("js"), DataType::Utf8);
    assert_eq!(schema.primary_key, vec!["id".to_string()]);

    let snap = read_until(&mut src, WAIT, snapshot_done).await;
    db.exec(&format!("INSERT INTO types VALUES (2, {values})")).await;
    db.exec("INSERT INTO types (id) VALUES (4)").await;
    db.exec("INSERT INTO types (id, dt, dtm, en) VALUES (6, '0000-00-00', '0000-00-00 00:00:00', '')").await;
    let streamed = read_until(&mut src, WAIT, |b| count_rows(b) >= 3).await;

    let by_id =
        |rows: Vec<(String, BTreeMap<String, String>)>| -> BTreeMap<String, (String, BTreeMap<String, String>)> {
            rows.into_iter().map(|(o, r)| (r["id"].clone(), (o, r))).collect()
        };
    let snap = by_id(flatten(&snap));
    let streamed = by_id(flatten(&streamed));
    let expected: BTreeMap<&str, &str> = [
        ("ti", "-128"),
        ("tiu", "255"),
        ("b1", "2"),
        ("si", "-32768"),
        ("siu", "65535"),
        ("mi", "-8388608"),
        ("miu", "16777215"),
        ("i", "-2147483648"),
        ("iu", "4294967295"),
        ("bi", "-9223372036854775808"),
        ("biu", "18446744073709551615"),
        ("d1", "-12345678.90"),
        ("d2", "1234567890123456789012345678.0123456789"),
        ("d3", "-123456789012345678901234567890123456789012345678901234567890.12345"),
        ("f", "1.5"),
        ("dbl", "3.141592653589793"),
        ("bit1", "true"),
        ("bit12", "0aaa"),
        ("c", "ab"),
        ("vc", "héllo wörld 🚀"),
        ("tx", "long text"),
        ("lat", "café€"),
        ("bn", "01020000"),
        ("vb", "00ff"),
        ("bl", "deadbeef"),
        ("dt", "2024-02-29"),
        ("tm", "-3020399000000"),
        ("tm6", "45296789012"),
        ("dtm", "1999-12-31T23:59:59"),
        ("dtm6", "2024-02-29T23:59:59.123456"),
        ("ts", "2024-02-29T12:00:00.123Z"),
        ("yr", "2155"),
        ("en", "medium"),
        ("st", "a,c"),
        ("js", "{\"a\": 1, \"b\": [true, null, \"x\"]}"),
    ]
    .into_iter()
    .collect();
    let (op1, row1) = &snap["1"];
    let (op2, row2) = &streamed["2"];
    assert_eq!(op1, "r");
    assert_eq!(op2, "c");
    for (col, want) in &expected {
        assert_eq!(row1[*col], *want, "snapshot value of {col}");
        assert_eq!(row2[*col], *want, "binlog value of {col}");
    }
    // All NULL apart from the key, in both paths.
    for (id, rows) in [("3", &snap), ("4", &streamed)] {
        let (_, row) = &rows[id];
        for col in expected.keys() {
            assert_eq!(row[*col], "NULL", "row {id} column {col}");
        }
    }
    // Zero dates are NULL; the invalid enum value '' stays an empty string.
    for (id, rows) in [("5", &snap), ("6", &streamed)] {
        let (_, row) = &rows[id];
        assert_eq!(row["dt"], "NULL", "row {id}");
        assert_eq!(row["dtm"], "NULL", "row {id}");
        assert_eq!(row["en"], "", "row {id}");
    }
    src.close().await.unwrap();
    db.drop_db().await;
}

per_mysql_server!(async snapshot_while_writes_continue_converges);

/// The copy runs while writers insert, update and delete; afterwards the mirror of the
/// batches equals the table, for each way of tying the snapshot to the binlog.
async fn snapshot_while_writes_continue_converges(server: MySqlServer) {
    let methods: &[(&str, SnapshotLocking)] = if server.is_mariadb() {
        &[
            ("snapc", SnapshotLocking::ConsistentSnapshot),
            ("snapl", SnapshotLocking::LockTable),
            ("snapn", SnapshotLocking::None),
        ]
    } else {
        // MySQL has no binlog position of a consistent snapshot (binlog_snapshot_file).
        &[("snapl", SnapshotLocking::LockTable), ("snapn", SnapshotLocking::None)]
    };
    for &(name, locking) in methods {
        let mut db = TestDb::new(server, name).await;
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n INT)").await;
        db.exec(&format!("INSERT INTO t (id, v, n) SELECT seq, CONCAT('row-', seq), 0 FROM {}", db.seq(20000))).await;
        let mut cfg = db.config("t");
        cfg.snapshot_locking = locking;
        cfg.snapshot_chunk_rows = 1000;
        let mut src = open(name, cfg, None).await;

        let mut writer = db.other().await;
        let writes = tokio::spawn(async move {
            for k in 0..200 {
                let id = 1 + (k * 97) % 20000;
                writer.exec(&format!("UPDATE t SET v = 'upd-{k}', n = n + 1 WHERE id = {id}")).await;
                writer.exec(&format!("INSERT INTO t VALUES ({}, 'new-{k}', 0)", 30000 + k)).await;
                if k % 3 == 0 {
                    writer.exec(&format!("DELETE FROM t WHERE id = {}", 1 + (k * 31) % 20000)).await;
                }
                if k % 10 == 0 {
                    writer.exec(&format!("UPDATE t SET id = {} WHERE id = {}", 40000 + k, 2 + (k * 53) % 20000)).await;
                }
            }
            writer
        });

        let mut mirror = Mirror::default();
        let snap = read_until(&mut src, WAIT, snapshot_done).await;
        assert!(flatten(&snap).iter().all(|(o, _)| o == "r"));
        assert!(count_rows(&snap) >= 19_000, "{name}: the copy holds the table");
        mirror.apply(&snap, "id");
        let writer = writes.await.unwrap();
        let mut writer = writer;
        let want = source_pairs(&mut writer, "t", "id", "v").await;
        let deadline = std::time::Instant::now() + WAIT;
        while mirror.pairs("id", "v") != want {
            assert!(std::time::Instant::now() < deadline, "{name}: the mirror never converged to the table");
            let more = read_until(&mut src, WAIT, |b| !b.is_empty()).await;
            mirror.apply(&more, "id");
        }
        src.close().await.unwrap();
        db.drop_db().await;
    }
}

per_mysql_server!(async binlog_rotation_mid_stream);

async fn binlog_rotation_mid_stream(server: MySqlServer) {
    let mut db = TestDb::new(server, "rotate").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    let mut cfg = db.config("t");
    cfg.snapshot_mode = SnapshotMode::Never;
    let mut src = open("rotate", cfg, None).await;
    let start = read_until(&mut src, WAIT, |b| !b.is_empty()).await;
    let start = start[0].end.clone();
    db.exec("INSERT INTO t VALUES (1, 1)").await;
    db.exec("FLUSH BINARY LOGS").await;
    db.exec("INSERT INTO t VALUES (2, 2)").await;
    db.exec("FLUSH BINARY LOGS").await;
    db.exec("UPDATE t SET v = 3 WHERE id = 2").await;
    let batches = read_until(&mut src, WAIT, |b| count_rows(b) >= 3).await;
    let got: Vec<(String, String)> = flatten(&batches).into_iter().map(|(o, r)| (o, r["id"].clone())).collect();
    assert_eq!(got, vec![("c".into(), "1".into()), ("c".into(), "2".into()), ("u".into(), "2".into())]);
    let end = &batches.last().unwrap().end;
    assert_ne!(end.file, start.file, "the position moved to a later binlog file");
    assert!(end.covers(&start));
    src.close().await.unwrap();
    db.drop_db().await;
}

per_mysql_server!(async resume_from_a_position_mid_stream);

/// Stop after a batch, restart from its position: nothing lost, nothing twice — by GTID and
/// by file + offset.
async fn resume_from_a_position_mid_stream(server: MySqlServer) {
    for (name, resume_by) in [("resg", ResumeBy::Gtid), ("resf", ResumeBy::FilePosition)] {
        let mut db = TestDb::new(server, name).await;
        db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
        let mut cfg = db.config("t");
        cfg.resume_by = resume_by;
        let mut src = open(name, cfg.clone(), None).await;
        read_until(&mut src, WAIT, snapshot_done).await;
        for i in 1..=5 {
            db.exec(&format!("INSERT INTO t VALUES ({i}, {i})")).await;
        }
        let first = read_until(&mut src, WAIT, |b| count_rows(b) >= 5).await;
        let resume_at = first.last().unwrap().end.clone();
        src.close().await.unwrap();
        drop(src);

        for i in 6..=8 {
            db.exec(&format!("INSERT INTO t VALUES ({i}, {i})")).await;
        }
        db.exec("UPDATE t SET v = 100 WHERE id = 2").await;
        let mut src = open(name, cfg, Some(resume_at.clone())).await;
        db.exec("DELETE FROM t WHERE id = 1").await;
        let rest = read_until(&mut src, WAIT, |b| count_rows(b) >= 5).await;
        // Give a duplicate a chance to show up.
        let extra = drain(&mut src, Duration::from_millis(1500)).await;
        let got: Vec<(String, String, String)> = flatten(&rest)
            .into_iter()
            .chain(flatten(&extra))
            .map(|(o, r)| (o, r["id"].clone(), r["v"].clone()))
            .collect();
        let want: Vec<(String, String, String)> =
            [("c", "6", "6"), ("c", "7", "7"), ("c", "8", "8"), ("u", "2", "100"), ("d", "1", "1")]
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
                .collect();
        assert_eq!(got, want, "{name}");
        assert!(rest.last().unwrap().end.covers(&resume_at));
        src.close().await.unwrap();
        db.drop_db().await;
    }
}

per_mysql_server!(async resume_mid_snapshot_converges);

/// A crash after some snapshot chunks: the next attempt copies only the keys after the last
/// committed chunk, streams from the original position, and the mirror converges.
async fn resume_mid_snapshot_converges(server: MySqlServer) {
    let mut db = TestDb::new(server, "midsnap").await;
    db.exec("CREATE TABLE t (a INT, b VARCHAR(10), v VARCHAR(20), PRIMARY KEY (a, b))").await;
    db.exec(&format!("INSERT INTO t SELECT seq DIV 3, CONCAT('k', seq MOD 3), CONCAT('v', seq) FROM {}", db.seq(3000)))
        .await;
    let mut cfg = db.config("t");
    cfg.snapshot_chunk_rows = 200;
    let mut src = open("midsnap", cfg.clone(), None).await;
    let first = read_until(&mut src, WAIT, |b| b.len() >= 3).await;
    let mut mirror = Mirror::default();
    let committed = &first[..3];
    assert!(committed.iter().all(|b| b.end.is_snapshot()));
    let resume_at = committed.last().unwrap().end.clone();
    assert_eq!(resume_at.snapshot.as_ref().unwrap().rows, 600);
    // The copy's progress: rows of the last batch read, of the optimizer's estimate.
    let progress = src.snapshot_progress().expect("a snapshot is running");
    assert_eq!(progress.rows, first.last().unwrap().end.snapshot.as_ref().unwrap().rows);
    let estimate = progress.estimated_rows.expect("the optimizer estimates an InnoDB table");
    assert!((1000..=10_000).contains(&estimate), "estimate {estimate} for 3000 rows");
    for b in committed {
        mirror_apply_composite(&mut mirror, std::slice::from_ref(b));
    }
    src.close().await.unwrap();
    drop(src);

    // Changes while the task is down: in the copied range, beyond it, and key changes.
    db.exec("UPDATE t SET v = 'changed' WHERE a < 50").await;
    db.exec("DELETE FROM t WHERE a BETWEEN 100 AND 110").await;
    db.exec("UPDATE t SET v = 'late' WHERE a > 900").await;
    db.exec("INSERT INTO t VALUES (5000, 'x', 'new'), (1, 'zz', 'new-low')").await;
    db.exec("UPDATE t SET a = 7000 WHERE a = 2 AND b = 'k1'").await;

    let mut src = open("midsnap", cfg, Some(resume_at)).await;
    assert_eq!(src.snapshot_progress().map(|p| p.rows), Some(600), "a resumed copy counts the rows committed before");
    let rest = read_until(&mut src, WAIT, snapshot_done).await;
    assert!(
        rest[0].end.snapshot.as_ref().is_some_and(|s| s.rows > 600),
        "the copy continued after the last committed chunk"
    );
    assert_eq!(src.snapshot_progress(), None, "streaming: no snapshot");
    mirror_apply_composite(&mut mirror, &rest);
    let want: Vec<(String, String)> = db
        .query_strings("SELECT CONCAT(a, '/', b), v FROM t ORDER BY a, b")
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut got: Vec<(String, String)> = mirror.rows.iter().map(|(k, r)| (k.clone(), r["v"].clone())).collect();
        let order = |s: &String| {
            let (a, b) = s.split_once('/').unwrap();
            (a.parse::<i64>().unwrap(), b.to_owned())
        };
        got.sort_by_key(|(k, _)| order(k));
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "mirror did not converge: {} rows vs {}", got.len(), want.len());
        let more = read_until(&mut src, WAIT, |b| !b.is_empty()).await;
        mirror_apply_composite(&mut mirror, &more);
    }
    src.close().await.unwrap();
    db.drop_db().await;
}

fn mirror_apply_composite(mirror: &mut Mirror, batches: &[rtsync_core::ChangeBatch<MySqlPosition>]) {
    for (o, row) in flatten(batches) {
        let k = format!("{}/{}", row["a"], row["b"]);
        if o == "d" {
            mirror.rows.remove(&k);
        } else {
            mirror.rows.insert(k, row);
        }
    }
}

per_mysql_server!(async added_column_appears_in_later_batches);

/// ALTER TABLE ADD COLUMN mid-stream: later batches carry the new column.
async fn added_column_appears_in_later_batches(server: MySqlServer) {
    let mut db = TestDb::new(server, "ddl").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    let mut src = open("ddl", db.config("t"), None).await;
    read_until(&mut src, WAIT, snapshot_done).await;
    db.exec("INSERT INTO t VALUES (1, 1)").await;
    db.exec("ALTER TABLE t ADD COLUMN note VARCHAR(20) DEFAULT 'dflt'").await;
    db.exec("INSERT INTO t VALUES (2, 2, 'hello')").await;
    db.exec("UPDATE t SET v = 10 WHERE id = 1").await;
    let batches = read_until(&mut src, WAIT, |b| count_rows(b) >= 3).await;
    let rows = flatten(&batches);
    assert_eq!(rows[0].0, "c");
    assert!(!rows[0].1.contains_key("note"), "the insert before the ALTER has the old columns");
    assert_eq!((rows[1].0.as_str(), rows[1].1["id"].as_str(), rows[1].1["note"].as_str()), ("c", "2", "hello"));
    assert_eq!((rows[2].0.as_str(), rows[2].1["v"].as_str(), rows[2].1["note"].as_str()), ("u", "10", "dflt"));
    let last = batches.iter().rev().find(|b| b.rows.num_rows() > 0).unwrap();
    assert!(last.rows.schema().field_with_name("note").is_ok());
    src.close().await.unwrap();
    db.drop_db().await;
}

per_mysql_server!(async preflight_names_the_problem);

async fn preflight_names_the_problem(server: MySqlServer) {
    let mut db = TestDb::new(server, "preflight").await;
    db.exec("CREATE TABLE nokey (v INT)").await;
    let mut src = MySqlSource::new("preflight", db.config("missing")).unwrap();
    let err = src.check().await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{}", err.report());
    let mut src = MySqlSource::new("preflight", db.config("nokey")).unwrap();
    let err = src.check().await.unwrap_err();
    assert!(err.to_string().contains("no primary key"), "{}", err.report());
    let mut cfg = db.config("nokey");
    cfg.password = Some("wrong".into());
    let err = MySqlSource::new("preflight", cfg).unwrap().check().await.unwrap_err();
    assert!(err.to_string().contains("password"), "{}", err.report());
    assert!(!err.report().contains("wrong"), "the password is never printed: {}", err.report());
    db.drop_db().await;
}

per_mysql_server!(async transactions_are_never_split_across_positions);

/// A big transaction arrives whole; an idle task still reports its moving position.
async fn transactions_are_never_split_across_positions(server: MySqlServer) {
    let mut db = TestDb::new(server, "bigtxn").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    db.exec("CREATE TABLE other (id INT PRIMARY KEY)").await;
    let mut cfg = db.config("t");
    cfg.max_batch_rows = 100;
    cfg.idle_position_secs = 1;
    let mut src = open("bigtxn", cfg, None).await;
    let snap = read_until(&mut src, WAIT, snapshot_done).await;
    let start = snap.last().unwrap().end.clone();
    db.exec(&format!("INSERT INTO t SELECT seq, seq FROM {}", db.seq(150))).await;
    let batches = read_until(&mut src, WAIT, |b| count_rows(b) >= 150).await;
    // 150 rows < 2 × max_batch_rows: one transaction, one batch.
    let with_rows: Vec<_> = batches.iter().filter(|b| b.rows.num_rows() > 0).collect();
    assert_eq!(with_rows.len(), 1);
    assert_eq!(with_rows[0].rows.num_rows(), 150);
    // Other tables' transactions move the position of an idle task.
    db.exec("INSERT INTO other VALUES (1)").await;
    let after = with_rows[0].end.clone();
    let idle = read_until(&mut src, WAIT, |b| b.iter().any(|x| x.rows.num_rows() == 0 && x.end != after)).await;
    let moved = &idle.last().unwrap().end;
    assert!(moved.covers(&after) && moved != &after && moved.covers(&start));
    src.close().await.unwrap();
    db.drop_db().await;
}
