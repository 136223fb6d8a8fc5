//! The validators of a push's own fields: its target and pushq's `idempotencyKey`,
//! `delaySeconds` and `category`, each checked against the column or SQS limit it must fit.

use serde_json::{Map, Value};

use super::{
    describe, Target, MAX_CATEGORY_CHARS, MAX_DELAY_SECONDS, MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_LIST_TARGETS, MAX_TOKEN_CHARS, MAX_TOPIC_OR_CONDITION_CHARS, MAX_USER_ID_CHARS,
    TARGET_FIELDS,
};
use crate::error::InvalidPush;

/// The push's one target, from whichever of the target fields is set (null counts as unset).
pub(super) fn parse_target(raw: &Map<String, Value>) -> Result<Target, InvalidPush> {
    let present: Vec<&str> = TARGET_FIELDS
        .iter()
        .copied()
        .filter(|f| raw.get(*f).is_some_and(|v| !v.is_null()))
        .collect();
    let [field] = present[..] else {
        let got = if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        };
        return Err(InvalidPush::new(
            "target",
            format!("exactly one of token, topic, condition, tokens, userId, userIds must be set (got {got})"),
        ));
    };
    let value = &raw[field];
    Ok(match field {
        "token" => Target::Token(stored_string(value, "token", MAX_TOKEN_CHARS)?),
        "condition" => Target::Condition(stored_string(
            value,
            "condition",
            MAX_TOPIC_OR_CONDITION_CHARS,
        )?),
        "topic" => {
            let topic = stored_string(value, "topic", MAX_TOPIC_OR_CONDITION_CHARS)?;
            let name = topic.strip_prefix("/topics/").unwrap_or(&topic);
            let legal = |c: char| c.is_ascii_alphanumeric() || "-_.~%".contains(c);
            if name.is_empty() || !name.chars().all(legal) {
                return Err(InvalidPush::new(
                    "topic",
                    format!(
                        "must be a topic name of letters, digits and -_.~% (optionally prefixed /topics/) (got {})",
                        describe(value)
                    ),
                ));
            }
            Target::Topic(name.to_owned())
        }
        "tokens" => Target::Tokens(string_list(value, "tokens", MAX_TOKEN_CHARS)?),
        "userId" => Target::User(user_id(value, "userId")?),
        "userIds" => Target::Users(string_list(value, "userIds", MAX_USER_ID_CHARS)?),
        _ => unreachable!("TARGET_FIELDS and this match list the same fields"),
    })
}

fn non_empty_string(value: &Value, field: &str) -> Result<String, InvalidPush> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        other => Err(InvalidPush::new(
            field,
            format!("must be a non-empty string (got {})", describe(other)),
        )),
    }
}

/// A string pushq stores in its database: non-empty, at most `max_chars` characters (the
/// column's size) and without U+0000 (PostgreSQL text cannot hold it).
fn stored_string(value: &Value, field: &str, max_chars: usize) -> Result<String, InvalidPush> {
    let s = non_empty_string(value, field)?;
    let chars = s.chars().count();
    if chars > max_chars {
        return Err(InvalidPush::new(
            field,
            format!("must be at most {max_chars} characters (got {chars})"),
        ));
    }
    if s.contains('\0') {
        return Err(InvalidPush::new(
            field,
            "must not contain the NUL character (U+0000)".to_owned(),
        ));
    }
    Ok(s)
}

fn user_id(value: &Value, field: &str) -> Result<String, InvalidPush> {
    stored_string(value, field, MAX_USER_ID_CHARS)
}

