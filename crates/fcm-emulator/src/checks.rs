//! The shape checks FCM makes on a send request's body before it accepts the message, answered
//! as FCM's `INVALID_ARGUMENT` messages; pushq's property tests hold its own bodies to them.

use serde_json::{Map, Value};

/// The FCM v1 `Message` fields a request may carry (proto3 JSON: snake_case or lowerCamelCase).
const MESSAGE_FIELDS: [&str; 11] = [
    "token",
    "fid",
    "topic",
    "condition",
    "data",
    "notification",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "fcmOptions",
];

/// The emulator's verdict on a send request's body: `Err` holds the `INVALID_ARGUMENT` message
/// it would answer with (for property tests of pushq's own bodies).
pub fn check_send_body(body: &Value) -> Result<(), String> {
    check_body(body).map(|_| ())
}

/// Shape checks FCM makes before it accepts a message; gives the message when they pass.
pub(crate) fn check_body(body: &Value) -> Result<&Map<String, Value>, String> {
    let message = message_of(body)?;
    known_fields(message)?;
    one_target(message)?;
    string_data(message)?;
    android_ttl(message)?;
    Ok(message)
}

/// The request's `message`, in a body that holds nothing but it and `validate_only`.
fn message_of(body: &Value) -> Result<&Map<String, Value>, String> {
    let top = body.as_object().ok_or("body must be a JSON object")?;
    if let Some(key) = top
        .keys()
        .find(|k| !["message", "validate_only"].contains(&k.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\""
        ));
    }
    let message = top
        .get("message")
        .and_then(Value::as_object)
        .ok_or("message is required")?;
    Ok(message)
}

fn known_fields(message: &Map<String, Value>) -> Result<(), String> {
    if let Some(key) = message
        .keys()
        .find(|k| !MESSAGE_FIELDS.contains(&k.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at 'message'"
        ));
    }
    Ok(())
}

/// A message goes to one device (its registration `token` or its Firebase Installation ID,
/// `fid`), one `topic` or one `condition`.
fn one_target(message: &Map<String, Value>) -> Result<(), String> {
    let targets = ["token", "fid", "topic", "condition"]
        .iter()
        .filter(|t| {
            message
                .get(**t)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    if targets != 1 {
        return Err("exactly one of token, fid, topic, condition is required".into());
    }
    Ok(())
}

fn string_data(message: &Map<String, Value>) -> Result<(), String> {
    if let Some(data) = message.get("data") {
        if !data
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
        {
            return Err("message.data must map strings to strings".into());
        }
    }
    Ok(())
}

fn android_ttl(message: &Map<String, Value>) -> Result<(), String> {
    if let Some(ttl) = message.get("android").and_then(|a| a.get("ttl")) {
        let ok = ttl
            .as_str()
            .and_then(|s| s.strip_suffix('s'))
            .is_some_and(|n| n.parse::<f64>().is_ok());
        if !ok {
            return Err("message.android.ttl must be a duration like \"3.5s\"".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check_send_body;

    #[test]
    fn a_message_goes_to_exactly_one_of_token_fid_topic_condition() {
        for target in ["token", "fid", "topic", "condition"] {
            let body = json!({"message": {target: "x", "data": {"k": "v"}}});
            assert_eq!(check_send_body(&body), Ok(()), "{body}");
        }
        let both = json!({"message": {"token": "t", "fid": "f"}});
        let none = json!({"message": {"fid": ""}});
        for body in [both, none] {
            assert_eq!(
                check_send_body(&body),
                Err("exactly one of token, fid, topic, condition is required".to_owned()),
                "{body}"
            );
        }
    }
}
