//! TLS against the real PostgreSQL (the services script turns ssl on with a throwaway CA,
//! `RTSYNC_PG_CA`): every sslmode connects as libpq would or is refused naming the cause, and a
//! snapshot plus streamed changes travel over TLS on both the SQL and the replication
//! connection (checked in pg_stat_ssl).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use rtsync_core::Source;
use rtsync_source_postgres::PgPosition;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn ca() -> String {
    std::env::var("RTSYNC_PG_CA").unwrap_or_else(|_| panic!("RTSYNC_PG_CA is not set: run the README's test command"))
}

fn with(url: &str, options: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{options}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_behaves_as_libpq() {
    let fx = Fixture::new("tlsmodes", "CREATE TABLE {t} (id int PRIMARY KEY, v text)").await;
    let base = pg_url();
    let url_127 = base.clone();
    let url_localhost = base.replace("127.0.0.1", "localhost");
    let check = |url: String| {
        let mut cfg = fx.config();
        cfg.url = url;
        let mut src = fx.source(cfg);
        async move {
            let r = src.check().await;
            let _ = src.close().await;
            r
        }
    };
    for (url, what) in [
        (with(&url_127, "sslmode=disable"), "disable"),
        (with(&url_127, "sslmode=prefer"), "prefer"),
        (with(&url_127, "sslmode=require"), "require: encrypted, certificate not checked"),
        (with(&url_127, &format!("sslmode=verify-ca&sslrootcert={}", ca())), "verify-ca with the test CA"),
        (with(&url_127, &format!("sslmode=verify-full&sslrootcert={}", ca())), "verify-full, IP in the SAN"),
        (with(&url_localhost, &format!("sslmode=verify-full&sslrootcert={}", ca())), "verify-full, DNS name"),
        (with(&url_127, &format!("sslrootcert={}", ca())), "a root certificate alone: verify-ca"),
    ] {
        check(url).await.unwrap_or_else(|e| panic!("{what}: {}", e.report()));
    }
    // Mozilla's roots do not trust the test CA: verification fails and says so.
    let err = check(with(&url_127, "sslmode=verify-full")).await.unwrap_err().report();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(err.contains("sslmode verify-full"), "the message names the mode: {err}");
    let mut missing = fx.config();
    missing.url = with(&url_127, "sslmode=verify-full&sslrootcert=/no/such/ca.pem");
    let err = rtsync_source_postgres::PostgresSource::new(&fx.task, missing).err().unwrap().report();
    assert!(err.contains("sslrootcert /no/such/ca.pem"), "{err}");
    let cfg = fx.config();
    fx.cleanup(&cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_stream_over_verified_tls() {
    let fx = Fixture::new(
        "tlscdc",
        "CREATE TABLE {t} (id int PRIMARY KEY, v text); INSERT INTO {t} SELECT i, 'v' || i FROM generate_series(1, 300) i",
    )
    .await;
    let mut cfg = fx.config();
    // A DNS name: both connections check the certificate's chain and name.
    cfg.url = with(&pg_url().replace("127.0.0.1", "localhost"), &format!("sslmode=verify-full&sslrootcert={}", ca()));
    cfg.snapshot_chunk_rows = 100;
    let mut src = fx.source(cfg.clone());
    src.check().await.unwrap();
    open(&mut src, None).await;
    let snap = drain(&mut src, true, WAIT, |b| b.iter().any(|b| matches!(b.end, PgPosition::Streaming { .. }))).await;
    assert_eq!(rows_of(&snap, &["id"]).len(), 300);

    fx.exec("INSERT INTO {t} VALUES (1000, 'over tls'); UPDATE {t} SET v = 'changed' WHERE id = 1; DELETE FROM {t} WHERE id = 2")
        .await;
    let changes = drain(&mut src, true, WAIT, |b| seen(b, "id", "2")).await;
    let rows = rows_of(&changes, &["id", "v"]);
    let ops: Vec<(String, Option<String>)> = rows.iter().map(|r| (r.op.clone(), r.values[0].clone())).collect();
    assert_eq!(
        ops,
        vec![("c".into(), Some("1000".into())), ("u".into(), Some("1".into())), ("d".into(), Some("2".into()))]
    );

    // Both of the task's connections are encrypted: the walsender and the SQL session.
    let app = format!("rtsync {}", fx.task);
    let encrypted: Vec<(String, bool)> = fx
        .client
        .query(
            "SELECT a.backend_type, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(encrypted.iter().any(|(kind, _)| kind == "walsender"), "the replication connection: {encrypted:?}");
    assert!(encrypted.iter().any(|(kind, _)| kind == "client backend"), "the SQL connection: {encrypted:?}");
    assert!(encrypted.iter().all(|(_, ssl)| *ssl), "every connection of the task uses TLS: {encrypted:?}");
    close(src).await.unwrap();
    fx.cleanup(&cfg).await;
}
