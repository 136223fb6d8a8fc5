//! The Push: firebase-admin's `Message` plus pushq's targets and options, validated once.
//! Validation mirrors firebase-admin's `validateMessage` and produces the FCM v1 wire form as it goes.

mod fcm_body;
mod url_check;

use serde_json::{Map, Value};

use crate::error::InvalidPush;

/// Most entries a `tokens` or `userIds` list may have in one push (the client splits them into
/// several queue messages; see [`crate::envelope`]).
pub const MAX_LIST_TARGETS: usize = 10_000;
/// Longest user id, in characters (it is stored in a `VARCHAR(255)` column).
pub const MAX_USER_ID_CHARS: usize = 255;
/// Longest idempotency key, in characters (SQS's `MessageDeduplicationId` limit).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;
/// Longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Longest device token, in characters (it is stored in a `VARCHAR(512)` column; FCM's are
/// about 160).
pub const MAX_TOKEN_CHARS: usize = 512;
/// Longest topic or condition, in characters (recorded as the target, `VARCHAR(600)`).
pub const MAX_TOPIC_OR_CONDITION_CHARS: usize = 500;
/// Largest `delaySeconds` (SQS's `DelaySeconds` limit).
pub const MAX_DELAY_SECONDS: u32 = 900;
/// FCM's payload limit for messages to tokens and conditions, in bytes.
pub const FCM_PAYLOAD_LIMIT: usize = 4096;
/// FCM's payload limit for topic messages, in bytes.
pub const FCM_TOPIC_PAYLOAD_LIMIT: usize = 2048;

/// Who a push goes to. Exactly one per push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One FCM registration token.
    Token(String),
    /// An FCM topic name, without the `/topics/` prefix.
    Topic(String),
    /// An FCM condition expression.
    Condition(String),
    /// Several registration tokens (firebase-admin's `MulticastMessage.tokens`).
    Tokens(Vec<String>),
    /// One user, resolved to their live device tokens at delivery.
    User(String),
    /// Several users, each resolved to their live device tokens at delivery.
    Users(Vec<String>),
}

impl Target {
    /// The field of the push that carries this target.
    pub fn field(&self) -> &'static str {
        match self {
            Target::Token(_) => "token",
            Target::Topic(_) => "topic",
            Target::Condition(_) => "condition",
            Target::Tokens(_) => "tokens",
            Target::User(_) => "userId",
            Target::Users(_) => "userIds",
        }
    }

    /// True for targets that fan out to one FCM send per device (`tokens`, `userId`, `userIds`).
    pub fn fans_out(&self) -> bool {
        matches!(self, Target::Tokens(_) | Target::User(_) | Target::Users(_))
    }
}

/// The fields of a push that pushq reads itself and never sends to FCM.
const PUSHQ_FIELDS: [&str; 6] = [
    "tokens",
    "userId",
    "userIds",
    "idempotencyKey",
    "delaySeconds",
    "category",
];
/// The top-level fields of firebase-admin's `Message` other than its targets.
const MESSAGE_FIELDS: [&str; 7] = [
    "data",
    "notification",
    "android",
    "apns",
    "webpush",
    "fcmOptions",
    "fcm_options",
];
/// The fields that name a target.
const TARGET_FIELDS: [&str; 6] = ["token", "topic", "condition", "tokens", "userId", "userIds"];
/// What firebase-admin's `sendEachForMulticast` copies into each per-device message.
const FANOUT_FIELDS: [&str; 6] = [
    "android",
    "apns",
    "data",
    "notification",
    "webpush",
    "fcmOptions",
];

/// A validated push.
///
/// Holds the push exactly as the producer wrote it (that is what travels in the queue envelope),
/// and the FCM v1 `message` it becomes, without its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    raw: Map<String, Value>,
    target: Target,
    wire: Map<String, Value>,
    idempotency_key: Option<String>,
    delay_seconds: Option<u32>,
    category: Option<String>,
}

