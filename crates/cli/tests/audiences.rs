//! Audience pushes through `pushq worker`: moto SQS, the FCM emulator (two apps), PostgreSQL.
//! One push to every device of an app reaches each live device of that app exactly once, sent
//! by several consumers at once; a worker killed (SIGKILL) in the middle of an expansion and
//! started again leaves no device without its push and none with two.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use pushq_test_support::*;
use serde_json::json;

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

/// Registers, straight into the table: `live` live devices of app `member` (tokens
/// `member-<i>`), 30 of it invalidated and 20 stale (not seen for a year), and 300 of app
/// `trainer`. Returns the live ones' tokens.
async fn devices(db: &Db, live: usize) -> Vec<String> {
    let insert = |app: &str, prefix: &str, n: usize, extra: &str| {
        format!(
            "INSERT INTO pushq_devices (app, user_id, token, kind, platform, last_seen_at, invalidated_at) \
             SELECT '{app}', 'user-' || (i / 2), '{prefix}' || i, 'token', 'android', {extra} FROM generate_series(1, {n}) AS i;"
        )
    };
    db.execute(&format!(
        "{}{}{}{}",
        insert("member", "member-", live, "now(), NULL"),
        insert("member", "dead-", 30, "now(), now()"),
        insert("member", "stale-", 20, "now() - interval '365 days', NULL"),
        insert("trainer", "trainer-", 300, "now(), NULL"),
    ))
    .await;
    (1..=live).map(|i| format!("member-{i}")).collect()
}

/// The parts every test here runs on: moto, the FCM emulator serving apps `member` and
/// `trainer`, a fresh PostgreSQL database with the schema and `live` devices ([`devices`]).
struct World {
    sqs: Sqs,
    fcm: Fcm,
    db: Db,
    /// What `pushq` needs to reach them, with pages of `page_size` devices.
    env: Vec<(String, String)>,
    /// The live devices' tokens.
    tokens: Vec<String>,
}

impl World {
    async fn start(page_size: u32, live: usize) -> World {
        let (sqs, fcm) = (
            Sqs::start(),
            Fcm::start_projects(&["member", "trainer"], FcmOptions::default()),
        );
        let db = Db::postgres().await;
        let mut env = vec![
            ("DATABASE_URL".to_string(), db.url.clone()),
            (
                "PUSHQ_AUDIENCE_PAGE_SIZE".to_string(),
                page_size.to_string(),
            ),
        ];
        env.extend(sqs.env());
        env.extend(fcm.env());
        run_ok(PUSHQ, &["migrate"], &env);
        let tokens = devices(&db, live).await;
        World {
            sqs,
            fcm,
            db,
            env,
            tokens,
        }
    }
}

