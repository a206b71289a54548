//! Every MySQL/MariaDB column type rtsync supports, through `rtsync run` into Delta and read back
//! with the independent Python `deltalake` reader, cell by cell against values written here by
//! hand, on each MySQL-family server (MariaDB 10.11 and Oracle MySQL 9.7). Rows go through both
//! paths: the snapshot (inserted before the task starts) and the ROW binlog (inserted while it
//! streams), then updates (one to NULLs), a primary-key change and deletes. On Oracle MySQL the
//! streamed transactions are zstd-compressed (`binlog_transaction_compression=ON`).
//!
//! Then what the servers add around the types: invisible columns, VIRTUAL and STORED generated
//! columns, and on Oracle MySQL a generated invisible primary key (`sql_generate_invisible_primary_key`).
//!
//! Values Delta cannot hold follow the documented mapping (README "Syncing a database table"):
//! bigint unsigned is decimal(20,0), decimal with p > 38 its exact text, time signed
//! microseconds, bit(n>1) big-endian bytes, year a short, zero dates NULL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/cells.rs"]
mod cells;
mod common;

use std::time::Duration;

use cells::{Expected, Running, wait_count};
use common::*;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

const TABLE_DDL: &str = "CREATE TABLE {t} (
        id INT PRIMARY KEY,
        ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
        mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, bo BOOL,
        d10 DECIMAL(10,2), d38 DECIMAL(38,10), d3838 DECIMAL(38,38), d65 DECIMAL(65,30), d6538 DECIMAL(65,38),
        f FLOAT, dbl DOUBLE,
        bit1 BIT(1), bit12 BIT(12), bit64 BIT(64),
        c CHAR(5), vc VARCHAR(100), tx TEXT,
        bn BINARY(4), vb VARBINARY(10), bl BLOB,
        dt DATE, tm TIME, tm6 TIME(6),
        dt0 DATETIME, dt1 DATETIME(1), dt2 DATETIME(2), dt3 DATETIME(3), dt4 DATETIME(4), dt5 DATETIME(5), dt6 DATETIME(6),
        ts0 TIMESTAMP NULL DEFAULT NULL, ts1 TIMESTAMP(1) NULL DEFAULT NULL, ts2 TIMESTAMP(2) NULL DEFAULT NULL,
        ts3 TIMESTAMP(3) NULL DEFAULT NULL, ts4 TIMESTAMP(4) NULL DEFAULT NULL, ts5 TIMESTAMP(5) NULL DEFAULT NULL,
        ts6 TIMESTAMP(6) NULL DEFAULT NULL,
        yr YEAR,
        en ENUM('small', 'medium', 'large', 'ünï 😀'), st SET('a', 'b', 'c'), js JSON
    ) CHARACTER SET utf8mb4";

const COLUMNS: [&str; 49] = [
    "id", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "bo", "d10", "d38", "d3838", "d65", "d6538",
    "f", "dbl", "bit1", "bit12", "bit64", "c", "vc", "tx", "bn", "vb", "bl", "dt", "tm", "tm6", "dt0", "dt1", "dt2",
    "dt3", "dt4", "dt5", "dt6", "ts0", "ts1", "ts2", "ts3", "ts4", "ts5", "ts6", "yr", "en", "st", "js",
];