impl Push {
    /// Validates a push given as JSON text (what `JSON.stringify` makes of a JS object).
    /// A text serde cannot read is named by where it fails (e.g. a string holding a lone UTF-16
    /// surrogate, which JSON.stringify writes as `\ud800` and no UTF-8 system can store).
    pub fn from_json(json: &str) -> Result<Push, InvalidPush> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            let field = json_path_at(json, e.line(), e.column()).unwrap_or_else(|| "push".into());
            let text = e.to_string();
            if text.contains("surrogate") || text.contains("hex escape") {
                InvalidPush::new(
                    field,
                    "holds a string that is not valid Unicode (a lone UTF-16 surrogate)".to_owned(),
                )
            } else if text.contains("recursion limit") {
                InvalidPush::new(field, "is nested more than 127 levels deep".to_owned())
            } else {
                InvalidPush::new(field, format!("is not valid JSON ({e})"))
            }
        })?;
        Push::from_value(value)
    }

    /// Validates a push given as a JSON value.
    pub fn from_value(value: Value) -> Result<Push, InvalidPush> {
        let Value::Object(raw) = value else {
            return Err(InvalidPush::new(
                "push",
                format!("must be an object (got {})", describe(&value)),
            ));
        };
        if let Some(key) = raw.keys().find(|k| {
            let k = k.as_str();
            !TARGET_FIELDS.contains(&k)
                && !PUSHQ_FIELDS.contains(&k)
                && !MESSAGE_FIELDS.contains(&k)
        }) {
            let name = if key.is_empty() { "\"\"" } else { key.as_str() };
            return Err(InvalidPush::new(
                name,
                "is not a field of a push (firebase-admin's Message fields, a target, or pushq's idempotencyKey, delaySeconds, category)".to_owned(),
            ));
        }
        let target = parse_target(&raw)?;
        let idempotency_key = parse_idempotency_key(raw.get("idempotencyKey"))?;
        let delay_seconds = parse_delay(raw.get("delaySeconds"))?;
        let category = parse_category(raw.get("category"))?;

        let mut wire = Map::new();
        for (key, value) in &raw {
            let keep = if target.fans_out() {
                FANOUT_FIELDS.contains(&key.as_str())
            } else {
                !PUSHQ_FIELDS.contains(&key.as_str()) && !TARGET_FIELDS.contains(&key.as_str())
            };
            if keep {
                wire.insert(key.clone(), value.clone());
            }
        }
        fcm_body::to_wire(&mut wire)?;
        Ok(Push {
            raw,
            target,
            wire,
            idempotency_key,
            delay_seconds,
            category,
        })
    }

    /// Who the push goes to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The push as the producer wrote it (the envelope's `push`).
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// `idempotencyKey`: pushes with the same key are delivered once per device.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// `delaySeconds` (0–900), passed to SQS as `DelaySeconds`.
    pub fn delay_seconds(&self) -> Option<u32> {
        self.delay_seconds
    }

    /// `category`, recorded in the delivery log.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// Size in bytes of the FCM message without its target: what FCM's payload limit is checked against.
    pub fn payload_size(&self) -> usize {
        serde_json::to_vec(&self.wire)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }

    /// FCM's payload limit for this push's target.
    pub fn payload_limit(&self) -> usize {
        match self.target {
            Target::Topic(_) => FCM_TOPIC_PAYLOAD_LIMIT,
            _ => FCM_PAYLOAD_LIMIT,
        }
    }

    /// The FCM v1 request body for this push's own target (`token`, `topic` or `condition`).
    /// For pushes that fan out, use [`Push::fcm_request_for_token`].
    pub fn fcm_request(&self, validate_only: bool) -> Option<Value> {
        let (key, value) = match &self.target {
            Target::Token(t) => ("token", t),
            Target::Topic(t) => ("topic", t),
            Target::Condition(c) => ("condition", c),
            _ => return None,
        };
        Some(self.request_with(key, value, validate_only))
    }

    /// The FCM v1 request body that sends this push to one device token.
    pub fn fcm_request_for_token(&self, token: &str, validate_only: bool) -> Value {
        self.request_with("token", token, validate_only)
    }

    fn request_with(&self, key: &str, value: &str, validate_only: bool) -> Value {
        let mut message = Map::with_capacity(self.wire.len() + 1);
        message.insert(key.to_owned(), Value::String(value.to_owned()));
        message.extend(self.wire.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut body = Map::new();
        body.insert("message".to_owned(), Value::Object(message));
        if validate_only {
            body.insert("validate_only".to_owned(), Value::Bool(true));
        }
        Value::Object(body)
    }

    /// This push with its `tokens`/`userIds` list replaced by `part` (used to split large lists).
    pub(crate) fn with_list(&self, part: &[String]) -> Push {
        let mut push = self.clone();
        let list = Value::Array(part.iter().cloned().map(Value::String).collect());
        match &mut push.target {
            Target::Tokens(v) | Target::Users(v) => *v = part.to_vec(),
            _ => return push,
        }
        push.raw.insert(self.target.field().to_owned(), list);
        push
    }
}