fn worker(queue: &str, args: &[&str], env: &[(String, String)], log: &std::path::Path) -> Proc {
    let child = Command::new(PUSHQ)
        .args(["worker", "--queue-url", queue])
        .args(args)
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

fn audience_push(id: &str) -> String {
    json!({"v": 1, "id": id, "enqueuedAt": chrono::Utc::now().timestamp_millis(),
        "push": {"audience": {"all": true}, "app": "member", "notification": {"title": "Closed on Monday"}}})
    .to_string()
}

/// Waits until every live device has its final row; then checks the emulator got exactly one
/// send for each of `tokens`, and none for any other device.
async fn every_device_once(db: &Db, fcm: &Fcm, tokens: &[String], log: &std::path::Path) {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until_or(
            "a final row for every live device",
            Duration::from_secs(240),
            || std::fs::read_to_string(log).unwrap_or_default(),
            || rt.block_on(db.final_deliveries()) >= tokens.len(),
        )
    });
    let mut sent = fcm.received_tokens().await;
    sent.sort();
    let mut expected = tokens.to_vec();
    expected.sort();
    let twice: Vec<&String> = sent
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(sent.len(), expected.len());
    assert_eq!(sent, expected);
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), tokens.len());
    assert!(rows.iter().all(|r| r.2 == "sent"), "{:?}", &rows[..3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audience_of_2500_devices_is_sent_once_each_by_several_consumers() {
    let World {
        sqs,
        fcm,
        db,
        env,
        tokens,
    } = World::start(100, 2500).await;
    let queue = sqs.fresh_queue().await;
    let id = uuid::Uuid::now_v7().to_string();
    sqs.send_bodies(&queue, &[audience_push(&id)]).await;
    let log = temp_dir().join("worker.log");
    let _worker = worker(&queue, &["--concurrency", "4"], &env, &log);
    every_device_once(&db, &fcm, &tokens, &log).await;
    db.drop_it().await;
}

/// An HTTP proxy in front of moto that, once `hold` is set, never answers the requests that
/// write audience pages (`SendMessageBatch` bodies holding `"page"`): a consumer writing them
/// waits there, in the middle of its expansion, until the test kills it.
#[derive(Clone)]
struct HoldPages {
    upstream: String,
    hold_after: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    holding: Arc<AtomicBool>,
}

async fn pass(State(p): State<HoldPages>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let writes_pages = operation.ends_with("SendMessageBatch")
        && String::from_utf8_lossy(&body).contains(r#"\"page\":"#);
    if writes_pages
        && p.holding.load(Ordering::SeqCst)
        && p.hold_after.fetch_sub(1, Ordering::SeqCst) == 0
    {
        p.held.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let mut request = reqwest::Client::new().post(&p.upstream).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.unwrap();
    (axum::http::StatusCode::from_u16(status).unwrap(), bytes).into_response()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_killed_mid_expansion_leaves_every_device_sent_once() {
    let World {
        sqs,
        fcm,
        db,
        env,
        tokens,
    } = World::start(20, 1000).await;
    let queue = sqs.fresh_queue().await;
    let hold = HoldPages {
        upstream: sqs.endpoint.clone(),
        // Two steps of pages get through; the third is held.
        hold_after: Arc::new(AtomicUsize::new(2)),
        held: Arc::new(AtomicUsize::new(0)),
        holding: Arc::new(AtomicBool::new(true)),
    };
    let app = axum::Router::new().fallback(pass).with_state(hold.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let id = uuid::Uuid::now_v7().to_string();
    sqs.send_bodies(&queue, &[audience_push(&id)]).await;
    // One consumer, through the proxy: it expands, and nothing else is in flight when killed.
    let mut through_proxy = env.clone();
    through_proxy.retain(|(k, _)| k != "AWS_ENDPOINT_URL_SQS");
    through_proxy.push(("AWS_ENDPOINT_URL_SQS".into(), proxy));
    let log = temp_dir().join("first.log");
    let mut first = worker(
        &queue,
        &["--concurrency", "1", "--visibility-timeout", "5"],
        &through_proxy,
        &log,
    );
    tokio::task::block_in_place(|| {
        wait_until_or(
            "the third step's pages held",
            Duration::from_secs(60),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || hold.held.load(Ordering::SeqCst) == 1,
        )
    });
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    hold.holding.store(false, Ordering::SeqCst);
    // Mid-expansion: two steps (20 pages of 20) written, the cursor past them, no page sent.
    let store = pushq_delivery::store::Store::connect(&db.url, 1)
        .await
        .unwrap();
    let at = store.audience(&id).await.unwrap().unwrap();
    assert_eq!(at.state, pushq_delivery::store::AudienceState::Expanding);
    assert_eq!((at.pages, at.devices), (20, 400));
    assert!(fcm.received_tokens().await.is_empty());
    // Started again (straight to moto, several consumers): the push's message comes back after
    // its visibility timeout and the expansion goes on from its cursor.
    let log = temp_dir().join("second.log");
    let _second = worker(&queue, &["--concurrency", "3"], &env, &log);
    every_device_once(&db, &fcm, &tokens, &log).await;
    let at = store.audience(&id).await.unwrap().unwrap();
    assert_eq!(at.state, pushq_delivery::store::AudienceState::Expanded);
    assert_eq!((at.pages, at.devices), (50, 1000));
    db.drop_it().await;
}

/// On a FIFO queue (every page written with a message group and a deduplication id): 400
/// devices in pages of 20 through three consumers, each device once, every page done.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_fifo_queue_the_pages_are_sent_once_each() {
    let World {
        sqs,
        fcm,
        db,
        env,
        tokens,
    } = World::start(20, 400).await;
    let queue = sqs.fresh_fifo_queue().await;
    let id = uuid::Uuid::now_v7().to_string();
    sqs.client()
        .await
        .send_message()
        .queue_url(&queue)
        .message_body(audience_push(&id))
        .message_group_id(&id)
        .message_deduplication_id(&id)
        .send()
        .await
        .unwrap();
    let log = temp_dir().join("worker.log");
    let _worker = worker(&queue, &["--concurrency", "3"], &env, &log);
    every_device_once(&db, &fcm, &tokens, &log).await;
    let store = pushq_delivery::store::Store::connect(&db.url, 1)
        .await
        .unwrap();
    let progress = store.audience_progress(&id).await.unwrap().unwrap();
    assert_eq!((progress.expansion.pages, progress.pages_done), (20, 20));
    db.drop_it().await;
}
