//! GTID sets of both flavours.
//!
//! * MySQL: `uuid:1-5:7-9[:tag:1-3],uuid2:1-10` — sets of transaction numbers per source uuid
//!   (and, from 8.4, per tag). A transaction is covered when its number is in the set.
//! * MariaDB: `domain-server-seq,…` — the last transaction per replication domain. Within a
//!   domain sequence numbers only grow, so the list is a position, not a set.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rtsync_core::SyncError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// MySQL GTID set: for each `uuid` (lowercase, optionally `uuid:tag`), sorted disjoint
/// half-open intervals `[start, end)` of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MySqlGtidSet {
    sets: BTreeMap<String, Vec<(u64, u64)>>,
}

impl MySqlGtidSet {
    pub fn is_empty(&self) -> bool {
        self.sets.values().all(Vec::is_empty)
    }

    /// Adds transaction `gno` of `source` (`uuid` or `uuid:tag`).
    pub fn add(&mut self, source: &str, gno: u64) {
        self.add_interval(source, gno, gno.saturating_add(1));
    }

    fn add_interval(&mut self, source: &str, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let intervals = self.sets.entry(source.to_ascii_lowercase()).or_default();
        intervals.push((start, end));
        normalize(intervals);
    }

    /// Every transaction of `other` is in `self`.
    pub fn contains(&self, other: &MySqlGtidSet) -> bool {
        other.sets.iter().all(|(source, theirs)| {
            let mine = self.sets.get(source).map(Vec::as_slice).unwrap_or(&[]);
            theirs.iter().all(|&(s, e)| mine.iter().any(|&(ms, me)| ms <= s && e <= me))
        })
    }

    pub fn union(&mut self, other: &MySqlGtidSet) {
        for (source, intervals) in &other.sets {
            for &(s, e) in intervals {
                self.add_interval(source, s, e);
            }
        }
    }

    /// `(uuid bytes, tag, intervals)` for a COM_BINLOG_DUMP_GTID request.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>, &[(u64, u64)])> {
        self.sets.iter().map(|(k, v)| match k.split_once(':') {
            Some((uuid, tag)) => (uuid, Some(tag), v.as_slice()),
            None => (k.as_str(), None, v.as_slice()),
        })
    }
}

