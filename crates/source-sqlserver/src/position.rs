//! SQL Server log sequence numbers and the task's position.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rtsync_core::{Position, SyncError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A log sequence number as CDC stores it: `binary(10)`, compared byte by byte (the server
/// orders `__$start_lsn` that way). Displayed as SQL Server's tools print it, three hex groups
/// of 4, 4 and 2 bytes (`0000002A:00000F58:0003`: virtual log file, block, slot); also parsed
/// from the `0x…` hex literal (`0x0000002A00000F580003`) that `SELECT sys.fn_cdc_get_max_lsn()`
/// shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub [u8; 10]);

impl Lsn {
    pub const ZERO: Lsn = Lsn([0; 10]);

    /// From a `binary(10)` column value; None when it is not 10 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Lsn> {
        <[u8; 10]>::try_from(bytes).ok().map(Lsn)
    }

    pub fn as_bytes(&self) -> &[u8; 10] {
        &self.0
    }

    /// The next LSN in byte order, as `sys.fn_cdc_increment_lsn` computes it: the smallest LSN
    /// greater than `self`. Saturates at the all-ones LSN.
    pub fn increment(self) -> Lsn {
        let mut b = self.0;
        for i in (0..b.len()).rev() {
            if b[i] == u8::MAX {
                b[i] = 0;
            } else {
                b[i] += 1;
                return Lsn(b);
            }
        }
        Lsn([u8::MAX; 10])
    }

    /// The previous LSN in byte order (the greatest LSN below `self`). Saturates at zero.
    pub fn decrement(self) -> Lsn {
        let mut b = self.0;
        for i in (0..b.len()).rev() {
            if b[i] == 0 {
                b[i] = u8::MAX;
            } else {
                b[i] -= 1;
                return Lsn(b);
            }
        }
        Lsn::ZERO
    }

    /// The LSN whose last 8 bytes are `n` (simulators and tests).
    pub fn from_u64(n: u64) -> Lsn {
        let mut b = [0u8; 10];
        b[2..].copy_from_slice(&n.to_be_bytes());
        Lsn(b)
    }

    /// The `0x…` literal for SQL text.
    pub fn to_hex_literal(&self) -> String {
        let mut s = String::with_capacity(22);
        s.push_str("0x");
        for b in self.0 {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}:{:02X}{:02X}{:02X}{:02X}:{:02X}{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]
        )
    }
}

impl FromStr for Lsn {
    type Err = SyncError;

    /// Parses `0000002A:00000F58:0003` or `0x0000002A00000F580003`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            SyncError::config(format!(
                "{s:?} is not a SQL Server LSN (expected e.g. 0000002A:00000F58:0003 or 0x0000002A00000F580003)"
            ))
        };
        let t = s.trim();
        let hex: String = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            h.to_string()
        } else {
            let parts: Vec<&str> = t.split(':').collect();
            if parts.len() != 3 || parts[0].len() != 8 || parts[1].len() != 8 || parts[2].len() != 4 {
                return Err(bad());
            }
            parts.concat()
        };
        if hex.len() != 20 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 10];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Lsn(out))
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

/// Where a SQL Server task stands.
///
/// * `Snapshot`: the initial copy is running. Every row whose key is at or before `last_key`
///   (in key order) has been emitted; `rows` counts them. Streaming will read the changes
///   committed strictly after `lsn`, the LSN fixed in the snapshot's transaction.
/// * `Streaming`: every transaction whose commit LSN (`__$start_lsn`) is below `lsn` has been
///   emitted. Of the transaction AT `lsn`: all of it when `rows` is None, else its first `rows`
///   change rows in the canonical order (`__$start_lsn`, `__$command_id`, `__$seqval`,
///   `__$operation`), which a transaction larger than a batch is split at.
///
/// Displayed as `0000002A:00000F58:0003` (transaction done), `0000002A:00000F58:0003+12`
/// (12 rows of it done) and `snapshot 0000002A:00000F58:0003 rows=1000 key=["42"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum MssqlPosition {
    Snapshot { lsn: Lsn, rows: u64, last_key: Option<Vec<String>> },
    Streaming { lsn: Lsn, rows: Option<u64> },
}

impl MssqlPosition {
    pub fn lsn(&self) -> Lsn {
        match self {
            MssqlPosition::Snapshot { lsn, .. } | MssqlPosition::Streaming { lsn, .. } => *lsn,
        }
    }

    pub fn is_snapshot(&self) -> bool {
        matches!(self, MssqlPosition::Snapshot { .. })
    }

    /// Total order: by LSN; at one LSN the snapshot before the stream; within a snapshot by
    /// rows copied; within a transaction by rows emitted, the whole transaction last.
    fn rank(&self) -> (Lsn, u8, u64) {
        match self {
            MssqlPosition::Snapshot { lsn, rows, .. } => (*lsn, 0, *rows),
            MssqlPosition::Streaming { lsn, rows: Some(n) } => (*lsn, 1, *n),
            MssqlPosition::Streaming { lsn, rows: None } => (*lsn, 2, 0),
        }
    }
}

impl PartialOrd for MssqlPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.rank().cmp(&other.rank()))
    }
}

impl Position for MssqlPosition {
    fn covers(&self, other: &Self) -> bool {
        self.rank() >= other.rank()
    }

    fn advance(&mut self, later: &Self) {
        if later.rank() > self.rank() {
            *self = later.clone();
        }
    }
}

impl fmt::Display for MssqlPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MssqlPosition::Streaming { lsn, rows: None } => write!(f, "{lsn}"),
            MssqlPosition::Streaming { lsn, rows: Some(n) } => write!(f, "{lsn}+{n}"),
            MssqlPosition::Snapshot { lsn, rows, last_key } => {
                let key = serde_json::to_string(last_key).map_err(|_| fmt::Error)?;
                write!(f, "snapshot {lsn} rows={rows} key={key}")
            }
        }
    }
}

