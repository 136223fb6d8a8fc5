//! Every app of the company through one deployment: two Firebase projects with a key each, FID
//! devices, stale devices, pushes that expire, and an existing deployment's rows after the
//! upgrade. The engine runs against the FCM emulator serving both projects, on SQLite,
//! PostgreSQL and MariaDB.

use std::time::{Duration, Instant};

use pushq_delivery::store::{DeviceKind, NewDevice, Store};
use pushq_delivery::{Engine, QueueMessage};
use pushq_test_support::*;

mod support;
use serde_json::{json, Value};
use support::{message_at, soon};

async fn engine(db: &Db, fcm_env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Engine {
    support::engine_from(&db.url, fcm_env, extra).await
}

fn message(push: Value) -> QueueMessage {
    message_at(push, chrono::Utc::now().timestamp_millis())
}

async fn register(store: &Store, app: &str, user: &str, id: &str, kind: DeviceKind) {
    store
        .register(&NewDevice {
            app,
            user_id: user,
            token: id,
            kind,
            platform: "android",
        })
        .await
        .unwrap();
}

/// What the emulator accepted, as (project, `token` or `fid:<id>`), sorted.
async fn sends(fcm: &Fcm) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fcm
        .received()
        .await
        .iter()
        .map(|m| {
            let message = &m["body"]["message"];
            let to = match (message["token"].as_str(), message["fid"].as_str()) {
                (Some(t), _) => t.to_owned(),
                (None, Some(f)) => format!("fid:{f}"),
                _ => panic!("a send without a device: {m}"),
            };
            (m["project"].as_str().unwrap().to_owned(), to)
        })
        .collect();
    v.sort();
    v
}

/// A user's log rows as (app, target, status, error code), sorted.
async fn log_of(
    store: &Store,
    user: &str,
    app: Option<&str>,
) -> Vec<(String, String, String, Option<String>)> {
    let mut rows: Vec<_> = store
        .deliveries_for_user(user, None, app, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.app, r.target, r.status, r.error_code))
        .collect();
    rows.sort();
    rows
}

fn row(
    app: &str,
    target: &str,
    status: &str,
    code: Option<&str>,
) -> (String, String, String, Option<String>) {
    (
        app.into(),
        target.into(),
        status.into(),
        code.map(Into::into),
    )
}

