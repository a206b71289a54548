//! The parsed message that complex paths are evaluated on.
//!
//! jsonpath-rust evaluates any type implementing its `Queryable` trait. Rather than
//! `serde_json::Value`, complex paths run on [`Node`], a tree that borrows from the message and
//! keeps every value's *raw text*. That is what makes complex paths agree with simple ones:
//! `serde_json::Value` (without `arbitrary_precision`, which would change serde_json for the
//! whole workspace) turns `12345678901234567.89` into an `f64` and re-serializes objects with
//! sorted keys, so a decimal column would not be exact and a json column would not hold the
//! message's text. With [`Node`], a match is cast from the same raw text a simple path would
//! give, and object members keep their order. Strings without escapes are not copied.
//!
//! Only the values jsonpath-rust itself creates (filter literals, function results) own their
//! text. The tree is read with sonic-rs' lazy iterators ([`parse_root`]), which copy each
//! object key: acceptable on this path, which allocates a node per value anyway.

use std::borrow::Cow;

use jsonpath_rust::query::queryable::Queryable;
use sonic_rs::LazyValue;

use rtsync_core::json::push_string;

use crate::cast::unescape_into;
use crate::json::{JsonError, Member, parse_root, raw_in};

/// One JSON value and its text.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    raw: Cow<'a, str>,
    kind: Kind<'a>,
}

#[derive(Debug, Clone)]
enum Kind<'a> {
    Null,
    Bool(bool),
    /// The number is its raw text.
    Number,
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Members in document order, duplicates kept; lookups take the last (as serde_json does).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Validates and parses a whole message. Nesting is bounded by [`crate::json::MAX_DEPTH`],
    /// so the recursion below is too.
    pub(crate) fn parse(doc: &'a str) -> Result<Node<'a>, JsonError> {
        let (mut members, mut elements) = (Vec::new(), Vec::new());
        let raw = parse_root(doc, |member, value| {
            let node = Node::from_lazy(doc, value)?;
            match member {
                Member::Key(key) => members.push((key, node)),
                Member::Index(_) => elements.push(node),
            }
            Ok(())
        })?;
        let kind = match raw.as_bytes().first() {
            Some(b'{') => Kind::Object(members),
            Some(b'[') => Kind::Array(elements),
            _ => return Ok(Node::scalar(raw)),
        };
        Ok(Node { raw: Cow::Borrowed(raw), kind })
    }

    /// The text of the value as it appears in the message.
    pub(crate) fn raw(&self) -> &str {
        &self.raw
    }

    fn from_lazy(doc: &'a str, value: LazyValue<'a>) -> Result<Node<'a>, JsonError> {
        let raw = raw_in(doc, &value)?;
        let kind = match raw.as_bytes().first() {
            Some(b'{') => {
                let mut members = Vec::new();
                for entry in value.into_object_iter().into_iter().flatten() {
                    let (key, child) = entry?;
                    members.push((key, Node::from_lazy(doc, child)?));
                }
                Kind::Object(members)
            }
            Some(b'[') => {
                let mut elements = Vec::new();
                for elem in value.into_array_iter().into_iter().flatten() {
                    elements.push(Node::from_lazy(doc, elem?)?);
                }
                Kind::Array(elements)
            }
            _ => return Ok(Node::scalar(raw)),
        };
        Ok(Node { raw: Cow::Borrowed(raw), kind })
    }

    /// A validated scalar's text.
    fn scalar(raw: &'a str) -> Node<'a> {
        let kind = match raw.as_bytes().first() {
            Some(b'n') => Kind::Null,
            Some(b't') => Kind::Bool(true),
            Some(b'f') => Kind::Bool(false),
            Some(b'"') => {
                let inner = &raw[1..raw.len() - 1];
                if inner.contains('\\') {
                    let mut text = String::with_capacity(inner.len());
                    // Filters compare decoded text; an unpaired surrogate reads as U+FFFD here
                    // and is refused only if a column casts this very string.
                    match unescape_into(inner, &mut text, true) {
                        Ok(()) => Kind::String(Cow::Owned(text)),
                        Err(_) => Kind::String(Cow::Borrowed(inner)),
                    }
                } else {
                    Kind::String(Cow::Borrowed(inner))
                }
            }
            _ => Kind::Number,
        };
        Node { raw: Cow::Borrowed(raw), kind }
    }

    fn owned(raw: String, kind: Kind<'a>) -> Node<'a> {
        Node { raw: Cow::Owned(raw), kind }
    }

    fn number_f64(&self) -> Option<f64> {
        match self.kind {
            Kind::Number => self.raw.parse().ok(),
            _ => None,
        }
    }
}

impl Default for Node<'_> {
    fn default() -> Self {
        Node { raw: Cow::Borrowed("null"), kind: Kind::Null }
    }
}

