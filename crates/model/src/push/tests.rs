use super::*;
use serde_json::json;

#[test]
fn the_largest_field_is_named_as_the_caller_wrote_it() {
    let image = format!("https://example.com/{}", "a".repeat(3000));
    let push = Push::from_value(json!({
        "token": "t",
        "data": {"k": "v"},
        "apns": {"fcmOptions": {"imageUrl": image}, "headers": {"apns-priority": "10"}}
    }))
    .unwrap();
    let (field, size) = push.largest_field().unwrap();
    assert_eq!(field, "apns.fcmOptions");
    assert!(size > 3000, "{size}");
}

fn field_of(v: Value) -> String {
    Push::from_value(v).unwrap_err().field
}

#[test]
fn error_names_the_field_and_the_value() {
    let err = Push::from_value(json!({"token": "t", "android": {"ttl": -1}})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "push.android.ttl: must be a non-negative duration in milliseconds (got -1)"
    );
    assert_eq!(
        err.clone().at_index(3).to_string(),
        "pushes[3].android.ttl: must be a non-negative duration in milliseconds (got -1)"
    );
}

#[test]
fn unknown_fields_are_named_not_dropped_or_sent() {
    assert_eq!(
        field_of(json!({"token": "a", "unknownKey": 1})),
        "unknownKey"
    );
    assert_eq!(
        field_of(json!({"userIds": ["u"], "constructor": "x"})),
        "constructor"
    );
    let proto: Value = serde_json::from_str(r#"{"token":"a","__proto__":{"x":1}}"#).unwrap();
    assert_eq!(field_of(proto), "__proto__");
    // Found by the push_validate fuzz target: an empty key must still name something.
    assert_eq!(field_of(json!({"token": "a", "": 41})), "\"\"");
    // snake_case fcm_options is FCM's own spelling and stays allowed.
    assert!(
        Push::from_value(json!({"token": "a", "fcm_options": {"analytics_label": "l"}})).is_ok()
    );
}

#[test]
fn unreadable_json_is_named_where_it_goes_wrong() {
    let err = |text: &str| Push::from_json(text).unwrap_err();
    // What JSON.stringify writes for a lone surrogate.
    let e = err(r#"{"token":"t","notification":{"title":"a\ud800b"}}"#);
    assert_eq!(e.field, "notification.title");
    assert!(e.problem.contains("not valid Unicode"), "{e}");
    assert_eq!(
        err(r#"{"token":"t","data":{"k\udc00":"v"}}"#).field,
        "data.k\\udc00"
    );
    assert_eq!(err(r#"{"tokens":["a","b\ud800"]}"#).field, "tokens[1]");
    let deep = format!(
        r#"{{"token":"t","apns":{{"payload":{}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let e = err(&deep);
    assert!(e.field.starts_with("apns.payload["), "{e}");
    assert!(e.problem.contains("nested"), "{e}");
    assert_eq!(err("{").field, "push");
}

#[test]
fn pushq_fields_never_reach_fcm() {
    let push = Push::from_value(json!({
        "userIds": ["u1", "u2"], "idempotencyKey": "k", "delaySeconds": 5, "category": "promo",
        "notification": {"title": "t"}
    }))
    .unwrap();
    assert_eq!(
        push.fcm_request_for_token("dev", true),
        json!({"message": {"token": "dev", "notification": {"title": "t"}}, "validate_only": true})
    );
    assert_eq!(push.delay_seconds(), Some(5));
    assert_eq!(push.category(), Some("promo"));
    assert_eq!(push.idempotency_key(), Some("k"));
}

#[test]
fn a_fid_goes_where_a_token_would() {
    let push = Push::from_value(json!({
        "fid": "fid-1", "notification": {"title": "t"}, "android": {"ttl": 1500}
    }))
    .unwrap();
    let message = json!({
        "fid": "fid-1", "notification": {"title": "t"}, "android": {"ttl": "1.500000000s"}
    });
    assert_eq!(push.fcm_request(false), Some(json!({ "message": message })));
    assert_eq!(
        push.fcm_request(true),
        Some(json!({"message": message, "validate_only": true}))
    );

    let push = Push::from_value(json!({
        "fids": ["f-1", "f-2"], "data": {"k": "v"}, "apns": {"payload": {"aps": {"badge": 1}}}
    }))
    .unwrap();
    assert_eq!(push.fcm_request(false), None);
    let payload = json!({"data": {"k": "v"}, "apns": {"payload": {"aps": {"badge": 1}}}});
    let mut for_fid = payload.clone();
    for_fid["fid"] = json!("f-2");
    assert_eq!(
        push.fcm_request_for(Recipient::Fid("f-2"), false),
        json!({ "message": for_fid })
    );
    let mut for_token = payload;
    for_token["token"] = json!("tok");
    assert_eq!(
        push.fcm_request_for(Recipient::Token("tok"), true),
        json!({"message": for_token, "validate_only": true})
    );
    assert_eq!(
        push.fcm_request_for_token("tok", true),
        push.fcm_request_for(Recipient::Token("tok"), true)
    );
}

#[test]
fn app_and_expiry_never_reach_fcm() {
    let push = Push::from_value(json!({
        "fids": ["f-1"], "app": "trainer", "expiresAt": "2026-11-26T22:00:00.000Z",
        "notification": {"title": "t"}
    }))
    .unwrap();
    assert_eq!(
        push.fcm_request_for(Recipient::Fid("f-1"), false),
        json!({"message": {"fid": "f-1", "notification": {"title": "t"}}})
    );
    assert_eq!(push.app(), "trainer");
    assert_eq!(push.expires_at_ms(), Some(1_795_730_400_000));
    let push = Push::from_value(json!({
        "fid": "f-1", "app": "trainer", "expiresAt": "2026-11-26T22:00:00Z", "category": "c"
    }))
    .unwrap();
    assert_eq!(
        push.fcm_request(false),
        Some(json!({"message": {"fid": "f-1"}}))
    );
    assert!(push.fcm_payload().is_empty());
}

#[test]
fn a_push_without_an_app_takes_the_clients() {
    let push = Push::from_value(json!({"token": "t"})).unwrap();
    assert_eq!(push.app(), DEFAULT_APP);
    assert_eq!(DEFAULT_APP, "default");

    let member = push.clone().with_default_app("member");
    assert_eq!(member.app(), "member");
    // The envelope carries the raw push: the consumer must see the app too.
    assert_eq!(member.raw()["app"], "member");
    assert_eq!(member.fcm_request(false), push.fcm_request(false));

    // The default app is what a push without one means: nothing to write.
    assert_eq!(push.clone().with_default_app(DEFAULT_APP), push);

    // A push that names its app keeps it, even when it names the default.
    let own = Push::from_value(json!({"token": "t", "app": "trainer"})).unwrap();
    assert_eq!(own.clone().with_default_app("member"), own);
    let named_default = Push::from_value(json!({"token": "t", "app": "default"})).unwrap();
    let kept = named_default.clone().with_default_app("member");
    assert_eq!(kept, named_default);
    assert_eq!(kept.app(), "default");
}

#[test]
fn unknown_field_message_lists_pushqs_fields() {
    let err = Push::from_value(json!({"token": "a", "expires": 1})).unwrap_err();
    assert!(
        err.problem
            .contains("id, app, idempotencyKey, expiresAt, delaySeconds, sendAt, category"),
        "{err}"
    );
    for field in ["fid", "fids", "app", "expiresAt"] {
        assert!(is_push_field(field), "{field}");
    }
    assert!(is_target_field("fid") && is_target_field("fids"));
    assert!(!is_target_field("app") && !is_target_field("expiresAt"));
}

#[test]
fn with_list_replaces_target_and_raw() {
    let push = Push::from_value(json!({"tokens": ["a", "b", "c"]})).unwrap();
    let part = push.with_list(&["b".to_owned()]);
    assert_eq!(part.target(), &Target::Tokens(vec!["b".into()]));
    assert_eq!(part.raw()["tokens"], json!(["b"]));
    let push = Push::from_value(json!({"fids": ["a", "b", "c"]})).unwrap();
    let part = push.with_list(&["c".to_owned()]);
    assert_eq!(part.target(), &Target::Fids(vec!["c".into()]));
    assert_eq!(part.raw()["fids"], json!(["c"]));
}