fn normalize(intervals: &mut Vec<(u64, u64)>) {
    intervals.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
    for &(s, e) in intervals.iter() {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    *intervals = out;
}

/// A tag (None: untagged) and its intervals.
type TaggedIntervals<'a> = (Option<&'a str>, &'a [(u64, u64)]);

impl fmt::Display for MySqlGtidSet {
    /// MySQL's own text form: `uuid:1-5:7,uuid2:1-3`, tags as `uuid:1-5:tag:1-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_uuid: BTreeMap<&str, Vec<TaggedIntervals<'_>>> = BTreeMap::new();
        for (uuid, tag, intervals) in self.iter() {
            if !intervals.is_empty() {
                by_uuid.entry(uuid).or_default().push((tag, intervals));
            }
        }
        let mut first = true;
        for (uuid, groups) in by_uuid {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(uuid)?;
            for (tag, intervals) in groups {
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                for &(s, e) in intervals {
                    if e == s + 1 {
                        write!(f, ":{s}")?;
                    } else {
                        write!(f, ":{s}-{}", e - 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MySqlGtidSet {
    type Err = SyncError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = MySqlGtidSet::default();
        // SHOW MASTER STATUS wraps long sets over lines.
        for part in s.split(',').map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let mut items = part.split(':').map(str::trim);
            let uuid = items.next().unwrap_or_default();
            if !is_uuid(uuid) {
                return Err(SyncError::config(format!("GTID set: {uuid:?} is not a server uuid (in {part:?})")));
            }
            let mut source = uuid.to_ascii_lowercase();
            for item in items {
                if item.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    source = format!("{}:{}", uuid.to_ascii_lowercase(), item.to_ascii_lowercase());
                    continue;
                }
                let (start, end) = match item.split_once('-') {
                    Some((a, b)) => (parse_u64(a, part)?, parse_u64(b, part)?),
                    None => {
                        let n = parse_u64(item, part)?;
                        (n, n)
                    }
                };
                if start == 0 || end < start {
                    return Err(SyncError::config(format!("GTID set: bad interval {item:?} in {part:?}")));
                }
                set.add_interval(&source, start, end + 1);
            }
        }
        Ok(set)
    }
}

fn parse_u64(s: &str, context: &str) -> Result<u64, SyncError> {
    s.trim().parse().map_err(|_| SyncError::config(format!("GTID set: {s:?} is not a number (in {context:?})")))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Parses a uuid text into its 16 bytes.
pub(crate) fn uuid_bytes(uuid: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = uuid.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Formats 16 uuid bytes as MySQL prints them.
pub(crate) fn uuid_text(bytes: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// MariaDB GTID position: the last GTID per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaGtidList {
    domains: BTreeMap<u32, (u32, u64)>,
}

impl MariaGtidList {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Records `gtid` as applied; a lower sequence number in the same domain never wins.
    pub fn add(&mut self, gtid: MariaGtid) {
        let slot = self.domains.entry(gtid.domain).or_insert((gtid.server, gtid.seq));
        if slot.1 < gtid.seq {
            *slot = (gtid.server, gtid.seq);
        }
    }

    pub fn contains(&self, other: &MariaGtidList) -> bool {
        other.domains.iter().all(|(d, (_, seq))| self.domains.get(d).is_some_and(|(_, mine)| mine >= seq))
    }

    pub fn union(&mut self, other: &MariaGtidList) {
        for (&domain, &(server, seq)) in &other.domains {
            self.add(MariaGtid { domain, server, seq });
        }
    }

    pub fn get(&self, domain: u32) -> Option<MariaGtid> {
        self.domains.get(&domain).map(|&(server, seq)| MariaGtid { domain, server, seq })
    }
}

impl fmt::Display for MariaGtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (d, (s, n)) in &self.domains {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{d}-{s}-{n}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaGtidList {
    type Err = SyncError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = MariaGtidList::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let nums: Vec<&str> = part.split('-').collect();
            let [d, srv, n] = nums.as_slice() else {
                return Err(SyncError::config(format!(
                    "MariaDB GTID: {part:?} is not DOMAIN-SERVER-SEQ (e.g. 0-1-42)"
                )));
            };
            let bad = || SyncError::config(format!("MariaDB GTID: {part:?} is not DOMAIN-SERVER-SEQ (e.g. 0-1-42)"));
            let gtid = MariaGtid {
                domain: d.parse().map_err(|_| bad())?,
                server: srv.parse().map_err(|_| bad())?,
                seq: n.parse().map_err(|_| bad())?,
            };
            if list.domains.contains_key(&gtid.domain) {
                return Err(SyncError::config(format!("MariaDB GTID: domain {} appears twice in {s:?}", gtid.domain)));
            }
            list.add(gtid);
        }
        Ok(list)
    }
}

/// The GTIDs a position covers, in the flavour of the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Gtids {
    /// The server logs no GTIDs (MySQL with gtid_mode=OFF), or none are known yet.
    #[default]
    None,
    MySql(MySqlGtidSet),
    MariaDb(MariaGtidList),
}

impl Gtids {
    pub fn is_empty(&self) -> bool {
        match self {
            Gtids::None => true,
            Gtids::MySql(s) => s.is_empty(),
            Gtids::MariaDb(l) => l.is_empty(),
        }
    }

    /// Some(true/false) when both name GTIDs of the same flavour, None when they cannot be compared.
    pub fn contains(&self, other: &Gtids) -> Option<bool> {
        match (self, other) {
            (Gtids::MySql(a), Gtids::MySql(b)) => Some(a.contains(b)),
            (Gtids::MariaDb(a), Gtids::MariaDb(b)) => Some(a.contains(b)),
            _ => None,
        }
    }

    pub fn union(&mut self, other: &Gtids) {
        match (&mut *self, other) {
            (_, Gtids::None) => {}
            (Gtids::None, o) => *self = o.clone(),
            (Gtids::MySql(a), Gtids::MySql(b)) => a.union(b),
            (Gtids::MariaDb(a), Gtids::MariaDb(b)) => a.union(b),
            // Flavours never mix within one task; keep what we have.
            _ => {}
        }
    }
}

impl fmt::Display for Gtids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtids::None => Ok(()),
            Gtids::MySql(s) => s.fmt(f),
            Gtids::MariaDb(l) => l.fmt(f),
        }
    }
}

impl FromStr for Gtids {
    type Err = SyncError;

    /// MySQL sets contain `:`, MariaDB lists never do; empty is [`Gtids::None`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            Ok(Gtids::None)
        } else if s.contains(':') {
            Ok(Gtids::MySql(s.parse()?))
        } else {
            Ok(Gtids::MariaDb(s.parse()?))
        }
    }
}