/// A user with devices in two apps gets each push only on the app it names; each app's sends go
/// to its own project with its own OAuth token (the emulator refuses a token on another
/// project's path); a user's FID device gets a `fid` send. A push for an app the deployment
/// has no key for is handed back, recorded `retrying`, never `failed`.
async fn each_app_sends_with_its_own_key_to_its_own_project(db: Db) {
    let fcm = Fcm::start_projects(&["member", "trainer"], FcmOptions::default());
    let engine = engine(&db, fcm.env(), &[]).await;
    let store = engine.store();
    register(store, "member", "u", "tok-m", DeviceKind::Token).await;
    register(store, "trainer", "u", "tok-t", DeviceKind::Token).await;
    register(store, "trainer", "u", "fid-t", DeviceKind::Fid).await;

    let to_member =
        message(json!({"userId": "u", "app": "member", "notification": {"title": "m"}}));
    let to_trainer =
        message(json!({"userId": "u", "app": "trainer", "notification": {"title": "t"}}));
    let outcome = engine
        .process(&[to_member, to_trainer], soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty(), "{outcome:?}");
    assert_eq!(
        sends(&fcm).await,
        [
            ("member".into(), "tok-m".into()),
            ("trainer".into(), "fid:fid-t".into()),
            ("trainer".into(), "tok-t".into()),
        ]
    );
    // One access token per project: each app asked its own project's token endpoint.
    let report = fcm.call("GET", "/__received", None).await;
    assert_eq!(report["tokenRequests"], 2, "{report}");
    assert_eq!(
        (outcome.apps["member"].sent, outcome.apps["trainer"].sent),
        (1, 2)
    );
    assert_eq!(
        log_of(store, "u", None).await,
        [
            row("member", "tok-m", "sent", None),
            row("trainer", "fid:fid-t", "sent", None),
            row("trainer", "tok-t", "sent", None),
        ]
    );
    assert_eq!(
        log_of(store, "u", Some("member")).await,
        [row("member", "tok-m", "sent", None)]
    );

    // An app without a key: not sent, nothing final, whether or not the user has devices in it
    // (a misspelt app has none); the messages come back (to the DLQ in time), and the log says
    // so for each user the push names.
    fcm.call("POST", "/__reset", None).await;
    register(store, "kiosk", "k", "tok-k", DeviceKind::Token).await;
    let batch = [
        message(json!({"userId": "k", "app": "kiosk", "notification": {"title": "k"}})),
        message(json!({"userId": "u", "app": "trainr", "notification": {"title": "t"}})),
    ];
    let outcome = engine.process(&batch, soon()).await.unwrap();
    let mut handed_back = outcome.failed_message_ids.clone();
    handed_back.sort();
    let mut ids: Vec<String> = batch.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    assert_eq!(handed_back, ids);
    assert_eq!(
        (
            outcome.counts.no_credentials,
            outcome.counts.no_devices,
            outcome.counts.failed
        ),
        (2, 0, 0)
    );
    assert_eq!(
        (
            outcome.apps["kiosk"].handed_back,
            outcome.apps["trainr"].handed_back
        ),
        (1, 1)
    );
    assert!(fcm.received().await.is_empty());
    let no_key = Some("NO_CREDENTIALS_FOR_APP");
    assert_eq!(
        log_of(store, "k", None).await,
        [row("kiosk", "user:k", "retrying", no_key)]
    );
    assert_eq!(
        log_of(store, "u", Some("trainr")).await,
        [row("trainr", "user:u", "retrying", no_key)]
    );
    assert_eq!(
        log_of(store, "u", None).await.len(),
        4,
        "the first two pushes' rows, and the trace"
    );
    db.drop_it().await;
}
on_every_db!(each_app_sends_with_its_own_key_to_its_own_project);

/// An app whose key belongs to another project (a crossed entry in the credentials map): FCM
/// refuses the other project's token on this project's path (403 PERMISSION_DENIED), which is
/// the deployment's fault: handed back, nothing final, no device invalidated.
#[tokio::test(flavor = "multi_thread")]
async fn a_crossed_key_is_refused_and_handed_back() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start_projects(&["member", "trainer"], FcmOptions::default());
    let mut crossed = fcm.keys["trainer"].clone();
    crossed["project_id"] = json!("member");
    let credentials = temp_dir().join("crossed.json");
    std::fs::write(&credentials, json!({"member": crossed}).to_string()).unwrap();
    let env = fcm
        .env()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "PUSHQ_FCM_CREDENTIALS" => (k, credentials.display().to_string()),
            _ => (k, v),
        })
        .collect();
    let engine = engine(&db, env, &[]).await;
    register(engine.store(), "member", "u", "tok-m", DeviceKind::Token).await;
    let msg = message(json!({"userId": "u", "app": "member"}));
    let outcome = engine.process(&[msg], soon()).await.unwrap();
    assert_eq!(outcome.failed_message_ids.len(), 1, "{outcome:?}");
    assert!(fcm.received().await.is_empty());
    assert_eq!(
        log_of(engine.store(), "u", None).await,
        [row(
            "member",
            "tok-m",
            "retrying",
            Some("PERMISSION_DENIED")
        )]
    );
    assert!(engine.store().devices("u").await.unwrap()[0].live);
}