/// The Delta type of each column, as the table's metadata states it.
const DELTA_TYPES: [(&str, &str); 49] = [
    ("id", "integer"),
    ("ti", "byte"),
    ("tiu", "short"),
    ("si", "short"),
    ("siu", "integer"),
    ("mi", "integer"),
    ("miu", "integer"),
    ("i", "integer"),
    ("iu", "long"),
    ("bi", "long"),
    ("biu", "decimal(20,0)"),
    ("bo", "byte"),
    ("d10", "decimal(10,2)"),
    ("d38", "decimal(38,10)"),
    ("d3838", "decimal(38,38)"),
    ("d65", "string"),
    ("d6538", "string"),
    ("f", "float"),
    ("dbl", "double"),
    ("bit1", "boolean"),
    ("bit12", "binary"),
    ("bit64", "binary"),
    ("c", "string"),
    ("vc", "string"),
    ("tx", "string"),
    ("bn", "binary"),
    ("vb", "binary"),
    ("bl", "binary"),
    ("dt", "date"),
    ("tm", "long"),
    ("tm6", "long"),
    ("dt0", "timestamp_ntz"),
    ("dt1", "timestamp_ntz"),
    ("dt2", "timestamp_ntz"),
    ("dt3", "timestamp_ntz"),
    ("dt4", "timestamp_ntz"),
    ("dt5", "timestamp_ntz"),
    ("dt6", "timestamp_ntz"),
    ("ts0", "timestamp"),
    ("ts1", "timestamp"),
    ("ts2", "timestamp"),
    ("ts3", "timestamp"),
    ("ts4", "timestamp"),
    ("ts5", "timestamp"),
    ("ts6", "timestamp"),
    ("yr", "short"),
    ("en", "string"),
    ("st", "string"),
    ("js", "string"),
];

// Rows of values (SQL literals for every column after `id`, session time zone UTC), each
// inserted once before the task starts and once while it streams, with the exact text the
// reader must see.

/// Maxima of every type, the widest decimals, utf8mb4 with emoji and escapes.
const ROW_A: &str = r#"127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
    9223372036854775807, 18446744073709551615, 1,
    99999999.99, 9999999999999999999999999999.9999999999, 0.99999999999999999999999999999999999999,
    99999999999999999999999999999999999.999999999999999999999999999999,
    999999999999999999999999999.99999999999999999999999999999999999999,
    3.4028234e38, 1.7976931348623157e308,
    b'1', b'111111111111', 0xFFFFFFFFFFFFFFFF,
    'abcde', '😀 héllo wörld 🚀 "q" \\ \t|', 'text with 中文 and emoji 👍',
    x'01020304', x'00ff00c328', x'000000',
    '9999-12-31', '838:59:59', '838:59:59.999999',
    '9999-12-31 23:59:59', '9999-12-31 23:59:59.9', '9999-12-31 23:59:59.99', '9999-12-31 23:59:59.999',
    '9999-12-31 23:59:59.9999', '9999-12-31 23:59:59.99999', '9999-12-31 23:59:59.999999',
    '2038-01-19 03:14:07', '2038-01-19 03:14:07.9', '2038-01-19 03:14:07.99', '2038-01-19 03:14:07.999',
    '2038-01-19 03:14:07.9999', '2038-01-19 03:14:07.99999', '2038-01-19 03:14:07.999999',
    2155, 'large', 'a,b,c', '{"a": 1, "b": [true, null, "x"], "e": "😀"}'"#;

