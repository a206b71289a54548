//! The MySQL position: binlog file + offset, the GTIDs covered, and snapshot progress.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use mysql_async::Value;
use rtsync_core::{Position, SyncError};
use serde::{Deserialize, Serialize};

use crate::gtid::Gtids;

/// Where a MySQL task stands.
///
/// * `file`/`pos`: the binlog coordinates of the first event NOT yet covered: the end of the
///   last whole transaction (XID or COMMIT event). During a snapshot they are the binlog
///   position the snapshot is consistent with, where streaming will start.
/// * `gtids`: every transaction covered (MySQL GTID set or MariaDB domain-server-seq list);
///   used to resume after a fail-over, where file names differ.
/// * `snapshot`: `Some` while the initial copy is in progress: how many rows are copied and the
///   last primary key copied. `None` once streaming.
/// * `generation`: bumped when the table is copied again from scratch (a purged binlog with
///   `on_purged_binlog = "resnapshot"`), so the new snapshot's positions rank after everything
///   of the previous generation.
///
/// Displayed as `mariadb-bin.000003:1234;gtid=0-1-42;snapshot=1000:[{"int":17}]`
/// (`;gen=N` when N > 0); parsed back by [`FromStr`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MySqlPosition {
    pub file: String,
    pub pos: u64,
    #[serde(default, skip_serializing_if = "Gtids::is_empty")]
    pub gtids: Gtids,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How far the initial copy got: rows copied, and the primary key of the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    pub rows: u64,
    /// None until the first chunk is copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<KeyValue>>,
}

/// One primary-key value as the server returned it (binary protocol), so it can be bound
/// back as a parameter of the next chunk's query without loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValue {
    Null,
    Int(i64),
    Uint(u64),
    Float(f32),
    Double(f64),
    /// Valid UTF-8 text.
    Text(String),
    /// Other bytes, as lowercase hex.
    Hex(String),
    /// year, month, day, hour, minute, second, microsecond
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// negative, days, hours, minutes, seconds, microseconds
    Time(bool, u32, u8, u8, u8, u32),
}

impl From<&Value> for KeyValue {
    fn from(v: &Value) -> Self {
        match v {
            Value::NULL => KeyValue::Null,
            Value::Int(i) => KeyValue::Int(*i),
            Value::UInt(u) => KeyValue::Uint(*u),
            Value::Float(f) => KeyValue::Float(*f),
            Value::Double(d) => KeyValue::Double(*d),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => KeyValue::Text(s.to_owned()),
                Err(_) => KeyValue::Hex(b.iter().map(|x| format!("{x:02x}")).collect()),
            },
            Value::Date(y, mo, d, h, mi, s, us) => KeyValue::Date(*y, *mo, *d, *h, *mi, *s, *us),
            Value::Time(neg, d, h, mi, s, us) => KeyValue::Time(*neg, *d, *h, *mi, *s, *us),
        }
    }
}

impl KeyValue {
    pub fn to_value(&self) -> Result<Value, SyncError> {
        Ok(match self {
            KeyValue::Null => Value::NULL,
            KeyValue::Int(i) => Value::Int(*i),
            KeyValue::Uint(u) => Value::UInt(*u),
            KeyValue::Float(f) => Value::Float(*f),
            KeyValue::Double(d) => Value::Double(*d),
            KeyValue::Text(s) => Value::Bytes(s.as_bytes().to_vec()),
            KeyValue::Hex(h) => {
                if h.len() % 2 != 0 {
                    return Err(SyncError::config(format!("snapshot key: {h:?} is not hex")));
                }
                let bytes = (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| SyncError::config(format!("snapshot key: {h:?} is not hex")))?;
                Value::Bytes(bytes)
            }
            KeyValue::Date(y, mo, d, h, mi, s, us) => Value::Date(*y, *mo, *d, *h, *mi, *s, *us),
            KeyValue::Time(neg, d, h, mi, s, us) => Value::Time(*neg, *d, *h, *mi, *s, *us),
        })
    }
}

impl MySqlPosition {
    /// A streaming position (no snapshot in progress).
    pub fn new(file: impl Into<String>, pos: u64, gtids: Gtids) -> Self {
        Self { file: file.into(), pos, gtids, snapshot: None, generation: 0 }
    }

