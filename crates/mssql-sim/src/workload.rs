//! A simulated table with a column of every SQL Server type the connector maps, random values
//! within each type's range, and random transactions (inserts, updates of a few columns so
//! `(max)` values arrive unchanged, several changes of one row in one transaction, key
//! changes, deletes). Shared by the TDS tests, the end-to-end tests, the fuzzer and the
//! standalone binary.

use std::borrow::Cow;

use rtsync_source_sqlserver::CatalogColumn;
use rtsync_source_sqlserver::sim::{SimDb, SimHandle, Values, column};
use rtsync_source_sqlserver::sql::SqlColumn;
use rtsync_source_sqlserver::types::SqlType;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tiberius::{ColumnData, Uuid};

/// SplitMix64: small, deterministic, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// `id int` (the key) and one column of every mapped type.
pub fn every_type_columns() -> Vec<CatalogColumn> {
    vec![
        column("id", "int", 4, 10, 0),
        column("c_bit", "bit", 1, 1, 0),
        column("c_tinyint", "tinyint", 1, 3, 0),
        column("c_smallint", "smallint", 2, 5, 0),
        column("c_bigint", "bigint", 8, 19, 0),
        column("c_decimal", "decimal", 17, 38, 10),
        column("c_numeric", "numeric", 5, 9, 2),
        column("c_money", "money", 8, 19, 4),
        column("c_smallmoney", "smallmoney", 4, 10, 4),
        column("c_real", "real", 4, 24, 0),
        column("c_float", "float", 8, 53, 0),
        column("c_char", "char", 10, 0, 0),
        column("c_varchar", "varchar", 50, 0, 0),
        column("c_nchar", "nchar", 10, 0, 0),
        column("c_nvarchar", "nvarchar", 200, 0, 0),
        column("c_nvarchar_max", "nvarchar", -1, 0, 0),
        column("c_varchar_max", "varchar", -1, 0, 0),
        column("c_text", "text", 16, 0, 0),
        column("c_ntext", "ntext", 16, 0, 0),
        column("c_binary", "binary", 8, 0, 0),
        column("c_varbinary", "varbinary", 50, 0, 0),
        column("c_varbinary_max", "varbinary", -1, 0, 0),
        column("c_image", "image", 16, 0, 0),
        column("c_date", "date", 3, 10, 0),
        column("c_time0", "time", 3, 8, 0),
        column("c_time7", "time", 5, 16, 7),
        column("c_datetime", "datetime", 8, 23, 3),
        column("c_smalldatetime", "smalldatetime", 4, 16, 0),
        column("c_datetime2_3", "datetime2", 7, 23, 3),
        column("c_datetime2_7", "datetime2", 8, 27, 7),
        column("c_dto_3", "datetimeoffset", 9, 30, 3),
        column("c_dto_7", "datetimeoffset", 10, 34, 7),
        column("c_guid", "uniqueidentifier", 16, 0, 0),
        column("c_xml", "xml", -1, 0, 0),
        column("c_variant", "sql_variant", 8016, 0, 0),
        column("c_hierarchyid", "hierarchyid", 892, 0, 0),
    ]
}

/// A simulated database with `schema.table` of [`every_type_columns`].
pub fn every_type_table(schema: &str, table: &str) -> SimHandle {
    SimDb::create(schema, table, every_type_columns())
}

/// The declared length of `nvarchar(40)` and the like.
fn declared_length(c: &SqlColumn) -> Option<usize> {
    c.decl.split_once('(').and_then(|(_, a)| a.trim_end_matches(')').parse().ok())
}

const UNICODE: &[char] = &['a', 'Z', '0', ' ', 'é', 'ß', 'Ω', 'Ж', '中', '文', '€', '\'', '"', '\\', '\n'];

fn ascii(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| char::from(b' ' + rng.below(95) as u8)).collect()
}

fn unicode(rng: &mut Rng, n: usize) -> String {
    (0..n).map(|_| UNICODE[rng.below(UNICODE.len() as u64) as usize]).collect()
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn text(s: String) -> ColumnData<'static> {
    ColumnData::String(Some(Cow::Owned(s)))
}

