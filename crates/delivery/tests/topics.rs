//! Topic subscriptions through the engine: a change on the queue is brought in line with the
//! database by FCM's topic calls (against the FCM emulator, which keeps each project's topic
//! membership), on SQLite, PostgreSQL and MariaDB.

use pushq_delivery::store::{DeviceKind, NewDevice, Store};
use pushq_delivery::{Engine, QueueMessage};
use pushq_model::topics::{Subscriber, TopicChange};
use pushq_test_support::*;
use serde_json::{json, Value};

mod support;
use support::{message_at, soon};

fn user(id: &str) -> Subscriber {
    Subscriber::User(id.to_owned())
}

fn token(t: &str) -> Subscriber {
    Subscriber::Token(t.to_owned())
}

/// The queue message a server enqueues after storing a subscription change.
fn change(app: &str, topic: &str, who: Subscriber) -> QueueMessage {
    let change = TopicChange::new(app, &json!(topic), who).unwrap();
    QueueMessage {
        message_id: format!("msg-{}", change.id),
        body: change.to_json(),
        ..QueueMessage::default()
    }
}

async fn register(store: &Store, user: &str, id: &str, kind: DeviceKind) {
    let device = NewDevice {
        app: "default",
        user_id: user,
        token: id,
        kind,
        platform: "android",
    };
    store.register(&device).await.unwrap();
}

/// The emulator's members of `topic`, sorted.
async fn members(fcm: &Fcm, topic: &str) -> Vec<String> {
    let topics = fcm.call("GET", "/__topics", None).await;
    let list = topics["pushq-emulator"][topic].as_array().cloned();
    let mut members: Vec<String> = list
        .unwrap_or_default()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    members.sort();
    members
}

async fn engine(db: &Db, fcm: &Fcm) -> Engine {
    support::engine_from(&db.url, fcm.env(), &[]).await
}

async fn run(engine: &Engine, messages: &[QueueMessage]) -> Vec<String> {
    engine
        .process(messages, soon())
        .await
        .unwrap()
        .failed_message_ids
}

/// A user's subscription covers the devices the user has (tokens: FCM's topic API takes no
/// FIDs) and the one registered later; a topic push reaches them all; an unregistered device
/// and then the user leave the topic.
async fn a_users_subscription_follows_the_users_devices(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    register(store, "u", "tok-a", DeviceKind::Token).await;
    register(store, "u", "tok-b", DeviceKind::Token).await;
    register(store, "u", "fid-c", DeviceKind::Fid).await;
    register(store, "other", "tok-o", DeviceKind::Token).await;
    let app = "default";
    assert!(store.subscribe(app, "news", &user("u")).await.unwrap());

    assert_eq!(
        run(&engine, &[change(app, "news", user("u"))]).await,
        Vec::<String>::new()
    );
    assert_eq!(members(&fcm, "news").await, ["tok-a", "tok-b"]);

    // A second device, registered later: what DeviceRegistry.register enqueues for it.
    register(store, "u", "tok-d", DeviceKind::Token).await;
    run(&engine, &[change(app, "news", token("tok-d"))]).await;
    assert_eq!(members(&fcm, "news").await, ["tok-a", "tok-b", "tok-d"]);
    let push = message_at(json!({"topic": "news", "notification": {"title": "t"}}), 0);
    run(&engine, &[push]).await;
    let received = fcm.received().await;
    let reached: Vec<Value> = received.iter().map(|m| m["reached"].clone()).collect();
    assert_eq!(reached, [json!(["tok-a", "tok-b", "tok-d"])]);

    // Unregistered: what DeviceRegistry.unregister enqueues.
    store.unregister_device_of(app, "tok-b").await.unwrap();
    run(&engine, &[change(app, "news", token("tok-b"))]).await;
    assert_eq!(members(&fcm, "news").await, ["tok-a", "tok-d"]);

    assert!(store.unsubscribe(app, "news", &user("u")).await.unwrap());
    run(&engine, &[change(app, "news", user("u"))]).await;
    assert_eq!(members(&fcm, "news").await, Vec::<String>::new());
    assert_eq!(
        store.topics_of(app, &user("u")).await.unwrap(),
        Vec::<String>::new()
    );
}
on_every_db!(a_users_subscription_follows_the_users_devices);

