//! The SQL the connector sends, generated in one place so that golden tests pin it.
//!
//! Identifiers are always `[bracket]`-quoted (a `]` inside is doubled); values travel as
//! parameters (`@P1`…), never as text, except capture-instance names in function names, which
//! SQL Server cannot bind and which are quoted here.

use crate::types::SqlType;

/// `[name]`, with `]` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `[schema].[table]`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// `N'text'`, with `'` doubled, for the few places SQL Server takes no parameter.
pub fn quote_string(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

/// A column as the generated SQL needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlColumn {
    pub name: String,
    pub ty: SqlType,
    /// The declared type (`nvarchar(40)`, `decimal(12,2)`, `datetime2(7)`), for converting a
    /// stored key back in the snapshot's keyset predicate.
    pub decl: String,
}

/// The CONVERT style that turns a key value into text and back without loss: ODBC canonical
/// with all fractional digits for the date/time types, `0x…` for binaries, 17 digits for
/// floats, the default for the rest.
fn key_style(ty: SqlType) -> Option<u8> {
    match ty {
        SqlType::DateTime
        | SqlType::SmallDateTime
        | SqlType::DateTime2 { .. }
        | SqlType::DateTimeOffset { .. }
        | SqlType::Time { .. } => Some(121),
        SqlType::Bytes { .. } => Some(1),
        SqlType::Real | SqlType::Float => Some(3),
        _ => None,
    }
}

/// The select list: every column, read so tiberius decodes it losslessly.
pub fn select_list(columns: &[SqlColumn]) -> String {
    columns.iter().map(|c| c.ty.select_expr(&c.name)).collect::<Vec<_>>().join(", ")
}

/// Opens the snapshot: a SNAPSHOT-isolation transaction whose first read (the max LSN, from
/// `cdc.lsn_time_mapping`) fixes the snapshot point. Every change the capture job harvested
/// up to that LSN committed before the snapshot point and is in the copy; every later change
/// has a greater LSN and is streamed. Returns one row: `max_lsn`.
pub fn snapshot_begin() -> &'static str {
    "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT sys.fn_cdc_get_max_lsn() AS max_lsn"
}

pub fn snapshot_commit() -> &'static str {
    "COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
}

/// One keyset chunk of the snapshot: up to `limit` rows after the last key (`after`: the
/// key's text values bound as `@P1..@Pk`), in key order. The key columns' text follows the
/// row's columns as `[__rtsync_k0]…` so the position can name the last key exactly.
pub fn snapshot_chunk(
    schema: &str,
    table: &str,
    columns: &[SqlColumn],
    key: &[SqlColumn],
    after: bool,
    limit: usize,
) -> String {
    let mut sql = format!("SELECT TOP ({limit}) {}", select_list(columns));
    for (i, k) in key.iter().enumerate() {
        let q = quote_ident(&k.name);
        match key_style(k.ty) {
            Some(style) => sql.push_str(&format!(", CONVERT(nvarchar(4000), {q}, {style}) AS [__rtsync_k{i}]")),
            None => sql.push_str(&format!(", CONVERT(nvarchar(4000), {q}) AS [__rtsync_k{i}]")),
        }
    }
    sql.push_str(&format!(" FROM {}", qualified(schema, table)));
    if after && !key.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&keyset_after(key));
    }
    let order: Vec<String> = key.iter().map(|k| quote_ident(&k.name)).collect();
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    sql
}

/// `(k1 > @P1) OR (k1 = @P1 AND k2 > @P2) …`: rows strictly after the key `@P1..@Pk` in key
/// order (SQL Server has no row-value comparison).
fn keyset_after(key: &[SqlColumn]) -> String {
    let param = |i: usize, k: &SqlColumn| match key_style(k.ty) {
        Some(style) => format!("CONVERT({}, @P{}, {style})", k.decl, i + 1),
        None => format!("CONVERT({}, @P{})", k.decl, i + 1),
    };
    let mut terms = Vec::new();
    for n in 0..key.len() {
        let mut t: Vec<String> =
            key[..n].iter().enumerate().map(|(i, k)| format!("{} = {}", quote_ident(&k.name), param(i, k))).collect();
        t.push(format!("{} > {}", quote_ident(&key[n].name), param(n, &key[n])));
        terms.push(format!("({})", t.join(" AND ")));
    }
    terms.join(" OR ")
}

/// The change-table columns every change query reads before the table's columns.
pub const CHANGE_META: [&str; 4] = ["__$start_lsn", "__$seqval", "__$operation", "__$update_mask"];

