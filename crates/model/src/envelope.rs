//! The queue envelope, version 1: `{"v":1,"id":"<uuid>","enqueuedAt":<ms>,"push":{…}}`.
//! One push becomes one envelope, or several when its `tokens`/`fids`/`userIds` list is large.
//!
//! Split rule: an envelope carries at most [`MAX_TARGETS_PER_ENVELOPE`] list entries and its body
//! stays within [`MAX_ENVELOPE_BYTES`]; a longer list is cut, in order, into as few envelopes as
//! those two bounds allow. All parts share the push id, so the delivery log (unique on push id and
//! target) records the push once per device whatever the split.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{EnvelopeError, TooLarge};
use crate::push::{Push, Target};
pub use page::Page;

/// The envelope format version this build writes pushes with.
pub const ENVELOPE_VERSION: u64 = 1;
/// The newest envelope version this build reads: 2 adds topic changes
/// ([`crate::topics::TopicChange`]); a version-2 envelope carries `push` or `topics`.
pub const NEWEST_READ_VERSION: u64 = crate::topics::TOPICS_ENVELOPE_VERSION;

/// What a queue message carries.
#[derive(Debug, Clone, PartialEq)]
// Read once per message and moved on: boxing the push would cost every push an allocation.
#[allow(clippy::large_enum_variant)]
pub enum QueueBody {
    /// A push.
    Push(Envelope),
    /// A topic subscription to bring in line with the database.
    Topics(crate::topics::TopicChange),
}

/// Reads a queue message body: a push, or (version 2) a topic change. `message_id` and
/// `sent_at_ms` stand in for `id` and `enqueuedAt` as in [`Envelope::parse`].
pub fn read_body(
    body: &str,
    message_id: &str,
    sent_at_ms: i64,
) -> Result<QueueBody, EnvelopeError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(Arc::new(e)))?;
    let Value::Object(mut map) = value else {
        return Err(EnvelopeError::NotAnObject);
    };
    check_version(&map)?;
    let id = push_id(&map, message_id)?;
    let enqueued_at = enqueued_at(&map, sent_at_ms)?;
    let v2 = map.get("v").and_then(Value::as_u64) >= Some(crate::topics::TOPICS_ENVELOPE_VERSION);
    if v2 && !map.contains_key("push") {
        if let Some(topics) = map.remove("topics") {
            let change = crate::topics::TopicChange::from_envelope(id, enqueued_at, topics)?;
            return Ok(QueueBody::Topics(change));
        }
    }
    Envelope::from_map(map, id, enqueued_at).map(QueueBody::Push)
}
/// Most `tokens`/`fids`/`userIds` entries in one envelope.
pub const MAX_TARGETS_PER_ENVELOPE: usize = 500;
/// Largest envelope body pushq writes, in bytes: a quarter of SQS's original 256 KiB message
/// limit, so that four fit one `SendMessageBatch` and every SQS-compatible queue takes them.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Longest id accepted from a foreign producer.
const MAX_FOREIGN_ID_CHARS: usize = 64;

/// Whether `id` may be an envelope's push id: 1 to 64 characters, without NUL.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_FOREIGN_ID_CHARS && !id.contains('\0')
}

/// A push on its way through the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The push id: a UUIDv7 for pushes enqueued by pushq; recorded in the delivery log.
    pub id: String,
    /// When the push was enqueued, in milliseconds since the Unix epoch.
    pub enqueued_at: i64,
    /// The push itself.
    pub push: Push,
    /// A dry run (firebase-admin's `send(message, true)`): FCM validates each send
    /// (`validate_only`) and delivers nothing; the log records the targets as `dry_run`.
    pub dry_run: bool,
    /// Which part of a push split into several queue messages this is, and how many there are
    /// (`(index, count)`, index from 0); `None` for a push in one message.
    pub part: Option<(u32, u32)>,
    /// Which page of an audience push this is; `None` for the audience push itself (which the
    /// consumer expands into pages) and for every other push.
    pub page: Option<Page>,
}

/// Most parts a push may be split into (10,000 list entries of 512 characters, 64 KiB a part).
pub const MAX_PARTS: u32 = 10_000;

#[derive(Serialize)]
struct Wire<'a> {
    v: u64,
    id: &'a str,
    #[serde(rename = "enqueuedAt")]
    enqueued_at: i64,
    #[serde(rename = "dryRun", skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<Page>,
    push: &'a Map<String, Value>,
}

