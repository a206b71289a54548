//! Connecting, pre-flight checks, the table's description, and the slot and publication.

use std::collections::HashMap;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig};
use rtsync_core::{ErrorKind, SyncError, SyncResult};
use tokio_postgres::Client;

use crate::config::{ConnectionParams, SESSION_OPTIONS};
use crate::error::{pg_error, repl_error};
use crate::position::Lsn;
use crate::types::{TypeCatalog, TypeRow, ValueKind, classify};

/// Opens a SQL connection with the pinned session settings; its driver runs on a task of its
/// own and ends when the client is dropped.
pub async fn connect(params: &ConnectionParams) -> SyncResult<Client> {
    let doing = || format!("connecting to PostgreSQL at {} (sslmode {})", params.display(), params.tls.mode.name());
    if params.tls.mode == crate::tls::SslMode::Disable {
        let (client, connection) = params.pg.connect(tokio_postgres::NoTls).await.map_err(|e| pg_error(e, &doing()))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "postgres connection ended");
            }
        });
        return Ok(client);
    }
    let (client, connection) = params.pg.connect(params.tls.connector()?).await.map_err(|e| pg_error(e, &doing()))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "postgres connection ended");
        }
    });
    Ok(client)
}

/// The replication connection's settings (the same server, user and session settings).
pub(crate) fn replication_config(
    params: &ConnectionParams,
    slot: &str,
    publication: &str,
    application: &str,
) -> ReplicationConfig {
    ReplicationConfig::new(
        params.host.clone(),
        params.user.clone(),
        params.password.clone(),
        params.database.clone(),
        slot,
        publication,
    )
    .with_port(params.port)
    .with_tls(params.tls.replication(&params.host))
    .with_options(SESSION_OPTIONS)
    .with_application_name(application)
    // Acknowledged positions reach the server within a second; idle wakeups stay rare.
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(10))
    .with_buffer_size(4096)
}

/// The planner's estimate of a table's rows, for a snapshot's progress: `EXPLAIN`, which has
/// one even before the table was ever analyzed (from its size on disk). None when the plan
/// names none.
pub async fn estimated_rows(client: &Client, schema: &str, table: &str) -> SyncResult<Option<u64>> {
    let sql = format!("EXPLAIN SELECT * FROM {}", quoted_table(schema, table));
    let rows = client.query(&sql, &[]).await.map_err(|e| pg_error(e, "estimating the table's rows"))?;
    let first: Option<String> = rows.first().map(|r| r.get(0));
    Ok(first.as_deref().and_then(plan_rows))
}

/// The `rows=N` of a text plan's top line (`Seq Scan on t  (cost=0.00..145.00 rows=10000 width=4)`).
fn plan_rows(line: &str) -> Option<u64> {
    let after = &line[line.find(" rows=")? + " rows=".len()..];
    after[..after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len())].parse().ok()
}