/// Changes of capture instance `ci` from its change table, in the order Microsoft documents
/// for it: `__$start_lsn` (the commit LSN), `__$command_id` (where the server has it),
/// `__$seqval`, `__$operation` (so an update's 3 comes before its 4). Bounds are inclusive:
/// `@P1` from, `@P2` to; `inclusive_from = false` starts strictly after `@P1` (the
/// transaction at `@P1` is done), else the first `@P3` rows (those of the transaction at
/// `@P1` already emitted) are skipped. At most `@P4` rows.
pub fn changes(ci: &str, columns: &[SqlColumn], has_command_id: bool, inclusive_from: bool) -> String {
    let meta: Vec<String> = CHANGE_META.iter().map(|c| quote_ident(c)).collect();
    let mut order = vec![quote_ident("__$start_lsn")];
    if has_command_id {
        order.push(quote_ident("__$command_id"));
    }
    order.push(quote_ident("__$seqval"));
    order.push(quote_ident("__$operation"));
    let cmp = if inclusive_from { ">=" } else { ">" };
    format!(
        "SELECT {}, {} FROM [cdc].{} WHERE [__$start_lsn] {cmp} @P1 AND [__$start_lsn] <= @P2 ORDER BY {} OFFSET @P3 ROWS FETCH NEXT @P4 ROWS ONLY",
        meta.join(", "),
        select_list(columns),
        quote_ident(&format!("{ci}_CT")),
        order.join(", ")
    )
}

/// The LSN range the change tables can serve: `min_lsn` of `@P1` (a capture instance; all
/// zeroes when it does not exist or was cleaned up entirely), the database's `max_lsn`, and
/// how many capture instances table `@P2` (`[schema].[table]`) has, so a poll notices a new
/// one before it reads past the new one's start.
pub fn lsn_bounds() -> &'static str {
    "SELECT sys.fn_cdc_get_min_lsn(@P1) AS min_lsn, sys.fn_cdc_get_max_lsn() AS max_lsn, \
     (SELECT COUNT(*) FROM cdc.change_tables WHERE source_object_id = OBJECT_ID(@P2)) AS capture_instances"
}

/// The capture instances of table `@P1` (`[schema].[table]`), oldest first.
pub fn capture_instances() -> &'static str {
    "SELECT ct.capture_instance, ct.start_lsn, ct.create_date, \
     CAST(CASE WHEN COL_LENGTH(N'cdc.' + QUOTENAME(ct.capture_instance + N'_CT'), N'__$command_id') IS NULL THEN 0 ELSE 1 END AS bit) AS has_command_id \
     FROM cdc.change_tables ct WHERE ct.source_object_id = OBJECT_ID(@P1) ORDER BY ct.create_date, ct.object_id"
}

/// The captured columns of capture instance `@P1` with their ordinals in its update mask.
pub fn captured_columns() -> &'static str {
    "SELECT cc.column_name, cc.column_ordinal FROM cdc.captured_columns cc \
     JOIN cdc.change_tables ct ON ct.object_id = cc.object_id WHERE ct.capture_instance = @P1 ORDER BY cc.column_ordinal"
}

/// The table's columns: name, base type name, max_length, precision, scale, nullable.
pub fn table_columns() -> &'static str {
    "SELECT c.name, TYPE_NAME(CASE WHEN t.is_user_defined = 1 AND t.is_assembly_type = 0 THEN t.system_type_id ELSE t.user_type_id END) AS type_name, \
     c.max_length, c.precision, c.scale, c.is_nullable \
     FROM sys.columns c JOIN sys.types t ON t.user_type_id = c.user_type_id \
     WHERE c.object_id = OBJECT_ID(@P1) AND c.is_computed = 0 ORDER BY c.column_id"
}

/// The primary key's columns in key order.
pub fn primary_key() -> &'static str {
    "SELECT c.name FROM sys.indexes i \
     JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
     JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
     WHERE i.object_id = OBJECT_ID(@P1) AND i.is_primary_key = 1 AND ic.key_ordinal > 0 ORDER BY ic.key_ordinal"
}

/// The rows of the table's heap or clustered index by the server's own count in
/// `sys.partitions` (kept by the storage engine, no scan): a snapshot's estimate.
pub fn estimated_rows() -> &'static str {
    "SELECT CAST(SUM(p.rows) AS bigint) FROM sys.partitions p WHERE p.object_id = OBJECT_ID(@P1) AND p.index_id IN (0, 1)"
}

/// The capture instance's index columns (the key CDC identifies rows by without a PK).
pub fn capture_index_columns() -> &'static str {
    "SELECT ic.column_name FROM cdc.index_columns ic JOIN cdc.change_tables ct ON ct.object_id = ic.object_id \
     WHERE ct.capture_instance = @P1 ORDER BY ic.index_ordinal"
}

