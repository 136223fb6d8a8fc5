//! What FCM HTTP v1 refuses that firebase-admin lets through: a field FCM does not know at any
//! depth, an enum value it does not know, a reserved `data` key, a `webpush` link that is not
//! HTTPS. firebase-admin passes such messages on and FCM answers 400 `INVALID_ARGUMENT`; behind
//! a queue nobody would see that answer, so pushq refuses them at enqueue.
//!
//! One table of FCM's `Message` (the v1 reference, `projects.messages`), read for a push as the
//! producer wrote it (firebase-admin's camelCase names) and for a request body (FCM's snake_case
//! names): each field lists every spelling FCM or firebase-admin accepts for it. Free-form
//! objects (`webpush.notification`, `apns.payload`) and string maps are not looked into beyond
//! their own rules.

use serde_json::{Map, Value};

/// A shape FCM refuses: where (a dotted path, in the spelling found) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeViolation {
    /// The dotted path of the field (`android.notification.chanelId`).
    pub field: String,
    /// What FCM refuses about it.
    pub kind: Violation,
}

/// The kinds of [`ShapeViolation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A field FCM's message has no such field at that place.
    UnknownField,
    /// A value an enum field does not have; carries the values it has.
    NotAnEnumValue(&'static [&'static str]),
    /// A `data` key FCM reserves (`from`, `message_type`, or starting with `google.` or
    /// `gcm.notification.`).
    ReservedKey,
    /// A URL FCM requires to be HTTPS.
    NotHttps,
}

impl ShapeViolation {
    /// The problem, in words, for an error that names [`ShapeViolation::field`].
    pub fn problem(&self) -> String {
        match &self.kind {
            Violation::UnknownField => {
                "is not a field FCM knows there (FCM refuses the message: check its spelling)"
                    .to_owned()
            }
            Violation::NotAnEnumValue(values) => {
                format!("must be one of {} (FCM refuses other values)", values.join(", "))
            }
            Violation::ReservedKey => "is a key FCM reserves (from, message_type, or starting with google. or gcm.notification.): FCM refuses the message".to_owned(),
            Violation::NotHttps => "must be an https:// URL (FCM refuses other links)".to_owned(),
        }
    }
}

/// What a field holds.
enum Kind {
    /// A value FCM reads as it is (a string, a number, a bool, a list): not looked into here.
    Value,
    /// An object with these fields.
    Object(&'static [Field]),
    /// An object of any fields (`webpush.notification`, `apns.payload`).
    Free,
    /// A `data` map: its keys must not be reserved.
    Data,
    /// One of these values (compared without case).
    Enum(&'static [&'static str]),
    /// An HTTPS URL.
    Https,
}

/// A field, under every name FCM and firebase-admin accept for it.
struct Field(&'static [&'static str], Kind);

const FCM_OPTIONS: &[Field] = &[Field(&["analyticsLabel", "analytics_label"], Kind::Value)];

const NOTIFICATION: &[Field] = &[
    Field(&["title"], Kind::Value),
    Field(&["body"], Kind::Value),
    Field(&["imageUrl", "image"], Kind::Value),
];

/// firebase-admin's `AndroidConfig.priority`, and FCM's `AndroidMessagePriority`.
const ANDROID_PRIORITY: &[&str] = &["normal", "high"];
/// firebase-admin's `AndroidNotification.priority`, and FCM's `NotificationPriority`.
const NOTIFICATION_PRIORITY: &[&str] = &[
    "min",
    "low",
    "default",
    "high",
    "max",
    "PRIORITY_UNSPECIFIED",
    "PRIORITY_MIN",
    "PRIORITY_LOW",
    "PRIORITY_DEFAULT",
    "PRIORITY_HIGH",
    "PRIORITY_MAX",
];
/// firebase-admin's `AndroidNotification.visibility`, and FCM's `Visibility`.
const VISIBILITY: &[&str] = &["private", "public", "secret", "VISIBILITY_UNSPECIFIED"];
/// firebase-admin's `AndroidNotification.proxy`, and FCM's `Proxy`.
const PROXY: &[&str] = &["allow", "deny", "if_priority_lowered", "PROXY_UNSPECIFIED"];

const LIGHT_SETTINGS: &[Field] = &[
    // firebase-admin takes "#RRGGBB[AA]"; FCM an object of red, green, blue, alpha.
    Field(&["color"], Kind::Value),
    Field(
        &[
            "lightOnDurationMillis",
            "light_on_duration",
            "lightOnDuration",
        ],
        Kind::Value,
    ),
    Field(
        &[
            "lightOffDurationMillis",
            "light_off_duration",
            "lightOffDuration",
        ],
        Kind::Value,
    ),
];