impl FromStr for MssqlPosition {
    type Err = SyncError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            SyncError::config(format!(
                "{s:?} is not a SQL Server position (expected 0000002A:00000F58:0003, 0000002A:00000F58:0003+N or snapshot 0000002A:00000F58:0003 rows=N key=[…])"
            ))
        };
        let Some(rest) = s.strip_prefix("snapshot ") else {
            return match s.split_once('+') {
                Some((lsn, n)) => {
                    Ok(MssqlPosition::Streaming { lsn: lsn.parse()?, rows: Some(n.parse().map_err(|_| bad())?) })
                }
                None => Ok(MssqlPosition::Streaming { lsn: s.parse()?, rows: None }),
            };
        };
        let (lsn, rest) = rest.trim_start().split_once(' ').ok_or_else(bad)?;
        let rest = rest.trim_start().strip_prefix("rows=").ok_or_else(bad)?;
        let (rows, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let key = rest.trim_start().strip_prefix("key=").ok_or_else(bad)?;
        Ok(MssqlPosition::Snapshot {
            lsn: lsn.parse()?,
            rows: rows.parse().map_err(|_| bad())?,
            last_key: serde_json::from_str(key).map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn lsn_displays_and_parses_like_sql_server() {
        let l = lsn("0x0000002A00000F580003");
        assert_eq!(l.0, [0, 0, 0, 0x2A, 0, 0, 0x0F, 0x58, 0, 3]);
        assert_eq!(l.to_string(), "0000002A:00000F58:0003");
        assert_eq!(lsn("0000002A:00000F58:0003"), l);
        assert_eq!(l.to_hex_literal(), "0x0000002A00000F580003");
        assert_eq!(lsn("0x0000002a00000f580003"), l);
        for bad in ["", "0x00", "2A:F58:3", "0000002A:00000F58:00030", "0x0000002A00000F58000G", "0000002A00000F580003"]
        {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
        assert_eq!(Lsn::from_bytes(&[1; 10]), Some(Lsn([1; 10])));
        assert_eq!(Lsn::from_bytes(&[1; 9]), None);
    }

    #[test]
    fn lsn_orders_byte_wise() {
        // The last byte is the least significant; the first the most.
        assert!(lsn("00000000:00000000:0100") > lsn("00000000:00000000:00FF"));
        assert!(lsn("00000001:00000000:0000") > lsn("00000000:FFFFFFFF:FFFF"));
        assert!(lsn("00000000:00000001:0000") > lsn("00000000:00000000:FFFF"));
        let mut v = [lsn("0000002A:00000F58:0003"), lsn("0000002A:00000F58:0002"), lsn("00000029:FFFFFFFF:FFFF")];
        v.sort();
        assert_eq!(v[0], lsn("00000029:FFFFFFFF:FFFF"));
        assert_eq!(v[2], lsn("0000002A:00000F58:0003"));
    }

    #[test]
    fn lsn_increments_with_carry() {
        assert_eq!(lsn("0000002A:00000F58:0003").increment(), lsn("0000002A:00000F58:0004"));
        assert_eq!(lsn("0000002A:00000F58:00FF").increment(), lsn("0000002A:00000F58:0100"));
        assert_eq!(lsn("0000002A:00000F58:FFFF").increment(), lsn("0000002A:00000F59:0000"));
        assert_eq!(lsn("0000002A:FFFFFFFF:FFFF").increment(), lsn("0000002B:00000000:0000"));
        assert_eq!(Lsn([0xFF; 10]).increment(), Lsn([0xFF; 10]));
        assert_eq!(Lsn::ZERO.increment(), lsn("00000000:00000000:0001"));
        let l = lsn("0000002A:00000F58:0003");
        assert!(l.increment() > l);
        assert_eq!(l.increment().decrement(), l);
        assert_eq!(lsn("0000002B:00000000:0000").decrement(), lsn("0000002A:FFFFFFFF:FFFF"));
        assert_eq!(Lsn::ZERO.decrement(), Lsn::ZERO);
        assert!(Lsn::from_u64(256) > Lsn::from_u64(255));
    }

    #[test]
    fn positions_round_trip_and_order() {
        let a = lsn("0000002A:00000F58:0003");
        let positions = [
            MssqlPosition::Streaming { lsn: a, rows: None },
            MssqlPosition::Streaming { lsn: a, rows: Some(12) },
            MssqlPosition::Snapshot { lsn: a, rows: 0, last_key: None },
            MssqlPosition::Snapshot { lsn: a, rows: 1000, last_key: Some(vec!["42".into(), "a b \"c\" key=x".into()]) },
        ];
        for p in &positions {
            let text = p.to_string();
            assert_eq!(&text.parse::<MssqlPosition>().unwrap(), p, "{text}");
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(&serde_json::from_value::<MssqlPosition>(json).unwrap(), p);
        }
        assert_eq!(positions[1].to_string(), "0000002A:00000F58:0003+12");
        let snap = MssqlPosition::Snapshot { lsn: a, rows: 5, last_key: None };
        let part = MssqlPosition::Streaming { lsn: a, rows: Some(3) };
        let whole = MssqlPosition::Streaming { lsn: a, rows: None };
        let next = MssqlPosition::Streaming { lsn: a.increment(), rows: Some(1) };
        assert!(part.covers(&snap) && whole.covers(&part) && next.covers(&whole));
        assert!(!snap.covers(&part) && !part.covers(&whole));
        let mut p = whole.clone();
        p.advance(&part);
        assert_eq!(p, whole, "a position never moves backward");
        p.advance(&next);
        assert_eq!(p, next);
    }
}
