//! What is final and what waits, through the real `pushq-lambda` binary against a Runtime API,
//! the FCM emulator and real databases: only a target's own FCM error is final (a refused
//! account, a wrong key, APNs credentials and a proxy's page come back for redelivery); a newer
//! producer's messages wait instead of being rejected; hostile or oversized bodies and a
//! database that hangs cannot poison a batch.

use std::time::{Duration, Instant};

use pushq_delivery::store::Store;
use pushq_test_support::lambda::{failed_items, sqs_event, Lambda};
use pushq_test_support::{on_every_db, Db, Fcm};
use serde_json::{json, Value};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_pushq-lambda");
const WAIT: Duration = Duration::from_secs(90);

/// A fresh database with the schema and these (user, token) devices, and a bootstrap on it.
async fn setup(db: &Db, fcm: &Fcm, devices: &[(&str, &str)], extra: &[(&str, &str)]) -> Lambda {
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    for (user, token) in devices {
        store.register_device(user, token, "android").await.unwrap();
    }
    store.close().await;
    let mut env = fcm.env();
    env.push(("DATABASE_URL".into(), db.url.clone()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Lambda::start(BOOTSTRAP, &env).await
}

fn envelope(id: &str, push: Value) -> String {
    json!({"v": 1, "id": id, "enqueuedAt": 1_795_000_000_000i64, "push": push}).to_string()
}

/// (push id, target, status, error code) of every delivery row, sorted.
async fn rows(db: &Db) -> Vec<(String, String, String, Option<String>)> {
    db.deliveries()
        .await
        .into_iter()
        .map(|(p, t, s, e, _)| (p, t, s, e))
        .collect()
}

fn row(
    push: &str,
    target: &str,
    status: &str,
    code: Option<&str>,
) -> (String, String, String, Option<String>) {
    (
        push.into(),
        target.into(),
        status.into(),
        code.map(str::to_owned),
    )
}

/// The targets FCM accepted (tokens, or `topic:<name>`), sorted, repeats kept.
async fn received(fcm: &Fcm) -> Vec<String> {
    let mut targets: Vec<String> = fcm
        .received()
        .await
        .iter()
        .map(|m| {
            let message = &m["body"]["message"];
            match message["token"].as_str() {
                Some(token) => token.to_owned(),
                None => format!("topic:{}", message["topic"].as_str().unwrap()),
            }
        })
        .collect();
    targets.sort();
    targets
}

/// Whether each of these tokens is still live (not invalidated) for its user.
async fn live(db: &Db, devices: &[(&str, &str)]) -> Vec<bool> {
    let store = Store::connect(&db.url, 1).await.unwrap();
    let mut out = Vec::new();
    for (user, token) in devices {
        let found = store.devices(user).await.unwrap();
        out.push(found.iter().any(|d| d.token == *token && d.live));
    }
    store.close().await;
    out
}

async fn token_requests(fcm: &Fcm) -> u64 {
    fcm.call("GET", "/__received", None).await["tokenRequests"]
        .as_u64()
        .unwrap()
}

/// During a key rotation the new service account lacks the send permission: FCM answers every
/// send `403 PERMISSION_DENIED` without an FCM error code. Nothing is recorded final, nothing is
/// invalidated, every message comes back; once the key is fixed, the redelivery gives every
/// device its push exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_account_then_fixed_delivers_every_device_exactly_once() {
    let fcm = Fcm::start();
    let db = Db::postgres().await;
    let devices = [("u1", "tok-a"), ("u1", "tok-b"), ("u2", "tok-c")];
    let mut lambda = setup(&db, &fcm, &devices, &[]).await;
    let event = sqs_event(&[
        (
            "m-users",
            envelope(
                "p-users",
                json!({"userIds": ["u1", "u2"], "notification": {"title": "hi"}}),
            ),
        ),
        ("m-token", envelope("p-token", json!({"token": "tok-d"}))),
        ("m-topic", envelope("p-topic", json!({"topic": "news"}))),
    ]);

    fcm.faults(json!({"rules": [{"error": "PERMISSION_DENIED"}]}))
        .await;
    let answer = lambda.invoke("req-1", event.clone(), 30, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-token", "m-topic", "m-users"]);
    assert!(received(&fcm).await.is_empty());
    let denied = Some("PERMISSION_DENIED");
    assert_eq!(
        rows(&db).await,
        [
            row("p-token", "tok-d", "retrying", denied),
            row("p-topic", "topic:news", "retrying", denied),
            row("p-users", "tok-a", "retrying", denied),
            row("p-users", "tok-b", "retrying", denied),
            row("p-users", "tok-c", "retrying", denied),
        ]
    );
    assert_eq!(live(&db, &devices).await, [true, true, true]);

    // The key is fixed; SQS (or a DLQ redrive) brings the messages back.
    fcm.faults(json!({"rules": []})).await;
    let answer = lambda.invoke("req-2", event.clone(), 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    // And once more, as SQS may deliver twice: nothing is sent again.
    let answer = lambda.invoke("req-3", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(
        received(&fcm).await,
        ["tok-a", "tok-b", "tok-c", "tok-d", "topic:news"]
    );
    assert_eq!(
        rows(&db).await,
        [
            row("p-token", "tok-d", "sent", None),
            row("p-topic", "topic:news", "sent", None),
            row("p-users", "tok-a", "sent", None),
            row("p-users", "tok-b", "sent", None),
            row("p-users", "tok-c", "sent", None),
        ]
    );
    db.drop_it().await;
}

/// What answers 2xx without being FCM's answer delivered nothing: a TLS-inspecting proxy's 200
/// page, an empty 204, a wrong endpoint answering another project's message name. None is
/// recorded `sent` or takes the push's idempotency key: the message comes back, and once FCM
/// itself answers, the device gets the push once.
#[tokio::test(flavor = "multi_thread")]
async fn a_2xx_that_is_not_fcms_answer_is_handed_back_not_sent() {
    let fcm = Fcm::start();
    let db = Db::sqlite().await;
    let mut lambda = setup(&db, &fcm, &[("u1", "tok-a")], &[]).await;
    let push = json!({"userId": "u1", "idempotencyKey": "k-1", "notification": {"title": "hi"}});
    let event = sqs_event(&[("m-1", envelope("p-1", push))]);

    let not_fcm = [
        (
            200,
            "<html><body>Blocked by your organisation's proxy</body></html>",
        ),
        (204, ""),
        (200, r#"{"name":"projects/another-project/messages/123"}"#),
    ];
    for (n, (status, body)) in not_fcm.into_iter().enumerate() {
        fcm.faults(json!({"rules": [{"status": status, "body": body}]}))
            .await;
        let answer = lambda
            .invoke(&format!("req-{n}"), event.clone(), 30, WAIT)
            .await;
        assert_eq!(failed_items(&answer), ["m-1"], "a {status} answer: {body}");
        let code = format!("HTTP_{status}");
        assert_eq!(
            rows(&db).await,
            [row("p-1", "tok-a", "retrying", Some(&code))],
            "a {status} answer: {body}"
        );
    }

    fcm.faults(json!({"rules": []})).await;
    let answer = lambda.invoke("req-fcm", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(received(&fcm).await, ["tok-a"]);
    assert_eq!(rows(&db).await, [row("p-1", "tok-a", "sent", None)]);
    db.drop_it().await;
}

/// A key of another project beside a topic push: the token's SENDER_ID_MISMATCH is the whole of
/// the batch's device sends, so the key is the wrong one and the push comes back, however many
/// topic sends worked (they say nothing about the tokens' project). Nothing is invalidated.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_is_not_hidden_behind_topic_sends() {
    let fcm = Fcm::start();
    let db = Db::sqlite().await;
    let devices = [("u1", "tok-x")];
    let mut lambda = setup(&db, &fcm, &devices, &[]).await;
    fcm.faults(json!({"rules": [{"token": "tok-x", "error": "SENDER_ID_MISMATCH"}]}))
        .await;
    let event = sqs_event(&[
        ("m-token", envelope("p-token", json!({"userId": "u1"}))),
        ("m-topic", envelope("p-topic", json!({"topic": "news"}))),
        (
            "m-cond",
            envelope("p-cond", json!({"condition": "'a' in topics"})),
        ),
    ]);
    let answer = lambda.invoke("req-1", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-token"]);
    assert_eq!(
        rows(&db).await,
        [
            row("p-cond", "condition:'a' in topics", "sent", None),
            row("p-token", "tok-x", "retrying", Some("SENDER_ID_MISMATCH")),
            row("p-topic", "topic:news", "sent", None),
        ]
    );
    assert_eq!(live(&db, &devices).await, [true]);
    db.drop_it().await;
}

/// `PUSHQ_FCM_DRY_RUN=1` (a staging deployment): FCM validates and delivers nothing, so each
/// target is recorded `dry_run`, never `sent`, and the push's idempotency key stays free: the
/// same key sent for real later is delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_deployment_records_dry_run_and_takes_no_key() {
    let fcm = Fcm::start();
    let db = Db::sqlite().await;
    let mut dry = setup(&db, &fcm, &[("u1", "tok-a")], &[("PUSHQ_FCM_DRY_RUN", "1")]).await;
    let keyed = |id: &str| {
        envelope(
            id,
            json!({"userId": "u1", "idempotencyKey": "renewal-2026", "notification": {"title": "hi"}}),
        )
    };
    let answer = dry
        .invoke("req-dry", sqs_event(&[("m-1", keyed("p-1"))]), 30, WAIT)
        .await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(rows(&db).await, [row("p-1", "tok-a", "dry_run", None)]);
    let sent = fcm.received().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["validateOnly"], json!(true));
    drop(dry);

    let mut real = setup(&db, &fcm, &[("u1", "tok-a")], &[]).await;
    let answer = real
        .invoke("req-real", sqs_event(&[("m-2", keyed("p-2"))]), 30, WAIT)
        .await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(
        rows(&db).await,
        [
            row("p-1", "tok-a", "dry_run", None),
            row("p-2", "tok-a", "sent", None),
        ]
    );
    db.drop_it().await;
}

/// An APNs environment mismatch (or any deployment-wide cause FCM answers per token) calls every
/// device dead: when most of a batch's device sends, and at least 10 of them, answer a dead
/// token, nothing is invalidated (`devices prune` would delete them all) and the messages come
/// back. In a batch where one token of twelve is dead, it alone is invalidated, as before.
#[tokio::test(flavor = "multi_thread")]
async fn dead_tokens_for_most_of_a_batch_invalidate_nothing() {
    let fcm = Fcm::start();
    let db = Db::sqlite().await;
    let tokens: Vec<String> = (1..=12).map(|n| format!("tok-{n:02}")).collect();
    let devices: Vec<(&str, &str)> = tokens.iter().map(|t| ("u1", t.as_str())).collect();
    let mut lambda = setup(&db, &fcm, &devices, &[]).await;

    fcm.faults(json!({"rules": [{"error": "UNREGISTERED"}]}))
        .await;
    let push = json!({"userId": "u1", "notification": {"title": "hi"}});
    let answer = lambda
        .invoke(
            "req-1",
            sqs_event(&[("m-1", envelope("p-1", push))]),
            30,
            WAIT,
        )
        .await;
    assert_eq!(failed_items(&answer), ["m-1"]);
    let all_retrying: Vec<_> = tokens
        .iter()
        .map(|t| row("p-1", t, "retrying", Some("UNREGISTERED")))
        .collect();
    assert_eq!(rows(&db).await, all_retrying);
    assert_eq!(live(&db, &devices).await, vec![true; 12]);

    fcm.faults(json!({"rules": [{"token": "tok-03", "error": "UNREGISTERED"}]}))
        .await;
    let push = json!({"userId": "u1", "notification": {"title": "again"}});
    let answer = lambda
        .invoke(
            "req-2",
            sqs_event(&[("m-2", envelope("p-2", push))]),
            30,
            WAIT,
        )
        .await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    let mut expected_live = vec![true; 12];
    expected_live[2] = false;
    assert_eq!(live(&db, &devices).await, expected_live);
    let p2: Vec<_> = rows(&db)
        .await
        .into_iter()
        .filter(|r| r.0 == "p-2")
        .map(|r| (r.1, r.2))
        .collect();
    let expected: Vec<(String, String)> = tokens
        .iter()
        .map(|t| {
            let status = if t == "tok-03" {
                "invalid_token"
            } else {
                "sent"
            };
            (t.clone(), status.to_owned())
        })
        .collect();
    assert_eq!(p2, expected);
    db.drop_it().await;
}

/// Each FCM answer by whose fault it is. The target's own: a token FCM calls invalid
/// (`INVALID_ARGUMENT` naming the registration token: invalidated), a message FCM refuses
/// (`failed`), one token of another project among working ones (`failed`, not invalidated).
/// The deployment's, handed back and never final: `THIRD_PARTY_AUTH_ERROR` (which does not make
/// pushq fetch a new OAuth token per send) and a proxy's HTML 404. Then a staging key in
/// production (every send `SENDER_ID_MISMATCH`): nothing is invalidated, the messages wait, and
/// with the right key every device gets its push.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_targets_own_error_is_final() {
    let fcm = Fcm::start();
    let db = Db::mariadb().await;
    let devices = [
        ("u-a", "tok-garbage"),
        ("u-a", "tok-ok1"),
        ("u-a", "tok-ok2"),
        ("u-b", "tok-other-project"),
        ("u-b", "tok-ok3"),
        ("u-b", "tok-ok4"),
        ("u-f1", "tok-f1"),
        ("u-f1", "tok-f2"),
        ("u-f2", "tok-f3"),
    ];
    let mut lambda = setup(&db, &fcm, &devices, &[]).await;
    fcm.faults(json!({"rules": [
        {"token": "tok-garbage", "error": "INVALID_ARGUMENT",
         "message": "The registration token is not a valid FCM registration token"},
        {"token": "tok-msg", "error": "INVALID_ARGUMENT",
         "message": "Invalid value at 'message.android.notification.color'"},
        {"token": "tok-other-project", "error": "SENDER_ID_MISMATCH"},
        {"token": "tok-ios", "error": "THIRD_PARTY_AUTH_ERROR"},
        {"token": "tok-proxy", "status": 404, "body": "<html><body>Not Found</body></html>"},
    ]}))
    .await;
    let event = sqs_event(&[
        ("m-a", envelope("p-a", json!({"userId": "u-a"}))),
        ("m-b", envelope("p-b", json!({"userId": "u-b"}))),
        ("m-msg", envelope("p-msg", json!({"token": "tok-msg"}))),
        ("m-ios", envelope("p-ios", json!({"token": "tok-ios"}))),
        (
            "m-proxy",
            envelope("p-proxy", json!({"token": "tok-proxy"})),
        ),
    ]);
    let started = Instant::now();
    let answer = lambda.invoke("req-1", event, 60, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-ios", "m-proxy"]);
    // Neither is retried within the invocation: it does not fix itself in seconds.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        token_requests(&fcm).await,
        1,
        "THIRD_PARTY_AUTH_ERROR dropped the OAuth token"
    );
    assert_eq!(
        rows(&db).await,
        [
            row(
                "p-a",
                "tok-garbage",
                "invalid_token",
                Some("INVALID_ARGUMENT")
            ),
            row("p-a", "tok-ok1", "sent", None),
            row("p-a", "tok-ok2", "sent", None),
            row("p-b", "tok-ok3", "sent", None),
            row("p-b", "tok-ok4", "sent", None),
            row(
                "p-b",
                "tok-other-project",
                "failed",
                Some("SENDER_ID_MISMATCH")
            ),
            row(
                "p-ios",
                "tok-ios",
                "retrying",
                Some("THIRD_PARTY_AUTH_ERROR")
            ),
            row("p-msg", "tok-msg", "failed", Some("INVALID_ARGUMENT")),
            row("p-proxy", "tok-proxy", "retrying", Some("HTTP_404")),
        ]
    );
    assert_eq!(
        live(&db, &devices[..4]).await,
        [false, true, true, true],
        "only the token FCM called invalid is invalidated"
    );

    // The staging key in production: every send answers SENDER_ID_MISMATCH.
    fcm.faults(json!({"rules": [{"error": "SENDER_ID_MISMATCH"}]}))
        .await;
    let wrong_key = sqs_event(&[("m-f", envelope("p-f", json!({"userIds": ["u-f1", "u-f2"]})))]);
    let answer = lambda.invoke("req-2", wrong_key.clone(), 30, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-f"]);
    assert_eq!(live(&db, &devices[6..]).await, [true, true, true]);
    fcm.faults(json!({"rules": []})).await;
    let answer = lambda.invoke("req-3", wrong_key, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    let sent = received(&fcm).await;
    for token in ["tok-f1", "tok-f2", "tok-f3"] {
        assert_eq!(sent.iter().filter(|t| *t == token).count(), 1, "{token}");
    }
    db.drop_it().await;
}

/// The Node addon is upgraded before the Lambda: an envelope version or a push field this
/// consumer does not know is handed back (it waits in the DLQ for the upgrade), every time it
/// comes; only bodies no version could accept are rejected.
#[tokio::test(flavor = "multi_thread")]
async fn a_newer_producers_messages_wait_and_broken_ones_are_rejected() {
    let fcm = Fcm::start();
    let db = Db::postgres().await;
    let mut lambda = setup(&db, &fcm, &[], &[]).await;
    let event = sqs_event(&[
        (
            "m-v3",
            json!({"v": 3, "id": "p-v3", "push": {"token": "t-v3"}}).to_string(),
        ),
        (
            "m-field",
            envelope(
                "p-field",
                json!({"token": "t-field", "priorityHint": "high"}),
            ),
        ),
        (
            "m-group",
            envelope("p-group", json!({"deviceGroup": "g-1"})),
        ),
        ("m-v0", json!({"v": 0, "push": {"token": "t"}}).to_string()),
        (
            "m-vtext",
            json!({"v": "1", "push": {"token": "t"}}).to_string(),
        ),
        (
            "m-known-wrong",
            envelope(
                "p-kw",
                json!({"token": "t", "newThing": 1, "android": {"ttl": -5}}),
            ),
        ),
        ("m-array", "[1, 2]".to_owned()),
        ("m-ok", envelope("p-ok", json!({"token": "t-ok"}))),
    ]);
    for request in ["req-1", "req-2"] {
        let answer = lambda.invoke(request, event.clone(), 30, WAIT).await;
        assert_eq!(
            failed_items(&answer),
            ["m-field", "m-group", "m-v3"],
            "{request}"
        );
    }
    let rejected: Vec<String> = db.rejected().await.into_iter().map(|r| r.0).collect();
    assert_eq!(rejected, ["m-array", "m-known-wrong", "m-v0", "m-vtext"]);
    assert_eq!(received(&fcm).await, ["t-ok"]);
    assert!(
        lambda.output().contains("newer producer"),
        "the hand-back is not logged:\n{}",
        lambda.output()
    );
    db.drop_it().await;
}

/// Bodies a foreign or hostile producer may write cannot fail the rest of the batch: an
/// `enqueuedAt` past the year 9999 (MariaDB's DATETIME refuses it, which failed the whole
/// batch's insert on every receive) is rejected; a device named several times gets one push; a
/// push over FCM's payload limit (4096 bytes, 2048 to a topic) is recorded `failed` with
/// `PAYLOAD_TOO_LARGE` without being sent.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_or_oversized_bodies_cannot_poison_a_batch() {
    let fcm = Fcm::start();
    let db = Db::mariadb().await;
    let mut lambda = setup(&db, &fcm, &[], &[]).await;
    let event = sqs_event(&[
        (
            "m-year",
            json!({"v": 1, "id": "p-year", "enqueuedAt": 253_402_300_800_000i64,
                   "push": {"token": "t-year"}})
            .to_string(),
        ),
        (
            "m-dups",
            envelope(
                "p-dups",
                json!({"tokens": ["t-d1", "t-d2", "t-d1", "t-d2", "t-d1"]}),
            ),
        ),
        (
            "m-big",
            envelope(
                "p-big",
                json!({"tokens": ["t-b1", "t-b2"], "data": {"blob": "x".repeat(5000)}}),
            ),
        ),
        (
            "m-topic",
            envelope(
                "p-topic",
                json!({"topic": "news", "data": {"blob": "y".repeat(3000)}}),
            ),
        ),
        ("m-ok", envelope("p-ok", json!({"token": "t-ok"}))),
    ]);
    let answer = lambda.invoke("req-1", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(received(&fcm).await, ["t-d1", "t-d2", "t-ok"]);
    let too_large = Some("PAYLOAD_TOO_LARGE");
    assert_eq!(
        rows(&db).await,
        [
            row("p-big", "t-b1", "failed", too_large),
            row("p-big", "t-b2", "failed", too_large),
            row("p-dups", "t-d1", "sent", None),
            row("p-dups", "t-d2", "sent", None),
            row("p-ok", "t-ok", "sent", None),
            row("p-topic", "topic:news", "failed", too_large),
        ]
    );
    let rejected = db.rejected().await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, "m-year");
    assert!(rejected[0].1.contains("enqueuedAt"), "{rejected:?}");
    db.drop_it().await;
}

/// A database that stops answering (here: the delivery log locked by another session) does not
/// hold the invocation until Lambda kills it: the statement is given up after
/// `PUSHQ_DB_STATEMENT_TIMEOUT_MS`, the batch is handed back, and once the lock is gone the
/// redelivery sends it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_statement_hands_the_batch_back_within_the_invocation() {
    use sqlx::Connection;
    let fcm = Fcm::start();
    let db = Db::postgres().await;
    let mut lambda = setup(&db, &fcm, &[], &[("PUSHQ_DB_STATEMENT_TIMEOUT_MS", "1000")]).await;
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE pushq_deliveries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let event = sqs_event(&[("m-1", envelope("p-1", json!({"token": "t-1"})))]);
    let started = Instant::now();
    // A 120 s invocation; the answer must come long before it ends.
    let answer = lambda
        .invoke("req-1", event.clone(), 120, Duration::from_secs(30))
        .await;
    assert_eq!(failed_items(&answer), ["m-1"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(received(&fcm).await.is_empty());
    assert!(
        lambda.output().contains("did not finish within 1000 ms"),
        "{}",
        lambda.output()
    );

    lock.rollback().await.unwrap();
    let answer = lambda.invoke("req-2", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(received(&fcm).await, ["t-1"]);
    drop(locker);
    db.drop_it().await;
}

/// Makes the delivery log's write of a `sent` row fail its first `times` times, as a database
/// hiccup would: a trigger raises an error, and a sequence counts the failures (its values
/// survive the failed statement's rollback).
async fn fail_sent_writes(db: &Db, times: u32) {
    if db.url.starts_with("postgres") {
        db.execute(&format!(
            "CREATE SEQUENCE pushq_test_failures;
             CREATE FUNCTION pushq_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.status = 'sent' THEN
                 IF nextval('pushq_test_failures') <= {times} THEN
                   RAISE EXCEPTION 'injected: the log write fails';
                 END IF;
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER pushq_test_fail BEFORE UPDATE ON pushq_deliveries
               FOR EACH ROW EXECUTE FUNCTION pushq_test_fail();"
        ))
        .await;
    } else {
        db.execute("CREATE SEQUENCE pushq_test_failures").await;
        db.execute(&format!(
            "CREATE TRIGGER pushq_test_fail BEFORE UPDATE ON pushq_deliveries FOR EACH ROW
             BEGIN
               IF NEW.status = 'sent' THEN
                 IF NEXTVAL(pushq_test_failures) <= {times} THEN
                   SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected: the log write fails';
                 END IF;
               END IF;
             END"
        ))
        .await;
    }
}

/// The database fails the final write once, after FCM accepted every send: the write is tried
/// again, the sends are not. Each device gets the push once, the log says `sent`, nothing comes
/// back; a redelivery sends nothing.
async fn a_failed_log_write_is_retried_not_the_sends(db: Db) {
    let fcm = Fcm::start();
    let devices = [("u1", "tok-a"), ("u1", "tok-b")];
    let mut lambda = setup(&db, &fcm, &devices, &[]).await;
    fail_sent_writes(&db, 1).await;
    let event = sqs_event(&[
        ("m-user", envelope("p-user", json!({"userId": "u1"}))),
        ("m-token", envelope("p-token", json!({"token": "tok-c"}))),
    ]);
    let answer = lambda.invoke("req-1", event.clone(), 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(received(&fcm).await, ["tok-a", "tok-b", "tok-c"]);
    assert_eq!(
        rows(&db).await,
        [
            row("p-token", "tok-c", "sent", None),
            row("p-user", "tok-a", "sent", None),
            row("p-user", "tok-b", "sent", None),
        ]
    );
    assert!(
        lambda
            .output()
            .contains("the write (not the sends) is retried"),
        "{}",
        lambda.output()
    );
    let answer = lambda.invoke("req-2", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(received(&fcm).await, ["tok-a", "tok-b", "tok-c"]);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_log_write_is_retried_not_the_sends_postgres() {
    a_failed_log_write_is_retried_not_the_sends(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_log_write_is_retried_not_the_sends_mariadb() {
    a_failed_log_write_is_retried_not_the_sends(Db::mariadb().await).await;
}

/// The database refuses the final write until the claims lapse: the batch comes back, and only
/// what FCM did not accept is released (`retrying`, for the redelivery to take at once). What
/// FCM accepted stays claimed until the claim lapses; a consumer that takes it over then marks
/// it taken over (`CLAIM_LAPSED`), as it may repeat a send FCM accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_that_cannot_be_written_releases_only_what_fcm_did_not_accept() {
    let fcm = Fcm::start();
    let db = Db::postgres().await;
    let mut lambda = setup(&db, &fcm, &[], &[("PUSHQ_DB_STATEMENT_TIMEOUT_MS", "500")]).await;
    fail_sent_writes(&db, 1_000_000).await;
    fcm.faults(json!({"rules": [{"token": "tok-busy", "error": "UNAVAILABLE"}]}))
        .await;
    let event = sqs_event(&[(
        "m-1",
        envelope("p-1", json!({"tokens": ["tok-ok", "tok-busy"]})),
    )]);
    // A 5 s invocation: the deadline is 2 s away, the claims lapse 0.5 s later.
    let answer = lambda.invoke("req-1", event, 5, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-1"]);
    assert_eq!(received(&fcm).await, ["tok-ok"]);
    assert_eq!(
        rows(&db).await,
        [
            row("p-1", "tok-busy", "retrying", None),
            row("p-1", "tok-ok", "sending", None),
        ]
    );
    db.drop_it().await;
}

/// A send cut at the deadline may have reached the device: its redelivery sends it again (at
/// least once). So that the second copy replaces the first instead of showing twice, every copy
/// carries the push id as its Android notification tag and its `apns-collapse-id`, unless the
/// push set a collapse key of its own, which is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_repeated_after_an_unknown_outcome_replaces_the_first_copy() {
    let fcm = Fcm::start();
    let db = Db::sqlite().await;
    let mut lambda = setup(&db, &fcm, &[("u1", "tok-a")], &[]).await;
    let event = sqs_event(&[
        (
            "m-1",
            envelope(
                "p-1",
                json!({"userId": "u1", "notification": {"title": "class at 7"}}),
            ),
        ),
        (
            "m-own",
            envelope(
                "p-own",
                json!({"token": "tok-own", "notification": {"title": "t"},
                    "android": {"collapseKey": "schedule"},
                    "apns": {"headers": {"apns-collapse-id": "schedule"}}}),
            ),
        ),
    ]);
    // The first send to tok-a is answered after the invocation's deadline: cut, outcome unknown.
    fcm.faults(json!({"rules": [{"token": "tok-a", "delayMs": 4000, "times": 1}]}))
        .await;
    let answer = lambda.invoke("req-1", event.clone(), 5, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-1"]);
    assert_eq!(
        rows(&db).await,
        [
            row("p-1", "tok-a", "retrying", Some("DEADLINE")),
            row("p-own", "tok-own", "sent", None),
        ]
    );
    let answer = lambda.invoke("req-2", event, 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(fcm.send_requests().await, 3, "tok-a twice, tok-own once");
    for m in fcm.received().await {
        let message = &m["body"]["message"];
        if message["token"] == "tok-a" {
            assert_eq!(
                message["android"]["notification"]["tag"], "p-1",
                "{message}"
            );
            assert_eq!(
                message["apns"]["headers"]["apns-collapse-id"], "p-1",
                "{message}"
            );
        } else {
            assert_eq!(message["android"]["collapse_key"], "schedule", "{message}");
            assert!(
                message["android"]["notification"]["tag"].is_null(),
                "{message}"
            );
            assert_eq!(
                message["apns"]["headers"]["apns-collapse-id"], "schedule",
                "{message}"
            );
        }
    }
    assert_eq!(row_of(&db, "p-1").await, "sent");
    db.drop_it().await;
}

async fn row_of(db: &Db, push: &str) -> String {
    rows(db)
        .await
        .into_iter()
        .find(|r| r.0 == push)
        .map(|r| r.2)
        .unwrap()
}

/// The event of `records`, as SQS delivers it for the `n`th time.
fn receive(n: u32, records: &[(&str, String)]) -> Value {
    let mut event = sqs_event(records);
    for record in event["Records"].as_array_mut().unwrap() {
        record["attributes"]["ApproximateReceiveCount"] = json!(n.to_string());
    }
    event
}

/// A user's device is unregistered between a hand-back and the retry (the app logged out): its
/// `retrying` row cannot become final by a send any more, so the retry closes it (`failed`,
/// `DEVICE_GONE`) and the push's log is final, as `waitFor` needs.
async fn a_row_whose_device_is_gone_before_the_retry_is_closed(db: Db) {
    let fcm = Fcm::start();
    let mut lambda = setup(&db, &fcm, &[("u1", "tok-a"), ("u1", "tok-b")], &[]).await;
    let records = [("m-1", envelope("p-1", json!({"userId": "u1"})))];
    fcm.faults(json!({"rules": [{"token": "tok-b", "error": "UNAVAILABLE"}]}))
        .await;
    let answer = lambda.invoke("req-1", receive(1, &records), 5, WAIT).await;
    assert_eq!(failed_items(&answer), ["m-1"]);
    assert_eq!(
        rows(&db).await,
        [
            row("p-1", "tok-a", "sent", None),
            row("p-1", "tok-b", "retrying", Some("UNAVAILABLE")),
        ]
    );

    let store = Store::connect(&db.url, 1).await.unwrap();
    assert!(store.unregister_device("tok-b").await.unwrap());
    fcm.faults(json!({"rules": []})).await;
    let answer = lambda.invoke("req-2", receive(2, &records), 30, WAIT).await;
    assert_eq!(failed_items(&answer), Vec::<String>::new());
    assert_eq!(
        rows(&db).await,
        [
            row("p-1", "tok-a", "sent", None),
            row("p-1", "tok-b", "failed", Some("DEVICE_GONE")),
        ]
    );
    assert_eq!(
        store.push_log("p-1").await.unwrap().state,
        pushq_delivery::store::PushLogState::Final
    );
    assert_eq!(received(&fcm).await, ["tok-a"]);
    store.close().await;
    db.drop_it().await;
}

on_every_db!(a_row_whose_device_is_gone_before_the_retry_is_closed);
