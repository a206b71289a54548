//! Durations as users write them in specs: `500ms`, `1s`, `2m`, `1h`, `7d` (the core's one
//! parser, with serde helpers for `#[serde(with = "crate::duration")]`).

pub use rtsync_core::duration::{deserialize, format, parse, serialize};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert!(parse("fast").is_err());
        assert!(parse("3 days").is_err());
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format(Duration::from_secs(2)), "2s");
    }
}