    pub fn is_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Orders two positions of one task, or None when they cannot be compared (different
    /// servers without GTIDs).
    fn order(&self, other: &Self) -> Option<Ordering> {
        match self.generation.cmp(&other.generation) {
            Ordering::Equal => {}
            o => return Some(o),
        }
        match (&self.snapshot, &other.snapshot) {
            (Some(a), Some(b)) => return Some(a.rows.cmp(&b.rows)),
            (Some(_), None) => return Some(Ordering::Less),
            (None, Some(_)) => return Some(Ordering::Greater),
            (None, None) => {}
        }
        if self.gtids != other.gtids
            && let (Some(a_has_b), Some(b_has_a)) =
                (self.gtids.contains(&other.gtids), other.gtids.contains(&self.gtids))
        {
            match (a_has_b, b_has_a) {
                (true, false) => return Some(Ordering::Greater),
                (false, true) => return Some(Ordering::Less),
                _ => {}
            }
        }
        compare_coordinates(&self.file, self.pos, &other.file, other.pos)
    }
}

/// Binlog file names are `basename.NNNNNN`: compare the sequence number, then the offset.
fn compare_coordinates(fa: &str, pa: u64, fb: &str, pb: u64) -> Option<Ordering> {
    if fa == fb {
        return Some(pa.cmp(&pb));
    }
    let split = |f: &str| f.rsplit_once('.').and_then(|(base, n)| n.parse::<u64>().ok().map(|n| (base.to_owned(), n)));
    match (split(fa), split(fb)) {
        (Some((ba, na)), Some((bb, nb))) if ba == bb => Some(na.cmp(&nb).then(pa.cmp(&pb))),
        _ => None,
    }
}

impl Position for MySqlPosition {
    fn covers(&self, other: &Self) -> bool {
        matches!(self.order(other), Some(Ordering::Greater | Ordering::Equal))
    }

