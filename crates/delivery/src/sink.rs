//! Where the engine's sends go: one trait, two implementations. The FCM client (`fcm::FcmClient`) sends
//! to FCM (or an emulator); [`LogSink`] prints what would be sent (local mode without
//! credentials). Each builds the request body itself, as it sends ([`crate::request`]). The
//! answers ([`Sent`], [`SendError`]) are defined here, with the trait, and the FCM client
//! classifies FCM's own answers into them: this module imports no other of the crate but
//! `request`.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use bytes::Bytes;

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The token is dead (`UNREGISTERED`, or `INVALID_ARGUMENT` naming the registration token):
    /// final; the device is invalidated.
    #[error("{code}: {detail}")]
    InvalidToken {
        /// FCM's error code.
        code: String,
        /// FCM's message.
        detail: String,
    },
    /// FCM refused the message for good (`INVALID_ARGUMENT`, an unknown error…): final.
    #[error("{code}: {detail}")]
    Rejected {
        /// FCM's error code.
        code: String,
        /// FCM's message.
        detail: String,
    },
    /// Worth retrying: 429, 500, 503, network trouble.
    #[error("{code}: {detail}")]
    Transient {
        /// FCM's error code, or a pushq code for network trouble.
        code: String,
        /// What happened.
        detail: String,
        /// FCM's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The service-account key is missing or unusable. Never contains key material.
    #[error("FCM credentials: {0}")]
    Credentials(String),
    /// FCM (or what answers in its place) refused the deployment, not the message: 401/403/404
    /// without an FCM error code, an answer that is not FCM's JSON, `THIRD_PARTY_AUTH_ERROR`.
    /// Not retried within the batch (it does not fix itself in seconds); handed back for
    /// redelivery, never final.
    #[error("{code}: {detail}")]
    Deployment {
        /// FCM's error code, Google's status (`PERMISSION_DENIED`) or `HTTP_<status>`.
        code: String,
        /// What answered.
        detail: String,
    },
    /// `SENDER_ID_MISMATCH`: the token belongs to another sender (Firebase project) than the
    /// key. Final for a lone target among ones that worked; when most of a batch's sends answer
    /// it, the key is the wrong one and the batch hands them back (see `engine::batch`).
    #[error("SENDER_ID_MISMATCH: {detail}")]
    SenderMismatch {
        /// FCM's message.
        detail: String,
    },
    /// The push names an app the deployment has no key for: the deployment's fault (a key
    /// not added yet, a typo in `app`). Handed back for redelivery, so that it waits in the
    /// queue or the DLQ until the key is there; never final.
    #[error("the app {app:?} has no FCM credentials (add its key to PUSHQ_FCM_CREDENTIALS' map)")]
    UnknownApp {
        /// The push's app.
        app: String,
    },
}

impl SendError {
    /// The error code recorded in the delivery log.
    pub fn code(&self) -> &str {
        match self {
            SendError::InvalidToken { code, .. }
            | SendError::Rejected { code, .. }
            | SendError::Transient { code, .. }
            | SendError::Deployment { code, .. } => code,
            SendError::Credentials(_) => "CREDENTIALS",
            SendError::SenderMismatch { .. } => "SENDER_ID_MISMATCH",
            SendError::UnknownApp { .. } => NO_CREDENTIALS,
        }
    }
}

/// A successful send and how many requests it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// FCM's message name (`projects/…/messages/…`).
    pub name: String,
}

/// The code of a send not made because its push's app has no FCM credentials.
pub const NO_CREDENTIALS: &str = "NO_CREDENTIALS_FOR_APP";

/// A send's result and the FCM requests it took.
#[derive(Debug)]
pub struct Attempted {
    /// FCM's answer to the last attempt.
    pub result: Result<Sent, SendError>,
    /// Requests made (0 when the deadline had passed before the first).
    pub attempts: u32,
}

/// Sends one push to one target.
pub trait Sink: Send + Sync {
    /// Sends the FCM request `body` (one push to one target, built by
    /// [`crate::request::RequestBodies`]; with `validate_only` for a dry run) with `app`'s key,
    /// retrying what is transient until `deadline`.
    fn send<'a>(&'a self, app: &'a str, body: Bytes, deadline: Instant)
        -> BoxFuture<'a, Attempted>;

