//! Every PostgreSQL column type rtsync supports, through `rtsync run` into Delta and read back
//! with the independent Python `deltalake` reader, cell by cell against values written here by
//! hand. Rows go through both paths: the snapshot (inserted before the task starts) and pgoutput
//! (inserted while it streams), then updates (one to NULLs), a primary-key change, deletes, and
//! updates of rows whose out-of-line TOAST value they do not touch (the value must survive, also
//! when the insert and the update share a transaction).
//!
//! Values Delta cannot hold follow the documented mapping (README "Syncing a database table"):
//! numeric NaN in a numeric(p,s) column is NULL, numeric without precision or with p > 38 is its
//! exact text, time/timetz/interval/uuid/json/jsonb are text, arrays JSON text, date ±infinity
//! are 9999-12-31 / 0001-01-01 (the ends of Delta's date range) and dates outside that range
//! NULL, timestamp ±infinity the largest and smallest microsecond values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/cells.rs"]
mod cells;
mod common;

use std::time::Duration;

use cells::{Expected, Running, wait_count};
use common::*;

/// The table; `{t}` is its name.
const TABLE_DDL: &str = "CREATE TYPE {t}_mood AS ENUM ('sad', 'happy', 'ünï 😀');
    CREATE TABLE {t} (
        id int8 PRIMARY KEY,
        i2 int2, i4 int4, i8 int8,
        n12 numeric(12,2), n38 numeric(38,10), nfree numeric, n50 numeric(50,5),
        f4 float4, f8 float8,
        b bool,
        t text, vc varchar(10), ch char(4),
        by bytea,
        d date, tm time, ttz timetz, iv interval,
        ts timestamp, tstz timestamptz,
        u uuid, j json, jb jsonb,
        ia int4[], ta text[],
        mood {t}_mood,
        big text
    );
    -- out of line and uncompressed: any value over ~2 kB is a TOAST pointer
    ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL;";

const COLUMNS: [&str; 28] = [
    "id", "i2", "i4", "i8", "n12", "n38", "nfree", "n50", "f4", "f8", "b", "t", "vc", "ch", "by", "d", "tm", "ttz",
    "iv", "ts", "tstz", "u", "j", "jb", "ia", "ta", "mood", "big",
];

/// The Delta type of each column, as the table's metadata states it.
const DELTA_TYPES: [(&str, &str); 28] = [
    ("id", "long"),
    ("i2", "short"),
    ("i4", "integer"),
    ("i8", "long"),
    ("n12", "decimal(12,2)"),
    ("n38", "decimal(38,10)"),
    ("nfree", "string"),
    ("n50", "string"),
    ("f4", "float"),
    ("f8", "double"),
    ("b", "boolean"),
    ("t", "string"),
    ("vc", "string"),
    ("ch", "string"),
    ("by", "binary"),
    ("d", "date"),
    ("tm", "string"),
    ("ttz", "string"),
    ("iv", "string"),
    ("ts", "timestamp_ntz"),
    ("tstz", "timestamp"),
    ("u", "string"),
    ("j", "string"),
    ("jb", "string"),
    ("ia", "string"),
    ("ta", "string"),
    ("mood", "string"),
    ("big", "string"),
];

// Four rows of values (SQL literals for every column after `id`), each inserted once before
// the task starts and once while it streams, with the exact text the reader must see.

/// Maxima, the largest precisions, text with every escape, the last date and a far-future timestamp.
const ROW_A: &str = r#"32767, 2147483647, 9223372036854775807,
    9999999999.99, 9999999999999999999999999999.9999999999,
    3.14159265358979323846264338327950288419716939937510,
    123456789012345678901234567890123456789012345.12345,
    '3.4028235e38', '1.7976931348623157e308', true,
    E'h\u00e9llo \U0001F680 "q" \\ \t|\n', 'abcdéfghij', 'ab', '\x00ff00c328',
    '5874897-12-31', '23:59:59.999999', '13:45:00.5+02', '1 year 2 mons 3 days 04:05:06.789',
    '294247-01-10 04:00:54.775806', '2024-02-29 12:34:56.789012+02',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1,  "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50], "c": null}',
    '{{1,2},{3,NULL}}', '{"a b","c\"d",NULL,"NULL","é,}"}', 'happy', NULL"#;