impl PartialEq for Node<'_> {
    /// JSON equality: numbers by value, strings by decoded text, objects regardless of order.
    fn eq(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Null, Kind::Null) => true,
            (Kind::Bool(a), Kind::Bool(b)) => a == b,
            (Kind::Number, Kind::Number) => match (self.number_f64(), other.number_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => self.raw == other.raw,
            },
            (Kind::String(a), Kind::String(b)) => a == b,
            (Kind::Array(a), Kind::Array(b)) => a == b,
            (Kind::Object(a), Kind::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| other.get(k).is_some_and(|w| v == w))
            }
            _ => false,
        }
    }
}

impl From<&str> for Node<'_> {
    fn from(text: &str) -> Self {
        let mut raw = String::with_capacity(text.len() + 2);
        push_string(&mut raw, text);
        Node::owned(raw, Kind::String(Cow::Owned(text.to_string())))
    }
}

impl From<String> for Node<'_> {
    fn from(text: String) -> Self {
        let mut raw = String::with_capacity(text.len() + 2);
        push_string(&mut raw, &text);
        Node::owned(raw, Kind::String(Cow::Owned(text)))
    }
}

impl From<bool> for Node<'_> {
    fn from(b: bool) -> Self {
        Node { raw: Cow::Borrowed(if b { "true" } else { "false" }), kind: Kind::Bool(b) }
    }
}

impl From<i64> for Node<'_> {
    fn from(n: i64) -> Self {
        Node::owned(n.to_string(), Kind::Number)
    }
}

impl From<f64> for Node<'_> {
    fn from(n: f64) -> Self {
        if n.is_finite() { Node::owned(n.to_string(), Kind::Number) } else { Node::default() }
    }
}

impl<'a> From<Vec<Node<'a>>> for Node<'a> {
    fn from(elements: Vec<Node<'a>>) -> Self {
        let mut raw = String::from("[");
        for (i, e) in elements.iter().enumerate() {
            if i > 0 {
                raw.push(',');
            }
            raw.push_str(&e.raw);
        }
        raw.push(']');
        Node::owned(raw, Kind::Array(elements))
    }
}

