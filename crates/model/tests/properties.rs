//! Properties over generated pushes (proptest): whatever validation accepts becomes a body that
//! passes the FCM emulator's shape checks, the JSON-text path validates like the value path, and
//! an envelope reads back as what was written. The shape checks are the top level only: known
//! top-level and `message` fields, one target, string `data` values, an `android.ttl` duration
//! string. Field by field, bodies are compared with firebase-admin's on its corpus
//! (`engine.rs`, `crates/model/tests/fcm_corpus.rs`), not here.

use proptest::prelude::*;
use pushq_fcm_emulator::check_send_body;
use pushq_model::envelope::Envelope;
use pushq_model::push::Push;
use serde_json::{json, Map, Value};

/// Any Unicode text, including the characters JSON must escape.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,40}", "[\"\\\\\u{1}\u{7f}\u{2028}é€😀 a-z]{0,20}",]
}

fn target() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        "[A-Za-z0-9:_-]{1,160}".prop_map(|t| ("token".to_owned(), json!(t))),
        "[A-Za-z0-9_-]{22}".prop_map(|f| ("fid".to_owned(), json!(f))),
        "(/topics/)?[A-Za-z0-9._~%-]{1,60}".prop_map(|t| ("topic".to_owned(), json!(t))),
        "[a-z]{1,10}".prop_map(|t| ("condition".to_owned(), json!(format!("'{t}' in topics")))),
        prop::collection::vec("[A-Za-z0-9:_-]{1,60}", 1..5)
            .prop_map(|t| ("tokens".to_owned(), json!(t))),
        prop::collection::vec("[A-Za-z0-9_-]{22}", 1..5)
            .prop_map(|f| ("fids".to_owned(), json!(f))),
        "\\PC{1,60}".prop_map(|u| ("userId".to_owned(), json!(u))),
        prop::collection::vec("\\PC{1,30}", 1..5).prop_map(|u| ("userIds".to_owned(), json!(u))),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z][a-z0-9_]{0,10}", text(), 0..5).prop_map(|m| json!(m))
}

fn notification() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(text()),
        proptest::option::of(text()),
        any::<bool>(),
    )
        .prop_map(|(title, body, image)| {
            let mut n = Map::new();
            if let Some(t) = title {
                n.insert("title".into(), json!(t));
            }
            if let Some(b) = body {
                n.insert("body".into(), json!(b));
            }
            if image {
                n.insert("imageUrl".into(), json!("https://example.com/i.png"));
            }
            Value::Object(n)
        })
}

fn android() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("high"), Just("normal")],
        0u64..2_419_200_000,
        proptest::option::of("[a-z]{1,10}"),
        proptest::option::of("#[0-9a-f]{6}"),
    )
        .prop_map(|(priority, ttl, collapse, color)| {
            let mut a = json!({"priority": priority, "ttl": ttl});
            if let Some(c) = collapse {
                a["collapseKey"] = json!(c);
            }
            if let Some(c) = color {
                a["notification"] = json!({"color": c, "title": "t"});
            }
            a
        })
}

fn apns() -> impl Strategy<Value = Value> {
    (0u32..1000, any::<bool>(), text()).prop_map(|(badge, content, sound)| {
        let mut aps = json!({"badge": badge});
        if content {
            aps["contentAvailable"] = json!(true);
        }
        if !sound.is_empty() {
            aps["sound"] = json!(sound);
        }
        json!({"headers": {"apns-priority": "10"}, "payload": {"aps": aps, "custom": {"k": [1, "x"]}}})
    })
}

fn push() -> impl Strategy<Value = Value> {
    (
        target(),
        proptest::option::of(notification()),
        proptest::option::of(data()),
        proptest::option::of(android()),
        proptest::option::of(apns()),
        proptest::option::of("[A-Za-z0-9._~%-]{1,20}"),
        proptest::option::of("[a-z]{1,20}"),
        proptest::option::of("[!-~]{1,40}"),
        proptest::option::of(0u32..=900),
        proptest::option::of("[A-Za-z0-9_.-]{1,64}"),
        // Up to 9999-12-31T00:00:00Z, so that every offset still writes a four-digit year.
        proptest::option::of((0i64..253_402_214_400_000, -1439i32..=1439)),
    )
        .prop_map(
            |((field, value), n, d, a, ap, label, category, key, delay, app, expires)| {
                let mut p = Map::new();
                p.insert(field, value);
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        p.insert(k.to_owned(), v);
                    }
                };
                put("notification", n);
                put("data", d);
                put("android", a);
                put("apns", ap);
                put("fcmOptions", label.map(|l| json!({"analyticsLabel": l})));
                put("category", category.map(Value::from));
                put("idempotencyKey", key.map(Value::from));
                put("delaySeconds", delay.map(Value::from));
                put("app", app.map(Value::from));
                put(
                    "expiresAt",
                    expires.map(|(ms, offset)| json!(rfc3339(ms, offset))),
                );
                Value::Object(p)
            },
        )
}

/// `ms` since the epoch as RFC 3339 text in the zone `offset_minutes` east of UTC.
fn rfc3339(ms: i64, offset_minutes: i32) -> String {
    let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).expect("within a day");
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("within chrono's range")
        .with_timezone(&zone)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn accepted_pushes_pass_the_emulators_shape_checks_and_envelopes_round_trip(raw in push()) {
        let by_value = Push::from_value(raw.clone());
        let by_text = Push::from_json(&raw.to_string());
        prop_assert_eq!(&by_value, &by_text);
        // The generator only makes valid pushes: validation must accept every one.
        let push = by_value.map_err(|e| TestCaseError::fail(format!("{e} for {raw}")))?;
        for dry_run in [false, true] {
            let body = if push.target().fans_out() {
                push.fcm_request_for_token("device-token", dry_run)
            } else {
                push.fcm_request(dry_run).expect("a direct target has a request")
            };
            prop_assert!(check_send_body(&body).is_ok(), "{:?}: {}", check_send_body(&body), body);
        }
        let envelope = Envelope::new(push);
        let read = Envelope::parse(&envelope.to_json(), "message-id", 0)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read, envelope);
    }

    /// Arbitrary JSON never panics validation, and what it accepts still makes a body that
    /// passes the emulator's shape checks.
    #[test]
    fn arbitrary_json_is_accepted_or_named_never_a_panic(raw in arbitrary_json()) {
        match Push::from_value(raw) {
            Ok(push) if !push.target().fans_out() => {
                prop_assert!(check_send_body(&push.fcm_request(false).unwrap()).is_ok());
            }
            Ok(push) => prop_assert!(check_send_body(&push.fcm_request_for_token("t", false)).is_ok()),
            Err(e) => prop_assert!(!e.field.is_empty()),
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("token".to_owned()),
        Just("topic".to_owned()),
        Just("tokens".to_owned()),
        Just("fid".to_owned()),
        Just("fids".to_owned()),
        Just("app".to_owned()),
        Just("expiresAt".to_owned()),
        Just("userId".to_owned()),
        Just("notification".to_owned()),
        Just("data".to_owned()),
        Just("android".to_owned()),
        Just("apns".to_owned()),
        Just("webpush".to_owned()),
        Just("title".to_owned()),
        Just("ttl".to_owned()),
        Just("payload".to_owned()),
        Just("aps".to_owned()),
        "[a-z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
