//! Advertising pushes (Korea's Network Act art. 50, KISA's app-push guide): what the producer
//! checks before one is enqueued. Consent, night-time consent and caps are the consumer's
//! (`pushq-delivery`'s recipient rules); the title prefix and the target are checked here,
//! where the caller still hears of a mistake.

use serde_json::{Map, Value};

use super::{Push, Target};
use crate::error::InvalidPush;

/// The prefix every title of an advertising push starts with when `PUSHQ_AD_PREFIX` is unset.
pub const DEFAULT_AD_PREFIX: &str = "(광고)";

/// `advertising`: a boolean, when present.
pub(super) fn parse_advertising(value: Option<&Value>) -> Result<bool, InvalidPush> {
    match value {
        None | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(other) => Err(InvalidPush::new(
            "advertising",
            format!("must be a boolean (got {})", super::describe(other)),
        )),
    }
}

impl Push {
    /// Whether the push is advertising (`advertising: true`).
    pub fn is_advertising(&self) -> bool {
        self.advertising
    }

    /// For an advertising push: refuses it unless its target is a user target (the consumer
    /// checks each user's consent; a token, FID, topic or condition names no one whose consent
    /// could be checked) and every title it carries starts with `prefix` (at least one title:
    /// the notification's, Android's, the APNs alert's or the web push's). A title the device
    /// looks up itself (`titleLocKey`) cannot be checked and is refused. Other pushes pass.
    pub fn check_advertising(&self, prefix: &str) -> Result<(), InvalidPush> {
        if !self.advertising {
            return Ok(());
        }
        if !matches!(
            self.target,
            Target::User(_) | Target::Users(_) | Target::Audience(_)
        ) {
            return Err(InvalidPush::new(
                self.target.field(),
                "cannot carry an advertising push: its recipients' advertising consent can only be checked for userId, userIds or audience",
            ));
        }
        let titles = titles(&self.raw);
        if titles.is_empty() {
            return Err(InvalidPush::new(
                "notification.title",
                format!(
                    "is missing: an advertising push must carry a title starting with {prefix:?}"
                ),
            ));
        }
        for (field, title) in titles {
            match title {
                Some(text) if text.starts_with(prefix) => {}
                Some(_) => {
                    return Err(InvalidPush::new(
                        field,
                        format!("must start with {prefix:?} in an advertising push"),
                    ))
                }
                None => {
                    return Err(InvalidPush::new(
                        field,
                        format!("cannot be checked for the prefix {prefix:?} (the device looks it up): an advertising push's titles must be literal text"),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Every title the push carries, by the field that holds it: its text, or `None` for one the
/// device looks up (a `titleLocKey`, APNs' `title-loc-key`).
fn titles(raw: &Map<String, Value>) -> Vec<(String, Option<&str>)> {
    let at = |path: &[&str]| -> Option<&Value> {
        let mut v = raw.get(path[0])?;
        for key in &path[1..] {
            v = v.get(key)?;
        }
        Some(v)
    };
    let mut out: Vec<(String, Option<&str>)> = Vec::new();
    for (field, path) in [
        ("notification.title", &["notification", "title"][..]),
        (
            "android.notification.title",
            &["android", "notification", "title"],
        ),
        (
            "android.notification.titleLocKey",
            &["android", "notification", "titleLocKey"],
        ),
        (
            "webpush.notification.title",
            &["webpush", "notification", "title"],
        ),
    ] {
        if let Some(v) = at(path) {
            out.push((field.to_owned(), v.as_str()));
        }
    }
    match at(&["apns", "payload", "aps", "alert"]) {
        Some(Value::String(s)) => out.push(("apns.payload.aps.alert".to_owned(), Some(s))),
        Some(alert @ Value::Object(_)) => {
            if let Some(t) = alert.get("title") {
                out.push(("apns.payload.aps.alert.title".to_owned(), t.as_str()));
            }
            for key in ["titleLocKey", "title-loc-key"] {
                if alert.get(key).is_some() {
                    out.push((format!("apns.payload.aps.alert.{key}"), None));
                }
            }
        }
        _ => {}
    }
    // A localised title is looked up by the device: never checkable.
    out.into_iter()
        .map(|(f, t)| {
            if f.ends_with("LocKey") || f.ends_with("loc-key") {
                (f, None)
            } else {
                (f, t)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<(), String> {
        Push::from_value(v)
            .map_err(|e| format!("parse: {}", e.field))?
            .check_advertising(DEFAULT_AD_PREFIX)
            .map_err(|e| e.field)
    }

    #[test]
    fn every_title_must_start_with_the_prefix() {
        let ok =
            json!({"userId": "u", "advertising": true, "notification": {"title": "(광고) 할인"}});
        assert_eq!(check(ok), Ok(()));
        let bare = json!({"userId": "u", "advertising": true, "notification": {"title": "할인"}});
        assert_eq!(check(bare), Err("notification.title".into()));
        let android = json!({"userId": "u", "advertising": true, "notification": {"title": "(광고) 할인"},
            "android": {"notification": {"title": "할인"}}});
        assert_eq!(check(android), Err("android.notification.title".into()));
        let apns = json!({"userIds": ["u"], "advertising": true, "apns": {"payload": {"aps": {"alert": "할인"}}}});
        assert_eq!(check(apns), Err("apns.payload.aps.alert".into()));
        let web = json!({"userId": "u", "advertising": true, "webpush": {"notification": {"title": "x"}}});
        assert_eq!(check(web), Err("webpush.notification.title".into()));
        let localised = json!({"userId": "u", "advertising": true, "notification": {"title": "(광고) a"},
            "android": {"notification": {"titleLocKey": "promo"}}});
        assert_eq!(
            check(localised),
            Err("android.notification.titleLocKey".into())
        );
        let none = json!({"userId": "u", "advertising": true, "data": {"a": "b"}});
        assert_eq!(check(none), Err("notification.title".into()));
    }

    #[test]
    fn only_user_targets_can_carry_advertising() {
        for (target, value) in [
            ("token", json!("t")),
            ("topic", json!("news")),
            ("fids", json!(["f"])),
            ("condition", json!("'a' in topics")),
        ] {
            let mut push = json!({"advertising": true, "notification": {"title": "(광고) a"}});
            push[target] = value;
            assert_eq!(check(push), Err(target.to_owned()), "{target}");
        }
        let plain = json!({"token": "t", "advertising": false, "notification": {"title": "hi"}});
        assert_eq!(check(plain), Ok(()));
        let field = Push::from_value(json!({"token": "t", "advertising": "yes"}))
            .unwrap_err()
            .field;
        assert_eq!(field, "advertising");
    }
}