/// A value of column `c`'s type within SQL Server's range for it.
pub fn random_value(rng: &mut Rng, c: &SqlColumn) -> ColumnData<'static> {
    let len = declared_length(c);
    let n_char = c.decl.starts_with('n');
    let fixed = c.decl.starts_with("char") || c.decl.starts_with("nchar") || c.decl.starts_with("binary");
    let size = |rng: &mut Rng, lob: bool| match (lob, len, fixed) {
        (true, _, _) => match rng.below(4) {
            0 => rng.below(10) as usize,
            1 => 8_000 + rng.below(20_000) as usize,
            _ => rng.below(2_000) as usize,
        },
        (false, Some(n), true) => n,
        (false, Some(n), false) => rng.below(n as u64 + 1) as usize,
        (false, None, _) => rng.below(50) as usize,
    };
    let time = |rng: &mut Rng, scale: u8| Time::new(rng.below(86_400 * 10u64.pow(u32::from(scale))), scale);
    // 0001-01-02 … 9999-12-30, so that an offset never leaves the range.
    let date = |rng: &mut Rng| Date::new(1 + rng.below(3_652_057) as u32);
    match c.ty {
        SqlType::Bit => ColumnData::Bit(Some(rng.below(2) == 1)),
        SqlType::TinyInt => ColumnData::U8(Some(rng.next_u64() as u8)),
        SqlType::SmallInt => ColumnData::I16(Some(rng.next_u64() as i16)),
        SqlType::Int => ColumnData::I32(Some(rng.next_u64() as i32)),
        SqlType::BigInt => ColumnData::I64(Some(rng.next_u64() as i64)),
        SqlType::Decimal { precision, scale } => {
            let digits = 1 + rng.below(u64::from(precision)) as u32;
            let v = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) % 10u128.pow(digits);
            let v = if rng.below(2) == 0 { v as i128 } else { -(v as i128) };
            ColumnData::Numeric(Some(Numeric::new_with_scale(v, scale)))
        }
        SqlType::Money => ColumnData::Numeric(Some(Numeric::new_with_scale(i128::from(rng.next_u64() as i64), 4))),
        SqlType::SmallMoney => ColumnData::Numeric(Some(Numeric::new_with_scale(i128::from(rng.next_u64() as i32), 4))),
        // Binary fractions of at most 16 significant digits, which every reader prints alike.
        SqlType::Real => ColumnData::F32(Some((rng.below(1 << 20) as f32 - (1 << 19) as f32) / 64.0)),
        SqlType::Float => ColumnData::F64(Some(((rng.next_u64() as i64) >> 34) as f64 / 1024.0)),
        SqlType::Text { lob } => {
            let n = size(rng, lob);
            text(if n_char { unicode(rng, n) } else { ascii(rng, n) })
        }
        SqlType::Bytes { lob } => {
            let n = size(rng, lob);
            ColumnData::Binary(Some(Cow::Owned(bytes(rng, n))))
        }
        SqlType::Clr => {
            let n = 1 + rng.below(40) as usize;
            ColumnData::Binary(Some(Cow::Owned(bytes(rng, n))))
        }
        SqlType::Date => ColumnData::Date(Some(date(rng))),
        SqlType::Time { scale } => ColumnData::Time(Some(time(rng, scale))),
        // 1753-01-01 … 9999-12-31, in 1/300 s.
        SqlType::DateTime => ColumnData::DateTime(Some(DateTime::new(
            -53_690 + rng.below(2_958_463 + 53_690) as i32,
            rng.below(25_920_000) as u32,
        ))),
        SqlType::SmallDateTime => {
            ColumnData::SmallDateTime(Some(SmallDateTime::new(rng.below(65_378) as u16, rng.below(1_440) as u16)))
        }
        SqlType::DateTime2 { scale } => ColumnData::DateTime2(Some(DateTime2::new(date(rng), time(rng, scale)))),
        SqlType::DateTimeOffset { scale } => ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(date(rng), time(rng, scale)),
            rng.below(1_681) as i16 - 840,
        ))),
        SqlType::UniqueIdentifier => {
            ColumnData::Guid(Some(Uuid::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))))
        }
        SqlType::Xml => {
            let n = rng.below(60) as usize;
            let body = unicode(rng, n).replace(['<', '>', '&'], "");
            let attr = ascii(rng, 8).replace(['<', '>', '&', '"'], "_");
            ColumnData::Xml(Some(Cow::Owned(XmlData::new(format!("<r a=\"{attr}\"><v>{body}</v></r>")))))
        }
        SqlType::SqlVariant => {
            let n = rng.below(40) as usize;
            text(unicode(rng, n))
        }
    }
}

/// NULL of `c`'s type.
pub fn null_value(c: &SqlColumn) -> ColumnData<'static> {
    match c.ty {
        SqlType::Bit => ColumnData::Bit(None),
        SqlType::TinyInt => ColumnData::U8(None),
        SqlType::SmallInt => ColumnData::I16(None),
        SqlType::Int => ColumnData::I32(None),
        SqlType::BigInt => ColumnData::I64(None),
        SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney => ColumnData::Numeric(None),
        SqlType::Real => ColumnData::F32(None),
        SqlType::Float => ColumnData::F64(None),
        SqlType::Bytes { .. } | SqlType::Clr => ColumnData::Binary(None),
        SqlType::Date => ColumnData::Date(None),
        SqlType::Time { .. } => ColumnData::Time(None),
        SqlType::DateTime => ColumnData::DateTime(None),
        SqlType::SmallDateTime => ColumnData::SmallDateTime(None),
        SqlType::DateTime2 { .. } => ColumnData::DateTime2(None),
        SqlType::DateTimeOffset { .. } => ColumnData::DateTimeOffset(None),
        SqlType::UniqueIdentifier => ColumnData::Guid(None),
        SqlType::Xml => ColumnData::Xml(None),
        SqlType::Text { .. } | SqlType::SqlVariant => ColumnData::String(None),
    }
}