/// The `schema.table` identifier, quoted.
pub fn quoted_table(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal (standard_conforming_strings is pinned on: backslashes are plain).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `wal_level` must be `logical` for logical decoding.
pub async fn ensure_wal_level_logical(client: &Client) -> SyncResult<()> {
    let row = client
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(|e| pg_error(e, "reading wal_level"))?;
    let level: String = row.get(0);
    if level != "logical" {
        return Err(SyncError::source_err(format!(
            "PostgreSQL has wal_level = {level}; change data capture needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical \
             (on RDS/Aurora set rds.logical_replication = 1 in the parameter group) and restart PostgreSQL"
        )));
    }
    Ok(())
}

/// The user must be allowed to open replication connections and create slots.
pub async fn ensure_replication_privilege(client: &Client) -> SyncResult<()> {
    let row = client
        .query_one(
            "SELECT r.rolname::text, r.rolreplication, r.rolsuper, \
                    CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication') \
                         THEN pg_has_role(current_user, 'rds_replication', 'member') ELSE false END \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| pg_error(e, "reading the user's replication privilege"))?;
    let (user, replication, superuser, rds): (String, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if !(replication || superuser || rds) {
        return Err(SyncError::source_err(format!(
            "user {user:?} may not use logical replication: run ALTER ROLE {} WITH REPLICATION as a superuser \
             (on RDS/Aurora: GRANT rds_replication TO {})",
            quote_ident(&user),
            quote_ident(&user)
        )));
    }
    Ok(())
}

/// The table as the catalog knows it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `r` table, `p` partitioned table.
    pub relkind: char,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    pub columns: Vec<ColumnInfo>,
    /// Primary-key columns in key order, or the replica-identity index's; empty when neither.
    pub key: Vec<String>,
    pub has_primary_key: bool,
    pub(crate) types: TypeCatalog,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    /// `format_type(oid, typmod)`: `numeric(12,2)`, `character varying(20)`, `integer[]`.
    pub type_name: String,
    pub(crate) kind: ValueKind,
}

/// The table exists and the user can read it. Returns its oid, relkind and replica identity.
pub async fn ensure_table_exists(client: &Client, schema: &str, table: &str) -> SyncResult<(u32, char, char)> {
    let rows = client
        .query(
            "SELECT c.oid, c.relkind::text, c.relreplident::text, has_table_privilege(c.oid, 'SELECT') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(|e| pg_error(e, &format!("looking up table {schema}.{table}")))?;
    let Some(row) = rows.first() else {
        return Err(SyncError::source_err(format!(
            "table {schema}.{table} does not exist in this database; check schema and table (names are case-sensitive)"
        )));
    };
    let oid: u32 = row.get(0);
    let relkind = first_char(row.get(1));
    let ident = first_char(row.get(2));
    let readable: bool = row.get(3);
    if relkind != 'r' && relkind != 'p' {
        return Err(SyncError::source_err(format!(
            "{schema}.{table} is not a table (relkind {relkind}); only tables can be replicated"
        )));
    }
    if !readable {
        return Err(SyncError::source_err(format!(
            "the user may not read {schema}.{table}: GRANT SELECT ON {} TO the user",
            quoted_table(schema, table)
        )));
    }
    Ok((oid, relkind, ident))
}

fn first_char(s: String) -> char {
    s.chars().next().unwrap_or(' ')
}

/// Updates and deletes must identify their row: the table needs a primary key, a replica
/// identity index, or REPLICA IDENTITY FULL.
pub async fn ensure_primary_key_or_replica_identity_full(client: &Client, schema: &str, table: &str) -> SyncResult<()> {
    let info = describe_table(client, schema, table).await?;
    check_identity(&info)
}

fn check_identity(info: &TableInfo) -> SyncResult<()> {
    let fix = format!(
        "add a primary key, or run ALTER TABLE {} REPLICA IDENTITY FULL",
        quoted_table(&info.schema, &info.name)
    );
    match info.replica_identity {
        'n' => Err(SyncError::source_err(format!(
            "{}.{} has REPLICA IDENTITY NOTHING: its updates and deletes cannot be replicated; {fix}",
            info.schema, info.name
        ))),
        'd' if !info.has_primary_key => Err(SyncError::source_err(format!(
            "{}.{} has no primary key: its updates and deletes cannot be identified; {fix}",
            info.schema, info.name
        ))),
        _ => Ok(()),
    }
}

/// There is a replication slot for this task, or room for one.
pub async fn ensure_free_replication_slot(client: &Client, slot: &str) -> SyncResult<()> {
    let row = client
        .query_one(
            "SELECT count(*)::int, count(*) FILTER (WHERE slot_name = $1)::int, current_setting('max_replication_slots')::int \
             FROM pg_replication_slots",
            &[&slot],
        )
        .await
        .map_err(|e| pg_error(e, "counting replication slots"))?;
    let (used, ours, max): (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
    if ours == 0 && used >= max {
        return Err(SyncError::source_err(format!(
            "all {max} replication slots of the server are in use: drop unused ones (SELECT pg_drop_replication_slot(slot_name) \
             FROM pg_replication_slots WHERE NOT active) or raise max_replication_slots and restart PostgreSQL"
        )));
    }
    Ok(())
}

/// Columns (without generated columns, which pgoutput does not send), key and types.
pub async fn describe_table(client: &Client, schema: &str, table: &str) -> SyncResult<TableInfo> {
    let (oid, relkind, replica_identity) = ensure_table_exists(client, schema, table).await?;
    let doing = format!("reading the columns of {schema}.{table}");
    let rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| pg_error(e, &doing))?;
    let mut columns: Vec<ColumnInfo> = rows
        .iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            type_oid: r.get(1),
            typmod: r.get(2),
            type_name: r.get(3),
            kind: ValueKind::Text,
        })
        .collect();
    let oids: Vec<u32> = columns.iter().map(|c| c.type_oid).collect();
    let types = load_types(client, &oids).await?;
    for c in &mut columns {
        c.kind = classify(c.type_oid, c.typmod, &types);
    }
    let key_query = |flag: &str| {
        format!(
            "SELECT a.attname::text FROM pg_index i \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.{flag} ORDER BY k.ord"
        )
    };
    let pk: Vec<String> = client
        .query(&key_query("indisprimary"), &[&oid])
        .await
        .map_err(|e| pg_error(e, &doing))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has_primary_key = !pk.is_empty();
    let key = if has_primary_key || replica_identity != 'i' {
        pk
    } else {
        client
            .query(&key_query("indisreplident"), &[&oid])
            .await
            .map_err(|e| pg_error(e, &doing))?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    Ok(TableInfo {
        oid,
        schema: schema.to_string(),
        name: table.to_string(),
        relkind,
        replica_identity,
        columns,
        key,
        has_primary_key,
        types,
    })
}

/// The `pg_type` rows of `oids`, of their element types and of their domains' base types.
pub(crate) async fn load_types(client: &Client, oids: &[u32]) -> SyncResult<TypeCatalog> {
    let rows = client
        .query(
            "WITH RECURSIVE t(oid) AS ( \
                 SELECT unnest($1::oid[]) \
                 UNION \
                 SELECT x.oid FROM t JOIN pg_type p ON p.oid = t.oid \
                 CROSS JOIN LATERAL (VALUES (p.typelem), (p.typbasetype)) AS x(oid) WHERE x.oid <> 0 \
             ) \
             SELECT p.oid, p.typtype::text, p.typcategory::text, p.typelem, p.typbasetype, p.typtypmod, p.typdelim::text \
             FROM pg_type p JOIN t ON p.oid = t.oid",
            &[&oids],
        )
        .await
        .map_err(|e| pg_error(e, "reading column types"))?;
    let mut types = HashMap::with_capacity(rows.len());
    for r in rows {
        types.insert(
            r.get::<_, u32>(0),
            TypeRow {
                typtype: first_char(r.get(1)),
                category: first_char(r.get(2)),
                elem: r.get(3),
                base: r.get(4),
                base_typmod: r.get(5),
                delim: first_char(r.get(6)),
            },
        );
    }
    Ok(types)
}

/// Creates the publication `FOR TABLE schema.table` when it is missing; an existing one must
/// publish the table.
pub async fn ensure_publication(client: &Client, publication: &str, info: &TableInfo) -> SyncResult<()> {
    let doing = format!("checking publication {publication}");
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication])
        .await
        .map_err(|e| pg_error(e, &doing))?
        .is_some();
    if !exists {
        let via_root = if info.relkind == 'p' { " WITH (publish_via_partition_root = true)" } else { "" };
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {}{via_root}",
            quote_ident(publication),
            quoted_table(&info.schema, &info.name)
        );
        match client.batch_execute(&sql).await {
            Ok(()) => {
                tracing::info!(publication, table = %format!("{}.{}", info.schema, info.name), "created publication");
                return Ok(());
            }
            // A concurrent twin created it first: fall through to the membership check.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => {
                return Err(pg_error(
                    e,
                    &format!(
                        "creating publication {publication} (the user must own the table, or create the publication as its owner)"
                    ),
                ));
            }
        }
    }
    let published = client
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
            &[&publication, &info.schema, &info.name],
        )
        .await
        .map_err(|e| pg_error(e, &doing))?
        .is_some();
    if !published {
        return Err(SyncError::source_err(format!(
            "publication {publication} exists but does not publish {}.{}: run ALTER PUBLICATION {} ADD TABLE {}, or name another publication_name",
            info.schema,
            info.name,
            quote_ident(publication),
            quoted_table(&info.schema, &info.name)
        )));
    }
    Ok(())
}

