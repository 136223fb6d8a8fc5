//! Audience pushes through the engine, on SQLite, PostgreSQL and MariaDB, with a real queue
//! (moto): the push is expanded into pages written to the queue, and the pages, taken from the
//! queue, are delivered by the engine like any push. A segment is a view the test makes over a
//! `members` table of its own; an unknown segment is recorded once; `cancelPush` (the cancel
//! record) stops what is not sent; the log answers with counts.

use pushq_delivery::store::{AudienceState, Store};
use pushq_delivery::{Engine, QueueMessage};
use pushq_test_support::*;
use serde_json::{json, Value};

#[allow(dead_code)]
mod support;
use support::{aws_credentials, soon};

struct World {
    engine: Engine,
    sqs: Sqs,
    queue: String,
    fcm: Fcm,
}

impl World {
    /// An engine writing pages of `page_size` devices to a fresh moto queue.
    async fn start(db: &Db, page_size: u32) -> World {
        aws_credentials();
        let fcm = Fcm::start_projects(&["member", "trainer"], FcmOptions::default());
        let sqs = Sqs::start();
        let queue = sqs.fresh_queue().await;
        let size = page_size.to_string();
        let engine = support::engine_from(
            &db.url,
            fcm.env(),
            &[
                ("PUSHQ_QUEUE_URL", &queue),
                ("AWS_ENDPOINT_URL_SQS", &sqs.endpoint),
                ("AWS_REGION", "us-east-1"),
                ("PUSHQ_AUDIENCE_PAGE_SIZE", &size),
            ],
        )
        .await;
        World {
            engine,
            sqs,
            queue,
            fcm,
        }
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    /// Takes up to `at_most` messages off the queue, delivers them as one batch, and deletes
    /// those not handed back: how many there were.
    async fn batch(&self, at_most: i32) -> usize {
        let client = self.sqs.client().await;
        let out = client
            .receive_message()
            .queue_url(&self.queue)
            .max_number_of_messages(at_most)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let received = out.messages.unwrap_or_default();
        let messages: Vec<QueueMessage> = received
            .iter()
            .map(|m| QueueMessage {
                message_id: m.message_id().unwrap().to_owned(),
                body: m.body().unwrap().to_owned(),
                ..QueueMessage::default()
            })
            .collect();
        if messages.is_empty() {
            return 0;
        }
        let outcome = self.engine.process(&messages, soon()).await.unwrap();
        for (m, r) in messages.iter().zip(&received) {
            if !outcome.failed_message_ids.contains(&m.message_id) {
                let delete = client.delete_message().queue_url(&self.queue);
                let delete = delete.receipt_handle(r.receipt_handle().unwrap());
                delete.send().await.unwrap();
            }
        }
        messages.len()
    }

    /// Delivers batches of ten until the queue is empty.
    async fn drain(&self) {
        while self.batch(10).await > 0 {}
    }

    /// Each token the emulator was sent to, with how many times.
    async fn sends(&self) -> std::collections::BTreeMap<String, usize> {
        let mut sends = std::collections::BTreeMap::new();
        for token in self.fcm.received_tokens().await {
            *sends.entry(token).or_default() += 1;
        }
        sends
    }
}

/// Registers `n` devices `<app>-<prefix><i>` of users `<prefix><i>`.
async fn register(s: &Store, app: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let token = format!("{app}-{prefix}{i}");
        let user = format!("{prefix}{i}");
        let device = pushq_delivery::store::NewDevice {
            app,
            user_id: &user,
            token: &token,
            kind: pushq_delivery::store::DeviceKind::Token,
            platform: "android",
        };
        s.register(&device).await.unwrap();
        tokens.push(token);
    }
    tokens
}