/// `fid` and `fids` pushes reach FCM with `message.fid`, as firebase-admin 14 sends them, and
/// are logged as `fid:<id>`.
async fn fid_pushes_send_fid(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, fcm.env(), &[]).await;
    let one = message(json!({"fid": "f1", "data": {"k": "v"}}));
    let many = message(json!({"fids": ["f2", "f3"], "notification": {"title": "t"}}));
    let many_id = serde_json::from_str::<Value>(&many.body).unwrap()["id"].clone();
    let outcome = engine.process(&[one, many], soon()).await.unwrap();
    assert_eq!(outcome.counts.sent, 3, "{outcome:?}");
    let mut bodies: Vec<Value> = fcm
        .received()
        .await
        .into_iter()
        .map(|m| m["body"].clone())
        .collect();
    bodies.sort_by_key(|b| b["message"]["fid"].as_str().unwrap().to_owned());
    assert_eq!(
        bodies,
        [
            json!({"message": {"fid": "f1", "data": {"k": "v"}}}),
            // The push id tags what is shown, so that a repeated send replaces the first.
            json!({"message": {"fid": "f2", "notification": {"title": "t"},
                "android": {"notification": {"tag": many_id}},
                "apns": {"headers": {"apns-collapse-id": many_id}}}}),
            json!({"message": {"fid": "f3", "notification": {"title": "t"},
                "android": {"notification": {"tag": many_id}},
                "apns": {"headers": {"apns-collapse-id": many_id}}}}),
        ]
    );
    let mut targets: Vec<String> = db.deliveries().await.into_iter().map(|r| r.1).collect();
    targets.sort();
    assert_eq!(targets, ["fid:f1", "fid:f2", "fid:f3"]);
    db.drop_it().await;
}
on_every_db!(fid_pushes_send_fid);

/// A device not seen for the stale age is not sent to (the batch counts it); registering it
/// again refreshes it; pruning deletes stale and invalidated devices in bounded chunks.
async fn a_stale_device_is_skipped_and_pruned(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, fcm.env(), &[("PUSHQ_STALE_DEVICE_DAYS", "30")]).await;
    let store = engine.store();
    for token in ["tok-new", "tok-old", "tok-dead"] {
        register(store, "default", "u", token, DeviceKind::Token).await;
    }
    db.execute(&db.age_device("tok-old", 31)).await;
    store
        .invalidate_devices(&[("default".into(), "tok-dead".into())])
        .await
        .unwrap();

    let outcome = engine
        .process(&[message(json!({"userId": "u"}))], soon())
        .await
        .unwrap();
    assert_eq!(
        sends(&fcm).await,
        [("pushq-emulator".into(), "tok-new".into())]
    );
    assert_eq!(outcome.counts.stale_devices, 1);
    assert_eq!(outcome.apps["default"].stale_devices, 1);

    // Seen again (the app registered its token at start): sent to again.
    register(store, "default", "u", "tok-old", DeviceKind::Token).await;
    fcm.call("POST", "/__reset", None).await;
    engine
        .process(&[message(json!({"userId": "u"}))], soon())
        .await
        .unwrap();
    assert_eq!(sends(&fcm).await.len(), 2);

    db.execute(&db.age_device("tok-old", 31)).await;
    register(store, "default", "v", "tok-v", DeviceKind::Token).await;
    db.execute(&db.age_device("tok-v", 400)).await;
    let stale_before = chrono::Utc::now() - chrono::Duration::days(30);
    assert_eq!(store.count_prunable(stale_before).await.unwrap(), 3);
    // Chunks of 2: the first is full, the second is not (nothing left).
    assert_eq!(store.prune_devices(stale_before, 2).await.unwrap(), 2);
    assert_eq!(store.prune_devices(stale_before, 2).await.unwrap(), 1);
    assert_eq!(store.count_prunable(stale_before).await.unwrap(), 0);
    let left: Vec<String> = store
        .devices("u")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.token)
        .collect();
    assert_eq!(left, ["tok-new"]);
    assert!(store.devices("v").await.unwrap().is_empty());
    db.drop_it().await;
}
on_every_db!(a_stale_device_is_skipped_and_pruned);

