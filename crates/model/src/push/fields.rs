//! The validators of pushq's own fields of a push (`app`, `idempotencyKey`, `expiresAt`,
//! `delaySeconds`, `category`; its target is `target.rs`'s), each checked against the column or
//! SQS limit it must fit.

use serde_json::Value;

use super::{
    describe, MAX_APP_CHARS, MAX_CATEGORY_CHARS, MAX_DELAY_SECONDS, MAX_IDEMPOTENCY_KEY_CHARS,
};
use crate::error::InvalidPush;

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
pub(crate) fn stored_string(
    value: &Value,
    field: &str,
    max_chars: usize,
) -> Result<String, InvalidPush> {
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

/// Checks an app name: 1 to [`MAX_APP_CHARS`] characters of `A-Z a-z 0-9 _ . -`. The error
/// names the field `app` (a push's, or the client option of that name).
pub fn check_app(name: &str) -> Result<(), InvalidPush> {
    let legal = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    if name.is_empty() || name.len() > MAX_APP_CHARS || !name.chars().all(legal) {
        return Err(InvalidPush::new(
            "app",
            format!(
                "must be 1 to {MAX_APP_CHARS} characters of A-Z a-z 0-9 _ . - (got {})",
                describe(&Value::String(name.to_owned()))
            ),
        ));
    }
    Ok(())
}

/// `app`: a string that passes [`check_app`].
pub(super) fn parse_app(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => check_app(s).map(|()| Some(s.clone())),
        Some(other) => Err(InvalidPush::new(
            "app",
            format!(
                "must be a string of 1 to {MAX_APP_CHARS} characters of A-Z a-z 0-9 _ . - (got {})",
                describe(other)
            ),
        )),
    }
}

/// `expiresAt`: an RFC 3339 date-time with a time zone, what a JS `Date` becomes in JSON
/// (`2026-11-26T22:00:00.000Z`), as milliseconds since the Unix epoch. Not compared with the
/// clock: a push read after its time is still valid (and recorded as expired).
pub(super) fn parse_expires_at(value: Option<&Value>) -> Result<Option<i64>, InvalidPush> {
    parse_date_time("expiresAt", value)
}

/// `sendAt`: when a scheduled push is due, written as `expiresAt` is. Not compared with the
/// clock here either: a copy the scheduler fires late is still a valid push (the producer
/// refuses a time already past, or more than [`super::MAX_SCHEDULE_DAYS`] ahead).
pub(super) fn parse_send_at(value: Option<&Value>) -> Result<Option<i64>, InvalidPush> {
    parse_date_time("sendAt", value)
}

fn parse_date_time(field: &'static str, value: Option<&Value>) -> Result<Option<i64>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| Some(t.timestamp_millis()))
        .ok_or_else(|| {
            InvalidPush::new(
                field,
                format!(
                    "must be an ISO-8601 date-time with a time zone, e.g. \"2026-11-26T22:00:00Z\" (got {})",
                    describe(value)
                ),
            )
        })
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
/// `id`: the push id a caller chooses, a UUID in its hyphenated form (36 characters), so that
/// enqueuing the push again after an unknown outcome cannot deliver it twice.
pub(super) fn parse_push_id(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    match value {
        Value::String(s) if s.len() == 36 && uuid::Uuid::parse_str(s).is_ok() => Ok(Some(s.clone())),
        other => Err(InvalidPush::new(
            "id",
            format!(
                "must be a UUID like 0192f5c4-7b1e-7c3a-9d2e-3f4a5b6c7d8e: the push id, chosen to enqueue a push again without delivering it twice (got {})",
                describe(other)
            ),
        )),
    }
}

pub(super) fn parse_category(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    stored_string(value, "category", MAX_CATEGORY_CHARS).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::{Push, MAX_TOKEN_CHARS};
    use serde_json::json;

    fn field_of(v: Value) -> String {
        Push::from_value(v).unwrap_err().field
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
    fn app_names_are_short_and_plain() {
        for good in [
            "member",
            "trainer-app",
            "a",
            "App_2.prod",
            &"x".repeat(MAX_APP_CHARS),
        ] {
            assert_eq!(check_app(good), Ok(()), "{good}");
            let push = Push::from_value(json!({"token": "t", "app": good})).unwrap();
            assert_eq!(push.app(), good);
        }
        for bad in [
            "",
            "my app",
            "app/1",
            "ä",
            "a\u{0}",
            &"x".repeat(MAX_APP_CHARS + 1),
        ] {
            let err = check_app(bad).unwrap_err();
            assert_eq!(err.field, "app", "{bad}");
            assert!(
                err.problem.starts_with("must be 1 to 64 characters"),
                "{err}"
            );
            assert_eq!(field_of(json!({"token": "t", "app": bad})), "app", "{bad}");
        }
        for bad in [json!(1), json!(null), json!(["member"]), json!({})] {
            let err = Push::from_value(json!({"token": "t", "app": bad})).unwrap_err();
            assert_eq!(err.field, "app", "{bad}");
        }
        assert_eq!(
            check_app("my app").unwrap_err().to_string(),
            "push.app: must be 1 to 64 characters of A-Z a-z 0-9 _ . - (got \"my app\")"
        );
    }

    #[test]
    fn expires_at_is_a_date_time_with_a_zone() {
        let at = |v: Value| {
            Push::from_value(json!({"token": "t", "expiresAt": v})).map(|p| p.expires_at_ms())
        };
        // 2026-11-26T22:00:00Z
        const MS: i64 = 1_795_730_400_000;
        assert_eq!(at(json!("2026-11-26T22:00:00Z")), Ok(Some(MS)));
        // What JSON.stringify writes for a Date.
        assert_eq!(at(json!("2026-11-26T22:00:00.000Z")), Ok(Some(MS)));
        assert_eq!(at(json!("2026-11-26T22:00:00.123Z")), Ok(Some(MS + 123)));
        assert_eq!(at(json!("2026-11-26T23:00:00+01:00")), Ok(Some(MS)));
        assert_eq!(at(json!("2026-11-26T17:30:00.5-04:30")), Ok(Some(MS + 500)));
        // Long past: still a valid push (the consumer records it as expired).
        assert_eq!(at(json!("2001-01-01T00:00:00Z")), Ok(Some(978_307_200_000)));
        assert_eq!(
            Push::from_value(json!({"token": "t"}))
                .unwrap()
                .expires_at_ms(),
            None
        );
        for bad in [
            json!("tomorrow"),
            json!(1_795_730_400_000_i64),
            json!("2026-11-26"),
            json!("2026-11-26T22:00:00"),
            json!("2026-02-30T22:00:00Z"),
            json!(""),
            json!(null),
        ] {
            let err = at(bad.clone()).unwrap_err();
            assert_eq!(err.field, "expiresAt", "{bad}");
            assert!(
                err.problem.starts_with(
                    "must be an ISO-8601 date-time with a time zone, e.g. \"2026-11-26T22:00:00Z\" (got "
                ),
                "{err}"
            );
        }
        assert!(at(json!("tomorrow"))
            .unwrap_err()
            .problem
            .ends_with("(got \"tomorrow\")"));
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
