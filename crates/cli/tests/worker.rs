//! `pushq worker` and `pushq dlq redrive` read every SQS answer: receive errors, delete entries
//! SQS failed, visibility that runs from the receive, FIFO message groups in order. Real parts
//! (moto SQS, the FCM emulator, SQLite); faults that moto does not produce come from a small
//! HTTP proxy in front of it, which fails the requests a test chooses.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pushq_test_support::*;
use serde_json::{json, Value};

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

/// What the proxy does to the requests it passes to moto, and what it saw.
#[derive(Default)]
struct Faults {
    /// Answer every ReceiveMessage with a 500 while set.
    fail_receives: bool,
    /// ReceiveMessage requests answered with a 500.
    failed_receives: usize,
    /// DeleteMessageBatch entries still to fail (SQS-side, `SenderFault: false`), first come.
    delete_entries_to_fail: usize,
    /// DeleteMessageBatch entries failed.
    failed_delete_entries: usize,
    /// How many times SQS handed out each message id (ReceiveMessage answers).
    handed_out: HashMap<String, usize>,
}

/// An HTTP proxy in front of moto that injects [`Faults`].
struct SqsProxy {
    endpoint: String,
    faults: Arc<Mutex<Faults>>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    faults: Arc<Mutex<Faults>>,
}

impl SqsProxy {
    async fn start(upstream: &str) -> SqsProxy {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let state = ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            faults: faults.clone(),
        };
        let app = axum::Router::new().fallback(proxy).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SqsProxy { endpoint, faults }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        f(&mut self.faults.lock().unwrap())
    }

    /// Environment for processes that talk to SQS through this proxy.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SQS".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

/// Passes a request to moto, unless a fault says otherwise (SQS's JSON protocol: the operation
/// is in `X-Amz-Target`).
async fn proxy(State(state): State<ProxyState>, headers: HeaderMap, body: Bytes) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start_matches("AmazonSQS.")
        .to_owned();
    let mut body = body.to_vec();
    let mut injected = Vec::new();
    {
        let mut faults = state.faults.lock().unwrap();
        if operation == "ReceiveMessage" && faults.fail_receives {
            faults.failed_receives += 1;
            return json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"__type": "com.amazonaws.sqs#InternalError", "message": "injected by the test's proxy"}),
            );
        }
        if operation == "DeleteMessageBatch" && faults.delete_entries_to_fail > 0 {
            let mut request: Value = serde_json::from_slice(&body).unwrap();
            let entries = request["Entries"].as_array_mut().unwrap();
            let n = faults.delete_entries_to_fail.min(entries.len());
            for entry in entries.drain(..n) {
                injected.push(json!({"Id": entry["Id"], "SenderFault": false, "Code": "InternalError", "Message": "injected by the test's proxy"}));
            }
            faults.delete_entries_to_fail -= n;
            faults.failed_delete_entries += n;
            if entries.is_empty() {
                return json_answer(
                    StatusCode::OK,
                    json!({"Successful": [], "Failed": injected}),
                );
            }
            body = request.to_string().into_bytes();
        }
    }
    let mut request = state.http.post(&state.upstream).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let bytes = answer.bytes().await.unwrap();
    let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
        return (status, bytes).into_response();
    };
    if operation == "ReceiveMessage" {
        let mut faults = state.faults.lock().unwrap();
        for m in answer["Messages"].as_array().into_iter().flatten() {
            let id = m["MessageId"].as_str().unwrap_or_default().to_owned();
            *faults.handed_out.entry(id).or_default() += 1;
        }
    }
    if !injected.is_empty() {
        let failed = answer["Failed"].as_array().cloned().unwrap_or_default();
        answer["Failed"] = Value::Array(failed.into_iter().chain(injected).collect());
    }
    json_answer(status, answer)
}

/// A running `pushq worker` with its JSON log (stderr) and EMF lines (stdout) in files.
struct Worker {
    proc: Proc,
    log: std::path::PathBuf,
    metrics: std::path::PathBuf,
}