const ANDROID_NOTIFICATION: &[Field] = &[
    Field(&["title"], Kind::Value),
    Field(&["body"], Kind::Value),
    Field(&["icon"], Kind::Value),
    Field(&["color"], Kind::Value),
    Field(&["sound"], Kind::Value),
    Field(&["tag"], Kind::Value),
    Field(&["imageUrl", "image"], Kind::Value),
    Field(&["clickAction", "click_action"], Kind::Value),
    Field(&["bodyLocKey", "body_loc_key"], Kind::Value),
    Field(&["bodyLocArgs", "body_loc_args"], Kind::Value),
    Field(&["titleLocKey", "title_loc_key"], Kind::Value),
    Field(&["titleLocArgs", "title_loc_args"], Kind::Value),
    Field(&["channelId", "channel_id"], Kind::Value),
    Field(&["ticker"], Kind::Value),
    Field(&["sticky"], Kind::Value),
    Field(&["eventTimestamp", "event_time", "eventTime"], Kind::Value),
    Field(&["localOnly", "local_only"], Kind::Value),
    Field(
        &["priority", "notification_priority", "notificationPriority"],
        Kind::Enum(NOTIFICATION_PRIORITY),
    ),
    Field(
        &["vibrateTimingsMillis", "vibrate_timings", "vibrateTimings"],
        Kind::Value,
    ),
    Field(
        &["defaultVibrateTimings", "default_vibrate_timings"],
        Kind::Value,
    ),
    Field(&["defaultSound", "default_sound"], Kind::Value),
    Field(
        &["lightSettings", "light_settings"],
        Kind::Object(LIGHT_SETTINGS),
    ),
    Field(
        &["defaultLightSettings", "default_light_settings"],
        Kind::Value,
    ),
    Field(&["visibility"], Kind::Enum(VISIBILITY)),
    Field(&["notificationCount", "notification_count"], Kind::Value),
    Field(&["proxy"], Kind::Enum(PROXY)),
];

const ANDROID: &[Field] = &[
    Field(&["collapseKey", "collapse_key"], Kind::Value),
    Field(&["priority"], Kind::Enum(ANDROID_PRIORITY)),
    Field(&["ttl"], Kind::Value),
    Field(
        &["restrictedPackageName", "restricted_package_name"],
        Kind::Value,
    ),
    Field(&["data"], Kind::Data),
    Field(&["notification"], Kind::Object(ANDROID_NOTIFICATION)),
    Field(&["fcmOptions", "fcm_options"], Kind::Object(FCM_OPTIONS)),
    Field(&["directBootOk", "direct_boot_ok"], Kind::Value),
    Field(
        &["bandwidthConstrainedOk", "bandwidth_constrained_ok"],
        Kind::Value,
    ),
    Field(
        &["restrictedSatelliteOk", "restricted_satellite_ok"],
        Kind::Value,
    ),
];

const WEBPUSH_FCM_OPTIONS: &[Field] = &[
    Field(&["link"], Kind::Https),
    Field(&["analyticsLabel", "analytics_label"], Kind::Value),
];

const WEBPUSH: &[Field] = &[
    Field(&["headers"], Kind::Value),
    Field(&["data"], Kind::Data),
    Field(&["notification"], Kind::Free),
    Field(
        &["fcmOptions", "fcm_options"],
        Kind::Object(WEBPUSH_FCM_OPTIONS),
    ),
];

const APNS_FCM_OPTIONS: &[Field] = &[
    Field(&["analyticsLabel", "analytics_label"], Kind::Value),
    Field(&["imageUrl", "image"], Kind::Value),
];

const APNS: &[Field] = &[
    Field(&["headers"], Kind::Value),
    Field(&["payload"], Kind::Free),
    Field(
        &["fcmOptions", "fcm_options"],
        Kind::Object(APNS_FCM_OPTIONS),
    ),
    Field(&["liveActivityToken", "live_activity_token"], Kind::Value),
];

/// The fields of FCM's `Message` besides its target, which the caller checks.
const MESSAGE: &[Field] = &[
    Field(&["data"], Kind::Data),
    Field(&["notification"], Kind::Object(NOTIFICATION)),
    Field(&["android"], Kind::Object(ANDROID)),
    Field(&["webpush"], Kind::Object(WEBPUSH)),
    Field(&["apns"], Kind::Object(APNS)),
    Field(&["fcmOptions", "fcm_options"], Kind::Object(FCM_OPTIONS)),
];

/// Keys firebase-admin's `deepCopy` drops before it sends: they never reach FCM.
const DROPPED_BY_FIREBASE_ADMIN: [&str; 2] = ["__proto__", "prototype"];

/// Checks the FCM fields of a message (a push as written, or a request's `message`); keys that
/// are not FCM's (a target, pushq's own fields) are left to the caller. The first violation, in
/// the order of the message's keys.
pub fn check_fcm_shape(message: &Map<String, Value>) -> Result<(), ShapeViolation> {
    for (key, value) in message {
        if let Some(Field(_, kind)) = find(MESSAGE, key) {
            check(value, kind, key)?;
        }
    }
    Ok(())
}

