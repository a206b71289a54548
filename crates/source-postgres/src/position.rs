//! The PostgreSQL position: an LSN, plus snapshot progress while the initial copy runs.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rtsync_core::{Position, SyncError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A write-ahead-log position, displayed and parsed as PostgreSQL does: `16/B374D848`
/// (high and low 32 bits in upper-case hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = SyncError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SyncError::config(format!("{s:?} is not a PostgreSQL LSN (expected e.g. 16/B374D848)"));
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: SyncError| serde::de::Error::custom(e.context().to_string()))
    }
}

impl From<pgwire_replication::Lsn> for Lsn {
    fn from(lsn: pgwire_replication::Lsn) -> Self {
        Lsn(lsn.as_u64())
    }
}

impl From<Lsn> for pgwire_replication::Lsn {
    fn from(lsn: Lsn) -> Self {
        pgwire_replication::Lsn::from_u64(lsn.0)
    }
}

/// Where a PostgreSQL task stands.
///
/// * `Snapshot`: the initial copy is running. Every row whose key is at or before `last_key`
///   (in key order) has been emitted; `rows` counts the rows emitted by this snapshot so far
///   (it orders positions within the snapshot, and tells a keyless table's resume that rows
///   were already written). Streaming will start at `slot_lsn`, the replication slot's
///   consistent point.
/// * `Streaming`: every transaction whose commit record starts before `lsn` has been emitted,
///   and nothing after it. `lsn` is the end LSN of the last emitted transaction (or the slot's
///   consistent point right after the snapshot). Restarting the slot at `lsn` makes
///   PostgreSQL skip exactly those transactions.
///
/// Displayed as `16/B374D848` when streaming, and as
/// `snapshot 16/B374D848 rows=1000 key=["42"]` during the snapshot (the key as a JSON array
/// of the key columns' text values; `key=null` before the first row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum PgPosition {
    Snapshot { slot_lsn: Lsn, rows: u64, last_key: Option<Vec<String>> },
    Streaming { lsn: Lsn },
}

impl PgPosition {
    /// The LSN this position is anchored at: the slot's consistent point during the snapshot,
    /// the last emitted commit's end while streaming.
    pub fn lsn(&self) -> Lsn {
        match self {
            PgPosition::Snapshot { slot_lsn, .. } => *slot_lsn,
            PgPosition::Streaming { lsn } => *lsn,
        }
    }

    pub fn is_snapshot(&self) -> bool {
        matches!(self, PgPosition::Snapshot { .. })
    }

    /// Total order: by anchor LSN; at the same LSN a snapshot comes before the stream that
    /// follows it; within one snapshot, by rows emitted. A re-snapshot after a lost slot
    /// anchors at the new slot's (later) LSN, so it orders after the old stream.
    fn rank(&self) -> (Lsn, u8, u64) {
        match self {
            PgPosition::Snapshot { slot_lsn, rows, .. } => (*slot_lsn, 0, *rows),
            PgPosition::Streaming { lsn } => (*lsn, 1, 0),
        }
    }
}

impl PartialOrd for PgPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.rank().cmp(&other.rank()))
    }
}

impl Position for PgPosition {
    fn covers(&self, other: &Self) -> bool {
        self.rank() >= other.rank()
    }

    fn advance(&mut self, later: &Self) {
        if later.rank() > self.rank() {
            *self = later.clone();
        }
    }
}

impl fmt::Display for PgPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgPosition::Streaming { lsn } => write!(f, "{lsn}"),
            PgPosition::Snapshot { slot_lsn, rows, last_key } => {
                let key = serde_json::to_string(last_key).map_err(|_| fmt::Error)?;
                write!(f, "snapshot {slot_lsn} rows={rows} key={key}")
            }
        }
    }
}

impl FromStr for PgPosition {
    type Err = SyncError;

    /// Parses `16/B374D848` or `snapshot 16/B374D848 rows=1000 key=["42"]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some(rest) = s.strip_prefix("snapshot ") else {
            return Ok(PgPosition::Streaming { lsn: s.parse()? });
        };
        let bad = || {
            SyncError::config(format!(
                "{s:?} is not a PostgreSQL position (expected 16/B374D848 or snapshot 16/B374D848 rows=N key=[…])"
            ))
        };
        let (lsn, rest) = rest.trim_start().split_once(' ').ok_or_else(bad)?;
        let rest = rest.trim_start().strip_prefix("rows=").ok_or_else(bad)?;
        let (rows, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let key = rest.trim_start().strip_prefix("key=").ok_or_else(bad)?;
        Ok(PgPosition::Snapshot {
            slot_lsn: lsn.parse()?,
            rows: rows.parse().map_err(|_| bad())?,
            last_key: serde_json::from_str(key).map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lsn_displays_like_postgres() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!("0/1".parse::<Lsn>().unwrap(), Lsn(1));
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
        assert!("1/100000000".parse::<Lsn>().is_err());
    }

    #[test]
    fn positions_round_trip_through_display_and_serde() {
        let positions = [
            PgPosition::Streaming { lsn: Lsn(0x16_B374_D848) },
            PgPosition::Snapshot { slot_lsn: Lsn(0x1_0000_0010), rows: 0, last_key: None },
            PgPosition::Snapshot {
                slot_lsn: Lsn(7),
                rows: 1000,
                last_key: Some(vec!["42".into(), "a b \"c\" key=x rows=3".into()]),
            },
        ];
        for p in positions {
            let text = p.to_string();
            assert_eq!(text.parse::<PgPosition>().unwrap(), p, "{text}");
            let json = serde_json::to_value(&p).unwrap();
            assert_eq!(serde_json::from_value::<PgPosition>(json).unwrap(), p);
        }
        assert_eq!(PgPosition::Streaming { lsn: Lsn(0x16_B374_D848) }.to_string(), "16/B374D848");
        let json = serde_json::to_string(&PgPosition::Streaming { lsn: Lsn(0x10) }).unwrap();
        assert_eq!(json, r#"{"phase":"streaming","lsn":"0/10"}"#);
        assert!("snapshot 0/1 rows=x key=null".parse::<PgPosition>().is_err());
        assert!("snapshot 0/1".parse::<PgPosition>().is_err());
    }

    #[test]
    fn never_moves_back() {
        let snap = |rows| PgPosition::Snapshot { slot_lsn: Lsn(100), rows, last_key: Some(vec![rows.to_string()]) };
        let mut pos = snap(10);
        pos.advance(&snap(5));
        assert_eq!(pos, snap(10));
        pos.advance(&snap(20));
        assert_eq!(pos, snap(20));
        // The stream at the slot's consistent point follows the whole snapshot.
        let stream = PgPosition::Streaming { lsn: Lsn(100) };
        assert!(stream.covers(&snap(1_000_000)));
        pos.advance(&stream);
        assert_eq!(pos, stream);
        pos.advance(&snap(30));
        assert_eq!(pos, stream);
        pos.advance(&PgPosition::Streaming { lsn: Lsn(90) });
        assert_eq!(pos, stream);
        // A re-snapshot on a new slot anchors later than the old stream.
        let resnap = PgPosition::Snapshot { slot_lsn: Lsn(500), rows: 0, last_key: None };
        assert!(resnap.covers(&stream));
        pos.advance(&resnap);
        assert_eq!(pos, resnap);
        assert!(!stream.covers(&resnap));
    }
}
