//! Reading a message's JSON once: validation and the one-pass extractor for simple paths.
//!
//! Every simple path of a mapping is compiled into one [`PathTrie`]. [`PathTrie::extract`] reads
//! a message in one pass of sonic-rs' serde `Deserializer`, driven by the trie: members on a
//! path are descended into as they are parsed, every other value is skipped with sonic-rs' full
//! validation (`IgnoredAny`), and each path's value is kept as its raw text (a slice of the
//! message, no DOM; only a string holding escapes is copied, by sonic-rs). Object keys are
//! parsed into the deserializer's scratch buffer and compared in place. `Deserializer::end`
//! then refuses anything after the value.
//!
//! If that pass fails, the message is read again by [`parse_root`] (sonic-rs' checked lazy
//! iterators, then re-iterating validated containers), and *its* verdict stands. The serde
//! pass converts every number it meets where a path expects a container, and sonic-rs refuses
//! numbers beyond `f64` (`1e999`) though they are valid JSON; the second reader never converts
//! numbers. Malformed messages, being rare, pay two reads. The lazy iterators are not the first
//! choice because sonic-rs 0.5.10 copies every object key they yield into a new `String`
//! (17 allocations per 300-byte benchmark message) and re-scans every container on a path;
//! the serde pass cut the mapping's instructions per message by a third (callgrind).
//!
//! Why not sonic-rs' `PointerTree` + `get_many` (0.5.10): (1) it stops reading as soon as the
//! last path is found, so `{"a":1, "b": xx` yields `a = 1` and the broken rest is never seen;
//! (2) one path meeting an empty object or array, an index past the end or a value of another
//! type fails the whole lookup, losing every path; (3) it counts found paths without
//! de-duplicating keys, so `{"a":{"x":1,"x":2}}` with paths `$.a` and `$.a.x` underflows its
//! counter (a panic in debug builds); (4) a key step and an index step under one node (`$.a.b`
//! and `$.a[0]`) reach an `unreachable!()` in its source. (1) to (3) were reproduced against
//! it. Its unchecked variant is `unsafe` (forbidden here) and shares (2) to (4).
//!
//! Semantics the walk guarantees: a missing member, an index past the end, or a step into a
//! value of another type gives "absent" (NULL), never an error; a duplicated key takes its last
//! occurrence (as serde_json does); bytes after the value other than whitespace are an error.
//!
//! Nesting depth is bounded ([`MAX_DEPTH`]) *before* sonic-rs sees the bytes: its validation
//! recurses once per level with no limit, and a 16 KiB message of `[` aborts the process with a
//! stack overflow (measured). The bound is cheap: a message with at most `MAX_DEPTH` opening
//! brackets cannot nest deeper, and only messages with more are scanned exactly.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sonic_rs::LazyValue;

use crate::expr::Step;

/// The deepest nesting of arrays and objects a message may have (serde_json's default is 128).
pub const MAX_DEPTH: usize = 256;

/// Why a message is not (acceptable) JSON.
#[derive(Debug)]
pub(crate) enum JsonError {
    Syntax(sonic_rs::Error),
    TooDeep,
    Trailing,
    /// sonic-rs returned a value outside the message: a bug, reported rather than trusted.
    Internal,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // sonic-rs appends a multi-line excerpt of the input; the first line is the reason.
            JsonError::Syntax(err) => {
                let text = err.to_string();
                f.write_str(text.lines().next().unwrap_or_default().trim_end())
            }
            JsonError::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            JsonError::Trailing => f.write_str("trailing characters after the JSON value"),
            JsonError::Internal => f.write_str("the JSON reader returned a value outside the message"),
        }
    }
}

impl From<sonic_rs::Error> for JsonError {
    fn from(err: sonic_rs::Error) -> Self {
        JsonError::Syntax(err)
    }
}

/// The position of a member of the root container.
pub(crate) enum Member<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).copied().is_some_and(is_ws) {
        at += 1;
    }
    at
}

