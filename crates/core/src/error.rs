//! The errors pushq-core returns at its boundary.
//! One enum for everything a producer can see; bindings map each variant to a stable code.

use std::fmt;

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
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
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

/// Everything that can go wrong between a caller handing over a push and the queue accepting it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The push is not a valid push; nothing was enqueued.
    #[error(transparent)]
    InvalidPush(#[from] InvalidPush),
    /// The push is valid but its FCM payload is over FCM's size limit; nothing was enqueued.
    #[error("{subject}: FCM payload is {size} bytes, over FCM's limit of {limit} bytes{hint}")]
    TooLarge {
        /// `push` or `pushes[i]`.
        subject: String,
        /// Serialized size of the FCM message without its target, in bytes.
        size: usize,
        /// 4096, or 2048 for topic messages.
        limit: usize,
        /// Extra explanation, e.g. for topics.
        hint: &'static str,
    },
    /// The client is misconfigured (missing queue URL, bad mode, no region or credentials).
    #[error("configuration: {0}")]
    Config(String),
    /// SQS refused the push or could not be reached after retries; the push was not enqueued.
    #[error("queue: {0}")]
    Queue(String),
    /// The client was closed before the push was handed over.
    #[error("client is closed: no pushes are accepted after close()")]
    Closed,
    /// A queue message body that is not a pushq envelope.
    #[error("envelope: {0}")]
    Envelope(String),
}

/// `Result` with pushq-core's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
