//! Faults injected end to end, through real parts: moto SQS → `pushq worker` → the FCM emulator
//! → PostgreSQL. What must hold whatever breaks: every (push, target) ends with exactly one
//! final row, every live device got its push, dead tokens are invalidated, and duplicates at
//! FCM stay within what was in flight when something died. Each fault is checked to have hit.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use pushq_delivery::store::Store;
use pushq_test_support::{run_ok, temp_dir, wait_until_or, Db, Fcm, Proc, Sqs};
use serde_json::{json, Value};

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

const USERS: usize = 500;
const DEVICES_PER_USER: usize = 3;
/// Every 20th user has one dead device (FCM answers UNREGISTERED).
const DEAD_EVERY: usize = 20;

fn token(user: usize, device: usize) -> String {
    if device == 0 && user % DEAD_EVERY == 0 {
        format!("dead-{user}")
    } else {
        format!("tok-{user}-{device}")
    }
}

fn worker(queue: &str, args: &[&str], env: &[(String, String)], log: &std::path::Path) -> Proc {
    Proc(
        Command::new(PUSHQ)
            .args(["worker", "--queue-url", queue])
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// The sum of one field over the "batch done" lines of a worker log.
fn done_sum(log: &std::path::Path, field: &str) -> u64 {
    field_sum(log, "batch done", field)
}

/// The sum of one field over the lines of a worker log with this message.
fn field_sum(log: &std::path::Path, message: &str, field: &str) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .filter_map(|v| v["fields"][field].as_u64())
        .sum()
}

/// The line of a log write that failed after the sends and is tried again (not the sends).
const WRITE_RETRIED: &str = "writing the delivery log failed after the sends; the write (not the sends) is retried until the batch's claims lapse";

/// Counts of the worker log lines with this message.
fn count_lines(log: &std::path::Path, message: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .count()
}

/// A trigger the test adds to `pushq_deliveries`: while `pushq_test_hold` has a row, a
/// delivery-log write (the insert after the sends, not the claim before them, which returns
/// rows) waits inside its statement (at most 60 s), where the test can kill its backend or the
/// worker.
const HOLD: [&str; 3] = [
    "CREATE TABLE pushq_test_hold (held boolean)",
    "CREATE FUNCTION pushq_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       FOR i IN 1..1200 LOOP
         EXIT WHEN NOT EXISTS (SELECT 1 FROM pushq_test_hold);
         PERFORM pg_sleep(0.05);
       END LOOP;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER pushq_test_hold BEFORE INSERT ON pushq_deliveries \
     FOR EACH STATEMENT EXECUTE FUNCTION pushq_test_hold()",
];

/// Holds the next delivery-log inserts inside their statement; returns the backends (pids)
/// caught there, once there is at least one.
async fn hold_inserts(admin: &mut sqlx::PgConnection, log: &std::path::Path) -> Vec<i32> {
    sqlx::query("INSERT INTO pushq_test_hold VALUES (true)")
        .execute(&mut *admin)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let held: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND wait_event = 'PgSleep' \
             AND query LIKE 'INSERT INTO pushq_deliveries%'",
        )
        .fetch_all(&mut *admin)
        .await
        .unwrap();
        if !held.is_empty() {
            return held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery-log insert reached the hold\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn release_inserts(admin: &mut sqlx::PgConnection) {
    sqlx::query("DELETE FROM pushq_test_hold")
        .execute(admin)
        .await
        .unwrap();
}

/// The `error` of every "batch failed" line and every retried log write in a worker log.
fn batch_failures(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"] == BATCH_FAILED || v["fields"]["message"] == WRITE_RETRIED
        })
        .map(|v| v["fields"]["error"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const BATCH_FAILED: &str = "batch failed; every message will be redelivered";

async fn row_count(url: &str) -> i64 {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    // Final rows: a claimed target's row is `sending` until its batch writes it.
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pushq_deliveries WHERE status NOT IN ('sending', 'retrying')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_when_fcm_fails_a_connection_dies_and_the_worker_is_killed() {
    let (sqs, fcm, db) = (Sqs::start(), Fcm::start(), Db::postgres().await);
    let queue = sqs.fresh_queue().await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for sql in HOLD {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    let mut dead = BTreeSet::new();
    for u in 0..USERS {
        for d in 0..DEVICES_PER_USER {
            let t = token(u, d);
            if t.starts_with("dead-") {
                dead.insert(t.clone());
            }
            store
                .register_device(&format!("u{u}"), &t, "android")
                .await
                .unwrap();
        }
    }
    drop(store);
    // FCM: dead tokens are UNREGISTERED; of the rest, 10% UNAVAILABLE (503), 6% INTERNAL (500)
    // and 5% QUOTA_EXCEEDED (429) with Retry-After: 1 — about 20% of sends fail transiently.
    let mut rules: Vec<Value> = dead
        .iter()
        .map(|t| json!({"token": t, "error": "UNREGISTERED"}))
        .collect();
    rules.push(json!({"percent": 10, "error": "UNAVAILABLE"}));
    rules.push(json!({"percent": 6, "error": "INTERNAL"}));
    rules.push(json!({"percent": 5, "error": "QUOTA_EXCEEDED", "retryAfter": 1}));
    fcm.faults(json!({ "rules": rules })).await;

    let envelopes: Vec<Value> = (0..USERS)
        .map(|u| {
            json!({"v": 1, "id": format!("p-{u}"), "push": {
                "userId": format!("u{u}"), "notification": {"title": "Spin 45", "body": format!("for u{u}")}
            }})
        })
        .collect();
    sqs.send_bodies(
        &queue,
        &envelopes.iter().map(Value::to_string).collect::<Vec<_>>(),
    )
    .await;

    let dir = temp_dir();
    let (log_a, log_b) = (dir.join("worker-a.log"), dir.join("worker-b.log"));
    let args = ["--concurrency", "2", "--visibility-timeout", "10"];
    let mut first = worker(&queue, &args, &env, &log_a);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let rt = tokio::runtime::Handle::current();
    let rows_at_least = |n: i64| {
        let url = db.url.clone();
        let rt = rt.clone();
        move || rt.block_on(row_count(&url)) >= n
    };

    // A third of the way in, a batch's delivery-log insert is held inside its statement and
    // every connection the worker holds is killed, the held one among them: that batch's write
    // fails mid-statement, after its sends, and is tried again on another connection (a held
    // claim fails its batch before any send).
    tokio::task::block_in_place(|| {
        wait_until_or(
            "500 rows",
            Duration::from_secs(120),
            || read(&log_a),
            rows_at_least(500),
        )
    });
    let held = hold_inserts(&mut admin, &log_a).await;
    let killed: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    release_inserts(&mut admin).await;
    for pid in &held {
        assert!(
            killed.contains(&(*pid, true)),
            "the held backend {pid} was not killed: {killed:?}"
        );
    }
    tokio::task::block_in_place(|| {
        wait_until_or(
            "a batch's statement to fail on its killed connection",
            Duration::from_secs(60),
            || read(&log_a),
            || {
                batch_failures(&log_a)
                    .iter()
                    .any(|e| e.contains("terminating connection due to administrator command"))
            },
        )
    });

    // Two thirds in, a batch is held inside its delivery-log insert (its sends made, its rows
    // not written) and the worker is SIGKILLed; the orphaned backend is killed too, so that
    // write never lands. Then a new worker starts.
    tokio::task::block_in_place(|| {
        wait_until_or(
            "1000 rows",
            Duration::from_secs(120),
            || read(&log_a),
            rows_at_least(1000),
        )
    });
    let held_at_kill = hold_inserts(&mut admin, &log_a).await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let orphans: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid")
            .bind(&held_at_kill)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(orphans.iter().all(|k| *k), "{held_at_kill:?}: {orphans:?}");
    release_inserts(&mut admin).await;
    // In flight: received, neither done nor failed (a failed batch logs no "batch done").
    let in_flight_at_kill = count_lines(&log_a, "batch received")
        - count_lines(&log_a, "batch done")
        - count_lines(&log_a, BATCH_FAILED);
    assert!(
        in_flight_at_kill >= held_at_kill.len().max(1),
        "{in_flight_at_kill} batches in flight at SIGKILL, {} held in their insert\n{}",
        held_at_kill.len(),
        read(&log_a)
    );
    let _second = worker(&queue, &args, &env, &log_b);
    let total = (USERS * DEVICES_PER_USER) as i64;
    tokio::task::block_in_place(|| {
        wait_until_or(
            "every (push, target) to have its row",
            Duration::from_secs(180),
            || format!("{}\n---\n{}", read(&log_a), read(&log_b)),
            rows_at_least(total),
        )
    });

    // Exactly one final row per (push, target), with the right outcome.
    let rows = db.deliveries().await;
    let mut expected = BTreeMap::new();
    for u in 0..USERS {
        for d in 0..DEVICES_PER_USER {
            let t = token(u, d);
            let status = if dead.contains(&t) {
                "invalid_token"
            } else {
                "sent"
            };
            expected.insert((format!("p-{u}"), t), status.to_owned());
        }
    }
    let got: BTreeMap<(String, String), String> = rows
        .iter()
        .map(|(p, t, s, _, _)| ((p.clone(), t.clone()), s.clone()))
        .collect();
    assert_eq!(rows.len(), expected.len(), "one row per (push, target)");
    assert_eq!(got, expected);

    // Every live device got its push; duplicates only from batches that died mid-way.
    let received = fcm.received().await;
    let mut per_token: BTreeMap<String, usize> = BTreeMap::new();
    for m in &received {
        let t = m["body"]["message"]["token"].as_str().unwrap().to_owned();
        *per_token.entry(t).or_default() += 1;
    }
    let live: BTreeSet<String> = expected
        .iter()
        .filter(|(_, s)| *s == "sent")
        .map(|((_, t), _)| t.clone())
        .collect();
    assert_eq!(per_token.keys().cloned().collect::<BTreeSet<_>>(), live);
    let duplicates: usize = per_token.values().map(|n| n - 1).sum();
    let failed_batches = count_lines(&log_a, BATCH_FAILED) + count_lines(&log_b, BATCH_FAILED);
    // A target is sent only under a claim, and a failed log write is retried, not the sends; a
    // batch that cannot write at all releases only what FCM did not accept. A second send needs
    // the first claim's consumer to have died between FCM's answer and its row (the SIGKILL):
    // its claims lapse and are taken over. So duplicates are at most the targets taken over,
    // which the workers count; a failed write or a killed connection adds none.
    let bound =
        (done_sum(&log_a, "claims_taken_over") + done_sum(&log_b, "claims_taken_over")) as usize;
    let old_bound = (failed_batches + in_flight_at_kill) * 10 * DEVICES_PER_USER;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicate sends, more than the {bound} targets taken over from {in_flight_at_kill} killed batches"
    );

    // The transient FCM faults hit: sends were retried.
    let retried = done_sum(&log_a, "retried") + done_sum(&log_b, "retried");
    assert!(retried > 0, "no send was retried");

    // Dead tokens are invalidated, nothing was rejected, the queue is empty.
    let store = Store::connect(&db.url, 1).await.unwrap();
    for t in &dead {
        let user = t.trim_start_matches("dead-");
        let devices = store.devices(&format!("u{user}")).await.unwrap();
        let d = devices.iter().find(|d| &d.token == t).unwrap();
        assert!(!d.live, "{t} is still live");
    }
    assert!(db.rejected().await.is_empty());
    let mut depth = sqs.depth(&queue).await;
    for _ in 0..100 {
        if depth == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        depth = sqs.depth(&queue).await;
    }
    assert_eq!(depth, (0, 0), "messages left on the queue");
    let injected = received.len(); // accepted sends; the faults are counted by the log lines
    eprintln!(
        "faults: {USERS} pushes, {} targets, {} dead tokens, {} sends accepted by FCM, {duplicates} duplicates (bound {bound}: targets taken over from the killed worker; by whole batches it would be {old_bound}), \
         {retried} sends retried, {} connections killed ({} mid-insert), {failed_batches} failed batches, \
         {in_flight_at_kill} batches in flight at SIGKILL ({} mid-insert), rows lost 0",
        expected.len(),
        dead.len(),
        injected,
        killed.len(),
        held.len(),
        held_at_kill.len()
    );
    drop(store);
    db.drop_it().await;
}

/// Runs `pushq dlq redrive` from `dlq` to `queue` to completion; what it printed.
fn redrive(sqs: &Sqs, dlq: &str, queue: &str) -> String {
    run_ok(
        PUSHQ,
        &["dlq", "redrive", "--from", dlq, "--to", queue],
        &sqs.env(),
    )
    .trim()
    .to_owned()
}

/// A fresh queue whose messages go to a fresh DLQ after `max_receive_count` receives: (queue, DLQ).
async fn queue_with_dlq(sqs: &Sqs, max_receive_count: u32) -> (String, String) {
    let client = sqs.client().await;
    let dlq = sqs.fresh_queue().await;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = client
        .create_queue()
        .queue_name(format!("pushq-{}", uuid::Uuid::now_v7().simple()))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, dlq)
}

/// With FCM down throughout, messages reach the DLQ after `maxReceiveCount` receives; once FCM
/// is back, `pushq dlq redrive` brings them back and each device gets its push exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn with_fcm_down_messages_reach_the_dlq_and_redrive_delivers_them_once() {
    let (sqs, fcm, db) = (Sqs::start(), Fcm::start(), Db::sqlite().await);
    let (queue, dlq) = queue_with_dlq(&sqs, 2).await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    drop(store);
    fcm.faults(json!({"rules": [{"error": "UNAVAILABLE"}]}))
        .await;
    let n = 20;
    let envelopes: Vec<Value> = (0..n)
        .map(|i| json!({"v": 1, "id": format!("p-{i}"), "push": {"token": format!("tok-{i}")}}))
        .collect();
    sqs.send_bodies(
        &queue,
        &envelopes.iter().map(Value::to_string).collect::<Vec<_>>(),
    )
    .await;

    let log = temp_dir().join("worker.log");
    let _worker = worker(&queue, &["--visibility-timeout", "2"], &env, &log);
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until_or(
            "every message in the DLQ",
            Duration::from_secs(120),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || rt.block_on(sqs.depth(&dlq)).0 == n as u64,
        )
    });
    assert!(fcm.received().await.is_empty());
    // Nothing final while FCM is down: each target is `retrying`, and its message in the DLQ.
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), n, "{rows:?}");
    assert!(rows.iter().all(|r| r.2 == "retrying"), "{rows:?}");

    fcm.faults(json!({"rules": []})).await;
    assert_eq!(redrive(&sqs, &dlq, &queue), format!("moved {n} message(s)"));
    tokio::task::block_in_place(|| {
        wait_until_or(
            "every push delivered",
            Duration::from_secs(60),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || {
                let rows = rt.block_on(db.deliveries());
                rows.iter().filter(|r| r.2 == "sent").count() == n
            },
        )
    });
    let rows = db.deliveries().await;
    assert!(rows.iter().all(|r| r.2 == "sent"), "{rows:?}");
    let mut tokens = fcm.received_tokens().await;
    tokens.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("tok-{i}")).collect();
    want.sort();
    assert_eq!(tokens, want, "each device exactly once");
}