/// An audience push's envelope as the producer writes it.
fn audience_push(id: &str, audience: Value) -> String {
    let push = json!({"audience": audience, "app": "member", "notification": {"title": "Gym closed on Monday"}});
    json!({"v": 1, "id": id, "enqueuedAt": chrono::Utc::now().timestamp_millis(), "push": push})
        .to_string()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `{ all: true }`: every live device of the push's app once, in pages of 7 over several
/// batches; not another app's, not an invalidated or stale one. The log answers with counts.
async fn an_audience_reaches_every_live_device_of_its_app_once(db: Db) {
    let w = World::start(&db, 7).await;
    let s = w.store();
    let members = register(s, "member", "m", 40).await;
    register(s, "trainer", "t", 10).await;
    // Invalidated (FCM said UNREGISTERED) and stale (not seen for a year): not sent to.
    let dead = [("member".to_owned(), members[3].clone())];
    s.invalidate_devices(&dead).await.unwrap();
    db.execute(&db.age_device(&members[5], 365)).await;
    let id = new_id();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"all": true}))])
        .await;
    // The push's own message: expanded into ceil(38 / 7) = 6 pages, nothing sent yet.
    assert_eq!(w.batch(1).await, 1);
    assert!(w.sends().await.is_empty());
    let expansion = s.audience(&id).await.unwrap().unwrap();
    assert_eq!(expansion.state, AudienceState::Expanded);
    assert_eq!((expansion.pages, expansion.devices), (6, 38));
    let log = s.push_log(&id).await.unwrap();
    assert_eq!(log.state, pushq_delivery::store::PushLogState::InProgress);
    w.drain().await;
    let sends = w.sends().await;
    let expected: Vec<&String> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 5)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(sends.keys().collect::<Vec<_>>().len(), 38);
    for token in &expected {
        assert_eq!(sends.get(*token), Some(&1), "{token}");
    }
    // The log: counts and the expansion, never 38 rows.
    let log = s.push_log(&id).await.unwrap();
    assert_eq!(log.state, pushq_delivery::store::PushLogState::Final);
    assert!(log.deliveries.is_empty());
    let progress = log.audience.unwrap();
    assert_eq!(progress.counts.get("sent"), Some(&38));
    assert_eq!(progress.counts.len(), 1, "{:?}", progress.counts);
    assert_eq!(progress.pages_done, 6);
    db.drop_it().await;
}
on_every_db!(an_audience_reaches_every_live_device_of_its_app_once);

/// `{ segment: 'gym_7' }` over a view the company made on its own table: only its users'
/// devices; a user with two devices gets both; the segment's query runs per step, not per user.
async fn a_segment_is_the_users_of_the_companys_view(db: Db) {
    let w = World::start(&db, 4).await;
    let s = w.store();
    let tokens = register(s, "member", "u", 20).await;
    register(s, "member", "second-u", 2).await; // users second-u0, second-u1: not members
    let extra = pushq_delivery::store::NewDevice {
        app: "member",
        user_id: "u2",
        token: "member-u2-tablet",
        kind: pushq_delivery::store::DeviceKind::Token,
        platform: "android",
    };
    s.register(&extra).await.unwrap();
    // The company's own table and view: users u0..u19 by gym, those of gym 7 are even ones.
    let mut sql = String::from("CREATE TABLE members (user_id VARCHAR(255), gym INTEGER);");
    for i in 0..20 {
        sql.push_str(&format!(
            "INSERT INTO members VALUES ('u{i}', {});",
            if i % 2 == 0 { 7 } else { 8 }
        ));
    }
    sql.push_str("CREATE VIEW pushq_segment_gym_7 AS SELECT user_id FROM members WHERE gym = 7;");
    db.execute(&sql).await;
    let id = new_id();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"segment": "gym_7"}))])
        .await;
    w.drain().await;
    let sends = w.sends().await;
    let mut expected: Vec<String> = tokens.iter().step_by(2).cloned().collect();
    expected.push("member-u2-tablet".into());
    expected.sort();
    assert_eq!(sends.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(sends.values().all(|n| *n == 1), "{sends:?}");
    let progress = s.audience_progress(&id).await.unwrap().unwrap();
    assert_eq!(progress.expansion.devices, 11);
    assert_eq!(progress.expansion.pages, 3);
    assert_eq!(progress.counts.get("sent"), Some(&11));
    db.drop_it().await;
}
on_every_db!(a_segment_is_the_users_of_the_companys_view);

/// A segment without its view: recorded once, `failed` `UNKNOWN_SEGMENT` on the target
/// `audience:segment:<name>`, the expansion `failed` with the reason; the message is done with
/// (not handed back), and a redelivery of it adds nothing.
async fn an_unknown_segment_is_recorded_once_and_not_retried(db: Db) {
    let w = World::start(&db, 10).await;
    register(w.store(), "member", "u", 3).await;
    let id = new_id();
    let message = QueueMessage {
        message_id: format!("msg-{id}"),
        body: audience_push(&id, json!({"segment": "no_such_gym"})),
        ..QueueMessage::default()
    };
    for _ in 0..2 {
        let outcome = w
            .engine
            .process(std::slice::from_ref(&message), soon())
            .await
            .unwrap();
        assert!(outcome.failed_message_ids.is_empty());
    }
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "audience:segment:no_such_gym");
    assert_eq!(
        (rows[0].2.as_str(), rows[0].3.as_deref()),
        ("failed", Some("UNKNOWN_SEGMENT"))
    );
    let expansion = w.store().audience(&id).await.unwrap().unwrap();
    assert_eq!(expansion.state, AudienceState::Failed);
    assert!(
        expansion
            .error
            .as_deref()
            .unwrap()
            .contains("pushq_segment_no_such_gym"),
        "{expansion:?}"
    );
    assert!(w.sends().await.is_empty());
    assert_eq!(w.sqs.depth(&w.queue).await, (0, 0));
    db.drop_it().await;
}
on_every_db!(an_unknown_segment_is_recorded_once_and_not_retried);

