//! Table columns: what MySQL holds, and the Arrow type rtsync emits for each.
//!
//! | MySQL | Arrow | note |
//! | --- | --- | --- |
//! | tinyint / smallint / mediumint / int / bigint | Int8 / Int16 / Int32 / Int32 / Int64 | `tinyint(1)`/`bool` stays Int8: it may hold 2 or -1 |
//! | … unsigned | Int16 / Int32 / Int32 / Int64 / Decimal128(20,0) | the next wider signed type; 2^64-1 survives |
//! | decimal(p,s), p ≤ 38 | Decimal128(p,s) | |
//! | decimal(p,s), p > 38 | Utf8 | the exact decimal text |
//! | float / double | Float32 / Float64 | |
//! | bit(1) | Boolean | |
//! | bit(n>1) | Binary | big-endian, ⌈n/8⌉ bytes, as MySQL returns it |
//! | char / varchar / *text (any non-binary charset) | Utf8 | |
//! | binary / varbinary / *blob / geometry | Binary | binary(n) keeps its zero padding |
//! | date | Date32 | zero dates ('0000-00-00', '2024-00-10') become NULL |
//! | time(fsp) | Int64 | signed microseconds (`-838:59:59` .. `838:59:59` does not fit a time of day) |
//! | datetime(fsp) | Timestamp(µs, none) | wall-clock value as stored; zero dates → NULL |
//! | timestamp(fsp) | Timestamp(µs, "UTC") | the instant; zero → NULL |
//! | year | Int16 | 0 for year 0000 |
//! | enum / set | Utf8 | the member names (set: comma-joined, in definition order); invalid enum 0 → '' |
//! | json | Utf8 | JSON text (MySQL's binary JSON printed as MySQL prints it; MariaDB JSON is text) |
//!
//! Every field is nullable: a NOT NULL column can still yield NULL for a zero date.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rtsync_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rtsync_core::{OP_COLUMN, SyncError, SyncResult};

use crate::error::my_err;

/// Character sets the binlog decoder can turn into UTF-8. The snapshot does not care (the
/// server converts to utf8mb4), the binlog carries the column's raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3 (utf8), ascii: valid UTF-8 already.
    Utf8,
    /// MySQL's latin1 (which is Windows-1252).
    Latin1,
    Binary,
    /// Anything else (the name), refused by the binlog decoder with a clear error.
    Other(String),
}

impl Charset {
    pub fn from_name(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
            "latin1" => Charset::Latin1,
            "binary" => Charset::Binary,
            other => Charset::Other(other.to_owned()),
        }
    }
}

/// What a column holds, in terms that decide its Arrow type and how its values are read.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// `bytes`: 1 tinyint, 2 smallint, 3 mediumint, 4 int, 8 bigint.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bit {
        bits: u16,
    },
    Year,
    Date,
    Time,
    DateTime,
    Timestamp,
    Text {
        charset: Charset,
    },
    /// `fixed`: binary(n) length, to restore the zero padding the binlog strips.
    Binary {
        fixed: Option<u32>,
    },
    Enum {
        names: Arc<[String]>,
    },
    Set {
        names: Arc<[String]>,
    },
    /// MySQL's binary JSON type (MariaDB's JSON is a text column).
    Json,
    Geometry,
}

impl ColumnKind {
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnKind::Int { bytes: 1, unsigned: false } => DataType::Int8,
            ColumnKind::Int { bytes: 1, unsigned: true } | ColumnKind::Int { bytes: 2, unsigned: false } => {
                DataType::Int16
            }
            ColumnKind::Int { bytes: 2, unsigned: true }
            | ColumnKind::Int { bytes: 3, .. }
            | ColumnKind::Int { bytes: 4, unsigned: false } => DataType::Int32,
            ColumnKind::Int { bytes: 4, unsigned: true } | ColumnKind::Int { bytes: 8, unsigned: false } => {
                DataType::Int64
            }
            ColumnKind::Int { unsigned: true, .. } => DataType::Decimal128(20, 0),
            ColumnKind::Int { .. } => DataType::Int64,
            ColumnKind::Float => DataType::Float32,
            ColumnKind::Double => DataType::Float64,
            ColumnKind::Decimal { precision, scale } if *precision <= 38 => {
                DataType::Decimal128(*precision, *scale as i8)
            }
            ColumnKind::Decimal { .. } => DataType::Utf8,
            ColumnKind::Bit { bits: 1 } => DataType::Boolean,
            ColumnKind::Bit { .. } => DataType::Binary,
            ColumnKind::Year => DataType::Int16,
            ColumnKind::Date => DataType::Date32,
            ColumnKind::Time => DataType::Int64,
            ColumnKind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnKind::Text { .. } | ColumnKind::Enum { .. } | ColumnKind::Set { .. } | ColumnKind::Json => {
                DataType::Utf8
            }
            ColumnKind::Binary { .. } | ColumnKind::Geometry => DataType::Binary,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnKind,
}

