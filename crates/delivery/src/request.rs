//! The FCM v1 request body pushq sends for one push and one target: firebase-admin's body for
//! the same message, with the push id as its collapse id where the push sets none. A leaf:
//! both sinks build their requests here.

use pushq_model::{Push, Recipient};

/// The FCM request body for `push` sent to the device `to` (or to its own target), with
/// `validate_only` when asked: what firebase-admin sends for the same message, with the push id
/// as its collapse id where the push sets none ([`collapse_repeats`]).
pub fn request_body(
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
