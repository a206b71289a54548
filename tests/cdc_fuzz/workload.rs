//! The fuzzer's side that knows no database: a seeded generator, the values it draws for each
//! kind of column, the operations and transactions it makes of them, and the history it keeps
//! so that a failure can show every operation that touched a key.
//!
//! The generator tracks only which keys exist (and whether a row's `big` value is stored out of
//! line); the values themselves are never used as the oracle: the source table is, read back
//! after each round.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// splitmix64: small, fast, and the same sequence on every platform and Rust version, so a seed
/// replays.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (self.next_u64() as u128 % span) as i128) as i64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An independent stream for one purpose (the kill schedule), so changing how many values
    /// one part draws does not shift the other.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// What a column holds, with the limits of the source's type.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Large incompressible text (thousands of hex digits: out of line in PostgreSQL), short
    /// text or NULL.
    Big,
    /// Bytes: large random (incompressible), short, or NULL.
    Bytes,
    /// A JSON document, sometimes a large one.
    Json,
    /// Short text with quotes, backslashes, control characters and non-ASCII.
    Text,
    /// A decimal with `int` integer and `scale` fraction digits (exact text on both sides).
    Decimal {
        int: u32,
        scale: u32,
    },
    /// A double; `special`: NaN, ±infinity and subnormals are allowed.
    Float64 {
        special: bool,
    },
    /// A single-precision float (read back widened to a double).
    Float32 {
        special: bool,
    },
    /// An instant (timestamp with time zone) in `min..=max` µs since the epoch, UTC.
    Instant {
        min: i64,
        max: i64,
    },
    /// A local date-time (timestamp without time zone) in `min..=max` µs.
    Local {
        min: i64,
        max: i64,
    },
    /// A date in `min..=max` days since the epoch.
    Date {
        min: i64,
        max: i64,
    },
    Int32,
    Bool,
}

/// One column of the fuzzed table.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Text(String),
    Bytes(Vec<u8>),
    /// JSON text (as written; compared as parsed JSON).
    Json(String),
    /// Exact decimal text.
    Decimal(String),
    Float64(f64),
    Float32(f32),
    /// µs since the epoch, UTC, written with an offset of `offset_min` minutes.
    Instant {
        micros: i64,
        offset_min: i64,
    },
    Local(i64),
    Date(i64),
    Int(i64),
    Bool(bool),
}