fn string_list(value: &Value, field: &str, max_chars: usize) -> Result<Vec<String>, InvalidPush> {
    let Value::Array(items) = value else {
        return Err(InvalidPush::new(
            field,
            format!("must be an array of strings (got {})", describe(value)),
        ));
    };
    if items.is_empty() || items.len() > MAX_LIST_TARGETS {
        return Err(InvalidPush::new(
            field,
            format!(
                "must have 1 to {MAX_LIST_TARGETS} entries (got {})",
                items.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let entry = stored_string(item, &format!("{field}[{i}]"), max_chars)?;
        // A device or user named twice gets the push once; the first place counts.
        if seen.insert(entry.clone()) {
            list.push(entry);
        }
    }
    Ok(list)
}

/// `idempotencyKey`: a non-empty string of printable ASCII without spaces, at most
/// [`MAX_IDEMPOTENCY_KEY_CHARS`] characters.
pub(super) fn parse_idempotency_key(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    let problem = match value {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if s.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS => Some(format!(
            "must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters (got {})",
            s.chars().count()
        )),
        Value::String(s) if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) => Some(format!(
            "must be printable ASCII without spaces (got {})",
            describe(value)
        )),
        Value::String(s) => return Ok(Some(s.clone())),
        _ => None,
    };
    Err(InvalidPush::new(
        "idempotencyKey",
        problem.unwrap_or_else(|| format!("must be a non-empty string (got {})", describe(value))),
    ))
}

/// `delaySeconds`: a whole number from 0 to [`MAX_DELAY_SECONDS`].
pub(super) fn parse_delay(value: Option<&Value>) -> Result<Option<u32>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    match value.as_u64() {
        Some(n) if n <= u64::from(MAX_DELAY_SECONDS) => Ok(Some(n as u32)),
        _ => match value.as_f64() {
            // JSON.stringify writes 5 as 5, but other producers may write 5.0.
            Some(f) if f.fract() == 0.0 && (0.0..=f64::from(MAX_DELAY_SECONDS)).contains(&f) => {
                Ok(Some(f as u32))
            }
            _ => Err(InvalidPush::new(
                "delaySeconds",
                format!(
                    "must be a whole number from 0 to {MAX_DELAY_SECONDS} (got {})",
                    describe(value)
                ),
            )),
        },
    }
}

/// `category`: a non-empty string of at most [`MAX_CATEGORY_CHARS`] characters, without NUL.
pub(super) fn parse_category(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    stored_string(value, "category", MAX_CATEGORY_CHARS).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Push;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        Push::from_value(v).unwrap_err().field
    }

    #[test]
    fn exactly_one_target() {
        assert_eq!(field_of(json!({"notification": {}})), "target");
        assert_eq!(field_of(json!({"token": "a", "userId": "u"})), "target");
        // null counts as absent, as in firebase-admin.
        let push = Push::from_value(json!({"token": "a", "topic": null})).unwrap();
        assert_eq!(push.target(), &Target::Token("a".into()));
        assert!(!push.fcm_request(false).unwrap()["message"]
            .as_object()
            .unwrap()
            .contains_key("topic"));
    }

    #[test]
    fn stored_strings_fit_their_columns_and_hold_no_nul() {
        assert_eq!(field_of(json!({"userId": "a\u{0}b"})), "userId");
        assert_eq!(field_of(json!({"userIds": ["ok", "a\u{0}"]})), "userIds[1]");
        assert_eq!(field_of(json!({"token": "t\u{0}"})), "token");
        assert_eq!(
            field_of(json!({"token": "t", "category": "c\u{0}"})),
            "category"
        );
        assert_eq!(
            field_of(json!({"token": "x".repeat(MAX_TOKEN_CHARS + 1)})),
            "token"
        );
        assert_eq!(
            field_of(json!({"tokens": ["a", "x".repeat(MAX_TOKEN_CHARS + 1)]})),
            "tokens[1]"
        );
        assert_eq!(field_of(json!({"condition": "x".repeat(501)})), "condition");
        assert!(Push::from_value(json!({"token": "x".repeat(MAX_TOKEN_CHARS)})).is_ok());
        // NUL in a notification is FCM's business, not a column's.
        assert!(
            Push::from_value(json!({"token": "t", "notification": {"title": "a\u{0}b"}})).is_ok()
        );
    }

    #[test]
    fn lists_are_bounded_and_entries_named() {
        assert_eq!(field_of(json!({"tokens": ["a", ""]})), "tokens[1]");
        let many: Vec<String> = (0..=MAX_LIST_TARGETS).map(|i| i.to_string()).collect();
        assert_eq!(field_of(json!({ "userIds": many })), "userIds");
        assert_eq!(
            field_of(json!({"userIds": ["a", "x".repeat(256)]})),
            "userIds[1]"
        );
    }

    #[test]
    fn a_list_names_each_entry_once() {
        let push = Push::from_value(json!({"tokens": ["b", "a", "b", "c", "a"]})).unwrap();
        assert_eq!(
            push.target(),
            &Target::Tokens(vec!["b".into(), "a".into(), "c".into()])
        );
        // What travels in the envelope is the list without repeats too.
        assert_eq!(push.raw()["tokens"], json!(["b", "a", "c"]));
        let push = Push::from_value(json!({"userIds": ["u", "u"]})).unwrap();
        assert_eq!(push.target(), &Target::Users(vec!["u".into()]));
        assert_eq!(push.raw()["userIds"], json!(["u"]));
    }

    #[test]
    fn delay_must_be_whole_and_in_range() {
        assert_eq!(
            Push::from_value(json!({"token": "a", "delaySeconds": 900.0}))
                .unwrap()
                .delay_seconds(),
            Some(900)
        );
        for bad in [json!(901), json!(-1), json!(1.5), json!("5"), json!(null)] {
            assert_eq!(
                field_of(json!({"token": "a", "delaySeconds": bad})),
                "delaySeconds"
            );
        }
    }
}
