//! Where the engine's sends go: one trait, two implementations. [`crate::fcm::FcmClient`] sends
//! to FCM (or an emulator); [`LogSink`] prints what would be sent (local mode without
//! credentials). Each builds the request body itself, as it sends.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use pushq_model::{Push, Recipient};

use crate::fcm::{FcmError, Sent};

/// A send's result and the FCM requests it took.
#[derive(Debug)]
pub struct Attempted {
    /// FCM's answer to the last attempt.
    pub result: Result<Sent, FcmError>,
    /// Requests made (0 when the deadline had passed before the first).
    pub attempts: u32,
}

/// Sends one push to one target.
pub trait Sink: Send + Sync {
    /// Sends `push` (whose id is `push_id`) to the device `to` (or to the push's own target
    /// when `None`), retrying what is transient until `deadline`; with `validate_only` (a dry
    /// run) FCM checks the message and delivers nothing.
    fn send<'a>(
        &'a self,
        push: &'a Push,
        push_id: &'a str,
        to: Option<Recipient<'a>>,
        validate_only: bool,
        deadline: Instant,
    ) -> BoxFuture<'a, Attempted>;

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
}

/// The FCM request body for `push` sent to the device `to` (or to its own target), with
/// `validate_only` when asked: what firebase-admin sends for the same message, with the push id
/// as its collapse id where the push sets none ([`collapse_repeats`]).
pub(crate) fn request_body(
    push: &Push,
    push_id: &str,
    to: Option<Recipient<'_>>,
    validate_only: bool,
) -> serde_json::Value {
    let mut body = match to {
        Some(to) => push.fcm_request_for(to, validate_only),
        None => push.fcm_request(validate_only).unwrap_or_default(),
    };
    if let Some(message) = body.get_mut("message") {
        collapse_repeats(message, push_id);
    }
    body
}

/// The object at `path` under `value`, made (empty) where it is missing; `None` where something
/// that is not an object stands in the way.
fn object_at<'a>(
    value: &'a mut serde_json::Value,
    path: &[&str],
) -> Option<&'a mut serde_json::Map<String, serde_json::Value>> {
    let mut at = value;
    for key in path {
        at = at
            .as_object_mut()?
            .entry(*key)
            .or_insert_with(|| serde_json::json!({}));
    }
    at.as_object_mut()
}

/// The longest `apns-collapse-id` APNs takes, in bytes.
const APNS_COLLAPSE_ID_MAX: usize = 64;

/// A send whose outcome is unknown (the connection dropped after the request went out, a
/// timeout) may be repeated. So that the repeat replaces the first copy on the device instead of
/// showing twice, the push id tags what the device shows, wherever the push sets no collapse key
/// of its own: `android.notification.tag` (a notification shown on Android; not when the push
/// sets `android.collapseKey` or a tag), the `apns-collapse-id` header (an alert shown on iOS;
/// not when the push sets one), and `webpush.notification.tag` (when the push has a web
/// notification without a tag). Data-only messages are left alone: nothing is shown for them.
pub fn collapse_repeats(message: &mut serde_json::Value, push_id: &str) {
    use serde_json::Value;
    let shows_notification =
        message.get("notification").is_some() || message.pointer("/android/notification").is_some();
    let android_collapses = message.pointer("/android/collapse_key").is_some()
        || message.pointer("/android/notification/tag").is_some();
    if shows_notification && !android_collapses {
        if let Some(notification) = object_at(message, &["android", "notification"]) {
            notification.insert("tag".into(), push_id.into());
        }
    }
    let shows_alert = message.get("notification").is_some()
        || message.pointer("/apns/payload/aps/alert").is_some();
    if shows_alert
        && push_id.len() <= APNS_COLLAPSE_ID_MAX
        && message.pointer("/apns/headers/apns-collapse-id").is_none()
    {
        if let Some(headers) = object_at(message, &["apns", "headers"]) {
            headers.insert("apns-collapse-id".into(), push_id.into());
        }
    }
    if let Some(Value::Object(notification)) = message.pointer_mut("/webpush/notification") {
        notification.entry("tag").or_insert_with(|| push_id.into());
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
        push: &'a Push,
        push_id: &'a str,
        to: Option<Recipient<'a>>,
        validate_only: bool,
        _deadline: Instant,
    ) -> BoxFuture<'a, Attempted> {
        if self.print_requests {
            let body = request_body(push, push_id, to, validate_only);
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
}
