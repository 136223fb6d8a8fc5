//! firebase-admin's `validateMessage`, ported: checks a message and rewrites it in place into the
//! FCM v1 wire form (snake_case keys, `"N.NNNs"` durations, hyphenated `aps` keys, …).
//!
//! The order of checks and every rename follow `firebase-admin/lib/messaging/messaging-internal.js`
//! (v14), so that pushq accepts and rejects what `messaging.send()` does and sends the same body.
//! Keys firebase-admin does not know pass through untouched, as they do there.

use serde_json::{Map, Value};

use super::{describe, url_check::is_url};
use crate::error::InvalidPush;

type Result<T = ()> = std::result::Result<T, InvalidPush>;

/// Validates and converts a message (without its target) in place.
pub(super) fn to_wire(message: &mut Map<String, Value>) -> Result {
    message.values_mut().for_each(deep_copy);
    string_map(message.get("data"), "data")?;
    if let Some(android) = message.get_mut("android") {
        android_config(android)?;
    }
    if let Some(webpush) = message.get("webpush") {
        let webpush = object(webpush, "webpush")?;
        string_map(webpush.get("headers"), "webpush.headers")?;
        string_map(webpush.get("data"), "webpush.data")?;
    }
    if let Some(apns) = message.get_mut("apns") {
        apns_config(apns)?;
    }
    if let Some(fcm_options) = message.get("fcmOptions") {
        let fcm_options = object(fcm_options, "fcmOptions")?;
        optional_string(
            fcm_options.get("analyticsLabel"),
            "fcmOptions.analyticsLabel",
        )?;
    }
    if let Some(notification) = message.get_mut("notification") {
        let notification = object_mut(notification, "notification")?;
        optional_url(notification.get("imageUrl"), "notification.imageUrl")?;
        no_duplicate(notification, "imageUrl", "image", "notification")?;
        rename(notification, &[("imageUrl", "image")]);
    }
    Ok(())
}

/// What firebase-admin 14's `deepCopy` (run by `send()` before it validates) leaves of a value:
/// keys named `__proto__` and `prototype` are dropped at any depth, except in an object with a
/// `constructor` key of its own, which it takes for a class instance and keeps whole.
fn deep_copy(value: &mut Value) {
    match value {
        Value::Object(map) if !map.contains_key("constructor") => {
            map.retain(|key, _| key != "__proto__" && key != "prototype");
            map.values_mut().for_each(deep_copy);
        }
        Value::Array(items) => items.iter_mut().for_each(deep_copy),
        _ => {}
    }
}

fn android_config(android: &mut Value) -> Result {
    let android = object_mut(android, "android")?;
    if let Some(ttl) = android.get_mut("ttl") {
        *ttl = Value::String(duration(ttl, "android.ttl")?);
    }
    string_map(android.get("data"), "android.data")?;
    if let Some(notification) = android.get_mut("notification") {
        android_notification(notification)?;
    }
    if let Some(fcm_options) = android.get("fcmOptions") {
        let fcm_options = object(fcm_options, "android.fcmOptions")?;
        optional_string(
            fcm_options.get("analyticsLabel"),
            "android.fcmOptions.analyticsLabel",
        )?;
    }
    rename(
        android,
        &[
            ("collapseKey", "collapse_key"),
            ("restrictedPackageName", "restricted_package_name"),
            ("directBootOk", "direct_boot_ok"),
            ("bandwidthConstrainedOk", "bandwidth_constrained_ok"),
            ("restrictedSatelliteOk", "restricted_satellite_ok"),
        ],
    );
    Ok(())
}