/// What `pg_replication_slots` says about a slot.
#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active: bool,
    /// `reserved`, `extended`, `unreserved` or `lost` (invalidated: its WAL is gone).
    pub wal_status: Option<String>,
    pub confirmed_flush: Option<Lsn>,
}

pub async fn slot_info(client: &Client, slot: &str) -> SyncResult<Option<SlotInfo>> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, active, wal_status, confirmed_flush_lsn::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| pg_error(e, &format!("reading replication slot {slot}")))?;
    Ok(row.map(|r| SlotInfo {
        plugin: r.get(0),
        database: r.get(1),
        active: r.get(2),
        wal_status: r.get(3),
        confirmed_flush: r.get::<_, Option<String>>(4).and_then(|s| s.parse().ok()),
    }))
}

/// Drops the slot, waiting up to `wait` for a walsender of a stopped task to let go of it.
pub async fn drop_slot(client: &Client, slot: &str, wait: Duration) -> SyncResult<bool> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
        {
            Ok(rows) => return Ok(!rows.is_empty()),
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(pg_error(
                    e,
                    &format!("dropping replication slot {slot} (is a task still streaming from it?)"),
                ));
            }
        }
    }
}

pub async fn drop_publication(client: &Client, publication: &str) -> SyncResult<bool> {
    let existed = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication])
        .await
        .map_err(|e| pg_error(e, &format!("reading publication {publication}")))?
        .is_some();
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(publication)))
        .await
        .map_err(|e| pg_error(e, &format!("dropping publication {publication}")))?;
    Ok(existed)
}

