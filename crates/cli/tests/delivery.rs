//! End to end on real parts: pushq-producer → moto SQS → `pushq worker` → fcm-emulator →
//! each database. Every push is delivered once per device and recorded once.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use pushq_producer::sqs::SqsTransport;
use pushq_producer::{Producer, ProducerConfig, ProducerOptions};
use pushq_test_support::*;
use serde_json::json;

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

fn pushq(args: &[&str], env: &[(String, String)]) -> String {
    run_ok(PUSHQ, args, env)
}

async fn end_to_end(db: Db) {
    let sqs = Sqs::start();
    let fcm = Fcm::start();
    let queue = sqs.fresh_queue().await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());

    pushq(&["migrate"], &env);
    for (user, token) in [
        ("u1", "tok-u1-a"),
        ("u1", "tok-u1-b"),
        ("u2", "tok-u2-dead"),
    ] {
        pushq(
            &[
                "devices",
                "register",
                "--user-id",
                user,
                "--token",
                token,
                "--platform",
                "android",
            ],
            &env,
        );
    }
    fcm.faults(json!({"rules": [{"token": "tok-u2-dead", "error": "UNREGISTERED"}]}))
        .await;

    // Enqueue the way a Node server does (the binding is a thin layer over this producer).
    let pushes = [
        (
            "user",
            json!({"userId": "u1", "notification": {"title": "Spin 45"}, "category": "reminder"}),
        ),
        (
            "users",
            json!({"userIds": ["u2", "u3"], "data": {"k": "v"}}),
        ),
        (
            "token",
            json!({"token": "tok-direct", "android": {"ttl": 60000}}),
        ),
        (
            "topic",
            json!({"topic": "/topics/news", "notification": {"title": "News"}}),
        ),
        (
            "key-1",
            json!({"userId": "u1", "idempotencyKey": "welcome-u1"}),
        ),
        (
            "key-2",
            json!({"userId": "u1", "idempotencyKey": "welcome-u1"}),
        ),
    ];
    let enqueued = enqueue_in_child(&sqs, &queue, pushes.iter().map(|(_, p)| p));
    let ids: BTreeMap<&str, String> = pushes.iter().map(|(name, _)| *name).zip(enqueued).collect();
    // A foreign producer: raw envelope JSON without id or enqueuedAt; and a body that is not one.
    let client = sqs.client().await;
    let foreign = client
        .send_message()
        .queue_url(&queue)
        .message_body(
            r#"{"v":1,"push":{"token":"tok-foreign","notification":{"title":"from Python"}}}"#,
        )
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap();
    let garbage = client
        .send_message()
        .queue_url(&queue)
        .message_body("{not json")
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap();

    let log_path = temp_dir().join("worker.log");
    let mut worker = Proc(
        Command::new(PUSHQ)
            .args(["worker", "--queue-url", &queue, "--batch-size", "10"])
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // The two keyed pushes: two sent rows, and two `duplicate` rows for the push that came second.
    let expected_rows = 2 + 2 + 1 + 1 + 4 + 1;
    let rt = tokio::runtime::Handle::current();
    let url_db = &db;
    tokio::task::block_in_place(|| {
        wait_until_or("the delivery log", Duration::from_secs(60), log, || {
            rt.block_on(async {
                url_db.final_deliveries().await >= expected_rows
                    && url_db.rejected().await.len() == 1
            })
        })
    });
    // SIGTERM: the worker finishes what it holds and exits cleanly.
    Command::new("kill")
        .args(["-TERM", &worker.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::block_in_place(|| worker.0.wait()).unwrap();
    assert!(status.success(), "worker exit: {status}");

    let rows = db.deliveries().await;
    let find = |push: &str| -> Vec<(String, String, Option<String>)> {
        rows.iter()
            .filter(|r| r.0 == push)
            .map(|r| (r.1.clone(), r.2.clone(), r.4.clone()))
            .collect()
    };
    let s =
        |t: &str, st: &str, u: Option<&str>| (t.to_owned(), st.to_owned(), u.map(str::to_owned));
    assert_eq!(
        find(&ids["user"]),
        vec![
            s("tok-u1-a", "sent", Some("u1")),
            s("tok-u1-b", "sent", Some("u1"))
        ]
    );
    assert_eq!(
        find(&ids["users"]),
        vec![
            s("tok-u2-dead", "invalid_token", Some("u2")),
            s("user:u3", "no_devices", Some("u3"))
        ]
    );
    assert_eq!(find(&ids["token"]), vec![s("tok-direct", "sent", None)]);
    assert_eq!(find(&ids["topic"]), vec![s("topic:news", "sent", None)]);
    // An idempotency key delivers once per device; the other push's rows say why it sent nothing.
    let mut keyed: Vec<String> = [&ids["key-1"], &ids["key-2"]]
        .iter()
        .map(|id| {
            let statuses: Vec<String> = find(id).into_iter().map(|r| r.1).collect();
            statuses.join(",")
        })
        .collect();
    keyed.sort();
    assert_eq!(keyed, ["duplicate,duplicate", "sent,sent"]);
    assert_eq!(find(&foreign), vec![s("tok-foreign", "sent", None)]);
    assert_eq!(rows.len(), expected_rows, "{rows:#?}");
    let rejected = db.rejected().await;
    assert_eq!(rejected[0].0, garbage);
    assert!(rejected[0].1.contains("not JSON"), "{}", rejected[0].1);

    // What FCM received: each sent row once, nothing twice.
    let received = fcm.received().await;
    let mut targets: Vec<String> = received
        .iter()
        .map(|m| {
            let msg = &m["body"]["message"];
            msg["token"]
                .as_str()
                .or(msg["topic"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "news",
            "tok-direct",
            "tok-foreign",
            "tok-u1-a",
            "tok-u1-a",
            "tok-u1-b",
            "tok-u1-b"
        ]
    );

    // The dead token is invalidated; the queue is empty (everything deleted, nothing to redeliver).
    let list = pushq(&["devices", "list", "--user-id", "u2"], &env);
    assert!(
        list.trim()
            .starts_with("default\ttoken\ttok-u2-dead\tandroid\tinvalidated\tlast seen "),
        "{list}"
    );
    assert_eq!(sqs.depth(&queue).await, (0, 0));
    db.drop_it().await;
}

/// The environment variable that hands `producer_in_a_child_process` its work.
const ENQUEUE_JOB: &str = "PUSHQ_TEST_ENQUEUE_JOB";

/// Enqueues the pushes with pushq-producer in a child process: this test binary, running
/// only `producer_in_a_child_process`, with the AWS settings (credentials included, which the
/// producer reads from the environment only) passed to it with `Command::envs`. Setting them in
/// this process instead would race with the tests that spawn processes meanwhile. Returns each
/// push's id, in order.
fn enqueue_in_child<'a>(
    sqs: &Sqs,
    queue: &str,
    pushes: impl Iterator<Item = &'a serde_json::Value>,
) -> Vec<String> {
    let pushes: Vec<&serde_json::Value> = pushes.collect();
    let job = json!({"queue": queue, "endpoint": sqs.endpoint, "pushes": pushes});
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["producer_in_a_child_process", "--exact", "--ignored"])
        .args(["--nocapture", "--test-threads", "1"])
        .envs(sqs.env())
        .env(ENQUEUE_JOB, job.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the producer's child process: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = stdout
        .lines()
        // libtest's "test … ... " may precede the first line.
        .filter_map(|l| l.split_once("enqueued ").map(|(_, id)| id))
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), pushes.len(), "{stdout}");
    ids
}

/// Not a test by itself: `enqueue_in_child` runs it in a child process, with the environment
/// and the pushes (`PUSHQ_TEST_ENQUEUE_JOB`) it needs. Prints `enqueued <id>` per push.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by end_to_end in a child process"]
async fn producer_in_a_child_process() {
    let job: serde_json::Value = serde_json::from_str(
        &std::env::var(ENQUEUE_JOB).expect("run by end_to_end, which sets PUSHQ_TEST_ENQUEUE_JOB"),
    )
    .unwrap();
    let config = ProducerConfig::resolve(ProducerOptions {
        queue_url: job["queue"].as_str().map(str::to_owned),
        endpoint_url: job["endpoint"].as_str().map(str::to_owned),
        region: Some("us-east-1".into()),
        ..Default::default()
    })
    .unwrap();
    let transport = SqsTransport::new(config.clone());
    let producer = Producer::start(config, transport, &tokio::runtime::Handle::current());
    for push in job["pushes"].as_array().unwrap() {
        let ticket = producer.enqueue_json(&push.to_string(), false).unwrap();
        println!("enqueued {}", ticket.accepted().await.unwrap().id);
    }
    producer.close().await;
}

on_every_db!(end_to_end);

/// Starts `pushq worker` with its JSON log (stderr) in a file and its EMF metric lines (stdout)
/// in `metrics.log` beside it; returns the process and the log path.
fn worker(queue: &str, args: &[&str], env: &[(String, String)]) -> (Proc, std::path::PathBuf) {
    let dir = temp_dir();
    let log = dir.join("worker.log");
    let child = Command::new(PUSHQ)
        .args(["worker", "--queue-url", queue])
        .args(args)
        .envs(env.iter().cloned())
        .stdout(std::fs::File::create(dir.join("metrics.log")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Proc(child), log)
}

/// The `batch_size` of every "batch done" line in a worker log.
fn batch_sizes(log: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "batch done")
        .filter_map(|v| v["fields"]["batch_size"].as_u64())
        .collect()
}

/// The sum of one EMF metric over a worker's metric lines; every line must be valid EMF.
/// The sum of one metric over the batch's EMF lines (dimension `Service`), or with `app`, over
/// that app's lines (dimensions `Service` and `App`).
fn metric_sum(log: &std::path::Path, name: &str, app: Option<&str>) -> u64 {
    emf_lines(log)
        .iter()
        .filter(|v| v["App"].as_str() == app)
        .map(|v| v[name].as_u64().unwrap_or(0))
        .sum()
}

/// The worker's EMF lines, each checked for pushq's namespace and the worker's `Service`.
fn emf_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    let metrics = log.with_file_name("metrics.log");
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("an EMF line is JSON");
            assert_eq!(
                v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "pushq",
                "{l}"
            );
            assert_eq!(v["Service"], "pushq-worker", "{l}");
            v
        })
        .collect()
}