fn android_notification(notification: &mut Value) -> Result {
    const P: &str = "android.notification";
    let n = object_mut(notification, P)?;
    if let Some(color) = n.get("color") {
        if !color.as_str().is_some_and(|c| is_hex_color(c, &[6])) {
            return Err(invalid(
                format!("{P}.color"),
                "must be in the form #RRGGBB",
                color,
            ));
        }
    }
    loc_args_need_key(n, "bodyLocArgs", "bodyLocKey", P)?;
    loc_args_need_key(n, "titleLocArgs", "titleLocKey", P)?;
    optional_url(n.get("imageUrl"), "android.notification.imageUrl")?;
    if let Some(ts) = n.get("eventTimestamp") {
        // firebase-admin takes a `Date` and sends `date.toISOString()`; a `Date` reaches pushq as
        // exactly that string (JSON.stringify), and so does any JSON producer's timestamp.
        if !ts.as_str().is_some_and(is_iso_timestamp) {
            return Err(invalid(
                format!("{P}.eventTimestamp"),
                "must be a Date (or its ISO-8601 string, YYYY-MM-DDTHH:mm:ss.sssZ)",
                ts,
            ));
        }
    }
    if let Some(timings) = n.get_mut("vibrateTimingsMillis") {
        vibrate_timings(timings)?;
    }
    android_enums(n)?;
    if let Some(light) = n.get_mut("lightSettings") {
        light_settings(light)?;
    }
    rename(
        n,
        &[
            ("clickAction", "click_action"),
            ("bodyLocKey", "body_loc_key"),
            ("bodyLocArgs", "body_loc_args"),
            ("titleLocKey", "title_loc_key"),
            ("titleLocArgs", "title_loc_args"),
            ("channelId", "channel_id"),
            ("imageUrl", "image"),
            ("eventTimestamp", "event_time"),
            ("localOnly", "local_only"),
            ("priority", "notification_priority"),
            ("vibrateTimingsMillis", "vibrate_timings"),
            ("defaultVibrateTimings", "default_vibrate_timings"),
            ("defaultSound", "default_sound"),
            ("lightSettings", "light_settings"),
            ("defaultLightSettings", "default_light_settings"),
            ("notificationCount", "notification_count"),
        ],
    );
    Ok(())
}

/// Converts `android.notification.vibrateTimingsMillis`, a non-empty array of milliseconds,
/// into FCM's durations.
fn vibrate_timings(timings: &mut Value) -> Result {
    let field = "android.notification.vibrateTimingsMillis";
    let Some(items) = timings.as_array_mut().filter(|a| !a.is_empty()) else {
        return Err(invalid(
            field,
            "must be a non-empty array of numbers",
            timings,
        ));
    };
    for (i, item) in items.iter_mut().enumerate() {
        *item = Value::String(duration(item, &format!("{field}[{i}]"))?);
    }
    Ok(())
}

/// Upper-cases the enum fields of an Android notification (`priority`, `proxy`, `visibility`)
/// into FCM's names, as firebase-admin does (`high` becomes `PRIORITY_HIGH`).
fn android_enums(n: &mut Map<String, Value>) -> Result {
    const P: &str = "android.notification";
    for (key, prefix) in [("priority", "PRIORITY_"), ("proxy", ""), ("visibility", "")] {
        if let Some(value) = n.get_mut(key) {
            let Some(s) = value.as_str() else {
                return Err(invalid(format!("{P}.{key}"), "must be a string", value));
            };
            *value = Value::String(format!("{prefix}{}", s.to_uppercase()));
        }
    }
    Ok(())
}

fn light_settings(light: &mut Value) -> Result {
    const P: &str = "android.notification.lightSettings";
    let l = object_mut(light, P)?;
    for key in ["lightOnDurationMillis", "lightOffDurationMillis"] {
        let field = format!("{P}.{key}");
        let d = duration(l.get(key).unwrap_or(&Value::Null), &field).map_err(|_| {
            invalid(
                &field,
                "must be a non-negative duration in milliseconds",
                l.get(key).unwrap_or(&Value::Null),
            )
        })?;
        l.insert(key.to_owned(), Value::String(d));
    }
    let color = l.get("color").unwrap_or(&Value::Null);
    let Some(hex) = color.as_str().filter(|c| is_hex_color(c, &[6, 8])) else {
        return Err(invalid(
            format!("{P}.color"),
            "must be in the form #RRGGBB or #RRGGBBAA",
            color,
        ));
    };
    let channel = |i: usize| {
        let byte = hex
            .get(1 + 2 * i..3 + 2 * i)
            .map_or(255, |h| u8::from_str_radix(h, 16).unwrap_or(0));
        js_number(f64::from(byte) / 255.0)
    };
    let rgba = [("red", 0), ("green", 1), ("blue", 2), ("alpha", 3)]
        .into_iter()
        .map(|(name, i)| (name.to_owned(), channel(i)))
        .collect();
    l.insert("color".to_owned(), Value::Object(rgba));
    rename(
        l,
        &[
            ("lightOnDurationMillis", "light_on_duration"),
            ("lightOffDurationMillis", "light_off_duration"),
        ],
    );
    Ok(())
}

