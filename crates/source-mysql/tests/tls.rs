//! TLS against each real MySQL-family server, MariaDB and Oracle MySQL (the services script gives
//! both a certificate from a throwaway CA, `RTSYNC_TEST_CA`, and a user `rtsync_tls` that the
//! server only lets in over TLS; on Oracle MySQL a `caching_sha2_password` user): the
//! snapshot and the binlog connection both work encrypted with the certificate verified, and
//! every refusal names its cause.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use rtsync_core::Source;
use rtsync_source_mysql::MySqlSource;

fn ca() -> String {
    std::env::var("RTSYNC_TEST_CA")
        .unwrap_or_else(|_| panic!("RTSYNC_TEST_CA is not set: run the README's test command"))
}

/// The services URL with the TLS-only user and `options`.
fn tls_url(server: MySqlServer, options: &str) -> String {
    let base = server.url().replacen("://rtsync:", "://rtsync_tls:", 1);
    let base = base.split('?').next().unwrap_or_default().to_string();
    format!("{base}?{options}")
}

per_mysql_server!(async snapshot_and_binlog_over_verified_tls);

async fn snapshot_and_binlog_over_verified_tls(server: MySqlServer) {
    let mut db = TestDb::new(server, "tls").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v varchar(20))").await;
    db.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
    let mut cfg = db.config("t");
    cfg.url = tls_url(server, &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca()));
    let mut src = open("tls_task", cfg, None).await;
    let snap = read_until(&mut src, Duration::from_secs(30), |b| b.iter().any(|b| !b.end.is_snapshot())).await;
    assert_eq!(count_rows(&snap), 3);
    db.exec("INSERT INTO t VALUES (4, 'over tls')").await;
    db.exec("DELETE FROM t WHERE id = 1").await;
    let changes = read_until(&mut src, Duration::from_secs(30), |b| count_rows(b) >= 2).await;
    let rows = flatten(&changes);
    assert_eq!(rows[0].0, "c");
    assert_eq!(rows[0].1["v"], "over tls");
    assert_eq!(rows[1].0, "d");
    assert_eq!(rows[1].1["id"], "1");
    src.close().await.unwrap();
    db.drop_db().await;
}

per_mysql_server!(async tls_modes_connect_or_name_the_cause);

async fn tls_modes_connect_or_name_the_cause(server: MySqlServer) {
    let mut db = TestDb::new(server, "tlsmodes").await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await;
    let check = |url: String| {
        let mut cfg = db.config("t");
        cfg.url = url;
        async move {
            let mut src = MySqlSource::new("tls_modes", cfg)?;
            let r = src.check().await;
            let _ = src.close().await;
            r
        }
    };
    for (options, what) in [
        ("ssl-mode=REQUIRED".to_string(), "REQUIRED: encrypted, certificate not checked"),
        (format!("ssl-mode=VERIFY_CA&ssl-ca={}", ca()), "VERIFY_CA with the test CA"),
        (format!("ssl-ca={}", ca()), "ssl-ca alone: VERIFY_CA"),
    ] {
        check(tls_url(server, &options)).await.unwrap_or_else(|e| panic!("{what}: {}", e.report()));
    }
    // The user may only connect over TLS: without it the server refuses, and says so.
    let err = check(tls_url(server, "ssl-mode=DISABLED")).await.unwrap_err().report();
    assert!(err.contains("Access denied") || err.contains("1045"), "{err}");
    // The built-in roots do not trust the test CA.
    let err = check(tls_url(server, "ssl-mode=VERIFY_IDENTITY")).await.unwrap_err().report();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let err = check(tls_url(server, "ssl-mode=PREFERRED")).await.unwrap_err().report();
    assert!(err.contains("PREFERRED"), "{err}");
    db.drop_db().await;
}