impl Queryable for Node<'_> {
    fn get(&self, key: &str) -> Option<&Self> {
        match &self.kind {
            Kind::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&Vec<Self>> {
        match &self.kind {
            Kind::Array(elements) => Some(elements),
            _ => None,
        }
    }

    fn as_object(&self) -> Option<Vec<(&str, &Self)>> {
        match &self.kind {
            Kind::Object(members) => Some(members.iter().map(|(k, v)| (k.as_ref(), v)).collect()),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(text) => Some(text),
            _ => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self.kind {
            Kind::Number => self.raw.parse().ok(),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        self.number_f64()
    }

    fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn null() -> Self {
        Node::default()
    }

    /// The extension functions jsonpath-rust gives `serde_json::Value` (`in`, `nin`, `none_of`,
    /// `any_of`, `subset_of`), so that filters behave the same on this tree.
    fn extension_custom(name: &str, args: Vec<Cow<'_, Self>>) -> Self {
        let [lhs, rhs] = args.as_slice() else {
            return Node::null();
        };
        let (lhs, rhs) = (lhs.as_ref(), rhs.as_ref());
        let result = match name {
            "in" => rhs.as_array().map(|rhs| rhs.iter().any(|r| r == lhs)),
            "nin" => rhs.as_array().map(|rhs| !rhs.iter().any(|r| r == lhs)),
            "none_of" | "any_of" | "subset_of" => match (lhs.as_array(), rhs.as_array()) {
                (Some(l), Some(r)) => {
                    let contained = |x: &Node<'_>| r.iter().any(|y| y == x);
                    Some(match name {
                        "none_of" => !l.iter().any(contained),
                        "any_of" => l.iter().any(contained),
                        _ => l.iter().all(contained),
                    })
                }
                _ => None,
            },
            _ => None,
        };
        result.map_or_else(Node::null, Node::from)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use jsonpath_rust::parser::parse_json_path;
    use jsonpath_rust::query::js_path_process;

    use super::*;

    fn query(doc: &str, path: &str) -> Vec<String> {
        let root = Node::parse(doc).unwrap();
        let query = parse_json_path(path).unwrap();
        js_path_process(&query, &root).unwrap().into_iter().map(|r| r.val.raw().to_string()).collect()
    }

    const DOC: &str = r#"{"items": [{"sku": "a", "qty": 2, "price": 12345678901234567.89},
        {"sku": "b\u00e9", "qty": 1, "price": 1.10}, {"sku": "c", "qty": 5}], "z": {"b": 1, "a": 2}, "pick": ["a", "c"]}"#;

    #[test]
    fn matches_keep_their_raw_text() {
        assert_eq!(query(DOC, "$.items[*].sku"), vec![r#""a""#, r#""b\u00e9""#, r#""c""#]);
        assert_eq!(query(DOC, "$..price"), vec!["12345678901234567.89", "1.10"]);
        assert_eq!(query(DOC, "$.items[-1].qty"), vec!["5"]);
        assert_eq!(query(DOC, "$.z"), vec![r#"{"b": 1, "a": 2}"#]);
        assert_eq!(query(DOC, "$.z.*"), vec!["1", "2"]);
        assert_eq!(query(DOC, "$.items[0:2].qty"), vec!["2", "1"]);
        assert!(query(DOC, "$.nothing[*]").is_empty());
    }

    #[test]
    fn filters_compare_numbers_and_decoded_strings() {
        assert_eq!(query(DOC, "$.items[?@.qty > 1].sku"), vec![r#""a""#, r#""c""#]);
        assert_eq!(query(DOC, "$.items[?@.sku == 'bé'].qty"), vec!["1"]);
        assert_eq!(query(DOC, "$.items[?@.price == 1.1].sku"), vec![r#""b\u00e9""#]);
        assert_eq!(query(DOC, "$.items[?length(@.sku) == 2].qty"), vec!["1"]);
        assert_eq!(query(DOC, "$.items[?@.price].sku"), vec![r#""a""#, r#""b\u00e9""#]);
        assert_eq!(query(DOC, "$.items[?in(@.sku, $.pick)].qty"), vec!["2", "5"]);
    }

    #[test]
    fn duplicate_keys_read_the_last() {
        assert_eq!(query(r#"{"a": 1, "a": 2}"#, "$.a"), vec!["2"]);
    }

    #[test]
    fn synthetic_values_carry_json_text() {
        assert_eq!(Node::from("a\"b").raw(), r#""a\"b""#);
        assert_eq!(Node::from(vec![Node::from(1i64), Node::from(true), Node::null()]).raw(), "[1,true,null]");
        assert_eq!(Node::from(f64::NAN).raw(), "null");
        assert_eq!(Node::from(2.5).raw(), "2.5");
    }

    #[test]
    fn invalid_json_is_refused() {
        assert!(Node::parse(r#"{"a": [1, 2}"#).is_err());
        assert!(Node::parse(r#"{"a": 1} x"#).is_err());
        assert_eq!(Node::parse("  42 ").unwrap().raw(), "42");
    }
}
