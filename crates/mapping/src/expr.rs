//! What a column's `expr` means, decided once at compile time.
//!
//! An expression is a built-in Kafka field, a *simple* path (only member names and non-negative
//! indices, served by the one-pass extractor in [`crate::json`]) or a *complex* path (wildcards,
//! filters, slices, recursive descent, negative indices, unions), evaluated by jsonpath-rust. The
//! path is parsed by jsonpath-rust in both cases, so the two kinds accept exactly the same
//! syntax (quoting, escapes) and differ only in how they are evaluated.

use jsonpath_rust::parser::errors::JsonPathError;
use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use rtsync_core::kafka;

/// A built-in field of a Kafka message, copied from the source batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Key,
    Value,
    Timestamp,
    Partition,
    Offset,
    Headers,
}

impl Field {
    pub(crate) const ALL: [Field; 6] =
        [Field::Key, Field::Value, Field::Timestamp, Field::Partition, Field::Offset, Field::Headers];

    /// The field's column name in [`kafka::kafka_source_schema`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Key => kafka::KEY,
            Field::Value => kafka::VALUE,
            Field::Timestamp => kafka::TIMESTAMP,
            Field::Partition => kafka::PARTITION,
            Field::Offset => kafka::OFFSET,
            Field::Headers => kafka::HEADERS,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// One step of a simple path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// A column expression, parsed.
#[derive(Debug)]
pub(crate) enum Expr {
    Field(Field),
    /// `$` followed by names and indices; empty for `$` itself.
    Simple(Vec<Step>),
    /// Any other path. `multi` when it can select several values (wildcard, slice, filter,
    /// descendant, union): such a path always gives a JSON array to `string`/`json` columns, so
    /// the shape of a column does not depend on how many values one message happens to hold.
    Complex {
        query: JpQuery,
        multi: bool,
    },
}

/// Why an expression was refused; the caller names the column.
#[derive(Debug)]
pub(crate) enum ExprError {
    /// Neither a path nor a built-in field name.
    Unknown,
    /// Starts with `$` but jsonpath-rust refuses it.
    Path(JsonPathError),
}

impl Expr {
    pub(crate) fn parse(text: &str) -> Result<Expr, ExprError> {
        if let Some(field) = Field::from_name(text) {
            return Ok(Expr::Field(field));
        }
        if !text.starts_with('$') {
            return Err(ExprError::Unknown);
        }
        let query = parse_json_path(text).map_err(ExprError::Path)?;
        Ok(match simple_steps(&query) {
            Some(steps) => Expr::Simple(steps),
            None => {
                let multi = query.segments.iter().any(segment_is_multi);
                Expr::Complex { query, multi }
            }
        })
    }
}

/// The steps of `query` when every segment is one name or one non-negative index.
fn simple_steps(query: &JpQuery) -> Option<Vec<Step>> {
    query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(selector) => simple_step(selector),
            Segment::Selectors(selectors) if selectors.len() == 1 => selectors.first().and_then(simple_step),
            _ => None,
        })
        .collect()
}

fn simple_step(selector: &Selector) -> Option<Step> {
    match selector {
        Selector::Name(name) => Some(Step::Key(name.clone())),
        Selector::Index(i) => usize::try_from(*i).ok().map(Step::Index),
        _ => None,
    }
}

fn segment_is_multi(segment: &Segment) -> bool {
    match segment {
        Segment::Descendant(_) => true,
        Segment::Selectors(selectors) => selectors.len() > 1 || selectors.iter().any(selector_is_multi),
        Segment::Selector(selector) => selector_is_multi(selector),
    }
}

fn selector_is_multi(selector: &Selector) -> bool {
    matches!(selector, Selector::Wildcard | Selector::Slice(..) | Selector::Filter(_))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        match Expr::parse(text).unwrap() {
            Expr::Simple(steps) => steps,
            other => panic!("{text}: not simple: {other:?}"),
        }
    }

    fn multi(text: &str) -> bool {
        match Expr::parse(text).unwrap() {
            Expr::Complex { multi, .. } => multi,
            other => panic!("{text}: not complex: {other:?}"),
        }
    }

    #[test]
    fn simple_paths_are_names_and_indices() {
        let key = |k: &str| Step::Key(k.to_string());
        assert_eq!(steps("$"), vec![]);
        assert_eq!(steps("$.id"), vec![key("id")]);
        assert_eq!(steps("$.data.code"), vec![key("data"), key("code")]);
        assert_eq!(steps("$.items[0].sku"), vec![key("items"), Step::Index(0), key("sku")]);
        assert_eq!(steps("$['a b']"), vec![key("a b")]);
        assert_eq!(steps("$[\"it's\"][12]"), vec![key("it's"), Step::Index(12)]);
    }

    #[test]
    fn other_paths_are_complex() {
        assert!(multi("$.items[*].sku"));
        assert!(multi("$..x"));
        assert!(multi("$.items[0:2]"));
        assert!(multi("$.items[?@.qty > 1].sku"));
        assert!(multi("$['a','b']"));
        assert!(!multi("$.items[-1].sku"));
    }

    #[test]
    fn built_in_fields_and_unknown_words() {
        assert!(matches!(Expr::parse("key"), Ok(Expr::Field(Field::Key))));
        assert!(matches!(Expr::parse("headers"), Ok(Expr::Field(Field::Headers))));
        assert!(matches!(Expr::parse("id"), Err(ExprError::Unknown)));
        assert!(matches!(Expr::parse("$.data..["), Err(ExprError::Path(_))));
    }
}
