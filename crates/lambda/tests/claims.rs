//! Two consumers, one batch: two `pushq-lambda` processes are handed the same SQS event at the
//! same moment (a visibility timeout ran out while a batch was slow) while FCM is slow. Each
//! target is sent once: a consumer sends only what it claimed in the database, and hands back
//! the messages whose targets the other holds; their redelivery finds them done.

use std::collections::BTreeSet;
use std::time::Duration;

use pushq_delivery::store::Store;
use pushq_test_support::lambda::{failed_items, sqs_event, Lambda};
use pushq_test_support::{on_every_db, Db, Fcm};
use serde_json::{json, Value};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_pushq-lambda");
const WAIT: Duration = Duration::from_secs(90);
const USERS: usize = 4;
const DEVICES: usize = 3;

async fn same_event_to_two_lambdas(db: Db) {
    let fcm = Fcm::start();
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    for u in 0..USERS {
        for d in 0..DEVICES {
            store
                .register_device(&format!("u{u}"), &format!("tok-{u}-{d}"), "android")
                .await
                .unwrap();
        }
    }
    store.close().await;
    // FCM answers after 500 ms: both processes are mid-batch together.
    fcm.faults(json!({"rules": [{"delayMs": 500}]})).await;
    let mut env = fcm.env();
    env.push(("DATABASE_URL".into(), db.url.clone()));
    let (mut a, mut b) = (
        Lambda::start(BOOTSTRAP, &env).await,
        Lambda::start(BOOTSTRAP, &env).await,
    );
    a.ready().await;
    b.ready().await;
    let bodies: Vec<(String, String)> = (0..USERS)
        .map(|u| {
            let body = json!({"v": 1, "id": format!("p-{u}"), "enqueuedAt": 1_795_000_000_000i64,
                "push": {"userId": format!("u{u}"), "notification": {"title": "Spin 45"}}});
            (format!("m-{u}"), body.to_string())
        })
        .collect();
    let records: Vec<(&str, String)> = bodies
        .iter()
        .map(|(id, body)| (id.as_str(), body.clone()))
        .collect();
    let event = sqs_event(&records);
    a.start_invocation("a", event.clone(), 60);
    b.start_invocation("b", event, 60);
    let (answer_a, answer_b): (Value, Value) =
        (a.answer("a", WAIT).await, b.answer("b", WAIT).await);

    // Each target once, whoever sent it.
    let mut expected: Vec<String> = (0..USERS)
        .flat_map(|u| (0..DEVICES).map(move |d| format!("tok-{u}-{d}")))
        .collect();
    expected.sort();
    assert_eq!(
        sorted(fcm.received_tokens().await),
        expected,
        "\n--- a:\n{}\n--- b:\n{}",
        a.output(),
        b.output()
    );

    // What either handed back is redelivered: it finds every target done and sends nothing.
    let handed_back: BTreeSet<String> = failed_items(&answer_a)
        .into_iter()
        .chain(failed_items(&answer_b))
        .collect();
    eprintln!(
        "{}: a handed back {:?}, b handed back {:?}",
        db.dialect,
        failed_items(&answer_a),
        failed_items(&answer_b)
    );
    if !handed_back.is_empty() {
        let records: Vec<(&str, String)> = records
            .iter()
            .filter(|(id, _)| handed_back.contains(*id))
            .cloned()
            .collect();
        let answer = a.invoke("a-again", sqs_event(&records), 60, WAIT).await;
        assert_eq!(
            failed_items(&answer),
            Vec::<String>::new(),
            "{}",
            a.output()
        );
    }
    assert_eq!(sorted(fcm.received_tokens().await), expected);
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), USERS * DEVICES, "{rows:?}");
    assert!(rows.iter().all(|r| r.2 == "sent"), "{rows:?}");
}

fn sorted(mut tokens: Vec<String>) -> Vec<String> {
    tokens.sort();
    tokens
}

on_every_db!(same_event_to_two_lambdas);