/// Describes a JSON value for an error message without echoing large or sensitive content.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "an empty string".to_owned(),
        Value::String(s) if s.chars().count() > 40 => {
            format!("a string of {} characters", s.chars().count())
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("an array of {} entries", a.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn parse_target(raw: &Map<String, Value>) -> Result<Target, InvalidPush> {
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

/// The field path (`notification.title`, `tokens[3]`) at a 1-based line and column of a JSON
/// text, for naming where a text that serde cannot read goes wrong. `None` at the top level.
fn json_path_at(text: &str, line: usize, column: usize) -> Option<String> {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let end = (line_start + column).min(text.len());
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Object(None));
                expecting_key = true;
            }
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(key)) => {
                    *key = None;
                    expecting_key = true;
                }
                None => {}
            },
            b':' => expecting_key = false,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if expecting_key {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        *key = Some(
                            String::from_utf8_lossy(&bytes[start..i.min(bytes.len())]).into_owned(),
                        );
                    }
                }
                if i >= end {
                    break; // the error is inside this string
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in stack.iter().skip(1) {
        match frame {
            Frame::Object(Some(key)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    // The top-level object's current key.
    if let Some(Frame::Object(Some(key))) = stack.first() {
        path = if path.is_empty() || path.starts_with('[') {
            format!("{key}{path}")
        } else {
            format!("{key}.{path}")
        };
    }
    (!path.is_empty()).then_some(path)
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
    items
        .iter()
        .enumerate()
        .map(|(i, item)| stored_string(item, &format!("{field}[{i}]"), max_chars))
        .collect()
}

fn parse_idempotency_key(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
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

fn parse_delay(value: Option<&Value>) -> Result<Option<u32>, InvalidPush> {
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

fn parse_category(value: Option<&Value>) -> Result<Option<String>, InvalidPush> {
    let Some(value) = value else { return Ok(None) };
    stored_string(value, "category", MAX_CATEGORY_CHARS).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        Push::from_value(v).unwrap_err().field
    }

    #[test]
    fn error_names_the_field_and_the_value() {
        let err = Push::from_value(json!({"token": "t", "android": {"ttl": -1}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "push.android.ttl: must be a non-negative duration in milliseconds (got -1)"
        );
        assert_eq!(
            err.clone().at_index(3).to_string(),
            "pushes[3].android.ttl: must be a non-negative duration in milliseconds (got -1)"
        );
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
    fn unknown_fields_are_named_not_dropped_or_sent() {
        assert_eq!(
            field_of(json!({"token": "a", "unknownKey": 1})),
            "unknownKey"
        );
        assert_eq!(
            field_of(json!({"userIds": ["u"], "constructor": "x"})),
            "constructor"
        );
        let proto: Value = serde_json::from_str(r#"{"token":"a","__proto__":{"x":1}}"#).unwrap();
        assert_eq!(field_of(proto), "__proto__");
        // Found by the push_validate fuzz target: an empty key must still name something.
        assert_eq!(field_of(json!({"token": "a", "": 41})), "\"\"");
        // snake_case fcm_options is FCM's own spelling and stays allowed.
        assert!(
            Push::from_value(json!({"token": "a", "fcm_options": {"analytics_label": "l"}}))
                .is_ok()
        );
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
    fn unreadable_json_is_named_where_it_goes_wrong() {
        let err = |text: &str| Push::from_json(text).unwrap_err();
        // What JSON.stringify writes for a lone surrogate.
        let e = err(r#"{"token":"t","notification":{"title":"a\ud800b"}}"#);
        assert_eq!(e.field, "notification.title");
        assert!(e.problem.contains("not valid Unicode"), "{e}");
        assert_eq!(
            err(r#"{"token":"t","data":{"k\udc00":"v"}}"#).field,
            "data.k\\udc00"
        );
        assert_eq!(err(r#"{"tokens":["a","b\ud800"]}"#).field, "tokens[1]");
        let deep = format!(
            r#"{{"token":"t","apns":{{"payload":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = err(&deep);
        assert!(e.field.starts_with("apns.payload["), "{e}");
        assert!(e.problem.contains("nested"), "{e}");
        assert_eq!(err("{").field, "push");
    }

    #[test]
    fn pushq_fields_never_reach_fcm() {
        let push = Push::from_value(json!({
            "userIds": ["u1", "u2"], "idempotencyKey": "k", "delaySeconds": 5, "category": "promo",
            "notification": {"title": "t"}
        }))
        .unwrap();
        assert_eq!(
            push.fcm_request_for_token("dev", true),
            json!({"message": {"token": "dev", "notification": {"title": "t"}}, "validate_only": true})
        );
        assert_eq!(push.delay_seconds(), Some(5));
        assert_eq!(push.category(), Some("promo"));
        assert_eq!(push.idempotency_key(), Some("k"));
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

    #[test]
    fn with_list_replaces_target_and_raw() {
        let push = Push::from_value(json!({"tokens": ["a", "b", "c"]})).unwrap();
        let part = push.with_list(&["b".to_owned()]);
        assert_eq!(part.target(), &Target::Tokens(vec!["b".into()]));
        assert_eq!(part.raw()["tokens"], json!(["b"]));
    }
}