fn apns_config(apns: &mut Value) -> Result {
    let apns = object_mut(apns, "apns")?;
    if let Some(token) = apns.get("liveActivityToken") {
        if token.as_str().is_none_or(str::is_empty) {
            return Err(invalid(
                "apns.liveActivityToken",
                "must be a non-empty string",
                token,
            ));
        }
    }
    string_map(apns.get("headers"), "apns.headers")?;
    if let Some(payload) = apns.get_mut("payload") {
        let payload = object_mut(payload, "apns.payload")?;
        if let Some(aps) = payload.get_mut("aps") {
            aps_dictionary(aps)?;
        }
    }
    if let Some(fcm_options) = apns.get_mut("fcmOptions") {
        let o = object_mut(fcm_options, "apns.fcmOptions")?;
        optional_url(o.get("imageUrl"), "apns.fcmOptions.imageUrl")?;
        optional_string(o.get("analyticsLabel"), "apns.fcmOptions.analyticsLabel")?;
        no_duplicate(o, "imageUrl", "image", "apns.fcmOptions")?;
        rename(o, &[("imageUrl", "image")]);
    }
    rename(apns, &[("liveActivityToken", "live_activity_token")]);
    Ok(())
}

fn aps_dictionary(aps: &mut Value) -> Result {
    const P: &str = "apns.payload.aps";
    let aps = object_mut(aps, P)?;
    if let Some(alert) = aps.get_mut("alert") {
        aps_alert(alert)?;
    }
    if let Some(sound) = aps.get_mut("sound") {
        aps_sound(sound)?;
    }
    let renames = [
        ("contentAvailable", "content-available"),
        ("mutableContent", "mutable-content"),
        ("threadId", "thread-id"),
    ];
    for (camel, hyphen) in renames {
        no_duplicate(aps, camel, hyphen, P)?;
    }
    rename(aps, &renames);
    for key in ["content-available", "mutable-content"] {
        flag_to_one(aps, key);
    }
    Ok(())
}

fn aps_alert(alert: &mut Value) -> Result {
    const P: &str = "apns.payload.aps.alert";
    if alert.is_string() {
        return Ok(());
    }
    let Value::Object(a) = alert else {
        return Err(invalid(P, "must be a string or an object", alert));
    };
    loc_args_need_key(a, "locArgs", "locKey", P)?;
    loc_args_need_key(a, "titleLocArgs", "titleLocKey", P)?;
    loc_args_need_key(a, "subtitleLocArgs", "subtitleLocKey", P)?;
    rename(
        a,
        &[
            ("locKey", "loc-key"),
            ("locArgs", "loc-args"),
            ("titleLocKey", "title-loc-key"),
            ("titleLocArgs", "title-loc-args"),
            ("subtitleLocKey", "subtitle-loc-key"),
            ("subtitleLocArgs", "subtitle-loc-args"),
            ("actionLocKey", "action-loc-key"),
            ("launchImage", "launch-image"),
        ],
    );
    Ok(())
}

fn aps_sound(sound: &mut Value) -> Result {
    const P: &str = "apns.payload.aps.sound";
    if sound.as_str().is_some_and(|s| !s.is_empty()) {
        return Ok(());
    }
    let Value::Object(s) = sound else {
        return Err(invalid(P, "must be a non-empty string or an object", sound));
    };
    let name = s.get("name").unwrap_or(&Value::Null);
    if name.as_str().is_none_or(str::is_empty) {
        return Err(invalid(
            format!("{P}.name"),
            "must be a non-empty string",
            name,
        ));
    }
    if let Some(volume) = s.get("volume") {
        match volume.as_f64() {
            None => return Err(invalid(format!("{P}.volume"), "must be a number", volume)),
            Some(v) if !(0.0..=1.0).contains(&v) => {
                return Err(invalid(
                    format!("{P}.volume"),
                    "must be in the interval [0, 1]",
                    volume,
                ))
            }
            Some(_) => {}
        }
    }
    flag_to_one(s, "critical");
    Ok(())
}