/// Creates the slot on a replication connection with an exported snapshot, and imports that
/// snapshot into a new REPEATABLE READ transaction on `client`. Returns the slot's consistent
/// point: the snapshot holds every transaction committed before it, the slot streams every
/// one committed after it.
pub async fn create_slot_with_snapshot(
    client: &Client,
    params: &ConnectionParams,
    slot: &str,
    publication: &str,
    application: &str,
) -> SyncResult<Lsn> {
    let doing = format!("creating replication slot {slot}");
    let mut repl = ReplicationClient::connect_gated(replication_config(params, slot, publication, application))
        .await
        .map_err(|e| repl_error(e, &doing))?;
    // The slot name was validated to [a-z0-9_]: safe unquoted.
    let rows = repl
        .simple_query(&format!("CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput EXPORT_SNAPSHOT"))
        .await
        .map_err(|e| repl_error(e, &doing))?;
    let row =
        rows.into_iter().next().ok_or_else(|| SyncError::internal(format!("{doing}: the server returned no row")))?;
    let text = |i: usize| -> SyncResult<String> {
        row.get(i)
            .and_then(|v| v.as_ref())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| SyncError::internal(format!("{doing}: column {i} of the answer is missing")))
    };
    let consistent_point: Lsn = text(1)?.parse()?;
    let snapshot_name = text(2)?;
    // The exported snapshot lives until the replication session runs another command or
    // ends: import it before dropping the session. Once imported, our transaction holds it.
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
            quote_literal(&snapshot_name)
        ))
        .await
        .map_err(|e| pg_error(e, &format!("importing the snapshot of slot {slot}")))?;
    drop(repl);
    tracing::info!(slot, consistent_point = %consistent_point, "created replication slot with exported snapshot");
    Ok(consistent_point)
}

/// Creates the slot without a snapshot (snapshot = never); returns its consistent point.
pub async fn create_slot(client: &Client, slot: &str) -> SyncResult<Lsn> {
    let row = client
        .query_one("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot])
        .await
        .map_err(|e| pg_error(e, &format!("creating replication slot {slot}")))?;
    let lsn: String = row.get(0);
    lsn.parse()
}

/// A slot this task cannot stream from: missing, invalidated, or made for something else.
pub(crate) fn unusable_slot(slot: &str, info: Option<&SlotInfo>, database: &str) -> Option<String> {
    match info {
        None => Some(format!("replication slot {slot} does not exist (it was dropped)")),
        Some(i) if i.wal_status.as_deref() == Some("lost") => Some(format!(
            "replication slot {slot} was invalidated by the server (its WAL was removed, see max_slot_wal_keep_size)"
        )),
        Some(i) if i.plugin.as_deref() != Some("pgoutput") => Some(format!(
            "replication slot {slot} uses plugin {:?}, not pgoutput",
            i.plugin.as_deref().unwrap_or("none (physical)")
        )),
        Some(i) if i.database.as_deref() != Some(database) => Some(format!(
            "replication slot {slot} belongs to database {:?}, not {database:?}",
            i.database.as_deref().unwrap_or("")
        )),
        Some(_) => None,
    }
}

pub(crate) fn lost_slot_error(reason: &str) -> SyncError {
    SyncError::new(
        ErrorKind::Source,
        format!(
            "{reason}: the changes since the last checkpoint can no longer be read. Re-snapshot the table: undeploy and deploy the task \
             again, or set resnapshot_on_lost_slot = true to let it rebuild the target automatically"
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quoted_table("public", "Order\"s"), "\"public\".\"Order\"\"s\"");
        assert_eq!(quote_literal("it's \\ x"), "'it''s \\ x'");
    }

    #[test]
    fn unusable_slots_are_named() {
        let ok = SlotInfo {
            plugin: Some("pgoutput".into()),
            database: Some("db".into()),
            active: false,
            wal_status: Some("reserved".into()),
            confirmed_flush: None,
        };
        assert!(unusable_slot("s", Some(&ok), "db").is_none());
        assert!(unusable_slot("s", None, "db").unwrap().contains("does not exist"));
        let lost = SlotInfo { wal_status: Some("lost".into()), ..ok.clone() };
        assert!(unusable_slot("s", Some(&lost), "db").unwrap().contains("invalidated"));
        assert!(unusable_slot("s", Some(&ok), "other").unwrap().contains("database"));
        assert!(lost_slot_error("x").to_string().contains("resnapshot_on_lost_slot"));
    }
}

#[cfg(test)]
mod plan_tests {
    #[test]
    fn rows_from_the_top_line_of_a_plan() {
        assert_eq!(super::plan_rows("Seq Scan on orders  (cost=0.00..1541.00 rows=100000 width=27)"), Some(100_000));
        assert_eq!(super::plan_rows("Result  (cost=0.00..0.01 rows=1 width=0)"), Some(1));
        assert_eq!(super::plan_rows("Seq Scan on t"), None);
    }
}
