//! The errors of pushq's message model: a push that is not valid, a push too large for FCM or
//! for one queue message, and a queue message body that is not an envelope.

use std::fmt;
use std::sync::Arc;

/// A push that failed validation: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPush {
    /// Position in a list of pushes (`enqueuePushes`), if the push came from one.
    pub index: Option<usize>,
    /// Dotted path of the offending field relative to the push (`android.ttl`, `tokens[2]`),
    /// `target` when the set of target fields is wrong, or `push` for the push itself.
    pub field: String,
    /// What is wrong, e.g. `must be >= 0 (got -1)`.
    pub problem: String,
}

impl InvalidPush {
    /// An error about `field` (relative to the push; `push` for the push itself).
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            index: None,
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same error, located at `pushes[index]`.
    pub fn at_index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// The field's path as a caller names it: `android.ttl`, `pushes[3].tokens[2]`, `pushes[3]`
    /// (a list entry that is not a push object), or `push`.
    pub fn path(&self) -> String {
        match (self.index, self.field.as_str()) {
            (Some(i), "push") => format!("pushes[{i}]"),
            (Some(i), field) => format!("pushes[{i}].{field}"),
            (None, field) => field.to_owned(),
        }
    }
}

impl fmt::Display for InvalidPush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "pushes[{i}]")?,
            None => f.write_str("push")?,
        }
        if self.field != "push" {
            write!(f, ".{}", self.field)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for InvalidPush {}

/// A valid push that is too large: its FCM payload is over FCM's limit, or one of its queue
/// messages is over the envelope's bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject}: {what} is {size} bytes, over the limit of {limit} bytes{hint}{}", largest(largest_field.as_deref(), *largest_size))]
pub struct TooLarge {
    /// `push` or `pushes[i]`.
    pub subject: String,
    /// What was measured: `FCM payload` or `queue message`.
    pub what: &'static str,
    /// Its serialized size, in bytes.
    pub size: usize,
    /// The limit it broke, in bytes.
    pub limit: usize,
    /// Extra explanation (the limit's source, what to do).
    pub hint: &'static str,
    /// The push's largest field (`data.report`), where it is the payload that is too large.
    pub largest_field: Option<String>,
    /// That field's size as JSON, in bytes.
    pub largest_size: usize,
}

fn largest(field: Option<&str>, size: usize) -> String {
    field.map_or_else(String::new, |f| {
        format!("; the largest field is {f} ({size} bytes)")
    })
}

impl TooLarge {
    /// The same error, naming `subject` (`pushes[3]`).
    pub fn about(mut self, subject: String) -> Self {
        self.subject = subject;
        self
    }
}

/// A queue message body that is not a pushq envelope this build can read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The body is not JSON text (the parser's error, kept whole).
    #[error("body is not JSON ({0})")]
    NotJson(Arc<serde_json::Error>),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// The envelope has no `v`.
    #[error("v: missing (expected {expected})", expected = crate::envelope::ENVELOPE_VERSION)]
    MissingVersion,
    /// `v` is a later version than this build reads: written by a newer producer. Not the
    /// producer's mistake: the message waits for a consumer that reads it.
    #[error("v: envelope version {0} is newer than this build reads ({expected})", expected = crate::envelope::NEWEST_READ_VERSION)]
    UnknownVersion(u64),
    /// `v` is not a version any build could read (not a whole number ≥ 1).
    #[error("v: must be a whole number >= 1 (got {0})")]
    BadVersion(String),
    /// The push has a field this build does not know, and is otherwise valid (or only lacks a
    /// target, which the field may be): written by a newer producer. Waits like
    /// [`EnvelopeError::UnknownVersion`].
    #[error("push.{0}: not a field this build knows (written by a newer producer?)")]
    UnknownPushField(String),
    /// A field of the envelope itself (`id`, `enqueuedAt`, `push`) is missing or malformed.
    #[error("{field}: {problem}")]
    Field {
        /// The envelope field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The push it carries is not valid.
    #[error(transparent)]
    InvalidPush(#[from] InvalidPush),
}

impl EnvelopeError {
    /// Whether a newer producer may have written the body correctly (an envelope version or a
    /// push field this build does not know): the consumer hands it back for redelivery instead
    /// of rejecting it, so it waits (in the DLQ at worst) for an upgraded consumer.
    pub fn is_from_newer_producer(&self) -> bool {
        matches!(
            self,
            EnvelopeError::UnknownVersion(_) | EnvelopeError::UnknownPushField(_)
        )
    }
}
