//! The Kafka position: the next offset to read, per partition of the task's topic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::{Int32Type, Int64Type};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::kafka::{OFFSET, PARTITION};
use rtsync_core::{Position, SyncError};
use serde::{Deserialize, Serialize};

/// Next offset to read per partition. `{0: 42}` means offsets 0..=41 of partition 0 are done.
/// Displayed as `0:42,1:17`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaOffsets {
    pub next: BTreeMap<i32, i64>,
}

impl KafkaOffsets {
    pub fn get(&self, partition: i32) -> Option<i64> {
        self.next.get(&partition).copied()
    }

    /// Records that `offset` of `partition` was read: the next one is `offset + 1`.
    pub fn record(&mut self, partition: i32, offset: i64) {
        let next = offset + 1;
        let slot = self.next.entry(partition).or_insert(next);
        if *slot < next {
            *slot = next;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }
}

impl Position for KafkaOffsets {
    fn covers(&self, other: &Self) -> bool {
        other.next.iter().all(|(p, o)| self.next.get(p).is_some_and(|mine| mine >= o))
    }

    fn advance(&mut self, later: &Self) {
        for (&p, &o) in &later.next {
            let slot = self.next.entry(p).or_insert(o);
            if *slot < o {
                *slot = o;
            }
        }
    }

    fn of_row(rows: &RecordBatch, row: usize) -> Option<Self> {
        let partitions = rows.column_by_name(PARTITION)?.as_primitive_opt::<Int32Type>()?;
        let offsets = rows.column_by_name(OFFSET)?.as_primitive_opt::<Int64Type>()?;
        if row >= rows.num_rows() || partitions.is_null(row) || offsets.is_null(row) {
            return None;
        }
        let mut pos = KafkaOffsets::default();
        pos.record(partitions.value(row), offsets.value(row));
        Some(pos)
    }
}

impl fmt::Display for KafkaOffsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (p, o) in &self.next {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{p}:{o}")?;
        }
        Ok(())
    }
}

impl FromStr for KafkaOffsets {
    type Err = SyncError;

    /// Parses `0:42,1:17` (whitespace allowed; an empty string is the empty position).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut next = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (p, o) = part.split_once(':').ok_or_else(|| {
                SyncError::config(format!("offsets: {part:?} is not PARTITION:OFFSET (e.g. 0:42,1:17)"))
            })?;
            let p: i32 =
                p.trim().parse().map_err(|_| SyncError::config(format!("offsets: partition {p:?} is not a number")))?;
            let o: i64 =
                o.trim().parse().map_err(|_| SyncError::config(format!("offsets: offset {o:?} is not a number")))?;
            if p < 0 || o < 0 {
                return Err(SyncError::config(format!("offsets: {part:?} must not be negative")));
            }
            next.insert(p, o);
        }
        Ok(KafkaOffsets { next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let pos: KafkaOffsets = "0:42, 2:7".parse().unwrap();
        assert_eq!(pos.get(0), Some(42));
        assert_eq!(pos.get(2), Some(7));
        assert_eq!(pos.to_string(), "0:42,2:7");
        assert_eq!(pos.to_string().parse::<KafkaOffsets>().unwrap(), pos);
        let json = serde_json::to_value(&pos).unwrap();
        assert_eq!(serde_json::from_value::<KafkaOffsets>(json).unwrap(), pos);
        assert!("0-1".parse::<KafkaOffsets>().is_err());
        assert!("x:1".parse::<KafkaOffsets>().is_err());
    }

    #[test]
    fn never_moves_back() {
        let mut pos: KafkaOffsets = "0:10,1:5".parse().unwrap();
        pos.advance(&"0:8,1:9,2:1".parse().unwrap());
        assert_eq!(pos.to_string(), "0:10,1:9,2:1");
        pos.record(0, 3);
        assert_eq!(pos.get(0), Some(10));
        assert!(pos.covers(&"0:10,1:9".parse().unwrap()));
        assert!(!pos.covers(&"0:11".parse().unwrap()));
        assert!(!pos.covers(&"3:1".parse().unwrap()));
    }
}
