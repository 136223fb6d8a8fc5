//! `audience`: a mass send, to every live device of the push's app (`{ all: true }`) or to every
//! user of a segment the company defines (`{ segment: 'name' }`: its view or table
//! `pushq_segment_<name>` with a `user_id` column). The consumer expands it into pages (see
//! [`crate::envelope::Page`]).

use serde_json::Value;

use super::describe;
use crate::error::InvalidPush;

/// Longest segment name.
pub const MAX_SEGMENT_CHARS: usize = 48;

/// Who an audience push goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Every live device of the push's app.
    All,
    /// Every live device, in the push's app, of the users in `pushq_segment_<name>`.
    Segment(String),
}

impl Audience {
    /// The audience in one line, as the log and the `pushq_audiences` table name it: `all`,
    /// `segment:<name>`.
    pub fn summary(&self) -> String {
        match self {
            Audience::All => "all".to_owned(),
            Audience::Segment(name) => format!("segment:{name}"),
        }
    }

    /// The audience a [`Audience::summary`] names, if it is one.
    pub fn from_summary(text: &str) -> Option<Audience> {
        match text.strip_prefix("segment:") {
            Some(name) if is_segment_name(name) => Some(Audience::Segment(name.to_owned())),
            Some(_) => None,
            None => (text == "all").then_some(Audience::All),
        }
    }

    /// The view or table a segment's users are read from (`pushq_segment_<name>`); `None` for
    /// `all`. The name was checked ([`is_segment_name`]): it is safe to write into SQL.
    pub fn segment_table(&self) -> Option<String> {
        match self {
            Audience::All => None,
            Audience::Segment(name) => Some(format!("pushq_segment_{name}")),
        }
    }
}

/// Whether `name` may name a segment: 1 to 48 of `a-z`, `0-9` and `_`. Nothing else is ever
/// written into the SQL that reads a segment.
pub fn is_segment_name(name: &str) -> bool {
    (1..=MAX_SEGMENT_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `audience`: `{ all: true }` or `{ segment: '<name>' }`, nothing else.
pub(super) fn parse_audience(value: &Value) -> Result<Audience, InvalidPush> {
    let Value::Object(fields) = value else {
        return Err(InvalidPush::new(
            "audience",
            format!(
                "must be {{ all: true }} or {{ segment: '<name>' }} (got {})",
                describe(value)
            ),
        ));
    };
    if let Some(key) = fields.keys().find(|k| *k != "all" && *k != "segment") {
        return Err(InvalidPush::new(
            format!("audience.{key}"),
            "is not a field of an audience (all, segment)",
        ));
    }
    match (fields.get("all"), fields.get("segment")) {
        (Some(Value::Bool(true)), None) => Ok(Audience::All),
        (Some(other), None) => Err(InvalidPush::new(
            "audience.all",
            format!("must be true (got {})", describe(other)),
        )),
        (None, Some(Value::String(name))) if is_segment_name(name) => {
            Ok(Audience::Segment(name.clone()))
        }
        (None, Some(other)) => Err(InvalidPush::new(
            "audience.segment",
            format!(
                "must be a segment name of 1 to {MAX_SEGMENT_CHARS} characters a-z, 0-9 and _ (the view or table pushq_segment_<name>) (got {})",
                describe(other)
            ),
        )),
        _ => Err(InvalidPush::new(
            "audience",
            "must have exactly one of all, segment",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::{Push, Target};
    use serde_json::json;

    fn field_of(v: Value) -> String {
        Push::from_value(v).unwrap_err().field
    }

    #[test]
    fn an_audience_is_all_or_a_named_segment() {
        let push = Push::from_value(json!({"audience": {"all": true}})).unwrap();
        assert_eq!(push.target(), &Target::Audience(Audience::All));
        assert_eq!(push.target().summary(), "audience:all");
        let push = Push::from_value(json!({"audience": {"segment": "gym_42"}})).unwrap();
        assert_eq!(
            push.target(),
            &Target::Audience(Audience::Segment("gym_42".into()))
        );
        assert_eq!(push.target().summary(), "audience:segment:gym_42");
        assert_eq!(
            Audience::from_summary("segment:gym_42"),
            Some(Audience::Segment("gym_42".into()))
        );
        assert_eq!(Audience::from_summary("all"), Some(Audience::All));
        assert_eq!(Audience::from_summary("segment:a;b"), None);
    }

    #[test]
    fn a_segment_name_with_sql_in_it_is_refused() {
        for bad in [
            "x; DROP TABLE pushq_devices",
            "members) OR (1=1",
            "Gym",
            "",
            "a-b",
            "gym 1",
        ] {
            assert_eq!(
                field_of(json!({"audience": {"segment": bad}})),
                "audience.segment",
                "{bad}"
            );
        }
        assert_eq!(
            field_of(json!({"audience": {"segment": "x".repeat(49)}})),
            "audience.segment"
        );
        assert_eq!(
            field_of(json!({"audience": {"segment": 7}})),
            "audience.segment"
        );
        assert_eq!(
            field_of(json!({"audience": {"all": false}})),
            "audience.all"
        );
        assert_eq!(field_of(json!({"audience": {}})), "audience");
        assert_eq!(
            field_of(json!({"audience": {"all": true, "segment": "a"}})),
            "audience"
        );
        assert_eq!(
            field_of(json!({"audience": {"every": true}})),
            "audience.every"
        );
        assert_eq!(field_of(json!({"audience": "all"})), "audience");
        assert_eq!(
            field_of(json!({"audience": {"all": true}, "userId": "u"})),
            "target"
        );
    }
}