const EXPECT_A: &[(&str, &str)] = &[
    ("i2", "32767"),
    ("i4", "2147483647"),
    ("i8", "9223372036854775807"),
    ("n12", "9999999999.99"),
    ("n38", "9999999999999999999999999999.9999999999"),
    ("nfree", "3.14159265358979323846264338327950288419716939937510"),
    ("n50", "123456789012345678901234567890123456789012345.12345"),
    // float4 3.4028235e38 is f32::MAX, which the reader widens to a double
    ("f4", "3.4028234663852886e+38"),
    ("f8", "1.7976931348623157e+308"),
    ("b", "true"),
    ("t", "h\u{e9}llo \u{1F680} \"q\" \\ \t|\n"),
    ("vc", "abcdéfghij"),
    ("ch", "ab  "),
    ("by", "00ff00c328"),
    // d: 5874897-12-31, PostgreSQL's last date, is after Delta's last (9999-12-31): NULL
    ("tm", "23:59:59.999999"),
    ("ttz", "13:45:00.5+02"),
    ("iv", "P1Y2M3DT4H5M6.789S"),
    // one microsecond below the largest Delta timestamp (i64::MAX µs is +infinity)
    ("ts", "us:9223372036854775806"),
    ("tstz", "2024-02-29T10:34:56.789012+00:00"),
    ("u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("j", r#"{"b": 1,  "a": [1, 2.50]}"#),
    ("jb", r#"{"a": [1, 2.50], "b": 1, "c": null}"#),
    ("ia", "[[1,2],[3,null]]"),
    ("ta", r#"["a b","c\"d",null,"NULL","é,}"]"#),
    ("mood", "happy"),
];

/// Minima, negative zero, empty values, the first date and timestamp.
const ROW_B: &str = r#"-32768, -2147483648, -9223372036854775808,
    -9999999999.99, -0.0000000001, 'NaN', -0.00001, 'NaN', '-0', false,
    '', '', '', '\x', '4714-11-24 BC', '00:00:00', '00:00:00-05:30', '-1 days -00:00:01',
    '4714-11-24 00:00:00 BC', '1969-12-31 23:59:59.999999+00',
    '00000000-0000-0000-0000-000000000000', '[]', '"str"', '{}', '{}', 'sad', NULL"#;

const EXPECT_B: &[(&str, &str)] = &[
    ("i2", "-32768"),
    ("i4", "-2147483648"),
    ("i8", "-9223372036854775808"),
    ("n12", "-9999999999.99"),
    ("n38", "-0.0000000001"),
    ("nfree", "NaN"),
    ("n50", "-0.00001"),
    ("f4", "nan"),
    ("f8", "-0.0"),
    ("b", "false"),
    ("t", ""),
    ("vc", ""),
    ("ch", "    "),
    ("by", ""),
    // d: 4714-11-24 BC, PostgreSQL's first date, is before Delta's first (0001-01-01): NULL
    ("tm", "00:00:00"),
    ("ttz", "00:00:00-05:30"),
    ("iv", "P-1DT-1S"),
    ("ts", "us:-210866803200000000"),
    ("tstz", "1969-12-31T23:59:59.999999+00:00"),
    ("u", "00000000-0000-0000-0000-000000000000"),
    ("j", "[]"),
    ("jb", "\"str\""),
    ("ia", "[]"),
    ("ta", "[]"),
    ("mood", "sad"),
];

/// Infinities and NaN, JSON null (not SQL NULL), arrays of NULL, a NULL boolean.
const ROW_C: &str = r#"0, 0, 0, 'NaN', 'NaN', '-Infinity', 'NaN', '-Infinity', 'Infinity', NULL,
    E'\u00e9\u4e2d\U0001F600', 'x', 'abcd', '\xc0', '-infinity', '24:00:00', '23:59:59.999999-15:59', '0',
    'infinity', '-infinity', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', 'null', '{NULL}', '{NULL,""}',
    'ünï 😀', NULL"#;

const EXPECT_C: &[(&str, &str)] = &[
    ("i2", "0"),
    ("i4", "0"),
    ("i8", "0"),
    // n12 and n38: NaN → NULL (Delta decimals have no NaN)
    ("nfree", "-Infinity"),
    ("n50", "NaN"),
    ("f4", "-inf"),
    ("f8", "inf"),
    ("t", "\u{e9}\u{4e2d}\u{1F600}"),
    ("vc", "x"),
    ("ch", "abcd"),
    ("by", "c0"),
    // -infinity: the first date of Delta's range
    ("d", "0001-01-01"),
    ("tm", "24:00:00"),
    ("ttz", "23:59:59.999999-15:59"),
    ("iv", "PT0S"),
    ("ts", "us:9223372036854775807"),
    ("tstz", "us:-9223372036854775808"),
    ("u", "ffffffff-ffff-ffff-ffff-ffffffffffff"),
    ("j", "null"),
    ("jb", "null"),
    ("ia", "[null]"),
    ("ta", r#"[null,""]"#),
    ("mood", "ünï 😀"),
];

/// Ordinary values: zeros at scale, the smallest subnormal floats, year 1, jsonb normalizing.
const ROW_D: &str = r#"1, -1, 42, 0, 0, 1e-30, 0, '1e-45', '5e-324', true, 'plain', NULL, NULL, '\xdeadbeef',
    '2024-02-29', '12:00:00', NULL, NULL, '2024-02-29 12:34:56.789012', '0001-01-01 00:00:00+00',
    NULL, '{"k": "v\u00e9"}', '{"k": "v\u00e9", "n": 1e3}', '{-1,0,1}', '{"with,comma","with space"}', NULL, NULL"#;

const EXPECT_D: &[(&str, &str)] = &[
    ("i2", "1"),
    ("i4", "-1"),
    ("i8", "42"),
    ("n12", "0.00"),
    ("n38", "0.0000000000"),
    ("nfree", "0.000000000000000000000000000001"),
    ("n50", "0.00000"),
    ("f4", "1.401298464324817e-45"),
    ("f8", "5e-324"),
    ("b", "true"),
    ("t", "plain"),
    ("by", "deadbeef"),
    ("d", "2024-02-29"),
    ("tm", "12:00:00"),
    ("ts", "2024-02-29T12:34:56.789012"),
    ("tstz", "0001-01-01T00:00:00+00:00"),
    ("j", r#"{"k": "v\u00e9"}"#),
    ("jb", r#"{"k": "vé", "n": 1000}"#),
    ("ia", "[-1,0,1]"),
    ("ta", r#"["with,comma","with space"]"#),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_snapshot_and_stream_into_delta() {
    let client = pg_connect().await;
    let table = unique("pgtypes").to_lowercase();
    let t = table.as_str();
    let cols = COLUMNS[1..].join(", ");
    let toast = |id: i64| format!("toast-{id} ").repeat(4000);
    client.batch_execute(&TABLE_DDL.replace("{t}", t)).await.unwrap();
    // Through the snapshot: the four value rows, a NULL row, a TOAST row, a row to delete.
    client
        .batch_execute(&format!(
            "INSERT INTO {t} (id, {cols}) VALUES (1, {ROW_A}), (2, {ROW_B}), (3, {ROW_C}), (4, {ROW_D}), (7, {ROW_A});
             INSERT INTO {t} (id) VALUES (5);
             INSERT INTO {t} (id, i4, t, big) VALUES (6, 6, 'toast', repeat('toast-6 ', 4000));"
        ))
        .await
        .unwrap();
    // The big value really is out of line, so an UPDATE that does not touch it does not send it.
    let toast_rel: String = client
        .query_one("SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = $1::text::regclass", &[&t])
        .await
        .unwrap()
        .get(0);
    let chunks: i64 = client.query_one(&format!("SELECT count(*) FROM {toast_rel}"), &[]).await.unwrap().get(0);
    assert!(chunks > 0, "the TOAST table {toast_rel} holds the big value");

    let dir = tempfile::tempdir().unwrap();
    let name = unique("pgtypes");
    let source = format!(
        "type = \"postgresql\"\nurl = \"{}\"\nschema = \"public\"\ntable = \"{t}\"\nsnapshot_chunk_rows = 2",
        pg_url()
    );
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "300ms""#, &source, t);
    let mut child = Running(spawn_run(&spec, &log));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Once the snapshot is in the table, everything after goes through pgoutput.
    let n = wait_count(&target, "true", 7, Duration::from_secs(120)).await;
    assert_eq!(n, 7, "the snapshot arrived; log:\n{}", log_text());
    client
        .batch_execute(&format!(
            "INSERT INTO {t} (id, {cols}) VALUES (11, {ROW_A}), (12, {ROW_B}), (13, {ROW_C}), (14, {ROW_D}), (17, {ROW_C});
             INSERT INTO {t} (id) VALUES (15);
             INSERT INTO {t} (id, i4, big) VALUES (16, 16, repeat('toast-16 ', 4000));"
        ))
        .await
        .unwrap();
    let n = wait_count(&target, "id > 10", 7, Duration::from_secs(60)).await;
    assert_eq!(n, 7, "the streamed inserts arrived; log:\n{}", log_text());
    // Updates and deletes, each statement its own transaction; TOAST rows updated without
    // touching `big`, one of them in the transaction that inserted it.
    for sql in [
        format!(
            "UPDATE {t} SET d = 'infinity', tstz = 'infinity', n12 = 0.01, t = 'updated', ia = '{{7}}', by = '\\xdeadbeef', f8 = 2.5 WHERE id = 2"
        ),
        format!("UPDATE {t} SET i4 = 66, t = 'toast updated' WHERE id = 6"),
        format!("DELETE FROM {t} WHERE id = 7"),
        format!("UPDATE {t} SET id = 33 WHERE id = 3"),
        format!("UPDATE {t} SET b = NULL, t = NULL, i4 = 7 WHERE id = 12"),
        format!("UPDATE {t} SET ({cols}) = ROW({}) WHERE id = 13", vec!["NULL"; COLUMNS.len() - 1].join(", ")),
        format!("UPDATE {t} SET i4 = 166 WHERE id = 16"),
        format!("DELETE FROM {t} WHERE id = 17"),
        format!(
            "BEGIN; INSERT INTO {t} (id, i4, big) VALUES (26, 26, repeat('toast-26 ', 4000));
             UPDATE {t} SET i4 = 266 WHERE id = 26; COMMIT"
        ),
        format!("INSERT INTO {t} (id) VALUES (99)"),
    ] {
        client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let expected = [
        Expected::nulls(&COLUMNS, 1).with(EXPECT_A),
        Expected::nulls(&COLUMNS, 2).with(EXPECT_B).with(&[
            ("d", "9999-12-31"),
            ("tstz", "us:9223372036854775807"),
            ("n12", "0.01"),
            ("t", "updated"),
            ("ia", "[7]"),
            ("by", "deadbeef"),
            ("f8", "2.5"),
        ]),
        Expected::nulls(&COLUMNS, 4).with(EXPECT_D),
        Expected::nulls(&COLUMNS, 5),
        Expected::nulls(&COLUMNS, 6).with(&[("i4", "66"), ("t", "toast updated"), ("big", toast(6).as_str())]),
        Expected::nulls(&COLUMNS, 11).with(EXPECT_A),
        Expected::nulls(&COLUMNS, 12).with(EXPECT_B).with(&[("i4", "7")]).null(&["b", "t"]),
        Expected::nulls(&COLUMNS, 13),
        Expected::nulls(&COLUMNS, 14).with(EXPECT_D),
        Expected::nulls(&COLUMNS, 15),
        Expected::nulls(&COLUMNS, 16).with(&[("i4", "166"), ("big", toast(16).as_str())]),
        Expected::nulls(&COLUMNS, 26).with(&[("i4", "266"), ("big", toast(26).as_str())]),
        Expected::nulls(&COLUMNS, 33).with(EXPECT_C),
        Expected::nulls(&COLUMNS, 99),
    ];

    // Converged, stopped, then every type and cell through the independent reader.
    cells::stop_and_verify(
        &target,
        &mut child,
        &log,
        &expected,
        &DELTA_TYPES,
        &[
            ("tstz", "timestamp[us, tz=UTC]", "timestamptz is an instant in UTC"),
            ("ts", "timestamp[us]", "timestamp has no time zone"),
        ],
    )
    .await;

    // What undeploy does: the slot and the publication go; then the test's own objects.
    let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(&spec).unwrap().source else { unreachable!() };
    rtsync_source_postgres::drop_replication_objects(&config, &name).await.unwrap();
    client.batch_execute(&format!("DROP TABLE {t}; DROP TYPE {t}_mood")).await.unwrap();
}