/// A push whose `expiresAt` has passed when the engine takes it, or (with
/// `PUSHQ_MAX_PUSH_AGE_SECONDS`) that was enqueued too long ago, is recorded `expired` for each
/// target and not sent; others go out.
async fn an_expired_push_is_recorded_not_sent(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, fcm.env(), &[("PUSHQ_MAX_PUSH_AGE_SECONDS", "3600")]).await;
    register(engine.store(), "default", "u", "tok-u", DeviceKind::Token).await;
    let now = chrono::Utc::now();
    let past = (now - chrono::Duration::minutes(1)).to_rfc3339();
    let future = (now + chrono::Duration::hours(1)).to_rfc3339();
    let batch = [
        message(json!({"token": "tok-a", "expiresAt": past})),
        message(json!({"userId": "u", "expiresAt": past})),
        message(json!({"token": "tok-b", "expiresAt": future})),
        // Enqueued two hours ago: older than the deployment's limit of an hour.
        message_at(
            json!({"token": "tok-c"}),
            (now - chrono::Duration::hours(2)).timestamp_millis(),
        ),
        message_at(
            json!({"token": "tok-d"}),
            (now - chrono::Duration::minutes(30)).timestamp_millis(),
        ),
        // Enqueued 70 minutes ago with a 15-minute delay: visible for 55 minutes, not too old.
        message_at(
            json!({"token": "tok-e", "delaySeconds": 900}),
            (now - chrono::Duration::minutes(70)).timestamp_millis(),
        ),
    ];
    let outcome = engine.process(&batch, soon()).await.unwrap();
    assert!(outcome.failed_message_ids.is_empty(), "{outcome:?}");
    assert_eq!(
        (outcome.counts.expired, outcome.counts.sent),
        (3, 3),
        "{outcome:?}"
    );
    assert_eq!(
        sends(&fcm).await,
        [
            ("pushq-emulator".into(), "tok-b".into()),
            ("pushq-emulator".into(), "tok-d".into()),
            ("pushq-emulator".into(), "tok-e".into()),
        ]
    );
    let mut statuses: Vec<(String, String)> = db
        .deliveries()
        .await
        .into_iter()
        .map(|r| (r.1, r.2))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("tok-a".into(), "expired".into()),
            ("tok-b".into(), "sent".into()),
            ("tok-c".into(), "expired".into()),
            ("tok-d".into(), "sent".into()),
            ("tok-e".into(), "sent".into()),
            ("tok-u".into(), "expired".into()),
        ]
    );
    db.drop_it().await;
}
on_every_db!(an_expired_push_is_recorded_not_sent);

/// An existing deployment upgrades with `pushq migrate`: its devices become the `default` app's
/// tokens, seen at the upgrade (one registered 400 days ago, and never since, keeps getting
/// pushes: the stale age starts counting then), and its idempotency keys stay in force (a key
/// used before the upgrade still makes a repeat a duplicate).
async fn an_existing_deployment_keeps_working_after_the_upgrade(db: Db) {
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate_to(3).await.unwrap();
    let updated = match db.dialect {
        "postgres" => "now() - interval '400 days'",
        "mysql" => "UTC_TIMESTAMP(3) - INTERVAL 400 DAY",
        _ => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-400 days')",
    };
    db.execute(&format!(
        "INSERT INTO pushq_devices (user_id, token, platform, updated_at) VALUES ('u', 'tok-u', 'ios', {updated})"
    ))
    .await;
    db.execute(
        "INSERT INTO pushq_key_claims (idempotency_key, target, push_id) VALUES ('welcome', 'tok-u', 'old-push')",
    )
    .await;
    store.close().await;

    let fcm = Fcm::start();
    let engine = engine(&db, fcm.env(), &[]).await;
    let devices = engine.store().devices("u").await.unwrap();
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(
        (d.app.as_str(), d.kind, d.live),
        ("default", DeviceKind::Token, true)
    );
    let age = chrono::Utc::now() - d.last_seen_at;
    assert!(age < chrono::Duration::hours(1), "last seen {age} ago");

    let keyed = message(json!({"userId": "u", "idempotencyKey": "welcome"}));
    let plain = message(json!({"userId": "u"}));
    let outcome = engine.process(&[keyed, plain], soon()).await.unwrap();
    assert_eq!(
        (outcome.counts.sent, outcome.counts.skipped),
        (1, 1),
        "{outcome:?}"
    );
    let mut statuses: Vec<String> = log_of(engine.store(), "u", Some("default"))
        .await
        .into_iter()
        .map(|r| r.2)
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["duplicate", "sent"]);
    db.drop_it().await;
}
on_every_db!(an_existing_deployment_keeps_working_after_the_upgrade);

