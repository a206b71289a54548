//! Durations as users write them in specs and options: `500ms`, `30s`, `5m`, `1h`, `7d`.

use std::time::Duration;

use crate::SyncError;
use serde::{Deserialize, Deserializer, Serializer};

pub fn parse(text: &str) -> Result<Duration, SyncError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 =
        num.parse().map_err(|_| SyncError::config(format!("{text:?} is not a duration (e.g. 30s, 5m, 7d)")))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => return Err(SyncError::config(format!("{text:?}: unknown unit {other:?} (use ms, s, m, h or d)"))),
    };
    // `from_secs_f64` panics past u64::MAX seconds; such a duration is a typo anyway.
    Duration::try_from_secs_f64(secs).map_err(|_| SyncError::config(format!("{text:?} is not a valid duration")))
}

pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms > 0 && ms.is_multiple_of(86_400_000) => format!("{}d", ms / 86_400_000),
        ms if ms > 0 && ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        ms if ms > 0 && ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        ms if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Millis(u64),
    }
    match Raw::deserialize(d)? {
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
    }
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// The same for an optional duration.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse("soon").is_err());
        assert!(parse("3 weeks").is_err());
        assert!(parse("99999999999999999999d").is_err(), "past what a Duration holds");
        for text in ["0s", "250ms", "30s", "5m", "1h", "7d"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