/// A push for an app the deployment has no key for reaches the DLQ with nothing final (never
/// `failed`: its user's row says `retrying`, `NO_CREDENTIALS_FOR_APP`), and the worker's log
/// names the app. Adding the app's key (the operations guide's steps: a credentials map with
/// both apps, new consumers, `pushq dlq redrive`) delivers it once, to the app's own project,
/// and the device's row replaces the trace.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_for_an_app_without_a_key_waits_in_the_dlq_until_the_key_is_added() {
    let (sqs, db) = (Sqs::start(), Db::sqlite().await);
    let fcm = Fcm::start_projects(&["member", "kiosk"], Default::default());
    let (queue, dlq) = queue_with_dlq(&sqs, 2).await;
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    for app in ["member", "kiosk"] {
        store
            .register(&pushq_delivery::store::NewDevice {
                app,
                user_id: "u",
                token: &format!("tok-{app}"),
                kind: pushq_delivery::store::DeviceKind::Token,
                platform: "ios",
            })
            .await
            .unwrap();
    }
    drop(store);
    // Only the member app's key, as before the kiosk app was added.
    let member_only = temp_dir().join("member-only.json");
    std::fs::write(
        &member_only,
        json!({"member": fcm.keys["member"]}).to_string(),
    )
    .unwrap();
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());
    let with_key = |credentials: &std::path::Path| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| match k.as_str() {
                "PUSHQ_FCM_CREDENTIALS" => (k.clone(), credentials.display().to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };
    let envelope = json!({"v": 1, "id": "p-kiosk", "push": {"userId": "u", "app": "kiosk"}});
    sqs.send_bodies(&queue, &[envelope.to_string()]).await;

    let log = temp_dir().join("worker.log");
    let first = worker(
        &queue,
        &["--visibility-timeout", "1"],
        &with_key(&member_only),
        &log,
    );
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until_or(
            "the kiosk push in the DLQ",
            Duration::from_secs(120),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || rt.block_on(sqs.depth(&dlq)).0 == 1,
        )
    });
    drop(first);
    assert!(fcm.received().await.is_empty());
    // Nothing final: the push waits whole in the DLQ, and the log says why.
    let trace: Vec<(String, String, String, Option<String>)> = db
        .deliveries()
        .await
        .into_iter()
        .map(|(p, t, s, e, _)| (p, t, s, e))
        .collect();
    assert_eq!(
        trace,
        [(
            "p-kiosk".to_owned(),
            "user:u".to_owned(),
            "retrying".to_owned(),
            Some("NO_CREDENTIALS_FOR_APP".to_owned())
        )]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("NO_CREDENTIALS_FOR_APP") && l.contains("kiosk")),
        "{text}"
    );

    // The key is added: consumers with the map of both apps, then the DLQ redriven.
    let log = temp_dir().join("worker-2.log");
    let _second = worker(
        &queue,
        &["--visibility-timeout", "1"],
        &with_key(&fcm.credentials),
        &log,
    );
    assert_eq!(redrive(&sqs, &dlq, &queue), "moved 1 message(s)");
    tokio::task::block_in_place(|| {
        wait_until_or(
            "the kiosk push sent",
            Duration::from_secs(60),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || rt.block_on(db.deliveries()).iter().any(|r| r.2 == "sent"),
        )
    });
    let received = fcm.received().await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["project"], "kiosk");
    assert_eq!(received[0]["body"]["message"]["token"], "tok-kiosk");
    let rows: Vec<(String, String, String)> = db
        .deliveries()
        .await
        .into_iter()
        .map(|(p, t, s, ..)| (p, t, s))
        .collect();
    assert_eq!(
        rows,
        [(
            "p-kiosk".to_owned(),
            "tok-kiosk".to_owned(),
            "sent".to_owned()
        )]
    );
}

