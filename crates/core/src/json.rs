//! JSON text written by hand on hot paths: string literals escaped per RFC 8259.
//!
//! Connectors build JSON text column values (MySQL JSON documents, PostgreSQL arrays, Kafka
//! headers) straight into reused buffers; this is the one escaper they share.
//!
//! ```
//! use rtsync_core::json::push_string;
//!
//! let mut text = String::from("{\"k\":");
//! push_string(&mut text, "tab\there \"quoted\" \u{1} é");
//! text.push('}');
//! assert_eq!(text, r#"{"k":"tab\there \"quoted\" \u0001 é"}"#);
//!
//! let mut bytes = Vec::new();
//! push_string(&mut bytes, "a\\b");
//! assert_eq!(bytes, br#""a\\b""#);
//! ```

/// A buffer JSON text is appended to: `String` or `Vec<u8>`.
pub trait JsonOut {
    /// Appends `text` as it is.
    fn put(&mut self, text: &str);
}

impl JsonOut for String {
    #[inline]
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

impl JsonOut for Vec<u8> {
    #[inline]
    fn put(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
}

/// The escape of each control character U+0000..U+001F: the short forms RFC 8259 names, and
/// `\u00XX` (lowercase hex, as serde_json writes it) for the others.
const CONTROL: [&str; 32] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b", "\\t", "\\n",
    "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015",
    "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
];

/// The escape of byte `b`, or None when it stands for itself. Every byte that needs one is
/// ASCII, so the bytes between escapes are whole UTF-8 sequences.
#[inline]
fn escape(b: u8) -> Option<&'static str> {
    match b {
        0..=0x1f => Some(CONTROL[usize::from(b)]),
        b'"' => Some("\\\""),
        b'\\' => Some("\\\\"),
        _ => None,
    }
}

/// Appends `text` as a JSON string literal, quotes included: `"` and `\` escaped, every
/// control character below U+0020 escaped (`\b \f \n \r \t`, else `\u00XX`), everything else,
/// non-ASCII included, copied as UTF-8. Runs of plain characters are copied in one piece.
pub fn push_string<O: JsonOut + ?Sized>(out: &mut O, text: &str) {
    out.put("\"");
    let mut plain = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if let Some(escaped) = escape(b) {
            if plain < i {
                out.put(&text[plain..i]);
            }
            out.put(escaped);
            plain = i + 1;
        }
    }
    if plain < text.len() {
        out.put(&text[plain..]);
    }
    out.put("\"");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, text);
        out
    }

    #[test]
    fn escapes_quote_backslash_and_controls() {
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted("plain"), r#""plain""#);
        assert_eq!(quoted("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
        assert_eq!(quoted("\u{8}\u{c}\n\r\t\u{b}\u{1f}"), r#""\b\f\n\r\t\u000b\u001f""#);
        assert_eq!(quoted("/\u{7f}"), "\"/\u{7f}\"", "solidus and DEL stand for themselves");
        assert_eq!(quoted("\"\"\\"), r#""\"\"\\""#, "escapes next to each other");
    }

    #[test]
    fn every_ascii_char_and_non_ascii_round_trip_through_serde_json() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        samples.push((0u8..0x80).map(char::from).collect());
        samples.extend(["é", "Zürich", "中文", "😀 x", "\u{2028}\u{2029}", "\u{fffd}", "a\u{0}b"].map(String::from));
        for text in samples {
            let json = quoted(&text);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, text, "{json}");
            assert_eq!(json, serde_json::to_string(&text).unwrap(), "the same text serde_json writes");
        }
    }

    #[test]
    fn string_and_bytes_get_the_same_text() {
        let text = "k\"ey\t€\u{1}";
        let mut bytes = b"{".to_vec();
        push_string(&mut bytes, text);
        assert_eq!(bytes, format!("{{{}", quoted(text)).into_bytes());
    }
}
