//! One recipient-rules case for the programs that run the engine (the Lambda, `pushq worker`):
//! a user who opted out of the push's category, one inside quiet hours, one without
//! advertising consent; what each program must record and enqueue is the same.

use serde_json::{json, Value};

use crate::{Db, Sqs};

/// The push ids of the case's two pushes.
pub const MARKETING_PUSH: &str = "0195f000-0000-7000-8000-0000000a0001";
pub const AD_PUSH: &str = "0195f000-0000-7000-8000-0000000a0002";

/// The case, set up: its schedule group and the environment the program needs to defer.
pub struct RulesCase {
    pub group: String,
    pub env: Vec<(String, String)>,
}

/// Sets the case up in `db` (migrated already) and on `sqs`: devices, an opt-out, quiet hours
/// (UTC) from an hour ago to 30 minutes ahead (so that the deferral is a schedule, beyond SQS's
/// 900 s), a schedule group. `queue` is where the program defers to.
pub async fn rules_case(sqs: &Sqs, db: &Db, queue: &str) -> RulesCase {
    let group = fresh_schedule_group(sqs).await;
    let minute = |offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let m = ((now / 60 + offset) % 1440 + 1440) % 1440;
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    db.execute(&format!(
        "INSERT INTO pushq_devices (user_id, token, platform) VALUES ('out', 'tok-out', 'ios'), ('quiet', 'tok-quiet', 'ios'), ('none', 'tok-none', 'ios');
         INSERT INTO pushq_opt_outs (app, user_id, category) VALUES ('default', 'out', 'marketing');
         INSERT INTO pushq_preferences (app, user_id, quiet_start, quiet_end, time_zone) VALUES ('default', 'quiet', '{}', '{}', 'UTC');",
        minute(-60),
        minute(30)
    ))
    .await;
    let mut env = sqs.env();
    env.extend([
        ("PUSHQ_QUEUE_URL".to_owned(), queue.to_owned()),
        (
            "PUSHQ_SCHEDULER_ROLE_ARN".to_owned(),
            SCHEDULER_ROLE.to_owned(),
        ),
        ("PUSHQ_SCHEDULE_GROUP".to_owned(), group.clone()),
    ]);
    RulesCase { group, env }
}

/// The case's two queue message bodies: a marketing push to the opted-out and the quiet user,
/// an advertising push to the user without consent.
pub fn rules_bodies() -> [String; 2] {
    let envelope = |id: &str, push: Value| {
        json!({"v": 1, "id": id, "enqueuedAt": 1_795_000_000_000i64, "push": push}).to_string()
    };
    [
        envelope(
            MARKETING_PUSH,
            json!({"userIds": ["out", "quiet"], "category": "marketing", "notification": {"title": "Spin class"}}),
        ),
        envelope(
            AD_PUSH,
            json!({"userId": "none", "advertising": true, "notification": {"title": "(광고) 30% off"}}),
        ),
    ]
}

/// What every program must have made of the case: the rows, no send, and one schedule whose
/// input is the marketing push again for the quiet user only.
pub async fn check_rules_case(db: &Db, fcm: &crate::Fcm, sqs: &Sqs, case: &RulesCase) {
    let rows: Vec<_> = db
        .deliveries()
        .await
        .into_iter()
        .map(|(p, t, s, e, _)| (p, t, s, e.unwrap_or_default()))
        .collect();
    let row = |p: &str, t: &str, s: &str, e: &str| {
        (p.to_owned(), t.to_owned(), s.to_owned(), e.to_owned())
    };
    assert_eq!(
        rows,
        [
            row(MARKETING_PUSH, "tok-out", "suppressed", "OPTED_OUT"),
            row(MARKETING_PUSH, "tok-quiet", "deferred", "QUIET_HOURS"),
            row(AD_PUSH, "tok-none", "suppressed", "NO_CONSENT"),
        ]
    );
    assert!(fcm.received_tokens().await.is_empty());
    let client = scheduler(sqs).await;
    let list = client
        .list_schedules()
        .group_name(&case.group)
        .send()
        .await
        .unwrap();
    assert_eq!(list.schedules.len(), 1, "{:?}", list.schedules);
    let name = list.schedules[0].name.clone().unwrap();
    let s = client
        .get_schedule()
        .name(&name)
        .group_name(&case.group)
        .send()
        .await
        .unwrap();
    let input: Value = serde_json::from_str(&s.target.unwrap().input.unwrap()).unwrap();
    assert_eq!(input["id"], MARKETING_PUSH);
    assert_eq!(input["push"]["userIds"], json!(["quiet"]));
    assert_eq!(input["push"]["category"], "marketing");
}

/// The role a test's schedules are sent with (moto checks no role).
pub const SCHEDULER_ROLE: &str = "arn:aws:iam::123456789012:role/pushq-scheduler";

/// A new schedule group on moto, for one test's schedules.
pub async fn fresh_schedule_group(sqs: &Sqs) -> String {
    let group = format!("g{}", uuid::Uuid::now_v7().simple());
    scheduler(sqs)
        .await
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    group
}

/// An EventBridge Scheduler client on moto.
pub async fn scheduler(sqs: &Sqs) -> aws_sdk_scheduler::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&sqs.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_scheduler::Client::new(&conf)
}
