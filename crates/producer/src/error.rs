//! The errors a producer returns: everything that can go wrong between a caller handing over a
//! push and the queue accepting it. Bindings map each variant to a stable code.

use std::sync::Arc;

use pushq_model::{InvalidPush, TooLarge};

/// Everything that can go wrong between a caller handing over a push and the queue accepting it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The push is not a valid push; nothing was enqueued.
    #[error(transparent)]
    InvalidPush(#[from] InvalidPush),
    /// The push is valid but too large (FCM's payload limit, or one queue message's); nothing
    /// was enqueued.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The client is misconfigured (missing queue URL, bad option, no region).
    #[error("configuration: {0}")]
    Config(String),
    /// SQS refused the push or could not be reached after retries; the push was not enqueued.
    #[error("queue: {message}")]
    Queue {
        /// What happened, in one line naming the queue and the endpoint.
        message: String,
        /// SQS's error code (`AWS.SimpleQueueService.NonExistentQueue`, `AccessDenied`, …), when
        /// SQS answered with one.
        aws_code: Option<String>,
        /// The error underneath (the SDK's), kept whole for callers that want the detail.
        #[source]
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// SQS's answer never came (no answer before the push's deadline, a connection lost after
    /// the request went out, an unreadable answer, a 5xx): the push may be on the queue.
    /// Enqueuing it again with the same `id` (`push_id`) cannot deliver it twice.
    #[error("queue: {message}")]
    QueueUnknown {
        /// What happened, in one line naming the queue and the endpoint.
        message: String,
        /// The push id, to enqueue the push again with (set by the producer's ticket).
        push_id: Option<String>,
    },
    /// The client was closed before the push was handed over.
    #[error("client is closed: no pushes are accepted after close()")]
    Closed,
    /// The database could not be opened or used: local mode's, or the one a scheduled push is
    /// written down in.
    #[error("database: {message}")]
    Database {
        /// What failed, in one line naming where the database's URL came from (never the URL).
        message: String,
        /// The error underneath (the store's), kept whole for callers that want it.
        #[source]
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// Local mode: pushes that the in-process delivery accepted could not be delivered.
    #[error("delivery: {0}")]
    Delivery(String),
}

impl Error {
    /// A database error: `message`, and the error underneath when there is one.
    pub fn database(
        message: impl Into<String>,
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Database {
            message: message.into(),
            cause,
        }
    }

    /// A queue error without an underlying cause.
    pub fn queue(message: impl Into<String>) -> Error {
        Error::Queue {
            message: message.into(),
            aws_code: None,
            cause: None,
        }
    }
}

/// `Result` with the producer's [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