impl Serialize for Gtids {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Gtids {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(|e: SyncError| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mysql_set_parses_merges_and_prints() {
        let set: MySqlGtidSet = format!("{}:1-5:7, {U2}:3,\n{U1}:6", U1.to_uppercase()).parse().unwrap();
        assert_eq!(set.to_string(), format!("{U1}:1-7,{U2}:3"));
        let mut other = set.clone();
        other.add(U2, 4);
        other.add(U2, 10);
        assert_eq!(other.to_string(), format!("{U1}:1-7,{U2}:3-4:10"));
        assert!(other.contains(&set));
        assert!(!set.contains(&other));
        assert_eq!(other.to_string().parse::<MySqlGtidSet>().unwrap(), other);
        assert!("nope:1-2".parse::<MySqlGtidSet>().is_err());
        assert!(format!("{U1}:5-2").parse::<MySqlGtidSet>().is_err());
        assert!(format!("{U1}:0").parse::<MySqlGtidSet>().is_err());
    }

    #[test]
    fn mysql_tagged_gtids_round_trip() {
        let text = format!("{U1}:1-5:blue:1-3");
        let set: MySqlGtidSet = text.parse().unwrap();
        assert_eq!(set.to_string(), text);
        let mut grown = set.clone();
        grown.add(&format!("{U1}:blue"), 4);
        assert_eq!(grown.to_string(), format!("{U1}:1-5:blue:1-4"));
        assert!(grown.contains(&set));
    }

    #[test]
    fn mariadb_list_keeps_the_highest_sequence_per_domain() {
        let mut list: MariaGtidList = "0-1-100, 2-5-7".parse().unwrap();
        list.add(MariaGtid { domain: 0, server: 2, seq: 99 });
        assert_eq!(list.to_string(), "0-1-100,2-5-7");
        list.add(MariaGtid { domain: 0, server: 2, seq: 101 });
        list.add(MariaGtid { domain: 1, server: 1, seq: 1 });
        assert_eq!(list.to_string(), "0-2-101,1-1-1,2-5-7");
        assert!(list.contains(&"0-1-100,2-5-7".parse().unwrap()));
        assert!(!list.contains(&"3-1-1".parse().unwrap()));
        assert!("0-1".parse::<MariaGtidList>().is_err());
        assert!("0-1-1,0-1-2".parse::<MariaGtidList>().is_err());
    }

    #[test]
    fn flavours_are_told_apart() {
        assert_eq!("".parse::<Gtids>().unwrap(), Gtids::None);
        assert!(matches!("0-1-5".parse::<Gtids>().unwrap(), Gtids::MariaDb(_)));
        assert!(matches!(format!("{U1}:1").parse::<Gtids>().unwrap(), Gtids::MySql(_)));
        let json = serde_json::to_string(&"0-1-5".parse::<Gtids>().unwrap()).unwrap();
        assert_eq!(json, "\"0-1-5\"");
        assert_eq!(serde_json::from_str::<Gtids>(&json).unwrap().to_string(), "0-1-5");
    }

    #[test]
    fn uuid_bytes_round_trip() {
        let b = uuid_bytes(U1).unwrap();
        assert_eq!(uuid_text(&b), U1);
    }
}