/// Changes that arrive out of order or twice end as the database says, in both directions: the
/// same message, taken again after the subscription ended, unsubscribes; taken again after it was
/// stored once more, subscribes.
async fn the_database_decides_whatever_the_order(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let app = "default";
    let message = change(app, "private/staff", token("tok-x"));
    store
        .subscribe(app, "private/staff", &token("tok-x"))
        .await
        .unwrap();
    assert_eq!(
        run(&engine, std::slice::from_ref(&message)).await,
        Vec::<String>::new()
    );
    assert_eq!(members(&fcm, "private/staff").await, ["tok-x"]);

    store
        .unsubscribe(app, "private/staff", &token("tok-x"))
        .await
        .unwrap();
    run(&engine, std::slice::from_ref(&message)).await;
    assert_eq!(members(&fcm, "private/staff").await, Vec::<String>::new());
    assert_eq!(
        store.topics_of(app, &token("tok-x")).await.unwrap(),
        Vec::<String>::new()
    );

    assert!(store
        .subscribe(app, "private/staff", &token("tok-x"))
        .await
        .unwrap());
    run(&engine, &[message.clone(), message]).await;
    assert_eq!(members(&fcm, "private/staff").await, ["tok-x"]);
    assert_eq!(
        store.topics_of(app, &token("tok-x")).await.unwrap(),
        ["private/staff"]
    );
}
on_every_db!(the_database_decides_whatever_the_order);

/// A dead token's answer invalidates its device, whose subscriptions end with it; a 403 from a
/// proxy (HTML) is the deployment's fault: the change comes back, nothing is invalidated, and
/// it completes once the fault is gone.
async fn dead_tokens_end_and_deployment_faults_hand_back(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let app = "default";
    register(store, "u", "tok-dead", DeviceKind::Token).await;
    register(store, "u", "tok-live", DeviceKind::Token).await;
    store.subscribe(app, "news", &user("u")).await.unwrap();
    store
        .subscribe(app, "alerts", &token("tok-dead"))
        .await
        .unwrap();

    fcm.faults(json!({"rules": [{"on": "topics", "status": 403, "body": "<html>denied</html>"}]}))
        .await;
    let message = change(app, "news", user("u"));
    let id = message.message_id.clone();
    assert_eq!(run(&engine, std::slice::from_ref(&message)).await, [id]);
    let devices = store.devices_of("u", Some(app)).await.unwrap();
    assert!(devices.iter().all(|d| d.live), "{devices:?}");

    fcm.faults(json!({"rules": [{"on": "topics", "token": "tok-dead", "error": "UNREGISTERED"}]}))
        .await;
    assert_eq!(run(&engine, &[message]).await, Vec::<String>::new());
    assert_eq!(members(&fcm, "news").await, ["tok-live"]);
    let dead = store.devices_of("u", Some(app)).await.unwrap();
    let live: Vec<(&str, bool)> = dead.iter().map(|d| (d.token.as_str(), d.live)).collect();
    assert_eq!(live, [("tok-dead", false), ("tok-live", true)]);
    assert_eq!(
        store.topics_of(app, &token("tok-dead")).await.unwrap(),
        Vec::<String>::new()
    );
}
on_every_db!(dead_tokens_end_and_deployment_faults_hand_back);

/// A batch of topic changes costs three statements whatever its size: one resolves its users,
/// one reads the subscriptions, one reads them again once the calls are answered.
async fn a_batch_of_changes_costs_three_statements(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let app = "default";
    let mut messages = Vec::new();
    for n in 0..10 {
        let u = format!("u{n}");
        for d in 0..3 {
            register(store, &u, &format!("tok-{n}-{d}"), DeviceKind::Token).await;
        }
        store.subscribe(app, "news", &user(&u)).await.unwrap();
        messages.push(change(app, "news", user(&u)));
    }
    let before = store.statements();
    assert_eq!(run(&engine, &messages).await, Vec::<String>::new());
    assert_eq!(store.statements() - before, 3);
    assert_eq!(members(&fcm, "news").await.len(), 30);
}
on_every_db!(a_batch_of_changes_costs_three_statements);

/// FCM's project quota (429 `QUOTA_EXCEEDED`, asking for longer than the batch has) throttles the
/// topic calls as it throttles sends: the change comes back, and a consumer after the pause
/// makes it.
async fn the_project_quota_hands_a_change_back(db: Db) {
    let fcm = Fcm::start();
    let first = engine(&db, &fcm).await;
    let app = "default";
    first
        .store()
        .subscribe(app, "news", &token("tok-q"))
        .await
        .unwrap();
    let rule = json!({"on": "topics", "error": "QUOTA_EXCEEDED", "retryAfter": 600, "times": 1});
    fcm.faults(json!({ "rules": [rule] })).await;
    let message = change(app, "news", token("tok-q"));
    let id = message.message_id.clone();
    assert_eq!(run(&first, std::slice::from_ref(&message)).await, [id]);
    assert_eq!(members(&fcm, "news").await, Vec::<String>::new());
    // Another consumer (the first still waits out the pause): the quota is back.
    let second = engine(&db, &fcm).await;
    assert_eq!(run(&second, &[message]).await, Vec::<String>::new());
    assert_eq!(members(&fcm, "news").await, ["tok-q"]);
}
on_every_db!(the_project_quota_hands_a_change_back);