/// A view without a `user_id` column is an unknown segment too: never a send to the whole app
/// (an unqualified `user_id` in the subquery would have read the devices' own column).
async fn a_segment_view_without_user_id_sends_nothing(db: Db) {
    let w = World::start(&db, 10).await;
    register(w.store(), "member", "u", 5).await;
    db.execute(
        "CREATE TABLE members (member_id VARCHAR(255), gym INTEGER); \
         INSERT INTO members VALUES ('u1', 7); \
         CREATE VIEW pushq_segment_gym_7 AS SELECT member_id FROM members WHERE gym = 7;",
    )
    .await;
    let id = new_id();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"segment": "gym_7"}))])
        .await;
    w.drain().await;
    assert!(w.sends().await.is_empty());
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].1.as_str(), rows[0].3.as_deref()),
        ("audience:segment:gym_7", Some("UNKNOWN_SEGMENT"))
    );
    db.drop_it().await;
}
on_every_db!(a_segment_view_without_user_id_sends_nothing);

/// An audience push whose `expiresAt` passed before a consumer took it is not expanded: one
/// `expired` row for the audience, no page, no send; the log says it is final.
async fn an_expired_audience_is_not_expanded(db: Db) {
    let w = World::start(&db, 10).await;
    register(w.store(), "member", "m", 12).await;
    let id = new_id();
    let push = json!({"audience": {"all": true}, "app": "member", "expiresAt": "2026-01-01T00:00:00Z",
        "notification": {"title": "Too late"}});
    let body = json!({"v": 1, "id": id, "enqueuedAt": 1_760_000_000_000i64, "push": push});
    w.sqs.send_bodies(&w.queue, &[body.to_string()]).await;
    w.drain().await;
    assert!(w.sends().await.is_empty());
    let rows = db.deliveries().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2.as_str()),
        ("audience:all", "expired")
    );
    let log = w.store().push_log(&id).await.unwrap();
    assert_eq!(log.state, pushq_delivery::store::PushLogState::Final);
    assert_eq!(log.audience.unwrap().expansion.pages, 0);
    db.drop_it().await;
}
on_every_db!(an_expired_audience_is_not_expanded);

/// `cancelPush` before any consumer took the push: the expansion stops at its first step,
/// `cancelled`, writing no page; the log says `cancelled`.
async fn a_cancel_before_the_expansion_writes_no_page(db: Db) {
    let w = World::start(&db, 5).await;
    register(w.store(), "member", "m", 20).await;
    let id = new_id();
    w.store().record_cancelled(&id).await.unwrap();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"all": true}))])
        .await;
    assert_eq!(w.batch(1).await, 1);
    assert_eq!(w.sqs.depth(&w.queue).await, (0, 0));
    let expansion = w.store().audience(&id).await.unwrap().unwrap();
    assert_eq!(expansion.state, AudienceState::Cancelled);
    assert_eq!(expansion.pages, 0);
    assert!(w.sends().await.is_empty());
    let log = w.store().push_log(&id).await.unwrap();
    assert_eq!(log.state, pushq_delivery::store::PushLogState::Cancelled);
    db.drop_it().await;
}
on_every_db!(a_cancel_before_the_expansion_writes_no_page);

/// `cancelPush` halfway: the pages delivered before it keep their `sent` rows, the devices of
/// the pages taken after it are `cancelled`, never sent; the log's counts say so, and its state
/// is `cancelled` once every page is taken.
async fn a_cancel_halfway_stops_the_pages_not_yet_sent(db: Db) {
    let w = World::start(&db, 5).await;
    register(w.store(), "member", "m", 30).await;
    let id = new_id();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"all": true}))])
        .await;
    assert_eq!(w.batch(1).await, 1);
    // Six pages on the queue: two delivered, then the cancel, then the rest.
    let mut taken = 0;
    while taken < 2 {
        taken += w.batch(1).await;
    }
    w.store().record_cancelled(&id).await.unwrap();
    w.drain().await;
    let progress = w.store().audience_progress(&id).await.unwrap().unwrap();
    assert_eq!(progress.counts.get("sent"), Some(&10), "{progress:?}");
    assert_eq!(progress.counts.get("cancelled"), Some(&20), "{progress:?}");
    assert_eq!(w.sends().await.len(), 10);
    let log = w.store().push_log(&id).await.unwrap();
    assert_eq!(log.state, pushq_delivery::store::PushLogState::Cancelled);
    db.drop_it().await;
}
on_every_db!(a_cancel_halfway_stops_the_pages_not_yet_sent);