/// What a workload did, to show it covered the cases.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub transactions: u64,
    pub inserts: u64,
    pub updates: u64,
    /// Updates that left every `(max)`/text/xml column alone (they arrive NULL, unchanged).
    pub lob_unchanged_updates: u64,
    /// A row changed twice in one transaction.
    pub repeated_updates: u64,
    pub key_changes: u64,
    pub deletes: u64,
}

/// Random transactions on the simulated table (its current columns, so an added column gets
/// values too). Keys are `id int`, new ones counting up from `next_id`.
pub struct Workload {
    pub rng: Rng,
    pub next_id: i64,
    pub counts: Counts,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload { rng: Rng::new(seed), next_id: 0, counts: Counts::default() }
    }

    /// Values for the non-key columns: every one (`all`) or a random few; some NULL.
    fn values(&mut self, columns: &[CatalogColumn], all: bool) -> Values {
        let mut v = Values::new();
        for c in columns.iter().skip(1) {
            if all || self.rng.below(3) == 0 {
                let value =
                    if self.rng.below(8) == 0 { null_value(&c.column) } else { random_value(&mut self.rng, &c.column) };
                v.insert(c.column.name.clone(), value);
            }
        }
        v
    }

    fn row(&mut self, columns: &[CatalogColumn]) -> Values {
        self.next_id += 1;
        let mut v = self.values(columns, true);
        v.insert("id".into(), ColumnData::I32(Some(self.next_id as i32)));
        v
    }

    /// `rows` inserts, 100 per transaction, then the capture job runs.
    pub fn seed(&mut self, db: &SimHandle, rows: usize) {
        let mut left = rows;
        while left > 0 {
            let n = left.min(100);
            left -= n;
            let mut d = db.lock();
            let columns = d.columns().to_vec();
            let rows: Vec<Values> = (0..n).map(|_| self.row(&columns)).collect();
            d.transaction(|tx| {
                for r in rows {
                    tx.insert(r);
                }
            });
            self.counts.inserts += n as u64;
            self.counts.transactions += 1;
        }
        db.lock().capture();
    }

    /// One random transaction of 1 to 4 changes. The capture job is not run.
    pub fn transaction(&mut self, db: &SimHandle) {
        let mut d = db.lock();
        let columns = d.columns().to_vec();
        let keys: Vec<i64> = d.table().keys().copied().collect();
        let lobs: Vec<String> =
            columns.iter().filter(|c| c.column.ty.is_lob()).map(|c| c.column.name.clone()).collect();
        let mut plan = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let pick = keys.get(self.rng.below(keys.len() as u64) as usize).copied();
            let op = match (self.rng.below(10), pick) {
                (0..=3, _) | (_, None) => Op::Insert(self.row(&columns)),
                (4..=6, Some(k)) => {
                    let mut set = self.values(&columns, false);
                    let keep_lobs = self.rng.below(3) == 0;
                    if keep_lobs {
                        set.retain(|n, _| !lobs.contains(n));
                    }
                    let again = (self.rng.below(4) == 0).then(|| self.values(&columns, false));
                    Op::Update(k, set, keep_lobs, again)
                }
                (7, Some(k)) => {
                    self.next_id += 1;
                    Op::KeyChange(k, self.next_id)
                }
                (_, Some(k)) => Op::Delete(k),
            };
            plan.push(op);
        }
        let counts = &mut self.counts;
        d.transaction(|tx| {
            for op in plan {
                match op {
                    Op::Insert(row) => {
                        tx.insert(row);
                        counts.inserts += 1;
                    }
                    Op::Update(k, set, keep_lobs, again) if tx.contains(k) => {
                        tx.update(k, set);
                        counts.updates += 1;
                        counts.lob_unchanged_updates += u64::from(keep_lobs);
                        if let Some(again) = again {
                            tx.update(k, again);
                            counts.repeated_updates += 1;
                        }
                    }
                    Op::KeyChange(k, new) if tx.contains(k) => {
                        let mut set = Values::new();
                        set.insert("id".into(), ColumnData::I32(Some(new as i32)));
                        tx.update(k, set);
                        counts.key_changes += 1;
                    }
                    Op::Delete(k) if tx.contains(k) => {
                        tx.delete(k);
                        counts.deletes += 1;
                    }
                    _ => {}
                }
            }
        });
        self.counts.transactions += 1;
    }
}

enum Op {
    Insert(Values),
    Update(i64, Values, bool, Option<Values>),
    KeyChange(i64, i64),
    Delete(i64),
}
