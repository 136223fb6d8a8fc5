//! `pushq topics`: a subscription change is stored in the database and enqueued as a v2 topics
//! envelope; a change that is refused (bad topic, no queue) leaves both untouched. (What the
//! consumer makes of a change is tested in pushq-delivery's engine tests.)

use std::process::{Command, Output};

use pushq_test_support::{Db, Sqs};
use serde_json::{json, Value};

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

/// Runs `pushq` on `db`, with SQS at `sqs`, and `env` on top (PUSHQ_APP and PUSHQ_QUEUE_URL
/// unset unless `env` sets them).
fn pushq(db: &Db, sqs: &Sqs, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(PUSHQ)
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("PUSHQ_APP")
        .env_remove("PUSHQ_QUEUE_URL")
        .env_remove("PUSHQ_MODE")
        .envs(sqs.env())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The change id in `(change <id> enqueued)`.
fn change_id(stdout: &str) -> &str {
    let start = stdout.find("(change ").expect(stdout) + "(change ".len();
    let end = start + stdout[start..].find(' ').unwrap();
    &stdout[start..end]
}

/// Receives (and deletes) every message on the queue: their bodies as JSON.
async fn drain(sqs: &Sqs, queue: &str) -> Vec<Value> {
    let client = sqs.client().await;
    let mut bodies = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
            let receipt = m.receipt_handle().unwrap();
            let delete = client
                .delete_message()
                .queue_url(queue)
                .receipt_handle(receipt);
            delete.send().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_subscription_is_stored_and_each_change_enqueued() {
    let (db, sqs) = (Db::sqlite().await, Sqs::start());
    let queue = sqs.fresh_queue().await;
    ok(pushq(&db, &sqs, &["migrate"], &[]));
    let subscribe = [
        "topics",
        "subscribe",
        "--topic",
        "/topics/news",
        "--user",
        "u1",
    ];

    let out = ok(pushq(&db, &sqs, &subscribe, &[("PUSHQ_QUEUE_URL", &queue)]));
    assert!(
        out.starts_with("subscribed user u1 of app default to news (change "),
        "{out}"
    );
    let list = ["topics", "list", "--user", "u1"];
    assert_eq!(ok(pushq(&db, &sqs, &list, &[])), "news\n");
    let bodies = drain(&sqs, &queue).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["v"], 2);
    assert_eq!(bodies[0]["id"], change_id(&out));
    let topics = json!({"app": "default", "topic": "news", "userId": "u1"});
    assert_eq!(bodies[0]["topics"], topics);

    // Again: nothing new is stored, and the change is enqueued all the same.
    let again = ok(pushq(
        &db,
        &sqs,
        &[&subscribe[..], &["--queue-url", &queue]].concat(),
        &[],
    ));
    assert!(
        again.starts_with("user u1 of app default was already subscribed to news (change "),
        "{again}"
    );
    assert_eq!(drain(&sqs, &queue).await.len(), 1);

    let unsubscribe = ["topics", "unsubscribe", "--topic", "news", "--user", "u1"];
    let out = ok(pushq(
        &db,
        &sqs,
        &unsubscribe,
        &[("PUSHQ_QUEUE_URL", &queue)],
    ));
    assert!(
        out.starts_with("unsubscribed user u1 of app default from news (change "),
        "{out}"
    );
    assert_eq!(ok(pushq(&db, &sqs, &list, &[])), "");
    let bodies = drain(&sqs, &queue).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["id"], change_id(&out));
    assert_eq!(bodies[0]["topics"], topics);
}

/// A token's list has its own topics and its device's user's; PUSHQ_APP names the app, as for
/// `pushq devices`.
#[tokio::test(flavor = "multi_thread")]
async fn a_tokens_topics_include_its_users() {
    let (db, sqs) = (Db::sqlite().await, Sqs::start());
    let queue = sqs.fresh_queue().await;
    ok(pushq(&db, &sqs, &["migrate"], &[]));
    let env = [
        ("PUSHQ_APP", "trainer"),
        ("PUSHQ_QUEUE_URL", queue.as_str()),
    ];
    let register = ["devices", "register", "--user-id", "u1", "--token", "tok-1"];
    ok(pushq(&db, &sqs, &register, &env));
    let by_user = ["topics", "subscribe", "--topic", "gym", "--user-id", "u1"];
    ok(pushq(&db, &sqs, &by_user, &env));
    let by_token = [
        "topics",
        "subscribe",
        "--topic",
        "private/staff",
        "--token",
        "tok-1",
    ];
    let out = ok(pushq(&db, &sqs, &by_token, &env));
    assert!(
        out.starts_with("subscribed token tok-1 of app trainer to private/staff"),
        "{out}"
    );

    let list = ["topics", "list", "--token", "tok-1"];
    assert_eq!(ok(pushq(&db, &sqs, &list, &env)), "gym\nprivate/staff\n");
    let other_app = [&list[..], &["--app", "default"]].concat();
    assert_eq!(ok(pushq(&db, &sqs, &other_app, &env)), "");
    let bodies = drain(&sqs, &queue).await;
    let token_change = json!({"app": "trainer", "topic": "private/staff", "token": "tok-1"});
    assert!(
        bodies.iter().any(|b| b["topics"] == token_change),
        "{bodies:?}"
    );

    let by_token = [
        "topics",
        "unsubscribe",
        "--topic",
        "gym",
        "--token",
        "tok-1",
    ];
    let out = ok(pushq(&db, &sqs, &by_token, &env));
    assert!(
        out.starts_with("token tok-1 of app trainer was not subscribed to gym"),
        "{out}"
    );
    assert!(out.contains("stays subscribed through the user"), "{out}");
}

/// A bad topic, and a change without a queue, are refused before the database is written:
/// nothing is stored, nothing enqueued.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_change_stores_and_enqueues_nothing() {
    let (db, sqs) = (Db::sqlite().await, Sqs::start());
    let queue = sqs.fresh_queue().await;
    ok(pushq(&db, &sqs, &["migrate"], &[]));
    let list = ["topics", "list", "--user", "u1"];

    let bad = ["topics", "subscribe", "--topic", "a b", "--user", "u1"];
    let out = pushq(&db, &sqs, &bad, &[("PUSHQ_QUEUE_URL", &queue)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--topic: must be a topic name"), "{stderr}");

    let no_queue = ["topics", "subscribe", "--topic", "news", "--user", "u1"];
    let out = pushq(&db, &sqs, &no_queue, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--queue-url or PUSHQ_QUEUE_URL: not set"),
        "{stderr}"
    );

    let both = ["topics", "list", "--user", "u1", "--token", "t"];
    assert_eq!(pushq(&db, &sqs, &both, &[]).status.code(), Some(2));
    assert_eq!(ok(pushq(&db, &sqs, &list, &[])), "");
    assert!(drain(&sqs, &queue).await.is_empty());
}
