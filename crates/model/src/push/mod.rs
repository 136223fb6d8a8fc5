//! The Push: firebase-admin's `Message` plus pushq's targets and options, validated once.
//! Validation mirrors firebase-admin's `validateMessage` and produces the FCM v1 wire form as it goes.

mod advertising;
mod audience;
mod fcm_body;
mod fcm_shape;
mod fields;
mod json_path;
mod target;
mod url_check;

use serde_json::{Map, Value};

use crate::error::InvalidPush;
pub use advertising::DEFAULT_AD_PREFIX;
pub use audience::{is_segment_name, Audience, MAX_SEGMENT_CHARS};
pub use fcm_shape::{check_fcm_shape, ShapeViolation, Violation};
pub use fields::check_app;
pub(crate) use fields::stored_string;
use fields::{
    parse_app, parse_category, parse_delay, parse_expires_at, parse_idempotency_key, parse_push_id,
    parse_send_at,
};
use json_path::json_path_at;
pub use target::{is_target_field, Recipient, Target};
use target::{parse_target, TARGET_FIELDS};

/// The app of a push that names none (and of a client without an `app` option).
pub const DEFAULT_APP: &str = "default";
/// Most entries a `tokens`, `fids` or `userIds` list may have in one push (the client splits
/// them into several queue messages; see [`crate::envelope`]).
pub const MAX_LIST_TARGETS: usize = 10_000;
/// Longest user id, in characters (it is stored in a `VARCHAR(255)` column).
pub const MAX_USER_ID_CHARS: usize = 255;
/// Longest idempotency key, in characters (SQS's `MessageDeduplicationId` limit).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;
/// Longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 100;
/// Longest device token or FID, in characters (it is stored in a `VARCHAR(512)` column; FCM's
/// tokens are about 160, FIDs 22).
pub const MAX_TOKEN_CHARS: usize = 512;
/// Longest app name, in characters.
pub const MAX_APP_CHARS: usize = 64;
/// Longest topic or condition, in characters (recorded as the target, `VARCHAR(600)`).
pub const MAX_TOPIC_OR_CONDITION_CHARS: usize = 500;
/// Largest `delaySeconds` (SQS's `DelaySeconds` limit).
pub const MAX_DELAY_SECONDS: u32 = 900;
/// Furthest ahead a push may be scheduled with `sendAt`, in days.
pub const MAX_SCHEDULE_DAYS: i64 = 365;
/// FCM's payload limit for messages to tokens and conditions, in bytes.
pub const FCM_PAYLOAD_LIMIT: usize = 4096;
/// FCM's payload limit for topic messages, in bytes.
pub const FCM_TOPIC_PAYLOAD_LIMIT: usize = 2048;