/// A foreign producer's envelope without `id` takes its SQS message id as push id. Redriven from
/// the DLQ it is a new message with a new id; `pushq dlq redrive` carries the first one along,
/// so the push keeps its id: what was sent before is not sent again, and its `retrying` rows
/// become final instead of staying open beside a second push's.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_envelope_keeps_its_push_id_across_a_redrive() {
    let (sqs, fcm, db) = (Sqs::start(), Fcm::start(), Db::sqlite().await);
    let (queue, dlq) = queue_with_dlq(&sqs, 2).await;
    let mut env = vec![("DATABASE_URL".to_string(), db.url.clone())];
    env.extend(sqs.env());
    env.extend(fcm.env());
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    drop(store);
    fcm.faults(json!({"rules": [{"token": "tok-b", "error": "UNAVAILABLE"}]}))
        .await;
    let foreign = json!({"v": 1, "push": {"tokens": ["tok-a", "tok-b"]}});
    sqs.send_bodies(&queue, &[foreign.to_string()]).await;

    let log = temp_dir().join("worker.log");
    let first = worker(&queue, &["--visibility-timeout", "1"], &env, &log);
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        wait_until_or(
            "the push in the DLQ",
            Duration::from_secs(120),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || rt.block_on(sqs.depth(&dlq)).0 == 1,
        )
    });
    drop(first);
    let rows = db.deliveries().await;
    let push_id = rows[0].0.clone();
    let statuses: Vec<(&str, &str)> = rows.iter().map(|r| (r.1.as_str(), r.2.as_str())).collect();
    assert_eq!(statuses, [("tok-a", "sent"), ("tok-b", "retrying")]);

    fcm.faults(json!({"rules": []})).await;
    let log = temp_dir().join("worker-2.log");
    let _second = worker(&queue, &["--visibility-timeout", "1"], &env, &log);
    assert_eq!(redrive(&sqs, &dlq, &queue), "moved 1 message(s)");
    tokio::task::block_in_place(|| {
        wait_until_or(
            "every row final",
            Duration::from_secs(60),
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || rt.block_on(db.final_deliveries()) == 2,
        )
    });
    let rows = db.deliveries().await;
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (push_id.as_str(), "tok-a", "sent"),
            (push_id.as_str(), "tok-b", "sent")
        ]
    );
    let mut tokens = fcm.received_tokens().await;
    tokens.sort();
    assert_eq!(tokens, ["tok-a", "tok-b"], "each device once");
}