/// Pre-flight facts of the current database in one row.
pub fn preflight() -> &'static str {
    "SELECT DB_NAME() AS db, d.database_id, d.is_cdc_enabled, d.snapshot_isolation_state, \
     HAS_PERMS_BY_NAME(@P1, 'OBJECT', 'SELECT') AS can_select, \
     HAS_PERMS_BY_NAME(N'cdc', 'SCHEMA', 'SELECT') AS can_read_cdc, \
     HAS_PERMS_BY_NAME(NULL, 'DATABASE', 'VIEW DATABASE STATE') AS can_view_state, \
     (SELECT CAST(value_in_use AS bigint) FROM sys.configurations WHERE name = N'max text repl size (B)') AS max_text_repl_size \
     FROM sys.databases d WHERE d.name = DB_NAME()"
}

/// The latest log scan session of the capture job, if it ever ran (needs VIEW DATABASE STATE).
pub fn last_capture_scan() -> &'static str {
    "SELECT TOP (1) CONVERT(nvarchar(30), end_time, 121) AS end_time, error_count FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0 ORDER BY session_id DESC"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn col(name: &str, ty: SqlType, decl: &str) -> SqlColumn {
        SqlColumn { name: name.into(), ty, decl: decl.into() }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a]b"), "[a]]b]");
        assert_eq!(quote_ident("weird [name]"), "[weird [name]]]");
        assert_eq!(qualified("dbo", "Order Lines"), "[dbo].[Order Lines]");
        assert_eq!(quote_string("O'Brien"), "N'O''Brien'");
    }

    #[test]
    fn snapshot_chunks_are_keyset_pages() {
        let id = col("id", SqlType::Int, "int");
        let at = col("at", SqlType::DateTime2 { scale: 7 }, "datetime2(7)");
        let price = col("price", SqlType::Money, "money");
        let cols = [id.clone(), at.clone(), price];
        assert_eq!(
            snapshot_chunk("dbo", "t]x", &cols, std::slice::from_ref(&id), false, 1000),
            "SELECT TOP (1000) [id], [at], CAST([price] AS decimal(19,4)) AS [price], CONVERT(nvarchar(4000), [id]) AS [__rtsync_k0] FROM [dbo].[t]]x] ORDER BY [id]"
        );
        assert_eq!(
            snapshot_chunk("s", "t", &cols, &[id, at], true, 5),
            "SELECT TOP (5) [id], [at], CAST([price] AS decimal(19,4)) AS [price], CONVERT(nvarchar(4000), [id]) AS [__rtsync_k0], CONVERT(nvarchar(4000), [at], 121) AS [__rtsync_k1] \
             FROM [s].[t] WHERE ([id] > CONVERT(int, @P1)) OR ([id] = CONVERT(int, @P1) AND [at] > CONVERT(datetime2(7), @P2, 121)) ORDER BY [id], [at]"
        );
    }

    #[test]
    fn change_queries_order_as_documented() {
        let cols = [col("id", SqlType::BigInt, "bigint"), col("doc", SqlType::Text { lob: true }, "nvarchar(max)")];
        assert_eq!(
            changes("dbo_orders", &cols, true, false),
            "SELECT [__$start_lsn], [__$seqval], [__$operation], [__$update_mask], [id], [doc] FROM [cdc].[dbo_orders_CT] \
             WHERE [__$start_lsn] > @P1 AND [__$start_lsn] <= @P2 \
             ORDER BY [__$start_lsn], [__$command_id], [__$seqval], [__$operation] OFFSET @P3 ROWS FETCH NEXT @P4 ROWS ONLY"
        );
        // Within a transaction already partly emitted: from its LSN inclusive; no command id
        // on change tables made before SQL Server 2012.
        assert_eq!(
            changes("a]b", &cols[..1], false, true),
            "SELECT [__$start_lsn], [__$seqval], [__$operation], [__$update_mask], [id] FROM [cdc].[a]]b_CT] \
             WHERE [__$start_lsn] >= @P1 AND [__$start_lsn] <= @P2 \
             ORDER BY [__$start_lsn], [__$seqval], [__$operation] OFFSET @P3 ROWS FETCH NEXT @P4 ROWS ONLY"
        );
    }

    #[test]
    fn catalog_queries_bind_every_value() {
        for sql in [
            lsn_bounds(),
            capture_instances(),
            captured_columns(),
            table_columns(),
            primary_key(),
            capture_index_columns(),
            preflight(),
        ] {
            assert!(sql.contains("@P1"), "{sql}");
            assert!(!sql.contains("{}"), "{sql}");
        }
        assert!(snapshot_begin().starts_with(
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT sys.fn_cdc_get_max_lsn()"
        ));
    }
}