/// The fields of a push that pushq reads itself and never sends to FCM.
const PUSHQ_FIELDS: [&str; 12] = [
    "id",
    "tokens",
    "fids",
    "userId",
    "userIds",
    "app",
    "idempotencyKey",
    "expiresAt",
    "delaySeconds",
    "sendAt",
    "category",
    "advertising",
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
/// Whether `name` is a top-level field of a push this build knows (a target, a field of
/// firebase-admin's `Message`, or pushq's own).
pub fn is_push_field(name: &str) -> bool {
    TARGET_FIELDS.contains(&name) || PUSHQ_FIELDS.contains(&name) || MESSAGE_FIELDS.contains(&name)
}

/// A validated push.
///
/// Holds the push exactly as the producer wrote it (that is what travels in the queue envelope),
/// and the FCM v1 `message` it becomes, without its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    raw: Map<String, Value>,
    target: Target,
    wire: Map<String, Value>,
    app: Option<String>,
    id: Option<String>,
    idempotency_key: Option<String>,
    expires_at_ms: Option<i64>,
    delay_seconds: Option<u32>,
    send_at_ms: Option<i64>,
    category: Option<String>,
    advertising: bool,
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
        if let Some(key) = raw.keys().find(|k| !is_push_field(k)) {
            let name = if key.is_empty() { "\"\"" } else { key.as_str() };
            return Err(InvalidPush::new(
                name,
                "is not a field of a push (firebase-admin's Message fields, a target, or pushq's id, app, idempotencyKey, expiresAt, delaySeconds, sendAt, category, advertising)".to_owned(),
            ));
        }
        let mut raw = raw;
        let target = parse_target(&raw)?;
        if let Target::Tokens(list) | Target::Fids(list) | Target::Users(list) = &target {
            // Repeats were removed: the envelope carries the list as delivered.
            if raw[target.field()].as_array().map(Vec::len) != Some(list.len()) {
                let list = list.iter().cloned().map(Value::String).collect();
                raw.insert(target.field().to_owned(), Value::Array(list));
            }
        }
        let app = parse_app(raw.get("app"))?;
        let id = parse_push_id(raw.get("id"))?;
        let idempotency_key = parse_idempotency_key(raw.get("idempotencyKey"))?;
        let expires_at_ms = parse_expires_at(raw.get("expiresAt"))?;
        let delay_seconds = parse_delay(raw.get("delaySeconds"))?;
        let send_at_ms = parse_send_at(raw.get("sendAt"))?;
        if send_at_ms.is_some() && delay_seconds.is_some() {
            return Err(InvalidPush::new(
                "sendAt",
                "cannot be combined with delaySeconds: give one time to send at",
            ));
        }
        let category = parse_category(raw.get("category"))?;
        let advertising = advertising::parse_advertising(raw.get("advertising"))?;
        let wire = wire_message(&raw)?;
        Ok(Push {
            raw,
            target,
            wire,
            app,
            id,
            idempotency_key,
            expires_at_ms,
            delay_seconds,
            send_at_ms,
            category,
            advertising,
        })
    }

    /// `id`: the push id the caller chose, if it chose one (else the envelope gets a new one).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Who the push goes to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The push as the producer wrote it (the envelope's `push`).
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The FCM v1 `message` this push becomes, without its target: what every target receives.
    pub fn fcm_payload(&self) -> &Map<String, Value> {
        &self.wire
    }

    /// `app`: which of the deployment's apps (Firebase projects) sends the push; [`DEFAULT_APP`]
    /// when the push names none.
    pub fn app(&self) -> &str {
        self.app.as_deref().unwrap_or(DEFAULT_APP)
    }

    /// This push sent by `app` when it names no app itself (a client's `app` option). Writes
    /// the app into the raw push, which the envelope carries, unless it is [`DEFAULT_APP`]
    /// (a consumer reads a push without `app` as that). `app` must pass [`check_app`].
    pub fn with_default_app(mut self, app: &str) -> Push {
        debug_assert!(check_app(app).is_ok(), "app {app:?} was not checked");
        if self.app.is_none() && app != DEFAULT_APP {
            self.raw
                .insert("app".to_owned(), Value::String(app.to_owned()));
            self.app = Some(app.to_owned());
        }
        self
    }

    /// `expiresAt`, in milliseconds since the Unix epoch: the push is not sent after it. Not
    /// compared with the clock here: an envelope read after that time is still a valid push,
    /// which the consumer records as expired.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.expires_at_ms
    }

    /// `idempotencyKey`: pushes with the same key are delivered once per device.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// `delaySeconds` (0–900), passed to SQS as `DelaySeconds`.
    pub fn delay_seconds(&self) -> Option<u32> {
        self.delay_seconds
    }

    /// `sendAt`, in milliseconds since the Unix epoch: the push is not sent before it. Not
    /// compared with the clock here (see [`crate::Envelope`]'s consumers and the producer).
    pub fn send_at_ms(&self) -> Option<i64> {
        self.send_at_ms
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

    /// The largest field of the FCM payload and its size as JSON, named as the caller wrote it:
    /// the top-level field, or, when that is an object, its largest member (`data.report`,
    /// `android.notification`).
    pub fn largest_field(&self) -> Option<(String, usize)> {
        const PAYLOAD: [&str; 6] = [
            "notification",
            "data",
            "android",
            "apns",
            "webpush",
            "fcmOptions",
        ];
        fn size(v: &Value) -> usize {
            serde_json::to_vec(v).map_or(0, |b| b.len())
        }
        let (key, value) = self
            .raw
            .iter()
            .filter(|(k, _)| PAYLOAD.contains(&k.as_str()))
            .max_by_key(|(_, v)| size(v))?;
        let inner = value
            .as_object()
            .and_then(|map| map.iter().max_by_key(|(_, v)| size(v)));
        Some(match inner {
            Some((member, v)) => (format!("{key}.{member}"), size(v)),
            None => (key.clone(), size(value)),
        })
    }

    /// FCM's payload limit for this push's target.
    pub fn payload_limit(&self) -> usize {
        match self.target {
            Target::Topic(_) => FCM_TOPIC_PAYLOAD_LIMIT,
            _ => FCM_PAYLOAD_LIMIT,
        }
    }

    /// The FCM v1 request body for this push's own target (`token`, `fid`, `topic` or
    /// `condition`); `None` for pushes that fan out: see [`Push::fcm_request_for`].
    pub fn fcm_request(&self, validate_only: bool) -> Option<Value> {
        let (key, value) = match &self.target {
            Target::Token(t) => ("token", t),
            Target::Fid(f) => ("fid", f),
            Target::Topic(t) => ("topic", t),
            Target::Condition(c) => ("condition", c),
            Target::Tokens(_)
            | Target::Fids(_)
            | Target::User(_)
            | Target::Users(_)
            | Target::Audience(_) => return None,
        };
        Some(self.request_with(key, value, validate_only))
    }

    /// The FCM v1 request body that sends this push to one device: `message.token` or
    /// `message.fid`, as firebase-admin sends a `TokenMessage` or a `FidMessage`.
    pub fn fcm_request_for(&self, to: Recipient<'_>, validate_only: bool) -> Value {
        match to {
            Recipient::Token(token) => self.request_with("token", token, validate_only),
            Recipient::Fid(fid) => self.request_with("fid", fid, validate_only),
        }
    }

    /// The FCM v1 request body that sends this push to one device token
    /// ([`Push::fcm_request_for`] with a [`Recipient::Token`]).
    pub fn fcm_request_for_token(&self, token: &str, validate_only: bool) -> Value {
        self.fcm_request_for(Recipient::Token(token), validate_only)
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

    /// This push with its `tokens`/`fids`/`userIds` list replaced by `part` (used to split
    /// large lists).
    pub(crate) fn with_list(&self, part: &[String]) -> Push {
        let mut push = self.clone();
        let list = Value::Array(part.iter().cloned().map(Value::String).collect());
        match &mut push.target {
            Target::Tokens(v) | Target::Fids(v) | Target::Users(v) => *v = part.to_vec(),
            _ => return push,
        }
        push.raw.insert(self.target.field().to_owned(), list);
        push
    }
}

/// The FCM v1 `message` a push becomes, without its target, checked as firebase-admin checks it
/// and then as FCM itself would.
fn wire_message(raw: &Map<String, Value>) -> Result<Map<String, Value>, InvalidPush> {
    // Every field but pushq's and the target: what firebase-admin 14's `sendEachForMulticast`
    // copies into each per-device message too (`{ ...baseMessage, token }`).
    let mut wire = Map::new();
    for (key, value) in raw {
        if !PUSHQ_FIELDS.contains(&key.as_str()) && !TARGET_FIELDS.contains(&key.as_str()) {
            wire.insert(key.clone(), value.clone());
        }
    }
    fcm_body::to_wire(&mut wire)?;
    // Beyond firebase-admin: what FCM itself refuses (an unknown field, an enum value, a
    // reserved data key, a link that is not HTTPS), named as the push wrote it.
    fcm_shape::check_fcm_shape(raw).map_err(|v| InvalidPush::new(v.field.clone(), v.problem()))?;
    Ok(wire)
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

#[cfg(test)]
mod tests;