/// The table as the catalog (information_schema) describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub columns: Vec<ColumnSpec>,
    /// Primary-key column names, in key order.
    pub primary_key: Vec<String>,
}

impl TableSchema {
    /// Row fields in column order, without the op column.
    pub fn row_schema(&self) -> SchemaRef {
        row_schema(&self.columns)
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Indexes of the primary-key columns, in key order.
    pub fn key_indexes(&self) -> SyncResult<Vec<usize>> {
        key_indexes(&self.columns, &self.primary_key)
    }
}

pub(crate) fn key_indexes(columns: &[ColumnSpec], key: &[String]) -> SyncResult<Vec<usize>> {
    key.iter()
        .map(|k| {
            columns.iter().position(|c| &c.name == k).ok_or_else(|| {
                SyncError::internal(format!("primary-key column {k:?} is not among the table's columns"))
            })
        })
        .collect()
}

pub(crate) fn row_schema(columns: &[ColumnSpec]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(&c.name, c.kind.arrow_type(), true)).collect::<Vec<_>>()))
}

/// The schema of emitted batches: the row fields then [`OP_COLUMN`].
pub(crate) fn batch_schema(columns: &[ColumnSpec]) -> SchemaRef {
    let mut fields: Vec<Field> = columns.iter().map(|c| Field::new(&c.name, c.kind.arrow_type(), true)).collect();
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Quotes an identifier with backticks.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Reads the table's columns and primary key from information_schema. `Ok(None)` when the
/// table does not exist.
pub(crate) async fn read_table(
    conn: &mut Conn,
    schema: &str,
    table: &str,
    mariadb: bool,
) -> SyncResult<Option<TableSchema>> {
    let doing = || format!("reading the columns of {schema}.{table} from information_schema");
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, \
                    CHARACTER_SET_NAME, CHARACTER_OCTET_LENGTH, COLUMN_KEY \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .map_err(|e| my_err(doing(), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let text =
            |i: usize| -> Option<String> { row.get_opt::<Option<String>, usize>(i).and_then(Result::ok).flatten() };
        let num = |i: usize| -> Option<u64> { row.get_opt::<Option<u64>, usize>(i).and_then(Result::ok).flatten() };
        let name = text(0).ok_or_else(|| SyncError::internal(format!("{}: a column without a name", doing())))?;
        let data_type = text(1).unwrap_or_default().to_ascii_lowercase();
        let column_type = text(2).unwrap_or_default();
        let kind = kind_from_catalog(&data_type, &column_type, num(3), num(4), text(5).as_deref(), num(6), mariadb)
            .map_err(|why| {
                SyncError::source_err(format!("column {name:?} of {schema}.{table} ({column_type}): {why}"))
            })?;
        columns.push(ColumnSpec { name, kind });
    }
    let key_rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .map_err(|e| my_err(doing(), e))?;
    let primary_key = key_rows
        .into_iter()
        .filter_map(|r| r.get_opt::<Option<String>, usize>(0).and_then(Result::ok).flatten())
        .collect();
    Ok(Some(TableSchema { columns, primary_key }))
}

/// One information_schema.COLUMNS row to a [`ColumnKind`]; Err says why it is not supported.
pub(crate) fn kind_from_catalog(
    data_type: &str,
    column_type: &str,
    precision: Option<u64>,
    scale: Option<u64>,
    charset: Option<&str>,
    octet_length: Option<u64>,
    mariadb: bool,
) -> Result<ColumnKind, String> {
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let text = || ColumnKind::Text { charset: Charset::from_name(charset.unwrap_or("utf8mb4")) };
    Ok(match data_type {
        "tinyint" => ColumnKind::Int { bytes: 1, unsigned },
        "smallint" => ColumnKind::Int { bytes: 2, unsigned },
        "mediumint" => ColumnKind::Int { bytes: 3, unsigned },
        "int" | "integer" => ColumnKind::Int { bytes: 4, unsigned },
        "bigint" => ColumnKind::Int { bytes: 8, unsigned },
        "float" => ColumnKind::Float,
        "double" | "real" | "double precision" => ColumnKind::Double,
        // MySQL allows a scale up to 30, MariaDB up to 38.
        "decimal" | "numeric" | "fixed" => ColumnKind::Decimal {
            precision: precision.unwrap_or(10).min(65) as u8,
            scale: scale.unwrap_or(0).min(38) as u8,
        },
        "bit" => ColumnKind::Bit { bits: precision.unwrap_or(1).clamp(1, 64) as u16 },
        "year" => ColumnKind::Year,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time,
        "datetime" => ColumnKind::DateTime,
        "timestamp" => ColumnKind::Timestamp,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => match charset.map(Charset::from_name) {
            Some(Charset::Binary) => ColumnKind::Binary { fixed: None },
            _ => text(),
        },
        "binary" => ColumnKind::Binary { fixed: octet_length.map(|n| n as u32) },
        "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnKind::Binary { fixed: None },
        "enum" => ColumnKind::Enum { names: parse_members(column_type).into() },
        "set" => ColumnKind::Set { names: parse_members(column_type).into() },
        // MariaDB's JSON is LONGTEXT with a CHECK; MySQL's is binary JSON.
        "json" if mariadb => text(),
        "json" => ColumnKind::Json,
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => ColumnKind::Geometry,
        "vector" => ColumnKind::Binary { fixed: None },
        other => return Err(format!("type {other:?} is not supported; exclude the table or change the column type")),
    })
}

/// Member names of `enum('a','b''c')` / `set(…)`, unescaped.
pub(crate) fn parse_members(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else { return Vec::new() };
    let body = &column_type[open + 1..];
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut name = String::new();
        loop {
            match chars.next() {
                None => break,
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    name.push('\'');
                }
                Some('\'') => break,
                Some('\\') => {
                    if let Some(n) = chars.next() {
                        name.push(n);
                    }
                }
                Some(ch) => name.push(ch),
            }
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_follow_the_mapping_table() {
        let t = |dt: &str, ct: &str| {
            kind_from_catalog(dt, ct, Some(10), Some(2), Some("utf8mb4"), Some(4), false).unwrap().arrow_type()
        };
        assert_eq!(t("tinyint", "tinyint(1)"), DataType::Int8);
        assert_eq!(t("tinyint", "tinyint(3) unsigned"), DataType::Int16);
        assert_eq!(t("smallint", "smallint unsigned"), DataType::Int32);
        assert_eq!(t("mediumint", "mediumint unsigned"), DataType::Int32);
        assert_eq!(t("int", "int unsigned"), DataType::Int64);
        assert_eq!(t("bigint", "bigint"), DataType::Int64);
        assert_eq!(t("bigint", "bigint unsigned"), DataType::Decimal128(20, 0));
        assert_eq!(t("decimal", "decimal(10,2)"), DataType::Decimal128(10, 2));
        assert_eq!(
            kind_from_catalog("decimal", "decimal(65,4)", Some(65), Some(4), None, None, false).unwrap().arrow_type(),
            DataType::Utf8
        );
        // MariaDB's largest scale
        assert_eq!(
            kind_from_catalog("decimal", "decimal(38,38)", Some(38), Some(38), None, None, true).unwrap().arrow_type(),
            DataType::Decimal128(38, 38)
        );
        assert_eq!(
            kind_from_catalog("bit", "bit(1)", Some(1), None, None, None, false).unwrap().arrow_type(),
            DataType::Boolean
        );
        assert_eq!(
            kind_from_catalog("bit", "bit(12)", Some(12), None, None, None, false).unwrap().arrow_type(),
            DataType::Binary
        );
        assert_eq!(t("datetime", "datetime(6)"), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(t("timestamp", "timestamp(3)"), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(t("time", "time"), DataType::Int64);
        assert_eq!(t("year", "year"), DataType::Int16);
        assert_eq!(t("json", "json"), DataType::Utf8);
        assert_eq!(t("binary", "binary(4)"), DataType::Binary);
        assert_eq!(
            kind_from_catalog("binary", "binary(4)", None, None, None, Some(4), false).unwrap(),
            ColumnKind::Binary { fixed: Some(4) }
        );
        assert_eq!(
            kind_from_catalog("varchar", "varchar(10)", None, None, Some("binary"), None, false).unwrap(),
            ColumnKind::Binary { fixed: None }
        );
        assert!(kind_from_catalog("hyperloglog", "x", None, None, None, None, false).is_err());
    }

    #[test]
    fn enum_members_are_unescaped() {
        assert_eq!(parse_members("enum('a','b''c','d,e')"), vec!["a", "b'c", "d,e"]);
        assert_eq!(parse_members("set('x','y')"), vec!["x", "y"]);
        assert_eq!(parse_members("enum('')"), vec![""]);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