async fn setup_sqlite(sqs: &Sqs, fcm: &Fcm) -> (Db, Vec<(String, String)>) {
    let db = Db::sqlite().await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());
    pushq(&["migrate"], &env);
    (db, env)
}

async fn send_raw(sqs: &Sqs, queue: &str, pushes: &[serde_json::Value]) {
    let bodies: Vec<String> = pushes
        .iter()
        .map(|p| json!({"v": 1, "push": p}).to_string())
        .collect();
    sqs.send_bodies(queue, &bodies).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_above_ten_are_gathered_within_the_batching_window() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_queue().await;
    let (db, env) = setup_sqlite(&sqs, &fcm).await;
    let pushes: Vec<_> = (0..40)
        .map(|i| json!({"token": format!("tok-{i}")}))
        .collect();
    send_raw(&sqs, &queue, &pushes).await;
    let (mut w, log) = worker(
        &queue,
        // 1 s: AWS's least window above batch 10, and the template's.
        &["--batch-size", "40", "--batching-window", "1"],
        &env,
    );
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until_or(
            "40 rows",
            Duration::from_secs(60),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || rt.block_on(db.final_deliveries()) == 40,
        )
    });
    Command::new("kill")
        .args(["-TERM", &w.0.id().to_string()])
        .status()
        .unwrap();
    assert!(tokio::task::block_in_place(|| w.0.wait())
        .unwrap()
        .success());
    let sizes = batch_sizes(&log);
    assert_eq!(sizes.iter().sum::<u64>(), 40, "{sizes:?}");
    assert!(
        sizes.iter().any(|s| *s > 10),
        "no batch above 10: {sizes:?}"
    );
    // The same counters as CloudWatch EMF lines on stdout, one latency per send.
    assert_eq!(metric_sum(&log, "Messages", None), 40);
    assert_eq!(metric_sum(&log, "Sent", None), 40);
    // And once more per app, on the lines with the `App` dimension: all 40 are the default app's.
    assert_eq!(metric_sum(&log, "Sent", Some("default")), 40);
    for app in [None, Some("default")] {
        let latencies: usize = emf_lines(&log)
            .iter()
            .filter(|v| v["App"].as_str() == app)
            .filter_map(|v| v["EnqueueToSendLatency"].as_array().map(Vec::len))
            .sum();
        assert_eq!(latencies, 40, "{app:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_batch_keeps_its_messages_invisible_and_sigterm_lets_it_finish() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let queue = sqs.fresh_queue().await;
    let (db, env) = setup_sqlite(&sqs, &fcm).await;
    // FCM answers this token after 5 s: longer than two visibility timeouts of 2 s.
    fcm.faults(json!({"rules": [{"token": "tok-slow", "error": "", "delayMs": 5000}]}))
        .await;
    send_raw(&sqs, &queue, &[json!({"token": "tok-slow"})]).await;
    // Two poll loops: without the visibility extension the second would take the message again.
    let (mut w, log) = worker(
        &queue,
        &["--visibility-timeout", "2", "--concurrency", "2"],
        &env,
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until_or(
        "the batch to start",
        Duration::from_secs(30),
        read_log,
        || read_log().contains("batch received"),
    );
    // SIGTERM while the send is in flight: the batch finishes, is recorded and deleted.
    Command::new("kill")
        .args(["-TERM", &w.0.id().to_string()])
        .status()
        .unwrap();
    // Until it exits (5 s, more than twice the visibility timeout) the message never shows as
    // visible again: the worker keeps extending its visibility.
    let mut observations = 0;
    let status = loop {
        if let Some(status) = w.0.try_wait().unwrap() {
            break status;
        }
        let (visible, _) = sqs.depth(&queue).await;
        assert_eq!(
            visible,
            0,
            "the message became visible while its batch ran\n{}",
            read_log()
        );
        observations += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        observations > 10,
        "the batch ended too soon to show anything: {observations} observations"
    );
    assert!(status.success(), "{status}\n{}", read_log());
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, "sent");
    assert_eq!(fcm.received().await.len(), 1, "sent once");
    assert_eq!(batch_sizes(&log), vec![1]);
    assert_eq!(sqs.depth(&queue).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_redrive_moves_every_message_once() {
    let sqs = Sqs::start();
    let (dlq, queue) = (sqs.fresh_queue().await, sqs.fresh_queue().await);
    let bodies: Vec<String> = (0..25)
        .map(|i| json!({"v": 1, "push": {"token": format!("tok-{i}")}}).to_string())
        .collect();
    let client = sqs.client().await;
    for body in &bodies {
        client
            .send_message()
            .queue_url(&dlq)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let out = pushq(
        &["dlq", "redrive", "--from", &dlq, "--to", &queue],
        &sqs.env(),
    );
    assert_eq!(out.trim(), "moved 25 message(s)");
    assert_eq!(sqs.depth(&dlq).await, (0, 0));
    let mut moved = Vec::new();
    for _ in 0..30 {
        if moved.len() >= 25 {
            break;
        }
        let got = client
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        moved.extend(
            got.messages
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.body.unwrap()),
        );
    }
    moved.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(moved, expected);
    // Run again on the empty DLQ: nothing moves, nothing breaks.
    let out = pushq(
        &["dlq", "redrive", "--from", &dlq, "--to", &queue],
        &sqs.env(),
    );
    assert_eq!(out.trim(), "moved 0 message(s)");
}

/// `pushq devices register` checks what it stores as the Node registry does: a value that does
/// not fit its column is refused by name and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn devices_register_refuses_what_does_not_fit() {
    let db = Db::sqlite().await;
    let env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    pushq(&["migrate"], &env);
    let long_user = "u".repeat(256);
    let out = Command::new(PUSHQ)
        .args([
            "devices",
            "register",
            "--user-id",
            &long_user,
            "--token",
            "t1",
        ])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("userId: must be 1 to 255 characters"),
        "{stderr}"
    );
    let listed = pushq(&["devices", "list", "--user-id", &long_user], &env);
    assert!(listed.is_empty());
}