fn find<'a>(fields: &'a [Field], key: &str) -> Option<&'a Field> {
    fields.iter().find(|Field(names, _)| names.contains(&key))
}

fn violation(field: &str, kind: Violation) -> Result<(), ShapeViolation> {
    Err(ShapeViolation {
        field: field.to_owned(),
        kind,
    })
}

fn check(value: &Value, kind: &Kind, path: &str) -> Result<(), ShapeViolation> {
    match (kind, value) {
        (Kind::Object(fields), Value::Object(map)) => {
            for (key, value) in map {
                if DROPPED_BY_FIREBASE_ADMIN.contains(&key.as_str()) {
                    continue;
                }
                let path = format!("{path}.{key}");
                match find(fields, key) {
                    Some(Field(_, kind)) => check(value, kind, &path)?,
                    None => return violation(&path, Violation::UnknownField),
                }
            }
            Ok(())
        }
        (Kind::Data, Value::Object(map)) => match map.keys().find(|k| reserved(k)) {
            Some(key) => violation(&format!("{path}.{key}"), Violation::ReservedKey),
            None => Ok(()),
        },
        (Kind::Enum(values), Value::String(s)) => {
            if values.iter().any(|v| v.eq_ignore_ascii_case(s)) {
                Ok(())
            } else {
                violation(path, Violation::NotAnEnumValue(values))
            }
        }
        (Kind::Https, Value::String(s)) => {
            let scheme = s.split_once("://").map(|(scheme, _)| scheme);
            if scheme.is_some_and(|scheme| scheme.eq_ignore_ascii_case("https")) {
                Ok(())
            } else {
                violation(path, Violation::NotHttps)
            }
        }
        // Types (a string where an object belongs, …) are firebase-admin's checks, and FCM's.
        _ => Ok(()),
    }
}

/// A `data` key FCM reserves: the FCM v1 reference for `Message.data` ("The key should not be a
/// reserved word ("from", "message_type", or any word starting with "google." or
/// "gcm.notification.")"); firebase-admin's `DataMessagePayload` names `from` and `google.`.
fn reserved(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "from"
        || lower == "message_type"
        || lower.starts_with("google.")
        || lower.starts_with("gcm.notification.")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn verdict(message: Value) -> Result<(), (String, String)> {
        check_fcm_shape(message.as_object().unwrap()).map_err(|v| {
            let kind = match v.kind {
                Violation::UnknownField => "unknown",
                Violation::NotAnEnumValue(_) => "enum",
                Violation::ReservedKey => "reserved",
                Violation::NotHttps => "https",
            };
            (v.field, kind.to_owned())
        })
    }

    #[test]
    fn both_spellings_of_a_field_are_fcms() {
        let as_written = json!({"android": {"collapseKey": "k", "notification": {"channelId": "c",
            "priority": "high", "visibility": "public", "lightSettings": {"color": "#ff0000",
            "lightOnDurationMillis": 1, "lightOffDurationMillis": 2}}},
            "webpush": {"fcmOptions": {"link": "https://example.com"}, "notification": {"any": 1}},
            "apns": {"payload": {"aps": {"x": 1}, "custom": true}}, "data": {"k": "v"}});
        let as_sent = json!({"android": {"collapse_key": "k", "notification": {"channel_id": "c",
            "notification_priority": "PRIORITY_HIGH", "visibility": "PUBLIC",
            "light_settings": {"color": {"red": 1.0}, "light_on_duration": "0.001s"}}},
            "webpush": {"fcm_options": {"link": "https://example.com"}}});
        assert_eq!(verdict(as_written), Ok(()));
        assert_eq!(verdict(as_sent), Ok(()));
    }

    #[test]
    fn what_fcm_refuses_is_named() {
        let unknown = |f: &str| Err((f.to_owned(), "unknown".to_owned()));
        assert_eq!(
            verdict(json!({"notification": {"titel": "x"}})),
            unknown("notification.titel")
        );
        assert_eq!(
            verdict(json!({"android": {"notification": {"chanelId": "x"}}})),
            unknown("android.notification.chanelId")
        );
        assert_eq!(
            verdict(json!({"android": {"priority": "urgent"}})),
            Err(("android.priority".into(), "enum".into()))
        );
        assert_eq!(
            verdict(json!({"data": {"google.x": "1"}})),
            Err(("data.google.x".into(), "reserved".into()))
        );
        assert_eq!(
            verdict(json!({"android": {"data": {"from": "1"}}})),
            Err(("android.data.from".into(), "reserved".into()))
        );
        assert_eq!(
            verdict(json!({"webpush": {"fcmOptions": {"link": "http://example.com"}}})),
            Err(("webpush.fcmOptions.link".into(), "https".into()))
        );
        // A key firebase-admin drops never reaches FCM.
        assert_eq!(verdict(json!({"notification": {"__proto__": {}}})), Ok(()));
    }
}