/// A project-level `429 QUOTA_EXCEEDED` pauses the sends of that app's project only: the other
/// app's pushes go on, and the process is not reported throttled (a poller keeps taking work).
#[tokio::test(flavor = "multi_thread")]
async fn one_apps_quota_throttles_only_that_app() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start_projects(&["member", "trainer"], FcmOptions::default());
    let engine = engine(&db, fcm.env(), &[]).await;
    fcm.faults(json!({"rules": [{"token": "tok-m1", "error": "QUOTA_EXCEEDED"}]}))
        .await;
    let first = message(json!({"token": "tok-m1", "app": "member"}));
    let outcome = engine.process(&[first], soon()).await.unwrap();
    assert_eq!(outcome.failed_message_ids.len(), 1, "{outcome:?}");
    let requests = fcm.send_requests().await;

    let batch = [
        message(json!({"token": "tok-m2", "app": "member"})),
        message(json!({"token": "tok-t", "app": "trainer"})),
    ];
    let outcome = engine.process(&batch, soon()).await.unwrap();
    assert_eq!(outcome.failed_message_ids, [batch[0].message_id.clone()]);
    assert_eq!(
        (
            outcome.apps["member"].throttled,
            outcome.apps["trainer"].sent
        ),
        (1, 1)
    );
    // Only the trainer's send reached FCM.
    assert_eq!(fcm.send_requests().await, requests + 1);
    assert_eq!(sends(&fcm).await, [("trainer".into(), "tok-t".into())]);
    assert_eq!(engine.throttled_until(), None);
}

/// PostgreSQL, READ COMMITTED: `devices prune` picks a stale device while the app is registering
/// it again (its row locked by the registration's transaction). When the registration commits,
/// the prune's DELETE must see that the device is live again and spare it; a prune whose DELETE
/// trusted the ids it had selected deleted a device seen a moment ago.
#[tokio::test(flavor = "multi_thread")]
async fn prune_spares_a_device_registered_again_while_it_runs() {
    use sqlx::Connection;
    let db = Db::postgres().await;
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.migrate().await.unwrap();
    register(&store, "default", "u", "tok-back", DeviceKind::Token).await;
    db.execute(&db.age_device("tok-back", 400)).await;

    // The registration (as DeviceRegistry.register's upsert leaves the row), not yet committed.
    let mut app = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut registration = app.begin().await.unwrap();
    sqlx::query(
        "UPDATE pushq_devices SET last_seen_at = now(), invalidated_at = NULL WHERE token = 'tok-back'",
    )
    .execute(&mut *registration)
    .await
    .unwrap();

    let stale_before = chrono::Utc::now() - chrono::Duration::days(270);
    let prune = tokio::spawn({
        let store = store.clone();
        async move { store.prune_devices(stale_before, 100).await }
    });
    // Until the prune's DELETE waits for the registration's row lock.
    let mut watch = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM pushq_devices%'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the prune never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    registration.commit().await.unwrap();

    assert_eq!(prune.await.unwrap().unwrap(), 0);
    let left: Vec<(String, bool)> = store
        .devices("u")
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.token, d.live))
        .collect();
    assert_eq!(left, [("tok-back".to_owned(), true)]);
    store.close().await;
    db.drop_it().await;
}