/// Statements stay flat: the expansion of 200 devices in pages of 20 takes about 2 statements
/// per 10 pages, and delivering a batch of 10 pages (200 targets) a handful, not one per device.
async fn statements_per_page_are_bounded(db: Db) {
    let w = World::start(&db, 20).await;
    register(w.store(), "member", "m", 200).await;
    let id = new_id();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"all": true}))])
        .await;
    let before = w.store().statements();
    assert_eq!(w.batch(1).await, 1);
    let expansion = w.store().statements() - before;
    // begin (2), per step: cancelled?, ids, cursor (3 × 2 steps: the second finds nothing more).
    assert!(expansion <= 10, "{expansion} statements to expand");
    let before = w.store().statements();
    let (mut pages, mut batches) = (0, 0);
    while pages < 10 {
        pages += w.batch(10).await;
        batches += 1;
    }
    let delivering = w.store().statements() - before;
    // Per batch: cancelled?, resolve pages, the rules' read, claim (two on MariaDB: insert,
    // then read back), record, pages done.
    assert!(
        delivering <= 7 * batches,
        "{delivering} statements for {pages} pages (200 targets) in {batches} batches"
    );
    assert_eq!(w.sends().await.len(), 200);
    db.drop_it().await;
}
on_every_db!(statements_per_page_are_bounded);

/// Local mode delivers every page it has stored in one batch: 600 pages resolve, each to its
/// devices, past SQLite's 500 terms per compound SELECT.
async fn six_hundred_pages_resolve_in_one_call(db: Db) {
    let store = pushq_delivery::store::Store::connect(&db.url, 1)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    register(&store, "member", "m", 3).await;
    let all = pushq_model::Audience::All;
    let queries: Vec<pushq_delivery::store::PageQuery<'_>> = (0..600)
        .map(|_| pushq_delivery::store::PageQuery {
            app: "member",
            audience: &all,
            after: 0,
            through: i64::MAX,
        })
        .collect();
    let pages = store.resolve_pages(&queries, None).await.unwrap();
    assert_eq!(pages.len(), 600);
    assert!(pages.iter().all(|p| p.live.len() == 3), "{:?}", &pages[..2]);
    db.drop_it().await;
}
on_every_db!(six_hundred_pages_resolve_in_one_call);

/// A page whose send to one device failed for the deployment's reasons comes back; meanwhile FCM says that
/// device is dead (another push invalidated it). The redelivered page does not send to it, and
/// closes the row its first attempt left `retrying` (`failed` `DEVICE_GONE`): the log becomes
/// final instead of waiting for that row for ever.
async fn a_redelivered_page_closes_the_rows_of_devices_gone_since(db: Db) {
    let w = World::start(&db, 10).await;
    let tokens = register(w.store(), "member", "m", 3).await;
    w.fcm
        .faults(json!({"rules": [{"token": tokens[1], "error": "THIRD_PARTY_AUTH_ERROR"}]}))
        .await;
    let id = new_id();
    w.sqs
        .send_bodies(&w.queue, &[audience_push(&id, json!({"all": true}))])
        .await;
    assert_eq!(w.batch(1).await, 1);
    let page = QueueMessage {
        message_id: "page-0".into(),
        body: {
            let client = w.sqs.client().await;
            let out = client
                .receive_message()
                .queue_url(&w.queue)
                .send()
                .await
                .unwrap();
            out.messages.unwrap()[0].body().unwrap().to_owned()
        },
        ..QueueMessage::default()
    };
    let first = w
        .engine
        .process(std::slice::from_ref(&page), soon())
        .await
        .unwrap();
    assert_eq!(first.failed_message_ids, ["page-0"]);
    let dead = [("member".to_owned(), tokens[1].clone())];
    w.store().invalidate_devices(&dead).await.unwrap();
    w.fcm.faults(json!({"rules": []})).await;
    let again = QueueMessage {
        receive_count: 2,
        ..page
    };
    let second = w
        .engine
        .process(std::slice::from_ref(&again), soon())
        .await
        .unwrap();
    assert!(second.failed_message_ids.is_empty());
    let rows: Vec<(String, String, Option<String>)> = db
        .deliveries()
        .await
        .into_iter()
        .map(|r| (r.1, r.2, r.3))
        .collect();
    assert!(
        rows.contains(&(
            tokens[1].clone(),
            "failed".into(),
            Some("DEVICE_GONE".into())
        )),
        "{rows:?}"
    );
    assert_eq!(rows.iter().filter(|r| r.1 == "sent").count(), 2, "{rows:?}");
    let log = w.store().push_log(&id).await.unwrap();
    assert_eq!(log.state, pushq_delivery::store::PushLogState::Final);
    db.drop_it().await;
}
on_every_db!(a_redelivered_page_closes_the_rows_of_devices_gone_since);
