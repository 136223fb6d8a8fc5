//! The FCM v1 request body pushq sends for one push and one target: firebase-admin's body for
//! the same message, with the push id as its collapse id where the push sets none. A leaf:
//! both sinks build their requests here.

use std::sync::OnceLock;

use bytes::Bytes;
use pushq_model::{Push, Recipient};

/// One push's request bodies, serialised once per kind of device: every device send of a push
/// has the same body but for its token (or FID), which is spliced in as JSON text. Byte for byte
/// what serialising [`request_body`] for that device gives.
pub struct RequestBodies<'p> {
    push: &'p Push,
    push_id: &'p str,
    validate_only: bool,
    token: OnceLock<Template>,
    fid: OnceLock<Template>,
}

/// A body with a hole where the device goes: the JSON text before and after its value, or the
/// whole body per send when the hole could not be found once and only once.
enum Template {
    Spliced { before: Vec<u8>, after: Vec<u8> },
    PerSend,
}

/// Stands in for the device while a template is made: NUL, which pushq refuses in tokens, FIDs
/// and ids, written by serde_json as `\u0000`.
const HOLE: &str = "\0pushq-device\0";

impl<'p> RequestBodies<'p> {
    /// The bodies of `push` (its id `push_id`), with `validate_only` when asked.
    pub fn new(push: &'p Push, push_id: &'p str, validate_only: bool) -> RequestBodies<'p> {
        RequestBodies {
            push,
            push_id,
            validate_only,
            token: OnceLock::new(),
            fid: OnceLock::new(),
        }
    }

    /// The body of the send to `to` (a device), or to the push's own topic or condition.
    pub fn body(&self, to: Option<Recipient<'_>>) -> Bytes {
        let (slot, id, hole) = match to {
            None => return self.whole(None),
            Some(Recipient::Token(t)) => (&self.token, t, Recipient::Token(HOLE)),
            Some(Recipient::Fid(f)) => (&self.fid, f, Recipient::Fid(HOLE)),
        };
        match slot.get_or_init(|| self.template(hole)) {
            Template::Spliced { before, after } => {
                let mut body = Vec::with_capacity(before.len() + id.len() + 2 + after.len());
                body.extend_from_slice(before);
                serde_json::to_writer(&mut body, id).expect("a string always serializes");
                body.extend_from_slice(after);
                Bytes::from(body)
            }
            Template::PerSend => self.whole(to),
        }
    }

    fn whole(&self, to: Option<Recipient<'_>>) -> Bytes {
        let body = request_body(self.push, self.push_id, to, self.validate_only);
        Bytes::from(serde_json::to_vec(&body).expect("a JSON value always serializes"))
    }

    fn template(&self, hole: Recipient<'_>) -> Template {
        let text = self.whole(Some(hole));
        let marker = serde_json::to_vec(HOLE).expect("a string always serializes");
        let at: Vec<usize> = text
            .windows(marker.len())
            .enumerate()
            .filter(|(_, w)| *w == marker.as_slice())
            .map(|(i, _)| i)
            .collect();
        match at[..] {
            [i] => Template::Spliced {
                before: text[..i].to_vec(),
                after: text[i + marker.len()..].to_vec(),
            },
            _ => Template::PerSend,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each spliced body is the one serialising the whole request gives, for tokens and FIDs
    /// with characters JSON escapes, validate_only or not.
    #[test]
    fn spliced_bodies_are_the_whole_bodies() {
        let push = Push::from_value(json!({
            "userId": "u",
            "notification": {"title": "t \" \\ é"},
            "android": {"priority": "high"},
            "apns": {"payload": {"aps": {"sound": "x"}}},
            "data": {"k": "v"}
        }))
        .unwrap();
        for validate_only in [false, true] {
            let bodies = RequestBodies::new(&push, "p-1", validate_only);
            for to in [
                Recipient::Token("tok\"\\\n/é"),
                Recipient::Fid("fid-1"),
                Recipient::Token("tok-2"),
            ] {
                let whole =
                    serde_json::to_vec(&request_body(&push, "p-1", Some(to), validate_only))
                        .unwrap();
                assert_eq!(bodies.body(Some(to)), Bytes::from(whole));
            }
        }
        let topic =
            Push::from_value(json!({"topic": "news", "notification": {"title": "t"}})).unwrap();
        let whole = serde_json::to_vec(&request_body(&topic, "p-2", None, false)).unwrap();
        assert_eq!(
            RequestBodies::new(&topic, "p-2", false).body(None),
            Bytes::from(whole)
        );
    }
}