impl Envelope {
    /// A new envelope for `push`, stamped now: its id is the push's own `id` when the caller
    /// chose one, else a fresh UUIDv7.
    pub fn new(push: Push) -> Envelope {
        let enqueued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Envelope {
            id: push
                .id()
                .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned),
            enqueued_at,
            push,
            dry_run: false,
            part: None,
            page: None,
        }
    }

    /// The same envelope as a dry run (see [`Envelope::dry_run`]).
    pub fn into_dry_run(self, dry_run: bool) -> Envelope {
        Envelope { dry_run, ..self }
    }

    /// Page `page` of this audience push: the same envelope, covering those devices.
    pub fn with_page(&self, page: Page) -> Envelope {
        Envelope {
            page: Some(page),
            ..self.clone()
        }
    }

    /// The envelope as a queue message body.
    pub fn to_json(&self) -> String {
        let wire = Wire {
            v: ENVELOPE_VERSION,
            id: &self.id,
            enqueued_at: self.enqueued_at,
            dry_run: self.dry_run,
            part: self.part.map(|(i, _)| i),
            parts: self.part.map(|(_, n)| n),
            page: self.page,
            push: self.push.raw(),
        };
        serde_json::to_string(&wire).expect("a JSON map always serializes")
    }

    /// The queue message bodies for this push: one, or several when its target list is large
    /// (see the module docs for the rule). Fails with [`TooLarge`] when a body cannot be
    /// brought under [`MAX_ENVELOPE_BYTES`].
    pub fn to_bodies(&self) -> Result<Vec<String>, TooLarge> {
        let whole = self.to_json();
        let list = match self.push.target() {
            Target::Tokens(list) | Target::Fids(list) | Target::Users(list) => list,
            _ => return within_limit(whole).map(|b| vec![b]),
        };
        if list.len() <= MAX_TARGETS_PER_ENVELOPE && whole.len() <= MAX_ENVELOPE_BYTES {
            return Ok(vec![whole]);
        }
        // The part fields of the largest split (`"part":9999,"parts":10000,`) are counted in.
        let base = self.part(&[], (MAX_PARTS - 1, MAX_PARTS)).to_json().len();
        let mut slices = Vec::new();
        let mut start = 0;
        while start < list.len() {
            let mut size = base;
            let mut end = start;
            while end < list.len() && end - start < MAX_TARGETS_PER_ENVELOPE {
                // The entry as JSON, plus the comma before it.
                let entry = serde_json::to_string(&list[end]).map_or(0, |s| s.len())
                    + usize::from(end > start);
                if end > start && size + entry > MAX_ENVELOPE_BYTES {
                    break;
                }
                size += entry;
                end += 1;
            }
            slices.push(start..end);
            start = end;
        }
        // Each part says which it is and how many there are, so the log can tell when every
        // part of the push is recorded.
        let parts = slices.len() as u32;
        slices
            .into_iter()
            .enumerate()
            .map(|(i, range)| within_limit(self.part(&list[range], (i as u32, parts)).to_json()))
            .collect()
    }

    fn part(&self, list: &[String], part: (u32, u32)) -> Envelope {
        Envelope {
            id: self.id.clone(),
            enqueued_at: self.enqueued_at,
            push: self.push.with_list(list),
            dry_run: self.dry_run,
            part: Some(part),
            page: None,
        }
    }

    /// Reads a queue message body. `message_id` and `sent_at_ms` (the SQS message id and
    /// `SentTimestamp`) stand in for `id` and `enqueuedAt` when a foreign producer left them out.
    /// A topic change is not a push: `push: missing`.
    pub fn parse(body: &str, message_id: &str, sent_at_ms: i64) -> Result<Envelope, EnvelopeError> {
        match read_body(body, message_id, sent_at_ms)? {
            QueueBody::Push(envelope) => Ok(envelope),
            QueueBody::Topics(_) => Err(bad("push", "missing (the message is a topic change)")),
        }
    }

    /// The push of an envelope whose version, `id` and `enqueuedAt` are read already.
    fn from_map(
        mut map: Map<String, Value>,
        id: String,
        enqueued_at: i64,
    ) -> Result<Envelope, EnvelopeError> {
        let dry_run = match map.get("dryRun") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("dryRun", "must be a boolean")),
        };
        let part = part_of(&map)?;
        let page = page::page_of(&map)?;
        let push = map.remove("push").ok_or_else(|| bad("push", "missing"))?;
        let push = parse_push(push)?;
        if page.is_some() && !matches!(push.target(), Target::Audience(_)) {
            return Err(bad("page", "belongs to an audience push only"));
        }
        Ok(Envelope {
            id,
            enqueued_at,
            push,
            dry_run,
            part,
            page,
        })
    }
}

/// An envelope field that is not as this version writes it.
fn bad(field: &'static str, problem: &str) -> EnvelopeError {
    EnvelopeError::Field {
        field,
        problem: problem.to_owned(),
    }
}

/// Checks the envelope's `v`: this build reads versions 1 to [`NEWEST_READ_VERSION`], and tells
/// a newer version (to wait for) from a malformed or missing one.
fn check_version(map: &Map<String, Value>) -> Result<(), EnvelopeError> {
    match map.get("v").map(|v| (v, v.as_u64())) {
        Some((_, Some(1..=NEWEST_READ_VERSION))) => Ok(()),
        Some((_, Some(newer))) if newer > NEWEST_READ_VERSION => {
            Err(EnvelopeError::UnknownVersion(newer))
        }
        Some((v, _)) => Err(EnvelopeError::BadVersion(crate::push::describe(v))),
        None => Err(EnvelopeError::MissingVersion),
    }
}

