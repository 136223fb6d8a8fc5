use super::*;
use serde_json::json;

fn push(v: Value) -> Push {
    Push::from_value(v).unwrap()
}

#[test]
fn round_trip_is_identity() {
    let env = Envelope::new(push(
        json!({"userId": "u1", "notification": {"title": "Hi"}, "category": "c"}),
    ));
    let body = env.to_json();
    assert_eq!(Envelope::parse(&body, "ignored", 0).unwrap(), env);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(
        uuid::Uuid::parse_str(v["id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
}

#[test]
fn a_dry_run_says_so_and_only_then() {
    let env = Envelope::new(push(json!({"token": "t"})));
    assert!(!env.to_json().contains("dryRun"));
    let dry = env.into_dry_run(true);
    let body = dry.to_json();
    assert!(body.contains(r#""dryRun":true"#), "{body}");
    assert!(Envelope::parse(&body, "m", 0).unwrap().dry_run);
    assert!(Envelope::parse(r#"{"v":1,"dryRun":"yes","push":{"token":"t"}}"#, "m", 0).is_err());
}

#[test]
fn foreign_envelopes_fall_back_to_sqs_id_and_timestamp() {
    let env = Envelope::parse(r#"{"v":1,"push":{"token":"t"}}"#, "sqs-id", 42).unwrap();
    assert_eq!((env.id.as_str(), env.enqueued_at), ("sqs-id", 42));
}

#[test]
fn rejects_what_is_not_an_envelope() {
    for (body, why) in [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        (r#"{"push":{"token":"t"}}"#, "v: missing"),
        (r#"{"v":0,"push":{"token":"t"}}"#, "v: must be"),
        (r#"{"v":"1","push":{"token":"t"}}"#, "v: must be"),
        (r#"{"v":1.5,"push":{"token":"t"}}"#, "v: must be"),
        (r#"{"v":-2,"push":{"token":"t"}}"#, "v: must be"),
        (
            r#"{"v":1,"enqueuedAt":253402300800000,"push":{"token":"t"}}"#,
            "enqueuedAt",
        ),
        (
            r#"{"v":1,"enqueuedAt":-1,"push":{"token":"t"}}"#,
            "enqueuedAt",
        ),
        // An unknown field does not save a known one with a wrong value.
        (
            r#"{"v":1,"push":{"token":"t","newThing":1,"android":{"ttl":-5}}}"#,
            "push.android.ttl",
        ),
        (r#"{"v":1}"#, "push: missing"),
        (
            r#"{"v":1,"push":{"token":"t","android":{"ttl":-5}}}"#,
            "push.android.ttl",
        ),
        (r#"{"v":1,"id":7,"push":{"token":"t"}}"#, "id:"),
    ] {
        let err = Envelope::parse(body, "m", 0).unwrap_err().to_string();
        assert!(err.contains(why), "{body}: {err}");
    }
}

#[test]
fn a_newer_producer_is_told_apart_from_a_broken_one() {
    for body in [
        r#"{"v":3,"push":{"token":"t"}}"#,
        r#"{"v":7,"whatever":"v7 looks like"}"#,
        r#"{"v":1,"push":{"token":"t","priorityHint":"high"}}"#,
        // A new kind of target: the push names none this build knows.
        r#"{"v":1,"push":{"deviceGroup":"g-1","notification":{"title":"x"}}}"#,
    ] {
        let err = Envelope::parse(body, "m", 0).unwrap_err();
        assert!(err.is_from_newer_producer(), "{body}: {err}");
    }
    for body in [
        "{",
        "[]",
        r#"{"v":0,"push":{"token":"t"}}"#,
        r#"{"v":1}"#,
        r#"{"v":1,"push":{"token":"t","__proto__":{"x":1}}}"#,
        r#"{"v":1,"push":{"token":"t","":1}}"#,
    ] {
        let err = Envelope::parse(body, "m", 0).unwrap_err();
        assert!(!err.is_from_newer_producer(), "{body}: {err}");
    }
    // FIDs, app and expiresAt are this build's own: read, not handed back.
    for body in [
        r#"{"v":1,"push":{"fid":"f-1","notification":{"title":"x"}}}"#,
        r#"{"v":1,"push":{"fids":["f-1","f-2"],"app":"trainer"}}"#,
        r#"{"v":1,"push":{"token":"t","expiresAt":"2026-11-26T22:00:00.000Z"}}"#,
    ] {
        assert!(Envelope::parse(body, "m", 0).is_ok(), "{body}");
    }
    // A known field with a wrong value is not a newer producer's.
    for body in [
        r#"{"v":1,"push":{"fid":"","notification":{"title":"x"}}}"#,
        r#"{"v":1,"push":{"token":"t","app":"a b","newThing":1}}"#,
        r#"{"v":1,"push":{"token":"t","expiresAt":"tomorrow","newThing":1}}"#,
    ] {
        let err = Envelope::parse(body, "m", 0).unwrap_err();
        assert!(!err.is_from_newer_producer(), "{body}: {err}");
    }
    // The last millisecond of 9999 is a time; the next is not.
    let last = r#"{"v":1,"enqueuedAt":253402300799999,"push":{"token":"t"}}"#;
    assert!(Envelope::parse(last, "m", 0).is_ok());
}

#[test]
fn large_lists_split_in_order_within_bounds() {
    let tokens: Vec<String> = (0..1234).map(|i| format!("{i:0>160}")).collect();
    let env = Envelope::new(push(
        json!({"tokens": tokens, "notification": {"title": "x"}}),
    ));
    let bodies = env.to_bodies().unwrap();
    let mut seen = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.len() <= MAX_ENVELOPE_BYTES);
        let part = Envelope::parse(body, "m", 0).unwrap();
        assert_eq!(part.id, env.id);
        // Each part knows which it is, so the log can tell when all are recorded.
        assert_eq!(part.part, Some((i as u32, bodies.len() as u32)));
        let Target::Tokens(list) = part.push.target() else {
            panic!("not tokens")
        };
        assert!(list.len() <= MAX_TARGETS_PER_ENVELOPE);
        seen.extend(list.iter().cloned());
    }
    assert_eq!(seen, tokens);
    // 1234 tokens of 163 bytes each: the byte bound, not the count bound, decides.
    assert_eq!(bodies.len(), 4);
}

#[test]
fn large_fid_lists_split_like_tokens() {
    let fids: Vec<String> = (0..1234).map(|i| format!("fid-{i:0>18}")).collect();
    let env = Envelope::new(push(json!({
        "fids": fids, "app": "trainer", "expiresAt": "2026-11-26T22:00:00.000Z",
        "notification": {"title": "x"}
    })));
    let bodies = env.to_bodies().unwrap();
    // 1234 short FIDs: the count bound, not the byte bound, decides.
    assert_eq!(bodies.len(), 3);
    let mut seen = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        assert!(body.len() <= MAX_ENVELOPE_BYTES);
        let part = Envelope::parse(body, "m", 0).unwrap();
        assert_eq!(part.id, env.id);
        assert_eq!(part.part, Some((i as u32, 3)));
        assert_eq!(part.push.app(), "trainer");
        assert_eq!(part.push.expires_at_ms(), Some(1_795_730_400_000));
        let Target::Fids(list) = part.push.target() else {
            panic!("not fids: {body}")
        };
        assert!(list.len() <= MAX_TARGETS_PER_ENVELOPE);
        seen.extend(list.iter().cloned());
    }
    assert_eq!(seen, fids);
}

#[test]
fn an_expired_push_is_still_read() {
    // The consumer records it as expired: reading it must not depend on the clock.
    let body = r#"{"v":1,"push":{"fid":"f","expiresAt":"1999-12-31T23:59:59+01:00"}}"#;
    let env = Envelope::parse(body, "m", 0).unwrap();
    assert_eq!(env.push.expires_at_ms(), Some(946_681_199_000));
    assert_eq!(Envelope::parse(&env.to_json(), "m", 0).unwrap(), env);
}

#[test]
fn small_lists_stay_whole() {
    let env = Envelope::new(push(json!({"userIds": ["a", "b"]})));
    assert_eq!(env.to_bodies().unwrap(), vec![env.to_json()]);
    assert!(!env.to_json().contains("part"));
    for bad in [
        r#"{"v":1,"part":0,"push":{"token":"t"}}"#,
        r#"{"v":1,"part":2,"parts":2,"push":{"token":"t"}}"#,
        r#"{"v":1,"part":0,"parts":10001,"push":{"token":"t"}}"#,
    ] {
        assert!(Envelope::parse(bad, "m", 0).is_err(), "{bad}");
    }
}

#[test]
fn an_envelope_over_64_kib_is_too_large() {
    // (A producer checks FCM's 4 KiB payload limit first; this is the envelope's own bound.)
    let env = Envelope::new(push(
        json!({"token": "t", "data": {"k": "x".repeat(70_000)}}),
    ));
    assert!(matches!(env.to_bodies(), Err(TooLarge { .. })));
}

#[test]
fn an_audience_page_travels_with_its_push_and_nothing_else_has_one() {
    let env = Envelope::new(push(json!({"audience": {"all": true}, "app": "member"})));
    assert_eq!(env.page, None);
    assert!(!env.to_json().contains("\"page\""));
    let page = Page {
        n: 3,
        after: 1500,
        through: 2034,
    };
    let paged = env.with_page(page);
    let body = paged.to_json();
    assert!(
        body.contains(r#""page":{"n":3,"after":1500,"through":2034}"#),
        "{body}"
    );
    assert_eq!(Envelope::parse(&body, "m", 0).unwrap(), paged);
    assert_eq!(paged.to_bodies().unwrap(), vec![body]);
    for bad in [
        r#"{"v":1,"page":{"n":0,"after":5,"through":9},"push":{"token":"t"}}"#,
        r#"{"v":1,"page":{"n":0,"after":9,"through":9},"push":{"audience":{"all":true}}}"#,
        r#"{"v":1,"page":{"n":-1,"after":0,"through":9},"push":{"audience":{"all":true}}}"#,
        r#"{"v":1,"page":{"n":0,"after":0},"push":{"audience":{"all":true}}}"#,
        r#"{"v":1,"page":{"n":0,"after":0,"through":9,"x":1},"push":{"audience":{"all":true}}}"#,
        r#"{"v":1,"page":[0,0,9],"push":{"audience":{"all":true}}}"#,
    ] {
        let err = Envelope::parse(bad, "m", 0).unwrap_err();
        assert!(err.to_string().contains("page"), "{bad}: {err}");
    }
}