/// APNs flags are `1` or absent: `true` becomes `1`, anything else but `1` is dropped.
fn flag_to_one(map: &mut Map<String, Value>, key: &str) {
    match map.get(key) {
        None => {}
        Some(v) if v.as_f64() == Some(1.0) => {}
        Some(Value::Bool(true)) => {
            map.insert(key.to_owned(), Value::from(1));
        }
        Some(_) => {
            map.remove(key);
        }
    }
}

/// firebase-admin's `renameProperties`: the old key's value wins over an existing new key.
fn rename(map: &mut Map<String, Value>, pairs: &[(&str, &str)]) {
    for (old, new) in pairs {
        if let Some(value) = map.remove(*old) {
            map.insert((*new).to_owned(), value);
        }
    }
}

fn no_duplicate(map: &Map<String, Value>, camel: &str, other: &str, parent: &str) -> Result {
    if map.contains_key(camel) && map.contains_key(other) {
        return Err(InvalidPush::new(
            format!("{parent}.{camel}"),
            format!("is given twice, as {camel} and as {other}: set only one"),
        ));
    }
    Ok(())
}

fn loc_args_need_key(map: &Map<String, Value>, args: &str, key: &str, parent: &str) -> Result {
    let has_args = map
        .get(args)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let has_key = map
        .get(key)
        .and_then(Value::as_str)
        .is_some_and(|k| !k.is_empty());
    if has_args && !has_key {
        return Err(InvalidPush::new(
            format!("{parent}.{key}"),
            format!("is required when {args} is set"),
        ));
    }
    Ok(())
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| invalid(field, "must be an object", value))
}

fn object_mut<'a>(value: &'a mut Value, field: &str) -> Result<&'a mut Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid(field, "must be an object", other)),
    }
}

fn string_map(value: Option<&Value>, field: &str) -> Result {
    let Some(value) = value else { return Ok(()) };
    for (key, v) in object(value, field)? {
        if !v.is_string() {
            return Err(invalid(
                format!("{field}.{key}"),
                "must be a string (all values in this map must be strings)",
                v,
            ));
        }
    }
    Ok(())
}

fn optional_string(value: Option<&Value>, field: &str) -> Result {
    match value {
        Some(v) if !v.is_string() => Err(invalid(field, "must be a string", v)),
        _ => Ok(()),
    }
}

fn optional_url(value: Option<&Value>, field: &str) -> Result {
    match value {
        Some(v) if !v.as_str().is_some_and(is_url) => {
            Err(invalid(field, "must be a valid http(s) URL", v))
        }
        _ => Ok(()),
    }
}

/// Milliseconds to a protobuf `Duration` string, exactly as firebase-admin's
/// `transformMillisecondsToSecondsString` computes it (same float arithmetic).
fn duration(value: &Value, field: &str) -> Result<String> {
    let ms = value.as_f64().filter(|ms| *ms >= 0.0).ok_or_else(|| {
        invalid(
            field,
            "must be a non-negative duration in milliseconds",
            value,
        )
    })?;
    let seconds = (ms / 1000.0).floor();
    let nanos = ((ms - seconds * 1000.0) * 1_000_000.0).floor();
    let seconds = js_integer_string(seconds);
    Ok(if nanos > 0.0 {
        format!("{seconds}.{:09}s", nanos as u64)
    } else {
        format!("{seconds}s")
    })
}

/// A whole f64 printed the way JavaScript's `Number#toString` prints it (below 1e21).
fn js_integer_string(n: f64) -> String {
    if n < 1e21 {
        format!("{n:.0}")
    } else {
        Value::from(n).to_string()
    }
}

/// A JSON number as JavaScript would write it: whole numbers without a fraction.
fn js_number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

fn is_hex_color(s: &str, digit_counts: &[usize]) -> bool {
    s.strip_prefix('#').is_some_and(|hex| {
        digit_counts.contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// `YYYY-MM-DDTHH:mm:ss.sssZ`, the form `Date#toISOString` (and so `JSON.stringify`) writes.
fn is_iso_timestamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, want)| {
            if *want == b'd' {
                c.is_ascii_digit()
            } else {
                c == *want
            }
        })
}

fn invalid(field: impl Into<String>, problem: &str, got: &Value) -> InvalidPush {
    InvalidPush::new(field, format!("{problem} (got {})", describe(got)))
}

#[cfg(test)]
mod tests;