/// The envelope's `id`, else the queue message id (a foreign producer may leave it out).
fn push_id(map: &Map<String, Value>, message_id: &str) -> Result<String, EnvelopeError> {
    match map.get("id") {
        None | Some(Value::Null) => Ok(message_id.to_owned()),
        Some(Value::String(s)) if is_valid_id(s) => Ok(s.clone()),
        Some(_) => Err(EnvelopeError::Field {
            field: "id",
            problem: format!(
                "must be a non-empty string of at most {MAX_FOREIGN_ID_CHARS} characters, without NUL"
            ),
        }),
    }
}

/// The envelope's `enqueuedAt`, else the queue message's `SentTimestamp` (`sent_at_ms`).
fn enqueued_at(map: &Map<String, Value>, sent_at_ms: i64) -> Result<i64, EnvelopeError> {
    match map.get("enqueuedAt") {
        None | Some(Value::Null) => Ok(sent_at_ms),
        // Years 1970 to 9999: what every database's timestamp column holds (MySQL's
        // DATETIME stops at 9999; a later one would fail the batch's insert every time).
        Some(v) => v
            .as_i64()
            .filter(|ms| (0..=MAX_ENQUEUED_AT_MS).contains(ms))
            .ok_or_else(|| {
                bad(
                    "enqueuedAt",
                    "must be milliseconds since the Unix epoch, in the years 1970 to 9999",
                )
            }),
    }
}

/// The envelope's `part` and `parts`, which come together: `(index, count)` of a push split
/// into several queue messages, `None` for a push in one.
fn part_of(map: &Map<String, Value>) -> Result<Option<(u32, u32)>, EnvelopeError> {
    let count = |field: &'static str| match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n < u64::from(MAX_PARTS) + u64::from(field == "parts"))
            .map(|n| Some(n as u32))
            .ok_or_else(|| {
                bad(
                    field,
                    "must be a whole number below 10000 (part) or up to 10000 (parts)",
                )
            }),
    };
    match (count("part")?, count("parts")?) {
        (None, None) => Ok(None),
        (Some(i), Some(n)) if i < n => Ok(Some((i, n))),
        _ => Err(bad("part", "part and parts go together, with part < parts")),
    }
}

/// The last millisecond of the year 9999 (9999-12-31T23:59:59.999Z).
const MAX_ENQUEUED_AT_MS: i64 = 253_402_300_799_999;

/// The push of an envelope. A push with fields this build does not know is
/// [`EnvelopeError::UnknownPushField`] (a newer producer's, to wait for) when the fields it does
/// know are valid, or when all it lacks is a target (the unknown field may be a new kind);
/// a known field with a wrong value is invalid whatever else the push holds.
fn parse_push(push: Value) -> Result<Push, EnvelopeError> {
    let Value::Object(mut fields) = push else {
        return Ok(Push::from_value(push)?);
    };
    let unknown: Vec<String> = fields
        .keys()
        .filter(|k| !crate::push::is_push_field(k))
        .cloned()
        .collect();
    let Some(first) = unknown.first().cloned() else {
        return Ok(Push::from_value(Value::Object(fields))?);
    };
    // A later version adds fields named as firebase-admin's are; `__proto__`, `""` or `a b`
    // no version will accept.
    if let Some(odd) = unknown.iter().find(|k| !could_be_a_field(k)) {
        let name = if odd.is_empty() { "\"\"" } else { odd.as_str() };
        return Err(crate::error::InvalidPush::new(
            name,
            "is not a field of a push, in this or any later version",
        )
        .into());
    }
    let has_target = fields
        .iter()
        .any(|(k, v)| crate::push::is_target_field(k) && !v.is_null());
    for k in &unknown {
        fields.remove(k);
    }
    match Push::from_value(Value::Object(fields)) {
        Err(e) if e.field != "target" || has_target => Err(e.into()),
        _ => Err(EnvelopeError::UnknownPushField(first)),
    }
}

/// Whether a later version could name a push field so: a letter, then letters, digits and
/// underscores, at most 64 characters.
fn could_be_a_field(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

fn within_limit(body: String) -> Result<String, TooLarge> {
    if body.len() > MAX_ENVELOPE_BYTES {
        return Err(TooLarge {
            subject: "push".to_owned(),
            what: "queue message",
            size: body.len(),
            limit: MAX_ENVELOPE_BYTES,
            hint: " (a single target or list entry is too long)",
            largest_field: None,
            largest_size: 0,
        });
    }
    Ok(body)
}

mod page;
#[cfg(test)]
mod tests;