    fn advance(&mut self, later: &Self) {
        match self.order(later) {
            Some(Ordering::Less) => {
                let mut gtids = self.gtids.clone();
                if later.generation == self.generation {
                    gtids.union(&later.gtids);
                } else {
                    gtids = later.gtids.clone();
                }
                *self = later.clone();
                self.gtids = gtids;
            }
            // Equal coordinates may still carry more GTIDs (never fewer).
            Some(Ordering::Equal) => self.gtids.union(&later.gtids),
            Some(Ordering::Greater) => {}
            // Not comparable by coordinates (a fail-over to another server without GTIDs):
            // the later batch is the truth of the stream we read.
            None => *self = later.clone(),
        }
    }
}

impl fmt::Display for MySqlPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if !self.gtids.is_empty() {
            write!(f, ";gtid={}", self.gtids)?;
        }
        if self.generation > 0 {
            write!(f, ";gen={}", self.generation)?;
        }
        if let Some(s) = &self.snapshot {
            write!(f, ";snapshot={}", s.rows)?;
            if let Some(key) = &s.last_key {
                let json = serde_json::to_string(key).map_err(|_| fmt::Error)?;
                write!(f, ":{json}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for MySqlPosition {
    type Err = SyncError;

    /// Parses `FILE:POS[;gtid=SET][;gen=N][;snapshot=ROWS[:KEY_JSON]]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            SyncError::config(format!(
                "MySQL position {s:?}: {why}; expected FILE:POS[;gtid=SET][;snapshot=ROWS[:KEY]], e.g. mysql-bin.000003:4;gtid=0-1-42"
            ))
        };
        // The snapshot key is JSON and may contain anything: it is always last.
        let (head, snapshot) = match s.find(";snapshot=") {
            Some(i) => (&s[..i], Some(&s[i + ";snapshot=".len()..])),
            None => (s, None),
        };
        let mut parts = head.split(';');
        let coords = parts.next().unwrap_or_default().trim();
        let (file, pos) = coords.rsplit_once(':').ok_or_else(|| bad("no FILE:POS"))?;
        if file.is_empty() {
            return Err(bad("empty file name"));
        }
        let pos: u64 = pos.trim().parse().map_err(|_| bad("POS is not a number"))?;
        let mut out = MySqlPosition::new(file, pos, Gtids::None);
        for part in parts {
            let (k, v) = part.split_once('=').ok_or_else(|| bad("a part is not KEY=VALUE"))?;
            match k.trim() {
                "gtid" => out.gtids = v.parse()?,
                "gen" => out.generation = v.trim().parse().map_err(|_| bad("gen is not a number"))?,
                other => return Err(bad(&format!("unknown part {other:?}"))),
            }
        }
        if let Some(snap) = snapshot {
            let (rows, key) = match snap.split_once(':') {
                Some((r, k)) => (r, Some(k)),
                None => (snap, None),
            };
            let rows: u64 = rows.trim().parse().map_err(|_| bad("snapshot ROWS is not a number"))?;
            let last_key = key
                .map(|k| {
                    serde_json::from_str::<Vec<KeyValue>>(k).map_err(|_| bad("snapshot KEY is not a JSON key list"))
                })
                .transpose()?;
            out.snapshot = Some(SnapshotProgress { rows, last_key });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> MySqlPosition {
        s.parse().unwrap()
    }

    #[test]
    fn display_and_parse_round_trip() {
        for text in [
            "mariadb-bin.000003:1234",
            "mariadb-bin.000003:1234;gtid=0-1-42,1-2-7",
            "mysql-bin.000010:4;gtid=3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7",
            "mysql-bin.000010:4;gen=2;snapshot=0",
            "mysql-bin.000010:4;gtid=0-1-1;snapshot=20000:[{\"int\":-5},{\"text\":\"a;b:c=d\"},{\"hex\":\"00ff\"},{\"date\":[2024,1,2,3,4,5,6]}]",
        ] {
            let pos = p(text);
            assert_eq!(pos.to_string(), text);
            let json = serde_json::to_value(&pos).unwrap();
            assert_eq!(serde_json::from_value::<MySqlPosition>(json).unwrap(), pos);
        }
        let pos = p("x.000001:4;snapshot=2:[{\"uint\":18446744073709551615}]");
        let key = pos.snapshot.unwrap().last_key.unwrap();
        assert_eq!(key[0].to_value().unwrap(), Value::UInt(u64::MAX));
        for bad in ["", "nofile", "f:x", ":4", "f:4;foo=1", "f:4;snapshot=x", "f:4;snapshot=1:{", "f:4;gtid=0-1"] {
            assert!(bad.parse::<MySqlPosition>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn ordering_follows_files_offsets_and_phases() {
        let a = p("bin.000009:900");
        let b = p("bin.000010:4");
        assert!(b.covers(&a) && !a.covers(&b));
        assert!(a.covers(&a));
        let snap = p("bin.000009:100;snapshot=50");
        let later_snap = p("bin.000009:100;snapshot=70");
        assert!(a.covers(&snap), "streaming covers the snapshot it started from");
        assert!(later_snap.covers(&snap) && !snap.covers(&later_snap));
        let resnap = p("bin.000020:4;gen=1;snapshot=0");
        assert!(resnap.covers(&b), "a new generation ranks after the old one");
    }

    #[test]
    fn advance_never_moves_back() {
        let mut pos = p("bin.000010:500;gtid=0-1-10");
        pos.advance(&p("bin.000010:400;gtid=0-1-9"));
        assert_eq!(pos.to_string(), "bin.000010:500;gtid=0-1-10");
        pos.advance(&p("bin.000011:4;gtid=0-1-10"));
        assert_eq!(pos.to_string(), "bin.000011:4;gtid=0-1-10");
        pos.advance(&p("bin.000011:4;snapshot=10"));
        assert_eq!(pos.to_string(), "bin.000011:4;gtid=0-1-10");
        let mut snap = p("bin.000001:4;snapshot=10");
        snap.advance(&p("bin.000001:4;snapshot=20"));
        snap.advance(&p("bin.000001:4;snapshot=15"));
        assert_eq!(snap.snapshot.as_ref().unwrap().rows, 20);
        snap.advance(&p("bin.000001:4"));
        assert!(!snap.is_snapshot());
    }

    #[test]
    fn gtids_order_positions_across_servers() {
        // After a fail-over the new primary has other file names; GTIDs still order.
        let old = p("a-bin.000100:900;gtid=0-1-100");
        let new = p("b-bin.000002:300;gtid=0-2-101");
        assert!(new.covers(&old) && !old.covers(&new));
        let mut pos = old.clone();
        pos.advance(&new);
        assert_eq!(pos, new);
    }
}