    /// Until when sends are held back by the FCM project's quota throttle, if they are now:
    /// a caller that polls for work (`pushq worker`) waits rather than taking batches it would
    /// hand back unsent.
    fn throttled_until(&self) -> Option<Instant> {
        None
    }

    /// Whether every send is `validate_only` (`PUSHQ_FCM_DRY_RUN=1`): FCM checks each message and
    /// delivers none, so the engine records each target `dry_run` (never `sent`) and takes no
    /// idempotency key, as for a dry-run envelope.
    fn validate_only(&self) -> bool {
        false
    }

    /// Whether the sink can send for `app` (the deployment has its key). A push for an app it
    /// cannot send for is handed back whole, before its users are resolved.
    fn has_app(&self, _app: &str) -> bool {
        true
    }

    /// How long an attempt in flight at the deadline may go on past it (none when attempts are
    /// cut at the deadline): the engine's claims last this much longer.
    fn overrun(&self) -> Duration {
        Duration::ZERO
    }

    /// Subscribes a registration token to a topic of `app`, or unsubscribes it, as
    /// firebase-admin's `subscribeToTopic` / `unsubscribeFromTopic` do, with retries within the
    /// deadline. A sink that cannot make the call answers [`SendError::UnknownApp`].
    fn manage_topic<'a>(
        &'a self,
        app: &'a str,
        call: TopicCall<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, TopicAttempted> {
        let _ = (call, deadline);
        Box::pin(std::future::ready(TopicAttempted::unknown_app(app)))
    }
}

/// One topic-management call: one token, one topic.
#[derive(Debug, Clone, Copy)]
pub struct TopicCall<'a> {
    /// The registration token.
    pub token: &'a str,
    /// The topic, without `/topics/`.
    pub topic: &'a str,
    /// Subscribe (true) or unsubscribe.
    pub subscribe: bool,
}

/// A topic call's outcome after its retries, and how many requests it took.
#[derive(Debug)]
pub struct TopicAttempted {
    /// `Ok` when FCM has the token as asked.
    pub result: Result<(), SendError>,
    /// Requests made.
    pub attempts: u32,
}

impl TopicAttempted {
    /// No call made: the deployment has no FCM key for `app`.
    pub fn unknown_app(app: &str) -> TopicAttempted {
        TopicAttempted {
            result: Err(SendError::UnknownApp {
                app: app.to_owned(),
            }),
            attempts: 0,
        }
    }
}

/// Reports each send done without sending it, printing the request FCM would have received on
/// stderr when asked to (`PUSHQ_LOG=debug` in local mode). Nothing reaches a device, so every
/// target is recorded `dry_run`, never `sent` ([`Sink::validate_only`]).
#[derive(Debug, Default)]
pub struct LogSink {
    /// Print each request.
    pub print_requests: bool,
}

impl Sink for LogSink {
    fn send<'a>(
        &'a self,
        _app: &'a str,
        body: Bytes,
        _deadline: Instant,
    ) -> BoxFuture<'a, Attempted> {
        if self.print_requests {
            let body = String::from_utf8_lossy(&body);
            eprintln!("pushq local mode (no FCM credentials): would send {body}");
        }
        Box::pin(std::future::ready(Attempted {
            result: Ok(Sent {
                name: format!("local/{}", uuid::Uuid::now_v7()),
            }),
            attempts: 1,
        }))
    }

    fn validate_only(&self) -> bool {
        true
    }

    fn manage_topic<'a>(
        &'a self,
        app: &'a str,
        call: TopicCall<'a>,
        _deadline: Instant,
    ) -> BoxFuture<'a, TopicAttempted> {
        if self.print_requests {
            let what = if call.subscribe {
                "subscribe"
            } else {
                "unsubscribe"
            };
            eprintln!(
                "pushq local mode (no FCM credentials): would {what} a device of app {app} to topic {}",
                call.topic
            );
        }
        Box::pin(std::future::ready(TopicAttempted {
            result: Ok(()),
            attempts: 1,
        }))
    }
}
