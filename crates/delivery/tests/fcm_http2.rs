//! pushq's connections to FCM as FCM serves them: HTTPS with HTTP/2 (the emulator with a
//! certificate from a test CA that pushq trusts through `PUSHQ_FCM_CA_FILE`, never by skipping
//! verification), at most FCM's limit of concurrent streams per connection, and more than one
//! connection when more sends are in flight than one connection's streams allow.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pushq_delivery::{DeliveryConfig, Engine, QueueMessage, WithoutCredentials};
use pushq_test_support::*;
use serde_json::{json, Value};

/// An engine sending to `fcm` with the settings `fcm.env()` gives, except those named in
/// `without`, plus `extra`.
async fn engine(db: &Db, fcm: &Fcm, without: &[&str], extra: &[(&str, &str)]) -> Engine {
    let config = config(db, fcm, without, extra);
    Engine::connect(&config, WithoutCredentials::Refuse)
        .await
        .unwrap()
}

fn config(db: &Db, fcm: &Fcm, without: &[&str], extra: &[(&str, &str)]) -> DeliveryConfig {
    let env: Vec<(String, String)> = fcm
        .env()
        .into_iter()
        .filter(|(k, _)| !without.contains(&k.as_str()))
        .chain([("DATABASE_URL".to_string(), db.url.clone())])
        .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let config = DeliveryConfig::from_env_with(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    DeliveryConfig {
        migrate: true,
        ..config
    }
}

/// One push to `tokens` devices, `t0`, `t1`, ….
fn push_to(tokens: usize) -> QueueMessage {
    let id = uuid::Uuid::now_v7().to_string();
    let tokens: Vec<String> = (0..tokens).map(|i| format!("t{i}")).collect();
    let push = json!({"tokens": tokens, "notification": {"title": "Spin 45", "body": "Studio 2"}});
    QueueMessage {
        message_id: format!("msg-{id}"),
        body: json!({"v": 1, "id": id, "enqueuedAt": 1_795_000_000_000i64, "push": push})
            .to_string(),
        sent_at_ms: 0,
        ..QueueMessage::default()
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

/// The connections (ids) that carried the sends the emulator accepted.
fn send_connections(received: &[Value]) -> BTreeSet<u64> {
    received
        .iter()
        .map(|m| m["connection"].as_u64().expect("a recorded connection"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_sends_and_the_oauth_token_request_go_over_http2() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start_tls();
    assert!(fcm.endpoint.starts_with("https://"), "{}", fcm.endpoint);
    let engine = engine(&db, &fcm, &[], &[]).await;

    let outcome = engine.process(&[push_to(3)], soon()).await.unwrap();

    assert_eq!(outcome.counts.sent, 3);
    assert!(outcome.failed_message_ids.is_empty());
    let state = fcm.call("GET", "/__received", None).await;
    assert_eq!(
        state["tokenRequests"], 1,
        "one OAuth token, fetched over TLS"
    );
    let received = state["messages"].as_array().unwrap();
    assert_eq!(received.len(), 3);
    for message in received {
        assert_eq!(message["protocol"], "HTTP/2", "{message}");
    }
    // Every connection that carried a request (the token's included) spoke HTTP/2: the
    // emulator listens on TLS only, so the token request went over it too.
    let connections = fcm.connections().await;
    for connection in connections.iter().filter(|c| c["requests"] != 0) {
        assert_eq!(connection["protocol"], "HTTP/2", "{connection}");
    }
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.2 == "sent"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_http_endpoint_is_still_served_over_http1() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm, &[], &[]).await;

    let outcome = engine.process(&[push_to(2)], soon()).await.unwrap();

    assert_eq!(outcome.counts.sent, 2);
    let received = fcm.received().await;
    assert_eq!(received.len(), 2);
    for message in &received {
        assert_eq!(message["protocol"], "HTTP/1.1", "{message}");
    }
}

/// Without `PUSHQ_FCM_CA_FILE`, pushq trusts only the built-in web roots: the emulator's
/// certificate is refused, nothing reaches it, and the push is handed back, not recorded final.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_ca_setting_the_emulators_certificate_is_refused() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start_tls();
    let engine = engine(&db, &fcm, &["PUSHQ_FCM_CA_FILE"], &[]).await;

    let messages = [push_to(1)];
    let deadline = Instant::now() + Duration::from_secs(3);
    let outcome = engine.process(&messages, deadline).await.unwrap();

    assert_eq!(outcome.counts.sent, 0);
    assert_eq!(outcome.failed_message_ids, [messages[0].message_id.clone()]);
    let state = fcm.call("GET", "/__received", None).await;
    assert_eq!(state["tokenRequests"], 0);
    assert_eq!(state["sendRequests"], 0);
    let rows = db.deliveries().await;
    assert!(rows.iter().all(|r| r.2 == "retrying"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_ca_file_is_refused_at_start_naming_the_setting() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let dir = temp_dir();
    let missing = dir.join("missing.pem");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for path in [&missing, &not_pem] {
        let ca = path.display().to_string();
        let config = config(&db, &fcm, &[], &[("PUSHQ_FCM_CA_FILE", &ca)]);
        let error = match Engine::connect(&config, WithoutCredentials::Refuse).await {
            Ok(_) => panic!("{ca}: the engine started"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("PUSHQ_FCM_CA_FILE"), "{error}");
        assert!(error.contains(&ca), "{error}");
    }
}

/// FCM allows 100 concurrent streams per HTTP/2 connection, and one HTTP client opens no second
/// connection when they run out (with one client, all 36 sends come on one connection). With the
/// emulator allowing 4 and pushq told so, 12 sends in flight go over 12 / 4 = 3 connections,
/// none carrying more than 4 at once; the latency keeps each answer pending long enough for the
/// sends to overlap.
#[tokio::test(flavor = "multi_thread")]
async fn more_sends_in_flight_than_one_connection_allows_use_more_connections() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start_with(FcmOptions {
        tls: true,
        max_streams: 4,
        latency: Duration::from_millis(300),
    });
    let engine = engine(
        &db,
        &fcm,
        &[],
        &[
            ("PUSHQ_SEND_CONCURRENCY", "12"),
            ("PUSHQ_FCM_STREAMS_PER_CONNECTION", "4"),
        ],
    )
    .await;

    let outcome = engine.process(&[push_to(36)], soon()).await.unwrap();

    assert_eq!(outcome.counts.sent, 36);
    let received = fcm.received().await;
    assert_eq!(received.len(), 36);
    assert!(received.iter().all(|m| m["protocol"] == "HTTP/2"));
    let used = send_connections(&received);
    // pushq keeps 3; a client may open a spare one while its first is in its TLS handshake.
    assert!(used.len() >= 2, "sends came on connections {used:?} only");
    let connections = fcm.connections().await;
    let peaks: Vec<u64> = connections
        .iter()
        .filter(|c| used.contains(&c["id"].as_u64().unwrap()))
        .map(|c| c["peakInFlight"].as_u64().unwrap())
        .collect();
    assert!(
        peaks.iter().all(|p| *p <= 4),
        "a connection carried more than its 4 streams: {connections:?}"
    );
    assert!(
        peaks.iter().sum::<u64>() > 4,
        "the sends never overlapped beyond one connection's streams: {connections:?}"
    );
}

/// FCM's front ends close connections now and then (GOAWAY, then the connection ends): a send
/// after that goes out on a new connection and is delivered, none handed back, and a push sent
/// before it is not sent again.
#[tokio::test(flavor = "multi_thread")]
async fn after_the_server_closes_the_connection_the_next_sends_go_on_a_new_one() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start_tls();
    let engine = engine(&db, &fcm, &[], &[]).await;

    let first = engine.process(&[push_to(2)], soon()).await.unwrap();
    assert_eq!(first.counts.sent, 2);
    fcm.call("POST", "/__close_connections", None).await;
    let first_connection = send_connections(&fcm.received().await);
    let closed_by = Instant::now() + Duration::from_secs(10);
    while !fcm
        .connections()
        .await
        .iter()
        .any(|c| first_connection.contains(&c["id"].as_u64().unwrap()) && c["closed"] == true)
    {
        assert!(
            Instant::now() < closed_by,
            "the emulator did not close the connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = engine.process(&[push_to(2)], soon()).await.unwrap();

    assert_eq!(second.counts.sent, 2);
    assert!(
        second.failed_message_ids.is_empty(),
        "{:?}",
        second.failed_message_ids
    );
    let received = fcm.received().await;
    assert_eq!(received.len(), 4, "each push's sends once: {received:?}");
    assert_eq!(send_connections(&received[..2]), first_connection);
    let second_connection = send_connections(&received[2..]);
    assert_eq!(first_connection.len(), 1, "{received:?}");
    assert_eq!(second_connection.len(), 1, "{received:?}");
    assert_ne!(first_connection, second_connection, "{received:?}");
}