/// How many `[` and `{` bytes `bytes` holds. Counted in `u8` lanes per chunk (at most 255 per
/// chunk, so no lane overflows) because that is what compiles to wide SIMD compares; `b | 0x20`
/// maps `[` (0x5B) onto `{` (0x7B) and no other byte onto it.
fn count_opening_brackets(bytes: &[u8]) -> usize {
    bytes.chunks(255).map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{')))).sum()
}

/// Refuses messages nested deeper than [`MAX_DEPTH`], before a recursive reader sees them.
pub(crate) fn check_depth(bytes: &[u8]) -> Result<(), JsonError> {
    if bytes.len() <= MAX_DEPTH || count_opening_brackets(bytes) <= MAX_DEPTH {
        return Ok(());
    }
    // Brackets inside strings do not nest; track strings the way a JSON reader does.
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The raw text of `value`, re-borrowed from `doc` (sonic-rs hands it out tied to the value).
pub(crate) fn raw_in<'a>(doc: &'a str, value: &LazyValue<'a>) -> Result<&'a str, JsonError> {
    let raw = value.as_raw_str();
    let start = raw.as_ptr().addr().wrapping_sub(doc.as_ptr().addr());
    doc.get(start..start.wrapping_add(raw.len())).ok_or(JsonError::Internal)
}

/// Validates `doc` as exactly one JSON value (whitespace around it allowed) and calls `member`
/// for each member of the root when it is an object or an array, in document order. Returns the
/// root's text without the surrounding whitespace.
pub(crate) fn parse_root<'a>(
    doc: &'a str,
    mut member: impl FnMut(Member<'a>, LazyValue<'a>) -> Result<(), JsonError>,
) -> Result<&'a str, JsonError> {
    let bytes = doc.as_bytes();
    check_depth(bytes)?;
    let start = skip_ws(bytes, 0);
    let end = match bytes.get(start) {
        Some(b'{') => {
            let mut after = start + 1;
            for entry in sonic_rs::to_object_iter(doc) {
                let (key, value) = entry?;
                let raw = raw_in(doc, &value)?;
                after = raw_end(doc, raw);
                member(Member::Key(key), value)?;
            }
            close(bytes, after, b'}')?
        }
        Some(b'[') => {
            let mut after = start + 1;
            for (i, elem) in sonic_rs::to_array_iter(doc).enumerate() {
                let value = elem?;
                let raw = raw_in(doc, &value)?;
                after = raw_end(doc, raw);
                member(Member::Index(i), value)?;
            }
            close(bytes, after, b']')?
        }
        _ => {
            let value = sonic_rs::get(doc, &[] as &[&str])?;
            raw_end(doc, raw_in(doc, &value)?)
        }
    };
    if skip_ws(bytes, end) != bytes.len() {
        return Err(JsonError::Trailing);
    }
    doc.get(start..end).ok_or(JsonError::Internal)
}

fn raw_end(doc: &str, raw: &str) -> usize {
    raw.as_ptr().addr() - doc.as_ptr().addr() + raw.len()
}

/// The iterator consumed the closing bracket after `after` (and whitespace); returns its end.
fn close(bytes: &[u8], after: usize, bracket: u8) -> Result<usize, JsonError> {
    let at = skip_ws(bytes, after);
    if bytes.get(at) == Some(&bracket) { Ok(at + 1) } else { Err(JsonError::Internal) }
}

/// Validates a whole message as JSON; returns its text without surrounding whitespace.
pub(crate) fn validate(doc: &str) -> Result<&str, JsonError> {
    parse_root(doc, |_, _| Ok(()))
}

/// Every simple path of a mapping, merged by common prefix. Each path owns a *slot*; slots are
/// numbered depth-first so that the slots below any node form one range (cleared together when
/// a duplicated key replaces a subtree).
#[derive(Debug, Default)]
pub(crate) struct PathTrie {
    root: Node,
    slots: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Slots whose path ends here.
    targets: Vec<usize>,
    keys: Vec<(String, Node)>,
    indices: Vec<(usize, Node)>,
    /// The slots of this node and everything below it.
    span: Range<usize>,
}