const EXPECT_A: &[(&str, &str)] = &[
    ("ti", "127"),
    ("tiu", "255"),
    ("si", "32767"),
    ("siu", "65535"),
    ("mi", "8388607"),
    ("miu", "16777215"),
    ("i", "2147483647"),
    ("iu", "4294967295"),
    ("bi", "9223372036854775807"),
    ("biu", "18446744073709551615"),
    ("bo", "1"),
    ("d10", "99999999.99"),
    ("d38", "9999999999999999999999999999.9999999999"),
    ("d3838", "0.99999999999999999999999999999999999999"),
    ("d65", "99999999999999999999999999999999999.999999999999999999999999999999"),
    ("d6538", "999999999999999999999999999.99999999999999999999999999999999999999"),
    // FLOAT 3.4028234e38 is f32::MAX, which the reader widens to a double
    ("f", "3.4028234663852886e+38"),
    ("dbl", "1.7976931348623157e+308"),
    ("bit1", "true"),
    ("bit12", "0fff"),
    ("bit64", "ffffffffffffffff"),
    ("c", "abcde"),
    ("vc", "😀 héllo wörld 🚀 \"q\" \\ \t|"),
    ("tx", "text with 中文 and emoji 👍"),
    ("bn", "01020304"),
    ("vb", "00ff00c328"),
    ("bl", "000000"),
    ("dt", "9999-12-31"),
    // 838:59:59 = 3020399 s
    ("tm", "3020399000000"),
    ("tm6", "3020399999999"),
    ("dt0", "9999-12-31T23:59:59"),
    ("dt1", "9999-12-31T23:59:59.900000"),
    ("dt2", "9999-12-31T23:59:59.990000"),
    ("dt3", "9999-12-31T23:59:59.999000"),
    ("dt4", "9999-12-31T23:59:59.999900"),
    ("dt5", "9999-12-31T23:59:59.999990"),
    ("dt6", "9999-12-31T23:59:59.999999"),
    ("ts0", "2038-01-19T03:14:07+00:00"),
    ("ts1", "2038-01-19T03:14:07.900000+00:00"),
    ("ts2", "2038-01-19T03:14:07.990000+00:00"),
    ("ts3", "2038-01-19T03:14:07.999000+00:00"),
    ("ts4", "2038-01-19T03:14:07.999900+00:00"),
    ("ts5", "2038-01-19T03:14:07.999990+00:00"),
    ("ts6", "2038-01-19T03:14:07.999999+00:00"),
    ("yr", "2155"),
    ("en", "large"),
    ("st", "a,b,c"),
    ("js", r#"{"a": 1, "b": [true, null, "x"], "e": "😀"}"#),
];

/// Minima, empty values, the first date, datetime and timestamp.
const ROW_B: &str = r#"-128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0,
    -99999999.99, -9999999999999999999999999999.9999999999, -0.00000000000000000000000000000000000001,
    -99999999999999999999999999999999999.999999999999999999999999999999,
    -0.00000000000000000000000000000000000001,
    -3.4028234e38, -2.2250738585072014e-308,
    b'0', b'0', 0,
    '', '', '',
    x'', x'', x'',
    '0001-01-01', '-838:59:59', '-838:59:59.999999',
    '0001-01-01 00:00:00', '0001-01-01 00:00:00.1', '0001-01-01 00:00:00.01', '0001-01-01 00:00:00.001',
    '0001-01-01 00:00:00.0001', '0001-01-01 00:00:00.00001', '0001-01-01 00:00:00.000001',
    '1970-01-01 00:00:01', '1970-01-01 00:00:01.1', '1970-01-01 00:00:01.01', '1970-01-01 00:00:01.001',
    '1970-01-01 00:00:01.0001', '1970-01-01 00:00:01.00001', '1970-01-01 00:00:01.000001',
    1901, 'small', '', '[]'"#;

const EXPECT_B: &[(&str, &str)] = &[
    ("ti", "-128"),
    ("tiu", "0"),
    ("si", "-32768"),
    ("siu", "0"),
    ("mi", "-8388608"),
    ("miu", "0"),
    ("i", "-2147483648"),
    ("iu", "0"),
    ("bi", "-9223372036854775808"),
    ("biu", "0"),
    ("bo", "0"),
    ("d10", "-99999999.99"),
    ("d38", "-9999999999999999999999999999.9999999999"),
    ("d3838", "-0.00000000000000000000000000000000000001"),
    ("d65", "-99999999999999999999999999999999999.999999999999999999999999999999"),
    ("d6538", "-0.00000000000000000000000000000000000001"),
    ("f", "-3.4028234663852886e+38"),
    ("dbl", "-2.2250738585072014e-308"),
    ("bit1", "false"),
    ("bit12", "0000"),
    ("bit64", "0000000000000000"),
    ("c", ""),
    ("vc", ""),
    ("tx", ""),
    // binary(4) is zero-padded
    ("bn", "00000000"),
    ("vb", ""),
    ("bl", ""),
    ("dt", "0001-01-01"),
    ("tm", "-3020399000000"),
    ("tm6", "-3020399999999"),
    ("dt0", "0001-01-01T00:00:00"),
    ("dt1", "0001-01-01T00:00:00.100000"),
    ("dt2", "0001-01-01T00:00:00.010000"),
    ("dt3", "0001-01-01T00:00:00.001000"),
    ("dt4", "0001-01-01T00:00:00.000100"),
    ("dt5", "0001-01-01T00:00:00.000010"),
    ("dt6", "0001-01-01T00:00:00.000001"),
    ("ts0", "1970-01-01T00:00:01+00:00"),
    ("ts1", "1970-01-01T00:00:01.100000+00:00"),
    ("ts2", "1970-01-01T00:00:01.010000+00:00"),
    ("ts3", "1970-01-01T00:00:01.001000+00:00"),
    ("ts4", "1970-01-01T00:00:01.000100+00:00"),
    ("ts5", "1970-01-01T00:00:01.000010+00:00"),
    ("ts6", "1970-01-01T00:00:01.000001+00:00"),
    ("yr", "1901"),
    ("en", "small"),
    ("st", ""),
    ("js", "[]"),
];

/// Ordinary values: zeros at scale, 2^63 unsigned, tinyint(1) holding 2, trailing spaces,
/// a zero byte in binary(4), sub-second times, year 0000.
const ROW_C: &str = r#"0, 1, -1, 1, 0, 1, 0, 1, 0, 9223372036854775808, 2,
    0, 0, 0, 0, NULL,
    1.1, 0.1,
    NULL, b'101010101010', b'1',
    'a ', 'trailing space ', 'line1\nline2',
    x'00', x'00', NULL,
    '2024-02-29', '-00:00:01', '100:00:00.5',
    '2024-02-29 12:34:56', '2024-02-29 12:34:56.1', '2024-02-29 12:34:56.12', '2024-02-29 12:34:56.123',
    '2024-02-29 12:34:56.1234', '2024-02-29 12:34:56.12345', '2024-02-29 12:34:56.123456',
    '2024-02-29 12:34:56', '2024-02-29 12:34:56.1', '2024-02-29 12:34:56.12', '2024-02-29 12:34:56.123',
    '2024-02-29 12:34:56.1234', '2024-02-29 12:34:56.12345', '2024-02-29 12:34:56.123456',
    0, 'ünï 😀', 'b', '{"nested": {"x": [1.5, -2, 1e100]}, "s": "tab\\tquote\\""}'"#;

const EXPECT_C: &[(&str, &str)] = &[
    ("ti", "0"),
    ("tiu", "1"),
    ("si", "-1"),
    ("siu", "1"),
    ("mi", "0"),
    ("miu", "1"),
    ("i", "0"),
    ("iu", "1"),
    ("bi", "0"),
    ("biu", "9223372036854775808"),
    ("bo", "2"),
    ("d10", "0.00"),
    ("d38", "0.0000000000"),
    ("d3838", "0.00000000000000000000000000000000000000"),
    ("d65", "0.000000000000000000000000000000"),
    // FLOAT 1.1 is the f32 nearest to 1.1
    ("f", "1.100000023841858"),
    ("dbl", "0.1"),
    ("bit12", "0aaa"),
    ("bit64", "0000000000000001"),
    // CHAR drops trailing spaces, VARCHAR keeps them
    ("c", "a"),
    ("vc", "trailing space "),
    ("tx", "line1\nline2"),
    ("bn", "00000000"),
    ("vb", "00"),
    ("dt", "2024-02-29"),
    ("tm", "-1000000"),
    ("tm6", "360000500000"),
    ("dt0", "2024-02-29T12:34:56"),
    ("dt1", "2024-02-29T12:34:56.100000"),
    ("dt2", "2024-02-29T12:34:56.120000"),
    ("dt3", "2024-02-29T12:34:56.123000"),
    ("dt4", "2024-02-29T12:34:56.123400"),
    ("dt5", "2024-02-29T12:34:56.123450"),
    ("dt6", "2024-02-29T12:34:56.123456"),
    ("ts0", "2024-02-29T12:34:56+00:00"),
    ("ts1", "2024-02-29T12:34:56.100000+00:00"),
    ("ts2", "2024-02-29T12:34:56.120000+00:00"),
    ("ts3", "2024-02-29T12:34:56.123000+00:00"),
    ("ts4", "2024-02-29T12:34:56.123400+00:00"),
    ("ts5", "2024-02-29T12:34:56.123450+00:00"),
    ("ts6", "2024-02-29T12:34:56.123456+00:00"),
    ("yr", "0"),
    ("en", "ünï 😀"),
    ("st", "b"),
    ("js", r#"{"nested": {"x": [1.5, -2, 1e100]}, "s": "tab\tquote\""}"#),
];

/// Zero dates, datetimes and timestamps, and the invalid enum value '' (non-strict mode).
const ROW_D: &str = "(id, dt, dt0, dt6, ts0, ts6, en) VALUES ({id}, '0000-00-00', '0000-00-00 00:00:00', \
     '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00.000000', '')";

/// Zero dates are NULL; the invalid enum value stays the empty string.
const EXPECT_D: &[(&str, &str)] = &[("en", "")];

/// Inserts [`ROW_D`] as `id`: zero dates and the invalid enum need the non-strict mode.
async fn insert_zero_dates(conn: &mut Conn, table: &str, id: i64) {
    let insert = format!("INSERT INTO {table} {}", ROW_D.replace("{id}", &id.to_string()));
    for sql in ["SET sql_mode = ''", &insert, "SET sql_mode = 'STRICT_ALL_TABLES'"] {
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// MySQL's DECIMAL scale stops at 30 (MariaDB's at 38): there the two widest-scale columns are
/// (38,30) and (65,30), and hold the values written to them rounded to 30 digits.
fn table_ddl(server: MySqlServer, t: &str) -> String {
    let ddl = TABLE_DDL.replace("{t}", t);
    if server.is_mariadb() {
        return ddl;
    }
    ddl.replace("d3838 DECIMAL(38,38)", "d3838 DECIMAL(38,30)").replace("d6538 DECIMAL(65,38)", "d6538 DECIMAL(65,30)")
}

fn delta_types(server: MySqlServer) -> Vec<(&'static str, &'static str)> {
    DELTA_TYPES
        .iter()
        .map(|&(c, ty)| if c == "d3838" && !server.is_mariadb() { (c, "decimal(38,30)") } else { (c, ty) })
        .collect()
}

/// MySQL's TIME(6) ends at 838:59:59.000000 (MariaDB's at .999999): ROW_A's and ROW_B's
/// extremes there.
fn row_values(server: MySqlServer, row: &str) -> String {
    if server.is_mariadb() {
        return row.to_owned();
    }
    row.replace("'838:59:59.999999'", "'838:59:59.000000'").replace("'-838:59:59.999999'", "'-838:59:59.000000'")
}

/// What differs on Oracle MySQL, by row: the (38,30) and (65,30) values (ROW_A's rounded up,
/// ROW_B's tiny negatives rounded to zero, then the rows' updates) and the TIME(6) extremes.
const MYSQL_LIMITS: &[(i64, &[(&str, &str)])] = &[
    (1, &[("d3838", "1.000000000000000000000000000000"), ("d6538", MYSQL_D6538_A), ("tm6", "3020399000000")]),
    (11, &[("d3838", "1.000000000000000000000000000000"), ("d6538", MYSQL_D6538_A), ("tm6", "3020399000000")]),
    (2, &[("d3838", "0.500000000000000000000000000000"), ("d6538", MYSQL_ZERO_30), ("tm6", "-3020399000000")]),
    (12, &[("d3838", MYSQL_ZERO_30), ("d6538", "1.500000000000000000000000000000"), ("tm6", "-3020399000000")]),
    (33, &[("d3838", MYSQL_ZERO_30)]),
];
const MYSQL_ZERO_30: &str = "0.000000000000000000000000000000";
const MYSQL_D6538_A: &str = "1000000000000000000000000000.000000000000000000000000000000";

/// MySQL stores JSON parsed and prints it back with its keys ordered (shorter first), MariaDB
/// keeps the text: ROW_C's document as Oracle MySQL shows it.
const EXPECT_C_JSON_MYSQL: &str = r#"{"s": "tab\tquote\"", "nested": {"x": [1.5, -2, 1e100]}}"#;

per_mysql_server!(async every_type_round_trips_through_snapshot_and_binlog_into_delta);

async fn every_type_round_trips_through_snapshot_and_binlog_into_delta(server: MySqlServer) {
    let mut conn = server.connect().await;
    let db = unique("mytypes").to_lowercase();
    let table = "types";
    let t = format!("{db}.{table}");
    let cols = COLUMNS[1..].join(", ");
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(table_ddl(server, &t)).await.unwrap();
    let (a, b) = (row_values(server, ROW_A), row_values(server, ROW_B));
    conn.query_drop("SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES'").await.unwrap();
    // Through the snapshot: the value rows, zero dates, a row of NULLs but one timestamp written
    // in another time zone, a row to delete.
    conn.query_drop(format!("INSERT INTO {t} (id, {cols}) VALUES (1, {a}), (2, {b}), (3, {ROW_C}), (7, {a})"))
        .await
        .unwrap();
    insert_zero_dates(&mut conn, &t, 4).await;
    conn.query_drop("SET time_zone = '+05:30'").await.unwrap();
    conn.query_drop(format!("INSERT INTO {t} (id, ts3) VALUES (5, '2024-02-29 18:04:56.789')")).await.unwrap();
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let name = unique("mytypes");
    let source = format!(
        "type = \"mysql\"\nurl = \"{}\"\nschema = \"{db}\"\ntable = \"{table}\"\nsnapshot_chunk_rows = 2",
        server.url()
    );
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "300ms""#, &source, table);
    let mut child = Running(spawn_run(&spec, &log));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Once the snapshot is in the table, everything after comes from the binlog.
    let n = wait_count(&target, "true", 6, Duration::from_secs(120)).await;
    assert_eq!(n, 6, "the snapshot arrived; log:\n{}", log_text());
    if !server.is_mariadb() {
        conn.query_drop("SET SESSION binlog_transaction_compression = ON").await.unwrap();
    }
    conn.query_drop(format!("INSERT INTO {t} (id, {cols}) VALUES (11, {a}), (12, {b}), (13, {ROW_C}), (17, {ROW_C})"))
        .await
        .unwrap();
    insert_zero_dates(&mut conn, &t, 14).await;
    conn.query_drop(format!("INSERT INTO {t} (id) VALUES (15)")).await.unwrap();
    let n = wait_count(&target, "id > 10", 6, Duration::from_secs(60)).await;
    assert_eq!(n, 6, "the streamed inserts arrived; log:\n{}", log_text());
    for sql in [
        format!(
            "UPDATE {t} SET vc = 'updated 🚀', biu = 12345678901234567890, dt6 = '2000-01-01 00:00:00.5', \
             js = '{{\"u\": true}}', bl = x'cafe', d3838 = 0.5 WHERE id = 2"
        ),
        "SET time_zone = '-08:00'".to_string(),
        format!("UPDATE {t} SET ts0 = '2024-02-29 04:34:56' WHERE id = 2"),
        "SET time_zone = '+00:00'".to_string(),
        format!("UPDATE {t} SET id = 33 WHERE id = 3"),
        format!("DELETE FROM {t} WHERE id = 7"),
        format!("UPDATE {t} SET ti = NULL, st = 'a,c', ts6 = NULL, d6538 = 1.5 WHERE id = 12"),
        format!(
            "UPDATE {t} SET {} WHERE id = 13",
            COLUMNS[1..].iter().map(|c| format!("{c} = NULL")).collect::<Vec<_>>().join(", ")
        ),
        format!("DELETE FROM {t} WHERE id = 17"),
        format!("INSERT INTO {t} (id) VALUES (99)"),
    ] {
        conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let c_json: &[(&str, &str)] = if server.is_mariadb() { &[] } else { &[("js", EXPECT_C_JSON_MYSQL)] };
    let expected = [
        Expected::nulls(&COLUMNS, 1).with(EXPECT_A),
        Expected::nulls(&COLUMNS, 2).with(EXPECT_B).with(&[
            ("vc", "updated 🚀"),
            ("biu", "12345678901234567890"),
            ("dt6", "2000-01-01T00:00:00.500000"),
            ("js", r#"{"u": true}"#),
            ("bl", "cafe"),
            ("d3838", "0.50000000000000000000000000000000000000"),
            // written at -08:00
            ("ts0", "2024-02-29T12:34:56+00:00"),
        ]),
        Expected::nulls(&COLUMNS, 4).with(EXPECT_D),
        // written at +05:30
        Expected::nulls(&COLUMNS, 5).with(&[("ts3", "2024-02-29T12:34:56.789000+00:00")]),
        Expected::nulls(&COLUMNS, 11).with(EXPECT_A),
        Expected::nulls(&COLUMNS, 12)
            .with(EXPECT_B)
            .with(&[("st", "a,c"), ("d6538", "1.50000000000000000000000000000000000000")])
            .null(&["ti", "ts6"]),
        Expected::nulls(&COLUMNS, 13),
        Expected::nulls(&COLUMNS, 14).with(EXPECT_D),
        Expected::nulls(&COLUMNS, 15),
        Expected::nulls(&COLUMNS, 33).with(EXPECT_C).with(c_json),
        Expected::nulls(&COLUMNS, 99),
    ]
    .map(|e| match MYSQL_LIMITS.iter().find(|(id, _)| *id == e.id()) {
        Some((_, cells)) if !server.is_mariadb() => e.with(cells),
        _ => e,
    });

    // Converged, stopped, then every type and cell through the independent reader.
    cells::stop_and_verify(
        &target,
        &mut child,
        &log,
        &expected,
        &delta_types(server),
        &[
            ("ts6", "timestamp[us, tz=UTC]", "timestamp is an instant in UTC"),
            ("dt6", "timestamp[us]", "datetime has no time zone"),
        ],
    )
    .await;
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

const EXTRA_COLUMNS: [&str; 5] = ["id", "a", "v", "s", "h"];

const EXTRA_DELTA_TYPES: [(&str, &str); 5] =
    [("id", "integer"), ("a", "integer"), ("v", "integer"), ("s", "string"), ("h", "string")];

per_mysql_server!(async generated_and_invisible_columns_round_trip);

/// A VIRTUAL and a STORED generated column and an INVISIBLE one (which `SELECT *` leaves out)
/// arrive like any other column, through the snapshot and the binlog.
async fn generated_and_invisible_columns_round_trip(server: MySqlServer) {
    let mut conn = server.connect().await;
    let db = unique("myextras").to_lowercase();
    let table = "extras";
    let t = format!("{db}.{table}");
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, a INT, v INT AS (a * 2) VIRTUAL, \
         s VARCHAR(20) AS (CONCAT('s', a)) STORED, h VARCHAR(10) INVISIBLE) CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();
    conn.query_drop(format!("INSERT INTO {t} (id, a, h) VALUES (1, 5, 'h1'), (2, NULL, NULL), (4, 8, 'h4')"))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let name = unique("myextras");
    let source = format!("type = \"mysql\"\nurl = \"{}\"\nschema = \"{db}\"\ntable = \"{table}\"", server.url());
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "300ms""#, &source, table);
    let mut child = Running(spawn_run(&spec, &log));
    let n = wait_count(&target, "true", 3, Duration::from_secs(120)).await;
    assert_eq!(n, 3, "the snapshot arrived; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    if !server.is_mariadb() {
        conn.query_drop("SET SESSION binlog_transaction_compression = ON").await.unwrap();
    }
    for sql in [
        format!("INSERT INTO {t} (id, a, h) VALUES (3, 7, 'h3')"),
        format!("UPDATE {t} SET a = 6 WHERE id = 1"),
        format!("UPDATE {t} SET h = 'h2' WHERE id = 2"),
        format!("DELETE FROM {t} WHERE id = 4"),
        format!("INSERT INTO {t} (id) VALUES (99)"),
    ] {
        conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let expected = [
        Expected::nulls(&EXTRA_COLUMNS, 1).with(&[("a", "6"), ("v", "12"), ("s", "s6"), ("h", "h1")]),
        Expected::nulls(&EXTRA_COLUMNS, 2).with(&[("h", "h2")]),
        Expected::nulls(&EXTRA_COLUMNS, 3).with(&[("a", "7"), ("v", "14"), ("s", "s7"), ("h", "h3")]),
        Expected::nulls(&EXTRA_COLUMNS, 99),
    ];
    cells::stop_and_verify(&target, &mut child, &log, &expected, &EXTRA_DELTA_TYPES, &[]).await;
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// Oracle MySQL gives a table created without a primary key an invisible one
/// (`sql_generate_invisible_primary_key=ON`: `my_row_id BIGINT UNSIGNED AUTO_INCREMENT INVISIBLE`);
/// it keys the target like any other. MariaDB has no such setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_invisible_primary_key_keys_the_target_oracle_mysql() {
    let server = MySqlServer::OracleMySql;
    let mut conn = server.connect().await;
    let db = unique("mygipk").to_lowercase();
    let table = "nokey";
    let t = format!("{db}.{table}");
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop("SET SESSION sql_generate_invisible_primary_key = ON").await.unwrap();
    conn.query_drop(format!("CREATE TABLE {t} (name VARCHAR(20), n INT)")).await.unwrap();
    conn.query_drop(format!("INSERT INTO {t} (name, n) VALUES ('a', 1), ('b', 2)")).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let source = format!("type = \"mysql\"\nurl = \"{}\"\nschema = \"{db}\"\ntable = \"{table}\"", server.url());
    let CdcTask { spec, log, target } =
        cdc_task(dir.path(), &unique("mygipk"), r#"commit_interval = "300ms""#, &source, table);
    let mut child = Running(spawn_run(&spec, &log));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(wait_count(&target, "true", 2, Duration::from_secs(120)).await, 2, "snapshot; log:\n{}", log_text());
    for sql in [
        format!("UPDATE {t} SET n = 20 WHERE name = 'b'"),
        format!("DELETE FROM {t} WHERE name = 'a'"),
        format!("INSERT INTO {t} (name, n) VALUES ('c', 3)"),
    ] {
        conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // The insert is the last change: once it is in the table, so is everything before it.
    let n = wait_count(&target, "n = 3", 1, Duration::from_secs(60)).await;
    assert_eq!(n, 1, "the changes arrived; log:\n{}", log_text());
    sigterm(&child.0);
    let status = wait_exit(&mut child.0, Duration::from_secs(60));
    assert!(status.success(), "rtsync exited with {status}:\n{}", log_text());

    let read = cells::read_delta(&target, "my_row_id");
    assert_eq!(
        read["schema"],
        serde_json::json!({"my_row_id": "decimal(20,0)", "name": "string", "n": "integer"}),
        "the generated key is a column of the target"
    );
    assert_eq!(
        read["rows"],
        serde_json::json!({
            "2": {"my_row_id": "2", "name": "b", "n": "20"},
            "3": {"my_row_id": "3", "name": "c", "n": "3"},
        }),
        "rows by their generated key"
    );
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