impl Value {
    /// A short form for histories: long values by length and first characters.
    pub fn brief(&self) -> String {
        fn cut(s: &str) -> String {
            if s.chars().count() > 24 {
                format!("<{} chars {}…>", s.chars().count(), s.chars().take(12).collect::<String>())
            } else {
                format!("{s:?}")
            }
        }
        match self {
            Value::Null => "NULL".into(),
            Value::Text(s) | Value::Json(s) => cut(s),
            Value::Bytes(b) if b.len() > 12 => format!("<{} bytes {}…>", b.len(), hex(&b[..6])),
            Value::Bytes(b) => format!("x'{}'", hex(b)),
            Value::Decimal(d) => d.clone(),
            Value::Float64(f) => format!("{f:?}"),
            Value::Float32(f) => format!("{f:?}f32"),
            Value::Instant { micros, offset_min } => {
                format!("{}{}", local_text(micros + offset_min * 60_000_000), offset_text(*offset_min))
            }
            Value::Local(us) => local_text(*us),
            Value::Date(d) => date_text(*d),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` of µs since the epoch.
pub fn local_text(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
    format!("{} {:02}:{:02}:{:02}.{frac:06}", date_text(days), secs / 3600, secs / 60 % 60, secs % 60)
}

/// `+HH:MM` / `-HH:MM`.
pub fn offset_text(minutes: i64) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

/// µs since the epoch of midnight at the start of `year`-01-01.
pub fn year_start_micros(year: i64) -> i64 {
    days_from_civil(year, 1, 1) * 86_400_000_000
}

const TEXT_PIECES: &[&str] = &[
    "a", "b", "Z", "0", "9", " ", "'", "''", "\"", "\\", "\\\\", "\t", "\n", "\r\n", "é", "ü", "中", "😀", "\u{2028}",
    "%", "_", "--", ";", "NULL", "{", "}", ",",
];

fn text(rng: &mut Rng, max_pieces: usize) -> String {
    (0..rng.below(max_pieces + 1)).map(|_| *rng.pick(TEXT_PIECES)).collect()
}

fn hex_text(rng: &mut Rng, chars: usize) -> String {
    let bytes: Vec<u8> = (0..chars.div_ceil(2)).map(|_| rng.next_u64() as u8).collect();
    let mut s = hex(&bytes);
    s.truncate(chars);
    s
}

fn json(rng: &mut Rng, depth: u32) -> serde_json::Value {
    use serde_json::Value as J;
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => J::Null,
        1 => J::Bool(rng.chance(0.5)),
        2 => {
            let small = rng.range(-1000, 1000);
            J::from(*rng.pick(&[0, 1, -1, i64::MAX, i64::MIN, 9_007_199_254_740_993, small]))
        }
        // quarters are exact in binary, so any JSON parser reads the same number
        3 => J::from(rng.range(-100_000, 100_000) as f64 / 4.0),
        4 => J::String(text(rng, 6)),
        5 => J::Array((0..rng.below(4)).map(|_| json(rng, depth + 1)).collect()),
        _ => J::Object((0..rng.below(4)).map(|i| (format!("k{i}{}", text(rng, 1)), json(rng, depth + 1))).collect()),
    }
}

fn decimal(rng: &mut Rng, int: u32, scale: u32) -> String {
    let digits = |rng: &mut Rng, n: u32, nines: bool| -> String {
        (0..n).map(|_| if nines { '9' } else { char::from(b'0' + rng.below(10) as u8) }).collect()
    };
    let nines = rng.chance(0.2);
    let (mut i, f) = match rng.below(4) {
        0 => ("0".to_string(), "0".repeat(scale as usize)),
        1 => (rng.range(0, 1000).to_string(), digits(rng, scale, false)),
        _ => (digits(rng, int, nines), digits(rng, scale, nines)),
    };
    let trimmed = i.trim_start_matches('0');
    i = if trimmed.is_empty() { "0".to_string() } else { trimmed.to_string() };
    let zero = i == "0" && f.chars().all(|c| c == '0');
    let sign = if !zero && rng.chance(0.5) { "-" } else { "" };
    if scale == 0 { format!("{sign}{i}") } else { format!("{sign}{i}.{f}") }
}

fn float64(rng: &mut Rng, special: bool) -> f64 {
    let normal = [0.0, -0.0, 1.0, -1.5, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 0.1, 1e15 + 0.3, -123_456.789e-200];
    // the smallest subnormal, and the negative subnormal next to the normal range
    let specials =
        [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::from_bits(1), f64::from_bits(0x800F_FFFF_FFFF_FFFF)];
    match rng.below(4) {
        0 => *rng.pick(&normal),
        1 if special => *rng.pick(&specials),
        _ => loop {
            let v = f64::from_bits(rng.next_u64());
            if v.is_finite() && (special || v == 0.0 || v.abs() >= f64::MIN_POSITIVE) {
                break v;
            }
        },
    }
}

fn float32(rng: &mut Rng, special: bool) -> f32 {
    let normal = [0.0, -0.0, 1.0, -1.5, f32::MAX, f32::MIN, f32::MIN_POSITIVE, 0.1, 16_777_217.0];
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-45];
    match rng.below(4) {
        0 => *rng.pick(&normal),
        1 if special => *rng.pick(&specials),
        _ => loop {
            let v = f32::from_bits(rng.next_u64() as u32);
            if v.is_finite() && (special || v == 0.0 || v.abs() >= f32::MIN_POSITIVE) {
                break v;
            }
        },
    }
}

/// A value for a column of `kind`; NULL sometimes.
pub fn value(rng: &mut Rng, kind: Kind) -> Value {
    match kind {
        Kind::Big => match rng.below(20) {
            0..=10 => {
                let chars = rng.range(2_100, 16_000) as usize;
                Value::Text(hex_text(rng, chars))
            }
            11..=13 => Value::Text("1f".repeat(6_000)),
            14..=17 => Value::Text(text(rng, 10)),
            _ => Value::Null,
        },
        Kind::Bytes => match rng.below(10) {
            0..=3 => Value::Bytes((0..rng.range(2_100, 9_000)).map(|_| rng.next_u64() as u8).collect()),
            4..=6 => Value::Bytes((0..rng.below(20)).map(|_| rng.next_u64() as u8).collect()),
            _ => Value::Null,
        },
        Kind::Json => match rng.below(10) {
            0 => Value::Null,
            1 => Value::Json(serde_json::json!({ "blob": hex_text(rng, 6_000), "n": 1 }).to_string()),
            2 => Value::Json(serde_json::to_string_pretty(&json(rng, 0)).unwrap_or_default()),
            _ => Value::Json(json(rng, 0).to_string()),
        },
        _ if rng.chance(0.15) => Value::Null,
        Kind::Text => Value::Text(text(rng, 12)),
        Kind::Decimal { int, scale } => Value::Decimal(decimal(rng, int, scale)),
        Kind::Float64 { special } => Value::Float64(float64(rng, special)),
        Kind::Float32 { special } => Value::Float32(float32(rng, special)),
        Kind::Instant { min, max } => {
            let micros = if rng.chance(0.15) { *rng.pick(&[min, max]) } else { rng.range(min, max) };
            Value::Instant { micros, offset_min: 15 * rng.range(-48, 56) }
        }
        Kind::Local { min, max } => {
            Value::Local(if rng.chance(0.15) { *rng.pick(&[min, max]) } else { rng.range(min, max) })
        }
        Kind::Date { min, max } => {
            Value::Date(if rng.chance(0.15) { *rng.pick(&[min, max]) } else { rng.range(min, max) })
        }
        Kind::Int32 => Value::Int(if rng.chance(0.2) {
            *rng.pick(&[i64::from(i32::MIN), i64::from(i32::MAX), 0])
        } else {
            rng.range(-100_000, 100_000)
        }),
        Kind::Bool => Value::Bool(rng.chance(0.5)),
    }
}

/// One statement of a transaction. Column values are `(index into the columns, value)`.
#[derive(Clone, Debug)]
pub enum Op {
    Insert {
        key: i64,
        row: Vec<(usize, Value)>,
    },
    Update {
        key: i64,
        set: Vec<(usize, Value)>,
        shape: &'static str,
    },
    /// `UPDATE … SET id = to [, set…] WHERE id = from`.
    ChangeKey {
        from: i64,
        to: i64,
        set: Vec<(usize, Value)>,
    },
    Delete {
        key: i64,
    },
    Truncate,
    /// `ALTER TABLE … ADD COLUMN` of `columns[index]`.
    AddColumn {
        index: usize,
    },
}

impl Op {
    pub fn touches(&self, key: i64) -> bool {
        match self {
            Op::Insert { key: k, .. } | Op::Update { key: k, .. } | Op::Delete { key: k } => *k == key,
            Op::ChangeKey { from, to, .. } => *from == key || *to == key,
            Op::Truncate | Op::AddColumn { .. } => true,
        }
    }

    pub fn describe(&self, columns: &[Column]) -> String {
        let cells = |set: &[(usize, Value)]| {
            set.iter().map(|(c, v)| format!("{}={}", columns[*c].name, v.brief())).collect::<Vec<_>>().join(", ")
        };
        match self {
            Op::Insert { key, row } => format!("INSERT id={key} {}", cells(row)),
            Op::Update { key, set, shape } => format!("UPDATE id={key} ({shape}) SET {}", cells(set)),
            Op::ChangeKey { from, to, set } if set.is_empty() => {
                format!("UPDATE id={from} SET id={to} (key change, nothing else set)")
            }
            Op::ChangeKey { from, to, set } => format!("UPDATE id={from} SET id={to}, {}", cells(set)),
            Op::Delete { key } => format!("DELETE id={key}"),
            Op::Truncate => "TRUNCATE".into(),
            Op::AddColumn { index } => format!("ADD COLUMN {} {}", columns[*index].name, columns[*index].sql_type),
        }
    }
}

/// A source transaction: its statements and what shape it was generated as.
#[derive(Clone, Debug)]
pub struct Txn {
    pub ops: Vec<Op>,
    pub shape: &'static str,
}

/// What the driver does next: commit a transaction at the source, or wait.
#[derive(Clone, Debug)]
pub enum Step {
    Txn(Txn),
    Idle { millis: u64 },
}

/// Generator options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Primary-key changes (single, chains, swaps). On by default; off isolates the rest.
    pub key_changes: bool,
    /// TRUNCATE and ALTER TABLE may only stand alone in their transaction (MySQL: they commit
    /// implicitly).
    pub ddl_alone: bool,
}

/// Keys 1..=KEYS; negative keys are the temporaries of swaps, 0 the driver's sentinel row.
pub const KEYS: i64 = 400;
/// Keys most operations pick from, so one key sees many operations.
const HOT: i64 = 40;

/// The generator: which keys exist, whether their `big` value is out of line, which columns
/// exist. Deterministic in its seed.
pub struct Generator {
    pub rng: Rng,
    pub columns: Vec<Column>,
    /// Columns the table has now (the rest are added later).
    pub active: usize,
    live: BTreeMap<i64, bool>,
    dead: BTreeSet<i64>,
    options: Options,
}

impl Generator {
    /// `columns[0]` is the key; `columns[active..]` are added by ADD COLUMN as the run goes.
    pub fn new(seed: u64, columns: Vec<Column>, active: usize, options: Options) -> Self {
        Generator { rng: Rng::new(seed), columns, active, live: BTreeMap::new(), dead: BTreeSet::new(), options }
    }

    fn big_index(&self) -> Option<usize> {
        self.columns.iter().position(|c| matches!(c.kind, Kind::Big))
    }

    fn is_large(&self, row: &[(usize, Value)]) -> Option<bool> {
        let big = self.big_index()?;
        row.iter().find(|(c, _)| *c == big).map(|(_, v)| matches!(v, Value::Text(s) if s.len() > 2_000))
    }

    fn pick_key(&mut self, from_live: bool) -> Option<i64> {
        let pool: Vec<i64> = if from_live {
            self.live.keys().copied().collect()
        } else if !self.dead.is_empty() && self.rng.chance(0.5) {
            self.dead.iter().copied().collect()
        } else {
            (1..=KEYS).filter(|k| !self.live.contains_key(k)).collect()
        };
        if pool.is_empty() {
            return None;
        }
        let hot: Vec<i64> = pool.iter().copied().filter(|k| *k <= HOT).collect();
        if !hot.is_empty() && self.rng.chance(0.6) {
            return Some(*self.rng.pick(&hot));
        }
        Some(*self.rng.pick(&pool))
    }

    fn row(&mut self) -> Vec<(usize, Value)> {
        (1..self.active).map(|c| (c, value(&mut self.rng, self.columns[c].kind))).collect()
    }

    fn insert(&mut self, key: i64) -> Op {
        let row = self.row();
        let large = self.is_large(&row).unwrap_or(false);
        self.live.insert(key, large);
        self.dead.remove(&key);
        Op::Insert { key, row }
    }

    fn change_key(&mut self, from: i64, to: i64, set: Vec<(usize, Value)>) -> Op {
        let large = self.live.remove(&from).unwrap_or(false);
        let large = self.is_large(&set).unwrap_or(large);
        self.live.insert(to, large);
        self.dead.remove(&to);
        if from > 0 {
            self.dead.insert(from);
        }
        Op::ChangeKey { from, to, set }
    }

    /// Columns other than the key, and other than the out-of-line ones (`big`, bytes, JSON)
    /// when `small_only`.
    fn non_key_columns(&self, small_only: bool) -> Vec<usize> {
        (1..self.active)
            .filter(|c| !small_only || !matches!(self.columns[*c].kind, Kind::Big | Kind::Bytes | Kind::Json))
            .collect()
    }

    /// One statement on the current keys; None when there is nothing it could act on.
    fn op(&mut self) -> Option<Op> {
        let weights: [(u32, u32); 8] = [
            (0, 18),                                            // insert a new key
            (1, 8),                                             // re-insert a deleted key
            (2, 14),                                            // update one column
            (3, 8),                                             // update every column
            (4, 14),                                            // update small columns only (TOAST unchanged)
            (5, if self.options.key_changes { 12 } else { 0 }), // key change
            (6, 12),                                            // delete
            (7, 4),                                             // update a row to all NULLs
        ];
        let total: u32 = weights.iter().map(|w| w.1).sum();
        let mut roll = self.rng.below(total as usize) as u32;
        let choice = weights
            .iter()
            .find(|(_, w)| {
                if roll < *w {
                    true
                } else {
                    roll -= w;
                    false
                }
            })
            .map_or(0, |w| w.0);
        match choice {
            0 => {
                let key = self.pick_key(false)?;
                Some(self.insert(key))
            }
            1 => {
                let dead: Vec<i64> = self.dead.iter().copied().collect();
                if dead.is_empty() {
                    return None;
                }
                let key = *self.rng.pick(&dead);
                Some(self.insert(key))
            }
            2 => {
                let key = self.pick_key(true)?;
                let cols = self.non_key_columns(false);
                let c = *self.rng.pick(&cols);
                let v = value(&mut self.rng, self.columns[c].kind);
                let set = vec![(c, v)];
                if let Some(large) = self.is_large(&set) {
                    self.live.insert(key, large);
                }
                Some(Op::Update { key, set, shape: "one column" })
            }
            3 => {
                let key = self.pick_key(true)?;
                let set = self.row();
                self.live.insert(key, self.is_large(&set).unwrap_or(false));
                Some(Op::Update { key, set, shape: "every column" })
            }
            4 => {
                // prefer rows whose big value is out of line: the TOAST-unchanged shape
                let large: Vec<i64> = self.live.iter().filter(|(_, l)| **l).map(|(k, _)| *k).collect();
                let key = if !large.is_empty() && self.rng.chance(0.8) {
                    *self.rng.pick(&large)
                } else {
                    self.pick_key(true)?
                };
                let cols = self.non_key_columns(true);
                let n = 1 + self.rng.below(cols.len());
                let set = (0..n)
                    .map(|_| *self.rng.pick(&cols))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|c| (c, value(&mut self.rng, self.columns[c].kind)))
                    .collect();
                Some(Op::Update { key, set, shape: "small columns, big ones unchanged" })
            }
            5 => {
                let from = self.pick_key(true)?;
                let to = self.pick_key(false)?;
                let set = if self.rng.chance(0.6) {
                    Vec::new()
                } else {
                    let cols = self.non_key_columns(true);
                    let c = *self.rng.pick(&cols);
                    vec![(c, value(&mut self.rng, self.columns[c].kind))]
                };
                Some(self.change_key(from, to, set))
            }
            6 => {
                let key = self.pick_key(true)?;
                self.live.remove(&key);
                self.dead.insert(key);
                Some(Op::Delete { key })
            }
            _ => {
                let key = self.pick_key(true)?;
                let set: Vec<(usize, Value)> =
                    self.non_key_columns(false).into_iter().map(|c| (c, Value::Null)).collect();
                self.live.insert(key, false);
                Some(Op::Update { key, set, shape: "every column to NULL" })
            }
        }
    }

    fn ops(&mut self, n: usize) -> Vec<Op> {
        (0..n * 3).filter_map(|_| self.op()).take(n).collect()
    }

    /// `a → b → c` in one transaction (b and c free).
    fn chain(&mut self) -> Option<Txn> {
        let a = self.pick_key(true)?;
        let b = self.pick_key(false)?;
        let first = self.change_key(a, b, Vec::new());
        let c = self.pick_key(false)?;
        let second = self.change_key(b, c, Vec::new());
        Some(Txn { ops: vec![first, second], shape: "key chain" })
    }

    /// Two rows swap keys in one transaction, through a temporary negative key.
    fn swap(&mut self) -> Option<Txn> {
        let a = self.pick_key(true)?;
        let b = self.pick_key(true).filter(|b| *b != a)?;
        let ops = vec![
            self.change_key(a, -a, Vec::new()),
            self.change_key(b, a, Vec::new()),
            self.change_key(-a, b, Vec::new()),
        ];
        Some(Txn { ops, shape: "key swap" })
    }

    /// One transaction of a round.
    pub fn txn(&mut self) -> Txn {
        let roll = self.rng.below(100);
        if self.options.key_changes
            && roll < 6
            && let Some(t) = self.chain()
        {
            return t;
        }
        if self.options.key_changes
            && (6..12).contains(&roll)
            && let Some(t) = self.swap()
        {
            return t;
        }
        if (12..20).contains(&roll) {
            let n = self.rng.range(40, 160) as usize;
            return Txn { ops: self.ops(n), shape: "large" };
        }
        let n = 1 + self.rng.below(6);
        Txn { ops: self.ops(n), shape: "small" }
    }

    /// Rows for the table before the task starts.
    pub fn initial(&mut self, rows: usize) -> Vec<Txn> {
        let mut keys: Vec<i64> = (1..=KEYS).collect();
        let mut txns = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..rows {
            let key = keys.swap_remove(self.rng.below(keys.len()));
            ops.push(self.insert(key));
            if ops.len() == 50 {
                txns.push(Txn { ops: std::mem::take(&mut ops), shape: "initial rows" });
            }
        }
        if !ops.is_empty() {
            txns.push(Txn { ops, shape: "initial rows" });
        }
        txns
    }

    /// TRUNCATE, then (in the same transaction unless DDL stands alone) a few inserts.
    fn truncate(&mut self) -> Vec<Txn> {
        self.dead.extend(self.live.keys().copied());
        self.live.clear();
        let n = self.rng.range(1, 8) as usize;
        let mut inserts = Vec::new();
        for _ in 0..n {
            if let Some(key) = self.pick_key(false) {
                inserts.push(self.insert(key));
            }
        }
        if self.options.ddl_alone {
            vec![
                Txn { ops: vec![Op::Truncate], shape: "truncate" },
                Txn { ops: inserts, shape: "inserts after truncate" },
            ]
        } else {
            let mut ops = vec![Op::Truncate];
            ops.extend(inserts);
            vec![Txn { ops, shape: "truncate and inserts" }]
        }
    }

    /// ADD COLUMN of the next inactive column, then updates that set it.
    fn add_column(&mut self) -> Vec<Txn> {
        let index = self.active;
        self.active += 1;
        let mut updates = Vec::new();
        for _ in 0..self.rng.range(1, 6) {
            if let Some(key) = self.pick_key(true) {
                updates.push(Op::Update {
                    key,
                    set: vec![(index, value(&mut self.rng, self.columns[index].kind))],
                    shape: "the added column",
                });
            }
        }
        if updates.is_empty() {
            let key = self.pick_key(false).unwrap_or(1);
            updates.push(self.insert(key));
        }
        if self.options.ddl_alone {
            vec![
                Txn { ops: vec![Op::AddColumn { index }], shape: "add column" },
                Txn { ops: updates, shape: "set the added column" },
            ]
        } else {
            let mut ops = vec![Op::AddColumn { index }];
            ops.extend(updates);
            vec![Txn { ops, shape: "add column and set it" }]
        }
    }

    /// The steps of one round: transactions (some large), sometimes a TRUNCATE, the ADD COLUMN
    /// when `add_column`, and idle gaps. Generated in the order they run, so each statement
    /// sees the keys the ones before it left.
    pub fn round(&mut self, add_column: bool) -> Vec<Step> {
        let n = self.rng.range(8, 24) as usize;
        let truncate_at = self.rng.chance(0.15).then(|| self.rng.below(n + 1));
        let add_at = (add_column && self.active < self.columns.len()).then(|| self.rng.below(n + 1));
        let mut steps = Vec::new();
        for i in 0..=n {
            if truncate_at == Some(i) {
                steps.extend(self.truncate().into_iter().map(Step::Txn));
            }
            if add_at == Some(i) {
                steps.extend(self.add_column().into_iter().map(Step::Txn));
            }
            if i < n {
                steps.push(Step::Txn(self.txn()));
            }
        }
        for _ in 0..self.rng.below(3) {
            let at = self.rng.below(steps.len() + 1);
            let millis =
                if self.rng.chance(0.3) { self.rng.range(4_000, 8_000) } else { self.rng.range(300, 2_500) } as u64;
            steps.insert(at, Step::Idle { millis });
        }
        steps
    }
}

/// Where a transaction was applied: `round` (0 for the rows before the task started) and its
/// index in that round.
#[derive(Clone, Debug)]
pub struct Applied {
    pub round: usize,
    pub index: usize,
    pub txn: Txn,
}

/// Every transaction applied at the source, in commit order.
#[derive(Default)]
pub struct History(pub Vec<Applied>);

impl History {
    /// Every operation that touched `key` or a key its row had before (followed back through
    /// key changes), in order, with its transaction (shown whole when it is short).
    pub fn of_key(&self, key: i64, columns: &[Column]) -> String {
        let mut tracked = BTreeSet::from([key]);
        let mut picked: Vec<(usize, Vec<usize>)> = Vec::new();
        for (t, a) in self.0.iter().enumerate().rev() {
            let mut ops = Vec::new();
            for (i, op) in a.txn.ops.iter().enumerate().rev() {
                if tracked.iter().any(|k| op.touches(*k)) {
                    ops.push(i);
                    if let Op::ChangeKey { from, to, .. } = op
                        && tracked.contains(to)
                    {
                        tracked.insert(*from);
                    }
                }
            }
            if !ops.is_empty() {
                ops.reverse();
                if a.txn.ops.len() <= 6 {
                    // a short transaction is shown whole: a swap's three statements belong together
                    ops = (0..a.txn.ops.len()).collect();
                }
                picked.push((t, ops));
            }
        }
        let mut out = String::new();
        for (t, ops) in picked.into_iter().rev() {
            let a = &self.0[t];
            let round = if a.round == 0 { "before start".to_string() } else { format!("round {}", a.round) };
            let _ = writeln!(
                out,
                "    BEGIN  -- {round}, transaction {} ({}, {} statements)",
                a.index,
                a.txn.shape,
                a.txn.ops.len()
            );
            for i in ops {
                let _ = writeln!(out, "      #{i}: {}", a.txn.ops[i].describe(columns));
            }
            let _ = writeln!(out, "    COMMIT");
        }
        out
    }
}