impl Worker {
    fn start(queue: &str, args: &[&str], env: &[(String, String)]) -> Worker {
        let dir = temp_dir();
        let (log, metrics) = (dir.join("worker.log"), dir.join("metrics.log"));
        let child = Command::new(PUSHQ)
            .args(["worker", "--queue-url", queue])
            .args(args)
            .envs(env.iter().cloned())
            .stdout(std::fs::File::create(&metrics).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Worker {
            proc: Proc(child),
            log,
            metrics,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines (their `fields`) with this message.
    fn lines(&self, message: &str) -> Vec<Value> {
        self.output()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .map(|v| v["fields"].clone())
            .collect()
    }

    /// The batches whose metrics the worker has printed: it logs `batch done`, then prints them.
    fn batches_reported(&self) -> usize {
        std::fs::read_to_string(&self.metrics)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("NotDeleted").is_some())
            .count()
    }

    /// The sum of one EMF metric over the worker's metric lines.
    fn metric(&self, name: &str) -> u64 {
        std::fs::read_to_string(&self.metrics)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v[name].as_u64())
            .sum()
    }

    /// Waits (polling, up to `within`) until `ready` holds; shows the log if it never does.
    fn wait_for(&self, what: &str, within: Duration, ready: impl FnMut() -> bool) {
        tokio::task::block_in_place(|| wait_until_or(what, within, || self.output(), ready))
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.proc.0.id().to_string()])
            .status()
            .unwrap();
        tokio::task::block_in_place(|| self.proc.0.wait()).unwrap()
    }
}

async fn setup(
    sqs: &Sqs,
    fcm: &Fcm,
    sqs_env: Vec<(String, String)>,
) -> (Db, Vec<(String, String)>) {
    let db = Db::sqlite().await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs_env);
    env.extend(fcm.env());
    run_ok(PUSHQ, &["migrate"], &env);
    let _ = sqs;
    (db, env)
}

