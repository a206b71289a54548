//! The TDS endpoint against the connector's own tiberius client ([`TdsServer`]): every query
//! the connector sends, answered over TDS and decoded by tiberius, equals what the simulator
//! answers through the `CdcServer` trait directly, for a table with every mapped type; a wrong
//! password, an unknown database and an unknown statement fail as SQL Server fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rtsync_mssql_sim::workload::{Workload, every_type_table};
use rtsync_mssql_sim::{Credentials, TdsSim};
use rtsync_source_sqlserver::rows::ChangeRow;
use rtsync_source_sqlserver::server::TcpCompat;
use rtsync_source_sqlserver::sim::{SimHandle, column};
use rtsync_source_sqlserver::sql::SqlColumn;
use rtsync_source_sqlserver::{CdcServer, Lsn, SqlServerSourceConfig, TdsServer};
use tiberius::ColumnData;

/// A value with every NULL the same (the simulator keeps an untyped NULL; tiberius decodes
/// one of the column's type).
fn norm(v: &ColumnData<'static>) -> Option<ColumnData<'static>> {
    let null = matches!(
        v,
        ColumnData::U8(None)
            | ColumnData::I16(None)
            | ColumnData::I32(None)
            | ColumnData::I64(None)
            | ColumnData::F32(None)
            | ColumnData::F64(None)
            | ColumnData::Bit(None)
            | ColumnData::String(None)
            | ColumnData::Guid(None)
            | ColumnData::Binary(None)
            | ColumnData::Numeric(None)
            | ColumnData::Xml(None)
            | ColumnData::DateTime(None)
            | ColumnData::SmallDateTime(None)
            | ColumnData::Time(None)
            | ColumnData::Date(None)
            | ColumnData::DateTime2(None)
            | ColumnData::DateTimeOffset(None)
    );
    (!null).then(|| v.clone())
}

fn norm_values(values: &[ColumnData<'static>]) -> Vec<Option<ColumnData<'static>>> {
    values.iter().map(norm).collect()
}

/// A change row with its NULLs made alike.
type NormChange = (Lsn, Lsn, u8, Vec<u8>, Vec<Option<ColumnData<'static>>>);

fn norm_changes(rows: &[ChangeRow]) -> Vec<NormChange> {
    rows.iter().map(|r| (r.start_lsn, r.seqval, r.operation, r.update_mask.clone(), norm_values(&r.values))).collect()
}

async fn setup(seed: u64) -> (SimHandle, TdsSim, Workload) {
    let db = every_type_table("dbo", "every type");
    let mut w = Workload::new(seed);
    w.seed(&db, 40);
    for _ in 0..60 {
        w.transaction(&db);
    }
    db.lock().capture();
    let sim = TdsSim::start(db.clone(), Credentials::default(), 0).await.unwrap();
    (db, sim, w)
}

fn config(url: &str) -> SqlServerSourceConfig {
    SqlServerSourceConfig::new(url, "dbo", "every type")
}

#[tokio::test]
async fn every_query_over_tds_equals_the_simulator() {
    let (db, sim, w) = setup(7).await;
    assert!(w.counts.updates > 5 && w.counts.lob_unchanged_updates > 0 && w.counts.deletes > 0, "{:?}", w.counts);
    let mut tds = TdsServer::connect(&config(&sim.url()), "rtsync tds test").await.unwrap();
    let mut direct = (db.connect())().await.unwrap();
    let (s, t) = ("dbo", "every type");

    assert_eq!(tds.preflight(s, t).await.unwrap(), direct.preflight(s, t).await.unwrap());
    let columns = tds.table_columns(s, t).await.unwrap();
    assert_eq!(columns, direct.table_columns(s, t).await.unwrap());
    assert_eq!(columns.len(), 36);
    assert!(tds.table_columns(s, "no such table").await.unwrap().is_empty());
    assert_eq!(tds.primary_key(s, t).await.unwrap(), ["id"]);
    let instances = tds.capture_instances(s, t).await.unwrap();
    assert_eq!(instances, direct.capture_instances(s, t).await.unwrap());
    let ci = &instances[0];
    let bounds = tds.lsn_bounds(&ci.name, s, t).await.unwrap();
    assert_eq!(bounds, direct.lsn_bounds(&ci.name, s, t).await.unwrap());
    assert_eq!(bounds.capture_instances, 1);
    assert_eq!(tds.lsn_bounds("nope", s, "other").await.unwrap().min, Lsn::ZERO);
    assert_eq!(tds.lsn_bounds("nope", s, "other").await.unwrap().capture_instances, 0);

    // The snapshot in keyset chunks, inside the SNAPSHOT transaction.
    let cols: Vec<SqlColumn> = ci.columns.iter().map(|(c, _)| c.column.clone()).collect();
    let key = vec![cols[0].clone()];
    let max = tds.begin_snapshot().await.unwrap();
    assert_eq!(max, direct.begin_snapshot().await.unwrap());
    let mut after: Option<Vec<String>> = None;
    let mut copied = 0;
    loop {
        let a = tds.snapshot_chunk(s, t, &cols, &key, after.as_deref(), 7).await.unwrap();
        let b = direct.snapshot_chunk(s, t, &cols, &key, after.as_deref(), 7).await.unwrap();
        assert_eq!(a.len(), b.len());
        for ((va, ka), (vb, kb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            assert_eq!(norm_values(va), norm_values(vb), "row {ka:?}");
        }
        copied += a.len();
        match a.last() {
            Some((_, k)) if a.len() == 7 => after = Some(k.clone()),
            _ => break,
        }
    }
    assert_eq!(copied, db.lock().table().len());
    tds.end_snapshot().await.unwrap();
    direct.end_snapshot().await.unwrap();

    // Every change, in pages, both bound kinds.
    let b = direct.lsn_bounds(&ci.name, s, t).await.unwrap();
    let (min, max) = (b.min, b.max);
    for (from, inclusive, skip) in [(min.decrement(), false, 0), (min, true, 3), (Lsn::from_u64(0x30), false, 0)] {
        let a = tds.changes(ci, &cols, from, inclusive, skip, max, 1_000).await.unwrap();
        let b = direct.changes(ci, &cols, from, inclusive, skip, max, 1_000).await.unwrap();
        assert!(!a.is_empty());
        assert_eq!(norm_changes(&a), norm_changes(&b));
    }
    assert!(sim.statements.load(std::sync::atomic::Ordering::Relaxed) > 10);
}

#[tokio::test]
async fn a_second_capture_instance_over_tds() {
    let (db, sim, mut w) = setup(11).await;
    {
        let mut d = db.lock();
        d.add_column(column("note", "nvarchar", 80, 0, 0));
        d.enable_capture_instance("dbo_every_type_v2");
    }
    for _ in 0..10 {
        w.transaction(&db);
    }
    db.lock().capture();
    let mut tds = TdsServer::connect(&config(&sim.url()), "rtsync tds test").await.unwrap();
    let mut direct = (db.connect())().await.unwrap();
    let instances = tds.capture_instances("dbo", "every type").await.unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances, direct.capture_instances("dbo", "every type").await.unwrap());
    let v2 = &instances[1];
    assert_eq!(v2.columns.last().unwrap().0.column.name, "note");
    let cols: Vec<SqlColumn> = v2.columns.iter().map(|(c, _)| c.column.clone()).collect();
    let max = db.lock().max_lsn();
    let a = tds.changes(v2, &cols, Lsn::ZERO, false, 0, max, 10_000).await.unwrap();
    let b = direct.changes(v2, &cols, Lsn::ZERO, false, 0, max, 10_000).await.unwrap();
    assert_eq!(tds.lsn_bounds(&v2.name, "dbo", "every type").await.unwrap().capture_instances, 2);
    assert!(!a.is_empty());
    assert_eq!(norm_changes(&a), norm_changes(&b));
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

#[tokio::test]
async fn login_and_unknown_statements_fail_as_sql_server_does() {
    let (_db, sim, _) = setup(3).await;
    let wrong = sim.url().replace(":Sim_Passw0rd@", ":wrong@");
    let err = chain(&TdsServer::connect(&config(&wrong), "t").await.err().unwrap());
    assert!(err.contains("Login failed for user 'rtsync'"), "{err}");
    let other_db = sim.url().replace("/rtsync_sim?", "/master?");
    let err = chain(&TdsServer::connect(&config(&other_db), "t").await.err().unwrap());
    assert!(err.contains("Cannot open database \"master\""), "{err}");

    let mut client = TcpCompat::connect(&config(&sim.url()), "t").await.unwrap();
    let err = match client.simple_query("SELECT 1").await {
        Ok(stream) => stream.into_results().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("does not know this statement") && err.contains("SELECT 1"), "{err}");
    // The connection stays usable after an error, as with SQL Server.
    let mut q = tiberius::Query::new(rtsync_source_sqlserver::sql::lsn_bounds());
    q.bind("dbo_every type");
    q.bind("[dbo].[every type]");
    let rows = q.query(&mut client).await.unwrap().into_first_result().await.unwrap();
    assert_eq!(rows.len(), 1);
}