/// A change for an app the deployment has no key for waits (handed back), as a push does.
async fn an_app_without_a_key_hands_the_change_back(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let message = change("trainer", "news", user("u"));
    let id = message.message_id.clone();
    assert_eq!(run(&engine, &[message]).await, [id]);
    assert_eq!(
        fcm.call("GET", "/__received", None).await["topicRequests"],
        json!([])
    );
}
on_every_db!(an_app_without_a_key_hands_the_change_back);

/// An unregistered device's topics stay as its tombstones: not listed, not wanted (the consumer
/// unsubscribes it), and found again when `unregister` is repeated after its enqueue failed.
async fn an_unregistered_devices_topics_stay_as_tombstones(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let app = "default";
    register(store, "u", "tok-a", DeviceKind::Token).await;
    store.subscribe(app, "news", &user("u")).await.unwrap();
    store
        .subscribe(app, "alerts", &token("tok-a"))
        .await
        .unwrap();
    run(
        &engine,
        &[
            change(app, "news", user("u")),
            change(app, "alerts", token("tok-a")),
        ],
    )
    .await;
    assert_eq!(
        (members(&fcm, "news").await, members(&fcm, "alerts").await),
        (vec!["tok-a".to_owned()], vec!["tok-a".to_owned()])
    );

    // What DeviceRegistry.unregister does: its topics to tombstones, the device deleted.
    let topics = store.token_topics_to_sync(app, "tok-a").await.unwrap();
    assert_eq!(topics, ["alerts", "news"]);
    store.end_token_topics(app, "tok-a", &topics).await.unwrap();
    store.unregister_device_of(app, "tok-a").await.unwrap();
    // Its enqueue failed; repeated, the call finds the same topics.
    assert_eq!(
        store.token_topics_to_sync(app, "tok-a").await.unwrap(),
        topics
    );
    assert_eq!(
        store.topics_of(app, &token("tok-a")).await.unwrap(),
        Vec::<String>::new()
    );
    let messages: Vec<QueueMessage> = topics
        .iter()
        .map(|t| change(app, t, token("tok-a")))
        .collect();
    assert_eq!(run(&engine, &messages).await, Vec::<String>::new());
    assert_eq!(
        (members(&fcm, "news").await, members(&fcm, "alerts").await),
        (vec![], vec![])
    );
}
on_every_db!(an_unregistered_devices_topics_stay_as_tombstones);

/// A later change made by another consumer while this one's call was in flight (the emulator
/// holds the call): the database no longer agrees with the call once it is answered, so the
/// change comes back, and taken again it makes FCM agree.
async fn a_change_overtaken_while_its_call_is_in_flight_comes_back(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let app = "default";
    store.subscribe(app, "news", &token("tok-r")).await.unwrap();
    fcm.faults(json!({"rules": [{"on": "topics", "token": "tok-r", "delayMs": 1500, "times": 1}]}))
        .await;
    let message = change(app, "news", token("tok-r"));
    let id = message.message_id.clone();
    let overtake = async {
        // The engine read the subscriptions, then fetches its access token for the call (a fresh
        // engine has none), which FCM holds for 1.5 s: meanwhile the server unsubscribes (and
        // another consumer would have unsubscribed the token at FCM before this call lands).
        let calling = || async { fcm.call("GET", "/__received", None).await["tokenRequests"] == 1 };
        while !calling().await {
            tokio::task::yield_now().await;
        }
        let who = token("tok-r");
        assert!(store.unsubscribe(app, "news", &who).await.unwrap());
    };
    let (handed_back, ()) = tokio::join!(run(&engine, std::slice::from_ref(&message)), overtake);
    assert_eq!(handed_back, [id]);
    assert_eq!(members(&fcm, "news").await, ["tok-r"]);
    assert_eq!(run(&engine, &[message]).await, Vec::<String>::new());
    assert_eq!(members(&fcm, "news").await, Vec::<String>::new());
}
on_every_db!(a_change_overtaken_while_its_call_is_in_flight_comes_back);