fn envelope(push: Value) -> String {
    json!({"v": 1, "push": push}).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn receive_errors_are_retried_and_never_end_the_worker() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let proxy = SqsProxy::start(&sqs.endpoint).await;
    let queue = sqs.fresh_queue().await;
    let (db, env) = setup(&sqs, &fcm, proxy.env()).await;
    proxy.with(|f| f.fail_receives = true);
    // One poll loop: today a receive error the SDK could not retry away ends it, and the process.
    let mut worker = Worker::start(&queue, &["--concurrency", "1"], &env);
    worker.wait_for(
        "two failed receives in a row",
        Duration::from_secs(60),
        || {
            worker
                .lines("receive failed; retrying")
                .iter()
                .any(|l| l["consecutive_failures"] == 2)
        },
    );
    assert!(
        worker.proc.0.try_wait().unwrap().is_none(),
        "the worker exited\n{}",
        worker.output()
    );
    let failed = worker.lines("receive failed; retrying");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("InternalError"),
        "{failed:?}"
    );
    // SQS answers again: the same loop picks up the push.
    proxy.with(|f| f.fail_receives = false);
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-after"}))])
        .await;
    let rt = tokio::runtime::Handle::current();
    worker.wait_for("the push", Duration::from_secs(60), || {
        rt.block_on(db.final_deliveries()) == 1
    });
    assert!(proxy.with(|f| f.failed_receives) >= 2);
    assert_eq!(fcm.received_tokens().await, ["tok-after"]);
    let status = worker.stop();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_entries_sqs_failed_are_retried_and_counted() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let proxy = SqsProxy::start(&sqs.endpoint).await;
    let queue = sqs.fresh_queue().await;
    let (db, env) = setup(&sqs, &fcm, proxy.env()).await;
    // The first delete entry fails on SQS's side once.
    proxy.with(|f| f.delete_entries_to_fail = 1);
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-1"}))])
        .await;
    let worker = Worker::start(&queue, &["--visibility-timeout", "30"], &env);
    worker.wait_for("the first batch's metrics", Duration::from_secs(60), || {
        worker.batches_reported() == 1
    });
    // Deleted on the retry: gone now, not in flight until its visibility timeout runs out.
    assert_eq!(sqs.depth(&queue).await, (0, 0), "{}", worker.output());
    assert_eq!(proxy.with(|f| f.failed_delete_entries), 1);
    assert_eq!(worker.metric("DeleteRetried"), 1);
    assert_eq!(worker.metric("NotDeleted"), 0);

    // Now every delete entry fails: the worker says so, and counts it.
    proxy.with(|f| f.delete_entries_to_fail = 100);
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-2"}))])
        .await;
    worker.wait_for(
        "the second batch's metrics",
        Duration::from_secs(60),
        || worker.batches_reported() == 2,
    );
    assert_eq!(worker.metric("NotDeleted"), 1);
    let warned = worker
        .lines("finished messages could not be deleted; they will be redelivered and skipped");
    assert_eq!(warned.len(), 1, "{}", worker.output());
    assert_eq!(warned[0]["not_deleted"], 1);
    assert_eq!(db.deliveries().await.len(), 2);
    assert!(worker.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn visibility_runs_from_the_receive_while_a_batch_is_gathered() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let proxy = SqsProxy::start(&sqs.endpoint).await;
    let queue = sqs.fresh_queue().await;
    let (db, env) = setup(&sqs, &fcm, proxy.env()).await;
    // The batch is gathered for 6 s of the message's 8 s, then FCM takes 5 s to answer.
    fcm.faults(json!({"rules": [{"token": "tok-slow", "error": "", "delayMs": 5000}]}))
        .await;
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-slow"}))])
        .await;
    // A second poll loop takes any message that becomes visible.
    let worker = Worker::start(
        &queue,
        &[
            "--batch-size",
            "20",
            "--batching-window",
            "6",
            "--visibility-timeout",
            "8",
            "--concurrency",
            "2",
        ],
        &env,
    );
    worker.wait_for("the batch", Duration::from_secs(60), || {
        worker.lines("batch done").len() == 1
    });
    let handed_out: Vec<usize> = proxy.with(|f| f.handed_out.values().copied().collect());
    assert_eq!(
        handed_out,
        [1],
        "SQS handed the message out again while its batch ran\n{}",
        worker.output()
    );
    assert_eq!(fcm.received_tokens().await, ["tok-slow"]);
    assert_eq!(db.deliveries().await.len(), 1);
    assert!(worker.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batching_window_that_could_outlive_the_visibility_timeout_is_refused() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_queue().await;
    let (_db, env) = setup(&sqs, &fcm, sqs.env()).await;
    let mut worker = Worker::start(
        &queue,
        &["--batching-window", "5", "--visibility-timeout", "6"],
        &env,
    );
    let log = worker.log.clone();
    let mut status = None;
    tokio::task::block_in_place(|| {
        wait_until_or(
            "the worker to refuse its flags",
            Duration::from_secs(30),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || {
                status = worker.proc.0.try_wait().unwrap();
                status.is_some()
            },
        )
    });
    assert_eq!(status.unwrap().code(), Some(2));
    assert!(
        worker
            .output()
            .contains("--batching-window 5s could outlive --visibility-timeout 6s"),
        "{}",
        worker.output()
    );
    // With room for the first extension it starts.
    worker = Worker::start(
        &queue,
        &["--batching-window", "4", "--visibility-timeout", "6"],
        &env,
    );
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-1"}))])
        .await;
    worker.wait_for("the batch", Duration::from_secs(60), || {
        worker.lines("batch done").len() == 1
    });
    assert!(worker.stop().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_fifo_queue_a_failed_message_holds_back_the_rest_of_its_group() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_fifo_queue().await;
    let (db, env) = setup(&sqs, &fcm, sqs.env()).await;
    fcm.faults(json!({"rules": [{"token": "tok-first", "error": "UNAVAILABLE"}]}))
        .await;
    let client = sqs.client().await;
    for (i, (group, token)) in [
        ("user:u1", "tok-first"),
        ("user:u1", "tok-second"),
        ("user:u2", "tok-other"),
    ]
    .into_iter()
    .enumerate()
    {
        client
            .send_message()
            .queue_url(&queue)
            .message_body(envelope(json!({"token": token})))
            .message_group_id(group)
            .message_deduplication_id(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let worker = Worker::start(&queue, &["--visibility-timeout", "3"], &env);
    worker.wait_for("the first batch", Duration::from_secs(60), || {
        !worker.lines("batch done").is_empty()
    });
    let first = &worker.lines("batch done")[0];
    assert_eq!(first["batch_size"], 3, "{}", worker.output());
    assert_eq!(first["redelivered"], 2, "{}", worker.output());
    // u1's second push waits for its first; u2's is not held up.
    assert_eq!(fcm.received_tokens().await, ["tok-other"]);

    // FCM is back: both of u1's pushes come back and each is sent once. (Their order now is
    // moto's: it hands out a group whose visibility ran out from its second message. The
    // Lambda's test, which plays SQS itself, checks the order after redelivery.)
    fcm.faults(json!({"rules": []})).await;
    let rt = tokio::runtime::Handle::current();
    worker.wait_for("every push", Duration::from_secs(60), || {
        let rows = rt.block_on(db.deliveries());
        rows.iter().filter(|r| r.2 == "sent").count() == 3
    });
    let mut tokens = fcm.received_tokens().await;
    tokens.sort();
    assert_eq!(tokens, ["tok-first", "tok-other", "tok-second"]);
    assert_eq!(db.deliveries().await.len(), 3);
    assert!(worker.stop().success());
    assert_eq!(sqs.depth(&queue).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_redrive_counts_a_message_as_moved_only_once_deleted() {
    let sqs = Sqs::start();
    let proxy = SqsProxy::start(&sqs.endpoint).await;
    let (dlq, queue) = (sqs.fresh_queue().await, sqs.fresh_queue().await);
    let bodies: Vec<String> = (0..5)
        .map(|i| envelope(json!({"token": format!("tok-{i}")})))
        .collect();
    sqs.send_bodies(&dlq, &bodies).await;
    // SQS fails one of the deletes: that message is in both queues, and not counted as moved.
    proxy.with(|f| f.delete_entries_to_fail = 1);
    let out = Command::new(PUSHQ)
        .args(["dlq", "redrive", "--from", &dlq, "--to", &queue])
        .envs(proxy.env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "moved 4 message(s)", "{stderr}");
    assert!(
        stderr.contains("copied but not deleted from the DLQ (InternalError)"),
        "{stderr}"
    );
    assert_eq!(sqs.depth(&queue).await, (5, 0));
    assert_eq!(sqs.depth(&dlq).await, (0, 1));
}

/// While the FCM project's quota throttle lasts, the worker takes no batch (it would only hand
/// it back unsent): the message is received once before the 429 and once after the throttle,
/// not again and again while it lasts.
#[tokio::test(flavor = "multi_thread")]
async fn a_quota_throttle_pauses_receiving_until_it_passes() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let proxy = SqsProxy::start(&sqs.endpoint).await;
    let queue = sqs.fresh_queue().await;
    let (db, env) = setup(&sqs, &fcm, proxy.env()).await;
    // The first send meets the project's quota, for 8 s: longer than a batch's time here.
    fcm.faults(json!({"rules": [{"error": "QUOTA_EXCEEDED", "retryAfter": 8, "times": 1}]}))
        .await;
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-1"}))])
        .await;
    let worker = Worker::start(
        &queue,
        &["--concurrency", "1", "--visibility-timeout", "3"],
        &env,
    );
    let rt = tokio::runtime::Handle::current();
    worker.wait_for(
        "the push, once the throttle passed",
        Duration::from_secs(60),
        || rt.block_on(db.deliveries()).iter().any(|r| r.2 == "sent"),
    );
    // Handed out twice: before the 429, and after the throttle (a message invisible for 3 s
    // would otherwise come back about every 3 s of the 8).
    let handed_out: Vec<usize> = proxy.with(|f| f.handed_out.values().copied().collect());
    assert_eq!(handed_out, [2]);
    assert_eq!(fcm.send_requests().await, 2);
    assert!(
        !worker
            .lines("FCM quota exhausted; receiving again when the throttle passes")
            .is_empty(),
        "{}",
        worker.output()
    );
    let status = worker.stop();
    assert!(status.success(), "{status}");
}

/// A database nobody migrated: the worker stops at start, saying to run `pushq migrate`, rather
/// than receiving batches that all fail and drift towards the DLQ.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_on_a_database_never_migrated_stops_at_start_saying_to_migrate() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_queue().await;
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-1"}))])
        .await;
    let db = Db::sqlite().await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());
    let mut worker = Worker::start(&queue, &[], &env);
    let (log, child) = (worker.log.clone(), &mut worker.proc.0);
    let mut exited = None;
    tokio::task::block_in_place(|| {
        wait_until_or(
            "the worker to exit",
            Duration::from_secs(30),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || {
                exited = child.try_wait().unwrap();
                exited.is_some()
            },
        )
    });
    let status = exited.unwrap();
    assert!(!status.success(), "{status}\n{}", worker.output());
    assert!(
        worker.output().contains("run `pushq migrate`"),
        "{}",
        worker.output()
    );
    // The push was not received: it waits on the queue for a worker on a migrated database.
    assert_eq!(sqs.depth(&queue).await, (1, 0));
    assert!(fcm.received_tokens().await.is_empty());
}

/// The queue URL alone says where SQS is, as it does for the Node client: a URL on moto's host
/// (not an AWS one) is reached there without AWS_ENDPOINT_URL_SQS.
#[tokio::test(flavor = "multi_thread")]
async fn the_worker_reaches_a_queue_at_its_urls_own_host() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_queue().await;
    assert!(queue.starts_with(&sqs.endpoint), "{queue}");
    let sqs_env: Vec<(String, String)> = sqs
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ENDPOINT_URL"))
        .collect();
    let (db, mut env) = setup(&sqs, &fcm, sqs_env).await;
    env.retain(|(k, _)| !k.starts_with("AWS_ENDPOINT_URL"));
    sqs.send_bodies(&queue, &[envelope(json!({"token": "tok-here"}))])
        .await;
    let worker = Worker::start(&queue, &[], &env);
    let rt = tokio::runtime::Handle::current();
    worker.wait_for("the push", Duration::from_secs(60), || {
        rt.block_on(db.final_deliveries()) == 1
    });
    assert_eq!(fcm.received_tokens().await, ["tok-here"]);
    let status = worker.stop();
    assert!(status.success(), "{status}");
}

/// The recipient rules through `pushq worker`: the same case as the Lambda's
/// (crates/test-support/src/rules.rs), the same rows, no send, the same deferral, which the
/// worker puts on EventBridge Scheduler for the queue it polls (no PUSHQ_QUEUE_URL needed).
#[tokio::test(flavor = "multi_thread")]
async fn the_worker_suppresses_and_defers_as_the_engine_does() {
    use pushq_test_support::rules::{check_rules_case, rules_bodies, rules_case};
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_queue().await;
    let (db, mut env) = setup(&sqs, &fcm, sqs.env()).await;
    let case = rules_case(&sqs, &db, &queue).await;
    env.extend(
        case.env
            .iter()
            .filter(|(k, _)| k != "PUSHQ_QUEUE_URL")
            .cloned(),
    );
    sqs.send_bodies(&queue, &rules_bodies()).await;
    let worker = Worker::start(&queue, &[], &env);
    worker.wait_for("both messages done", Duration::from_secs(60), || {
        worker
            .lines("batch done")
            .iter()
            .map(|l| l["batch_size"].as_u64().unwrap_or(0))
            .sum::<u64>()
            >= 2
    });
    assert!(worker.stop().success());
    check_rules_case(&db, &fcm, &sqs, &case).await;
}
