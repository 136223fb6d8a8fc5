//! The recipient rules through the engine, on SQLite, PostgreSQL and MariaDB, with the engine's
//! clock set to the minutes around 21:00 and 08:00 KST: advertising consent, night-time consent
//! (one user in New York), opt-outs, quiet hours, frequency caps and critical categories. What
//! is deferred goes through the producer to EventBridge Scheduler (moto); the test fires the
//! schedule as the scheduler would, by handing its `Target.Input` to the engine as a queue
//! message, with the clock at the window's end.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Seoul;
use pushq_delivery::store::{Consent, Store};
use pushq_delivery::{Engine, QueueMessage};
use pushq_test_support::rules::{fresh_schedule_group, scheduler, SCHEDULER_ROLE};
use pushq_test_support::*;
use serde_json::{json, Value};

// Shared with the other engine tests; this file sends its own messages.
#[allow(dead_code)]
mod support;
use support::{aws_credentials, soon};

/// A day two days from now, in Seoul: deferrals must lie ahead of the real clock too (the
/// producer refuses a `sendAt` in the past), whenever the test runs.
fn day() -> chrono::NaiveDate {
    (Utc::now() + chrono::Duration::days(2))
        .with_timezone(&Seoul)
        .date_naive()
}

/// `h:m` in Seoul, `days` after [`day`].
fn kst(days: u64, h: u32, m: u32) -> DateTime<Utc> {
    let date = day() + chrono::Days::new(days);
    Seoul
        .from_local_datetime(&date.and_hms_opt(h, m, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

struct World {
    engine: Engine,
    clock: Arc<Mutex<DateTime<Utc>>>,
    sqs: Sqs,
    group: String,
    fcm: Fcm,
}

impl World {
    async fn start(db: &Db, extra: &[(&str, &str)]) -> World {
        aws_credentials();
        let fcm = Fcm::start();
        let sqs = Sqs::start();
        let queue = sqs.fresh_queue().await;
        let group = fresh_schedule_group(&sqs).await;
        let mut env: Vec<(&str, &str)> = vec![
            ("PUSHQ_QUEUE_URL", &queue),
            ("PUSHQ_SCHEDULER_ROLE_ARN", SCHEDULER_ROLE),
            ("PUSHQ_SCHEDULE_GROUP", &group),
            ("AWS_REGION", "us-east-1"),
        ];
        env.extend_from_slice(extra);
        let clock = Arc::new(Mutex::new(Utc::now()));
        let read = clock.clone();
        let engine = support::engine_from(&db.url, fcm.env(), &env)
            .await
            .with_clock(Arc::new(move || *read.lock().unwrap()));
        World {
            engine,
            clock,
            sqs,
            group,
            fcm,
        }
    }

    fn store(&self) -> &Store {
        self.engine.store()
    }

    /// Runs one batch at `now`; the messages handed back.
    async fn at(&self, now: DateTime<Utc>, messages: &[QueueMessage]) -> Vec<String> {
        *self.clock.lock().unwrap() = now;
        self.engine
            .process(messages, soon())
            .await
            .unwrap()
            .failed_message_ids
    }

    /// The schedule a deferral of `push_id` to `until` made, fired: its `Target.Input` as a
    /// queue message.
    async fn fire(&self, push_id: &str, until: DateTime<Utc>, users: &[&str]) -> QueueMessage {
        let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let name =
            pushq_producer::schedule::deferral_name(push_id, 0, until.timestamp_millis(), &users);
        let s = scheduler(&self.sqs)
            .await
            .get_schedule()
            .name(&name)
            .group_name(&self.group)
            .send()
            .await
            .unwrap_or_else(|e| panic!("no schedule {name}: {e:?}"));
        let target = s.target.unwrap();
        assert_eq!(target.role_arn, SCHEDULER_ROLE);
        assert_eq!(
            s.schedule_expression.unwrap(),
            until.format("at(%Y-%m-%dT%H:%M:%S)").to_string()
        );
        QueueMessage {
            message_id: format!("fired-{}", uuid::Uuid::now_v7()),
            body: target.input.unwrap(),
            ..QueueMessage::default()
        }
    }

    /// How many schedules the group holds.
    async fn schedules(&self) -> usize {
        let list = scheduler(&self.sqs)
            .await
            .list_schedules()
            .group_name(&self.group)
            .send()
            .await
            .unwrap();
        list.schedules.len()
    }
}

/// A queue message holding `push` under push id `id`.
fn push(id: &str, push: Value) -> QueueMessage {
    let body = json!({"v": 1, "id": id, "enqueuedAt": Utc::now().timestamp_millis(), "push": push});
    QueueMessage {
        message_id: format!("msg-{id}-{}", uuid::Uuid::now_v7().simple()),
        body: body.to_string(),
        ..QueueMessage::default()
    }
}

fn ad(users: &[&str]) -> Value {
    json!({"userIds": users, "advertising": true, "notification": {"title": "(광고) 50% off", "body": "today only"}})
}

/// The (target, status, error code) rows of one push, sorted.
async fn rows_of(db: &Db, push_id: &str) -> Vec<(String, String, Option<String>)> {
    db.deliveries()
        .await
        .into_iter()
        .filter(|r| r.0 == push_id)
        .map(|(_, t, s, e, _)| (t, s, e))
        .collect()
}

fn row(target: &str, status: &str, code: Option<&str>) -> (String, String, Option<String>) {
    (target.into(), status.into(), code.map(str::to_owned))
}

/// How many sends the emulator accepted for each token, of these.
async fn sends_to(fcm: &Fcm, tokens: &[&str]) -> Vec<usize> {
    let received = fcm.received_tokens().await;
    tokens
        .iter()
        .map(|t| received.iter().filter(|r| r == t).count())
        .collect()
}

/// Advertising at 20:59, 21:00, 07:59 and 08:00 KST: a user without consent never gets it; one
/// without night-time consent gets it before 21:00 and from 08:00, and in between it waits,
/// deferred to 08:00 and delivered once when its schedule fires; night-time consent lets it
/// through; a user in New York is judged by New York's night.
async fn advertising_consent_and_the_night_in_each_users_time_zone(db: Db) {
    let w = World::start(&db, &[]).await;
    let s = w.store();
    for (user, token) in [
        ("ok", "tok-ok"),
        ("night", "tok-night"),
        ("none", "tok-none"),
        ("ny", "tok-ny"),
    ] {
        s.register_device(user, token, "android").await.unwrap();
    }
    let now = Utc::now();
    for user in ["ok", "night", "ny"] {
        s.set_consent("default", user, Consent::Advertising, true, now)
            .await
            .unwrap();
    }
    s.set_consent("default", "night", Consent::Night, true, now)
        .await
        .unwrap();
    // New York's quiet hours (23:00-06:00 there) never hold at these instants: they give the
    // user a time zone.
    s.set_quiet_hours(
        "default",
        "ny",
        Some(("23:00", "06:00", "America/New_York")),
        now,
    )
    .await
    .unwrap();
    let users = ["ok", "night", "none", "ny"];
    let ny_eight = |kst_day: u64| {
        let date = day() + chrono::Days::new(kst_day);
        chrono_tz::America::New_York
            .from_local_datetime(&date.and_hms_opt(8, 0, 0).unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    // (instant, push id, rows expected besides "night" sent and "none" suppressed).
    let p = |n: u32| format!("0195f000-0000-7000-8000-00000000000{n}");
    let cases = [
        (
            kst(0, 20, 59),
            p(1),
            ("sent", None),
            ("deferred", Some("NIGHT_TIME")),
        ),
        (
            kst(0, 21, 0),
            p(2),
            ("deferred", Some("NIGHT_TIME")),
            ("deferred", Some("NIGHT_TIME")),
        ),
        (
            kst(1, 7, 59),
            p(3),
            ("deferred", Some("NIGHT_TIME")),
            ("sent", None),
        ),
        (kst(1, 8, 0), p(4), ("sent", None), ("sent", None)),
    ];
    for (at, id, ok, ny) in &cases {
        assert_eq!(
            w.at(*at, &[push(id, ad(&users))]).await,
            Vec::<String>::new()
        );
        assert_eq!(
            rows_of(&db, id).await,
            vec![
                row("tok-night", "sent", None),
                row("tok-none", "suppressed", Some("NO_CONSENT")),
                row("tok-ny", ny.0, ny.1),
                row("tok-ok", ok.0, ok.1),
            ],
            "{at}"
        );
    }
    // Only what the rules allowed reached FCM.
    assert_eq!(
        sends_to(&w.fcm, &["tok-ok", "tok-night", "tok-none", "tok-ny"]).await,
        [2, 4, 0, 2]
    );
    assert_eq!(w.schedules().await, 4);
    // 20:59 and 21:00 KST are 06:59 and 07:00 in New York: deferred to 08:00 there (22:00 KST).
    // 21:00's "ok" waits for 08:00 KST the next morning, 07:59's for a minute.
    let fired = [
        (p(1), ny_eight(0), "tok-ny", "ny"),
        (p(2), ny_eight(0), "tok-ny", "ny"),
        (p(2), kst(1, 8, 0), "tok-ok", "ok"),
        (p(3), kst(1, 8, 0), "tok-ok", "ok"),
    ];
    for (id, until, token, user) in &fired {
        let copy = w.fire(id, *until, &[user]).await;
        // Fired twice (a duplicate delivery): sent once.
        assert_eq!(
            w.at(*until, std::slice::from_ref(&copy)).await,
            Vec::<String>::new()
        );
        assert_eq!(w.at(*until, &[copy]).await, Vec::<String>::new());
        let rows = rows_of(&db, id).await;
        assert!(
            rows.contains(&row(token, "sent", None)),
            "{id} {token}: {rows:?}"
        );
    }
    assert_eq!(
        sends_to(&w.fcm, &["tok-ok", "tok-night", "tok-none", "tok-ny"]).await,
        [4, 4, 0, 4]
    );
    // Every row of every push is final now: nothing is left deferred.
    assert!(db
        .deliveries()
        .await
        .iter()
        .all(|r| r.2 == "sent" || r.2 == "suppressed"));
}
on_every_db!(advertising_consent_and_the_night_in_each_users_time_zone);

/// Quiet hours defer, opt-outs and caps suppress, a critical category passes all three but
/// never missing advertising consent, and `expiresAt` wins over a deferral.
async fn opt_outs_quiet_hours_caps_and_critical_categories(db: Db) {
    let extra = [
        ("PUSHQ_FREQUENCY_CAPS", "marketing=1/day"),
        ("PUSHQ_CRITICAL_CATEGORIES", "security"),
    ];
    let w = World::start(&db, &extra).await;
    let s = w.store();
    for (user, token) in [
        ("quiet", "tok-q"),
        ("out", "tok-o"),
        ("capped", "tok-c"),
        ("twice", "tok-t"),
    ] {
        s.register_device(user, token, "android").await.unwrap();
    }
    let now = Utc::now();
    s.set_quiet_hours(
        "default",
        "quiet",
        Some(("22:00", "07:00", "Asia/Seoul")),
        now,
    )
    .await
    .unwrap();
    s.set_opt_out("default", "out", "marketing", true, now)
        .await
        .unwrap();
    let night = kst(0, 23, 0);
    let marketing = |users: &[&str]| json!({"userIds": users, "category": "marketing", "notification": {"title": "hi"}});
    let p = |n: u32| format!("0195f000-0000-7000-8000-00000000010{n}");
    assert!(w
        .at(
            night,
            &[push(&p(1), marketing(&["quiet", "out", "capped"]))]
        )
        .await
        .is_empty());
    assert_eq!(
        rows_of(&db, &p(1)).await,
        vec![
            row("tok-c", "sent", None),
            row("tok-o", "suppressed", Some("OPTED_OUT")),
            row("tok-q", "deferred", Some("QUIET_HOURS")),
        ]
    );
    // The cap counts the day's sent pushes, and the pushes before it in the same batch.
    let batch = [
        push(&p(2), marketing(&["capped"])),
        push(&p(3), marketing(&["twice"])),
        push(&p(4), marketing(&["twice"])),
    ];
    assert!(w.at(night, &batch).await.is_empty());
    assert_eq!(
        rows_of(&db, &p(2)).await,
        vec![row("tok-c", "suppressed", Some("FREQUENCY_CAPPED"))]
    );
    assert_eq!(rows_of(&db, &p(3)).await, vec![row("tok-t", "sent", None)]);
    assert_eq!(
        rows_of(&db, &p(4)).await,
        vec![row("tok-t", "suppressed", Some("FREQUENCY_CAPPED"))]
    );
    // A push redelivered in part is not over its cap by its own earlier send: one device of
    // "two" was sent, the other handed back (FCM refused the key for it once).
    s.register_device("two", "tok-2a", "android").await.unwrap();
    s.register_device("two", "tok-2b", "android").await.unwrap();
    w.fcm
        .faults(json!({"rules": [{"token": "tok-2b", "error": "PERMISSION_DENIED", "times": 1}]}))
        .await;
    let both = push(&p(8), marketing(&["two"]));
    let handed_back = vec![both.message_id.clone()];
    assert_eq!(
        w.at(
            night - chrono::Duration::hours(2),
            std::slice::from_ref(&both)
        )
        .await,
        handed_back
    );
    assert_eq!(
        w.at(night - chrono::Duration::hours(2), &[both]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        rows_of(&db, &p(8)).await,
        vec![row("tok-2a", "sent", None), row("tok-2b", "sent", None)]
    );
    // A critical category: through quiet hours, opt-outs and caps; not without ad consent.
    let security = json!({"userIds": ["quiet", "out", "capped"], "category": "security", "notification": {"title": "new login"}});
    let security_ad = json!({"userId": "capped", "category": "security", "advertising": true, "notification": {"title": "(광고) x"}});
    assert!(w
        .at(night, &[push(&p(5), security), push(&p(6), security_ad)])
        .await
        .is_empty());
    assert_eq!(
        rows_of(&db, &p(5)).await,
        vec![
            row("tok-c", "sent", None),
            row("tok-o", "sent", None),
            row("tok-q", "sent", None)
        ]
    );
    assert_eq!(
        rows_of(&db, &p(6)).await,
        vec![row("tok-c", "suppressed", Some("NO_CONSENT"))]
    );
    // A push that would expire before the quiet hours end is expired, not deferred.
    let expiring = json!({"userId": "quiet", "notification": {"title": "soon"}, "expiresAt": kst(1, 6, 0).to_rfc3339()});
    assert!(w.at(night, &[push(&p(7), expiring)]).await.is_empty());
    assert_eq!(
        rows_of(&db, &p(7)).await,
        vec![row("tok-q", "expired", None)]
    );
    // The deferred one, fired at 07:00: delivered.
    let copy = w.fire(&p(1), kst(1, 7, 0), &["quiet"]).await;
    assert!(w.at(kst(1, 7, 0), &[copy]).await.is_empty());
    assert!(rows_of(&db, &p(1))
        .await
        .contains(&row("tok-q", "sent", None)));
    assert_eq!(
        sends_to(&w.fcm, &["tok-q", "tok-o", "tok-c", "tok-t"]).await,
        [2, 1, 2, 1]
    );
}
on_every_db!(opt_outs_quiet_hours_caps_and_critical_categories);

/// A consumer with no queue to defer through (PUSHQ_QUEUE_URL unset) loses nothing: the
/// deferred targets are recorded `retrying` `NO_DEFER_QUEUE` and their message comes back.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_queue_to_defer_through_the_message_comes_back() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = support::engine_from(&db.url, fcm.env(), &[]).await;
    let s = engine.store();
    s.register_device("u", "tok-u", "android").await.unwrap();
    s.set_quiet_hours(
        "default",
        "u",
        Some(("00:00", "23:59", "Asia/Seoul")),
        Utc::now(),
    )
    .await
    .unwrap();
    let m = push(
        "0195f000-0000-7000-8000-000000000201",
        json!({"userId": "u", "notification": {"title": "x"}}),
    );
    let id = m.message_id.clone();
    let clock = kst(0, 12, 0);
    let engine = engine.with_clock(Arc::new(move || clock));
    let handed_back = engine
        .process(&[m], soon())
        .await
        .unwrap()
        .failed_message_ids;
    assert_eq!(handed_back, [id]);
    assert_eq!(
        rows_of(&db, "0195f000-0000-7000-8000-000000000201").await,
        vec![row("tok-u", "retrying", Some("NO_DEFER_QUEUE"))]
    );
    assert!(fcm.received_tokens().await.is_empty());
}

/// A consent change and its event row are written together: when the event cannot be written,
/// the consent does not change either (here the events table is gone).
async fn a_consent_change_is_never_left_without_its_event(db: Db) {
    let store = Store::connect(&db.url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let now = Utc::now();
    store
        .set_consent("default", "u", Consent::Advertising, true, now)
        .await
        .unwrap();
    db.execute("DROP TABLE pushq_consent_events").await;
    let withdrawn = store
        .set_consent("default", "u", Consent::Advertising, false, now)
        .await;
    assert!(withdrawn.is_err());
    let (prefs, _) = store.preferences("default", "u").await.unwrap();
    assert!(
        prefs.advertising,
        "the withdrawal went in without its event row"
    );
    assert_eq!(prefs.advertising_withdrawn_at, None);
    store.close().await;
}
on_every_db!(a_consent_change_is_never_left_without_its_event);