impl Node {
    fn key(&self, key: &str) -> Option<&Node> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    fn index(&self, index: usize) -> Option<&Node> {
        self.indices.iter().find(|(i, _)| *i == index).map(|(_, n)| n)
    }

    fn is_leaf(&self) -> bool {
        self.keys.is_empty() && self.indices.is_empty()
    }

    /// Sets the slots of the paths ending here.
    fn record<'a>(&self, raw: Cow<'a, str>, out: &mut [Option<Cow<'a, str>>]) {
        for &slot in &self.targets {
            out[slot] = Some(raw.clone());
        }
    }

    fn max_index(&self) -> Option<usize> {
        self.indices.iter().map(|(i, _)| *i).max()
    }

    /// Numbers the slots depth-first; `targets` holds path ids until then.
    fn number(&mut self, next: &mut usize, slot_of_path: &mut [usize]) {
        let start = *next;
        for target in &mut self.targets {
            slot_of_path[*target] = *next;
            *target = *next;
            *next += 1;
        }
        let children = self.keys.iter_mut().map(|(_, c)| c).chain(self.indices.iter_mut().map(|(_, c)| c));
        for child in children {
            child.number(next, slot_of_path);
        }
        self.span = start..*next;
    }

    /// Records `value` (raw text `raw`) for this node and the paths below it.
    fn visit<'a>(
        &self,
        doc: &'a str,
        value: LazyValue<'a>,
        raw: &'a str,
        out: &mut [Option<Cow<'a, str>>],
    ) -> Result<(), JsonError> {
        // A later duplicate of a key replaces everything an earlier one set below it.
        if let Some(below) = out.get_mut(self.span.clone()) {
            below.fill(None);
        }
        self.record(Cow::Borrowed(raw), out);
        match raw.as_bytes().first() {
            Some(b'{') if !self.keys.is_empty() => {
                for entry in value.into_object_iter().into_iter().flatten() {
                    let (key, child_value) = entry?;
                    if let Some(child) = self.key(&key) {
                        let child_raw = raw_in(doc, &child_value)?;
                        child.visit(doc, child_value, child_raw, out)?;
                    }
                }
            }
            Some(b'[') if !self.indices.is_empty() => {
                let last = self.max_index().unwrap_or(0);
                for (i, elem) in value.into_array_iter().into_iter().flatten().enumerate() {
                    let child_value = elem?;
                    if let Some(child) = self.index(i) {
                        let child_raw = raw_in(doc, &child_value)?;
                        child.visit(doc, child_value, child_raw, out)?;
                    }
                    if i >= last {
                        break;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl PathTrie {
    /// Merges `paths`; returns the trie and, for each path in order, its slot.
    pub(crate) fn new(paths: &[&[Step]]) -> (PathTrie, Vec<usize>) {
        let mut root = Node::default();
        for (id, steps) in paths.iter().enumerate() {
            let mut node = &mut root;
            for step in steps.iter() {
                node = match step {
                    Step::Key(key) => {
                        let at = match node.keys.iter().position(|(k, _)| k == key) {
                            Some(at) => at,
                            None => {
                                node.keys.push((key.clone(), Node::default()));
                                node.keys.len() - 1
                            }
                        };
                        &mut node.keys[at].1
                    }
                    Step::Index(index) => {
                        let at = match node.indices.iter().position(|(i, _)| i == index) {
                            Some(at) => at,
                            None => {
                                node.indices.push((*index, Node::default()));
                                node.indices.len() - 1
                            }
                        };
                        &mut node.indices[at].1
                    }
                };
            }
            node.targets.push(id);
        }
        let mut slot_of_path = vec![0; paths.len()];
        let mut slots = 0;
        root.number(&mut slots, &mut slot_of_path);
        (PathTrie { root, slots }, slot_of_path)
    }

    /// How many slots [`PathTrie::extract`] fills.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Validates `doc` and sets each slot of `out` to the raw JSON text of its path's value, or
    /// None where the path is absent.
    pub(crate) fn extract<'a>(&self, doc: &'a str, out: &mut [Option<Cow<'a, str>>]) -> Result<(), JsonError> {
        check_depth(doc.as_bytes())?;
        if self.extract_fast(doc, out).is_ok() {
            return Ok(());
        }
        self.extract_checked(doc, out)
    }

    /// One serde pass; may refuse a valid document (see the module documentation).
    fn extract_fast<'a>(&self, doc: &'a str, out: &mut [Option<Cow<'a, str>>]) -> Result<(), sonic_rs::Error> {
        let mut de = sonic_rs::Deserializer::from_str(doc);
        Walk { node: &self.root, out }.deserialize(&mut de)?;
        de.end()
    }

    /// The reference reader: sonic-rs' checked lazy iterators.
    fn extract_checked<'a>(&self, doc: &'a str, out: &mut [Option<Cow<'a, str>>]) -> Result<(), JsonError> {
        out.fill(None);
        let root = &self.root;
        let raw = parse_root(doc, |member, value| {
            let child = match &member {
                Member::Key(key) => root.key(key),
                Member::Index(i) => root.index(*i),
            };
            match child {
                Some(child) => {
                    let raw = raw_in(doc, &value)?;
                    child.visit(doc, value, raw, out)
                }
                None => Ok(()),
            }
        })?;
        root.record(Cow::Borrowed(raw), out);
        Ok(())
    }
}

/// The serde walk of one value at `node`: a [`DeserializeSeed`] so that sonic-rs parses and
/// validates exactly once while the trie decides what to keep.
struct Walk<'t, 's, 'a> {
    node: &'t Node,
    out: &'s mut [Option<Cow<'a, str>>],
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let Walk { node, out } = self;
        // A later duplicate of a key replaces everything an earlier one set below it (a leaf's
        // own slots are overwritten below, so only inner nodes clear).
        if !node.is_leaf()
            && let Some(below) = out.get_mut(node.span.clone())
        {
            below.fill(None);
        }
        if node.targets.is_empty() {
            return deserializer.deserialize_any(Members { node, out });
        }
        // A path ends here: keep the raw text (sonic-rs validates it while skipping it).
        let value = LazyValue::deserialize(deserializer)?;
        let raw = value.as_raw_cow();
        if !node.is_leaf()
            && let Cow::Borrowed(text) = raw
            && matches!(text.as_bytes().first(), Some(b'{' | b'['))
        {
            // Other paths continue below: walk the (already validated) text again.
            let mut inner = sonic_rs::Deserializer::from_str(text);
            (&mut inner).deserialize_any(Members { node, out: &mut *out }).map_err(de::Error::custom)?;
        }
        node.record(raw, out);
        Ok(())
    }
}

/// Visits the members of a container at `node`; any other value has no paths below it.
struct Members<'t, 's, 'a> {
    node: &'t Node,
    out: &'s mut [Option<Cow<'a, str>>],
}

impl<'de> Visitor<'de> for Members<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Members { node, out } = self;
        while let Some(child) = map.next_key_seed(Key(node))? {
            match child {
                Some(child) => map.next_value_seed(Walk { node: child, out: &mut *out })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Members { node, out } = self;
        for i in 0.. {
            let more = match node.index(i) {
                Some(child) => seq.next_element_seed(Walk { node: child, out: &mut *out })?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, looked up among `node`'s children without being copied.
struct Key<'t>(&'t Node);

impl<'de, 't> DeserializeSeed<'de> for Key<'t> {
    type Value = Option<&'t Node>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'t> Visitor<'_> for Key<'t> {
    type Value = Option<&'t Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.key(key))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.to_string())
    }

    /// Extracts `paths` from `doc`, each as its raw text. Also checks that the serde walk,
    /// when it accepts `doc`, finds exactly what the reference reader finds.
    fn extract(paths: &[&[Step]], doc: &str) -> Result<Vec<Option<String>>, String> {
        let (trie, slot_of) = PathTrie::new(paths);
        let texts = |out: &[Option<Cow<'_, str>>]| -> Vec<Option<String>> {
            slot_of.iter().map(|&s| out[s].as_deref().map(str::to_string)).collect()
        };
        let mut checked = vec![None; trie.slots()];
        let reference = trie.extract_checked(doc, &mut checked).map(|()| texts(&checked));
        let mut fast = vec![Some(Cow::Borrowed("stale")); trie.slots()];
        if trie.extract_fast(doc, &mut fast).is_ok() {
            assert_eq!(reference.as_ref().ok(), Some(&texts(&fast)), "the serde walk disagrees on {doc:?}");
        }
        let mut out = vec![None; trie.slots()];
        trie.extract(doc, &mut out).map_err(|e| e.to_string())?;
        assert_eq!(reference.as_ref().ok(), Some(&texts(&out)));
        Ok(texts(&out))
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn extracts_nested_values_as_raw_text() {
        let doc = r#" {"id": 7, "data": {"code": "A\u00e9", "n": [1, {"x": true}]}, "items": [{"sku": "s1"}, {"sku": "s2"}]} "#;
        let got = extract(
            &[
                &[key("id")],
                &[key("data"), key("code")],
                &[key("data"), key("n"), Step::Index(1), key("x")],
                &[key("items"), Step::Index(1), key("sku")],
                &[key("data")],
                &[],
                &[key("id")],
            ],
            doc,
        )
        .unwrap();
        assert_eq!(got[0], some("7"));
        assert_eq!(got[1], some(r#""A\u00e9""#));
        assert_eq!(got[2], some("true"));
        assert_eq!(got[3], some(r#""s2""#));
        assert_eq!(got[4], some(r#"{"code": "A\u00e9", "n": [1, {"x": true}]}"#));
        assert_eq!(got[5], some(doc.trim()));
        assert_eq!(got[6], some("7"));
    }

    #[test]
    fn the_serde_walk_reads_ordinary_documents_itself() {
        let paths: &[&[Step]] = &[&[key("id")], &[key("c"), key("n")], &[key("i"), Step::Index(0), key("s")], &[]];
        let (trie, _) = PathTrie::new(paths);
        for doc in [r#"{"id": 1, "c": {"n": "x", "m": [1, {"q": null}]}, "i": [{"s": 2.5e3}], "t": true}"#, "[]", "7"] {
            trie.extract_fast(doc, &mut vec![None; trie.slots()]).unwrap();
        }
    }

    #[test]
    fn absent_paths_are_none_not_errors() {
        let paths: &[&[Step]] = &[
            &[key("a"), key("b")],
            &[key("e"), Step::Index(0)],
            &[key("s"), key("x")],
            &[key("arr"), Step::Index(5)],
            &[key("missing")],
            &[key("ok")],
        ];
        let got = extract(paths, r#"{"a": {}, "e": [], "s": "str", "arr": [1, 2], "ok": null}"#).unwrap();
        assert_eq!(got, vec![None, None, None, None, None, some("null")]);
        // The root is not an object: every member path is absent.
        assert_eq!(extract(paths, "[1, 2]").unwrap(), vec![None; 6]);
        assert_eq!(extract(paths, "\"text\"").unwrap(), vec![None; 6]);
    }

    #[test]
    fn key_and_index_steps_can_share_a_node() {
        let paths: &[&[Step]] = &[&[key("v"), key("k")], &[key("v"), Step::Index(0)]];
        assert_eq!(extract(paths, r#"{"v": {"k": 1}}"#).unwrap(), vec![some("1"), None]);
        assert_eq!(extract(paths, r#"{"v": [2]}"#).unwrap(), vec![None, some("2")]);
        assert_eq!(extract(&[&[Step::Index(1)]], "[0, [3]]").unwrap(), vec![some("[3]")]);
    }

    #[test]
    fn keys_are_compared_decoded() {
        let paths: &[&[Step]] = &[&[key("kéy")], &[key("ключ")], &[key("a\"b")], &[key("🎉")]];
        let doc = r#"{"k\u00e9y": 1, "ключ": 2, "a\"b": 3, "\ud83c\udf89": 4}"#;
        assert_eq!(extract(paths, doc).unwrap(), vec![some("1"), some("2"), some("3"), some("4")]);
    }

    #[test]
    fn duplicate_keys_take_the_last_occurrence() {
        let paths: &[&[Step]] = &[&[key("a")], &[key("a"), key("x")], &[key("a"), key("y")], &[key("b")]];
        let got = extract(paths, r#"{"a": {"x": 1, "x": 2, "y": 0}, "a": {"x": 3}, "b": 4}"#).unwrap();
        assert_eq!(got, vec![some(r#"{"x": 3}"#), some("3"), None, some("4")]);
    }

    #[test]
    fn the_whole_document_is_validated_even_after_the_last_path() {
        let paths: &[&[Step]] = &[&[key("a")]];
        for bad in [
            r#"{"a": 1, "b": xx"#,
            r#"{"a": 1, "b": [1, 2}"#,
            r#"{"a": 1} zz"#,
            r#"{"a": 1}}"#,
            r#"{"a": 1, "b": "x"#,
            r#"{"a": 1, "b": 01}"#,
            "{\"a\": 1, \"b\": \"\u{1}\"}",
            r#"{"a": 1,}"#,
            "",
            "   ",
            "[1] [2]",
            "nul",
        ] {
            assert!(extract(paths, bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(extract(paths, "\t{\"a\" : 1 }\r\n").unwrap(), vec![some("1")]);
    }

    #[test]
    fn numbers_beyond_f64_where_a_path_expects_a_container_fall_back() {
        let paths: &[&[Step]] = &[&[key("a"), key("b")], &[key("c")]];
        let doc = r#"{"a": 1e999, "c": [1e999]}"#;
        let (trie, _) = PathTrie::new(paths);
        assert!(trie.extract_fast(doc, &mut vec![None; trie.slots()]).is_err(), "sonic-rs refuses 1e999 here");
        assert_eq!(extract(paths, doc).unwrap(), vec![None, some("[1e999]")]);
    }

    #[test]
    fn a_path_through_a_kept_container() {
        let paths: &[&[Step]] = &[&[key("a")], &[key("a"), key("x")], &[key("a"), Step::Index(1)], &[]];
        let doc = r#"{"a": {"x": "\u00e9"}, "z": 0}"#;
        let got = extract(paths, doc).unwrap();
        assert_eq!(got, vec![some(r#"{"x": "\u00e9"}"#), some(r#""\u00e9""#), None, some(doc)]);
        let got = extract(paths, r#"{"a": [5, "\n"]}"#).unwrap();
        assert_eq!(got, vec![some(r#"[5, "\n"]"#), None, some(r#""\n""#), some(r#"{"a": [5, "\n"]}"#)]);
    }

    #[test]
    fn syntax_errors_read_as_one_line() {
        let err = extract(&[&[key("a")]], r#"{"a": 1, "b": xx}"#).unwrap_err();
        assert_eq!(err, "Invalid JSON value at line 1 column 15");
        assert_eq!(extract(&[&[key("a")]], "{} x").unwrap_err(), "trailing characters after the JSON value");
    }

    #[test]
    fn counts_opening_brackets() {
        assert_eq!(count_opening_brackets(b"[{a}]{[\"x\"]} ;["), 5);
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(count_opening_brackets(&all), 2);
        assert_eq!(count_opening_brackets(&[b'['; 1000]), 1000);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(validate(&deep).unwrap_err().to_string(), "nested deeper than 256 levels");
        let unclosed = "{\"a\":".repeat(300);
        assert!(matches!(validate(&unclosed), Err(JsonError::TooDeep)));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(validate(&ok).is_ok());
        // Brackets inside strings do not count.
        let strings = format!("[\"{}\"]", "[{".repeat(1000));
        assert!(validate(&strings).is_ok());
        let escaped = format!("[\"\\\"{}\"]", "[".repeat(1000));
        assert!(validate(&escaped).is_ok());
    }
}
