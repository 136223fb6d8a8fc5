use super::*;
use serde_json::json;

#[test]
fn durations_match_firebase_admin() {
    let d = |v: Value| duration(&v, "x").unwrap();
    assert_eq!(d(json!(0)), "0s");
    assert_eq!(d(json!(3600000)), "3600s");
    assert_eq!(d(json!(1500.5)), "1.500500000s");
    assert_eq!(d(json!(1)), "0.001000000s");
    assert!(duration(&json!(-1), "x").is_err());
    assert!(duration(&json!("5"), "x").is_err());
}

#[test]
fn prototype_keys_are_dropped_as_firebase_admin_copies() {
    let kept = json!({"constructor": "x", "prototype": "kept: a class instance to it"});
    let mut message = json!({
        "data": {"prototype": 5, "a": "b"},
        "apns": {"payload": {
            "aps": {},
            "__proto__": {"x": 1},
            "n": {"prototype": [1, {"prototype": 2, "k": 3}]}
        }},
        "android": {"data": kept}
    });
    to_wire(message.as_object_mut().unwrap()).unwrap();
    assert_eq!(
        message,
        json!({
            "data": {"a": "b"},
            "apns": {"payload": {"aps": {}, "n": {}}},
            "android": {"data": kept}
        })
    );
}

#[test]
fn iso_timestamps() {
    assert!(is_iso_timestamp("2024-11-24T10:00:00.000Z"));
    assert!(!is_iso_timestamp("2024-11-24T10:00:00Z"));
    assert!(!is_iso_timestamp("1732442400000"));
}
