//! The pure phases on fixtures: a batch of messages planned, claimed and answered by hand, with
//! no database and no FCM, and what the batch then writes and reports.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::outcome::AppCounts;
use crate::store::{Claimed, Resolution, Resolved};
use classify::DEAD_TOKEN_MIN_SENDS;

fn message(n: usize, push: Value) -> QueueMessage {
    let body =
        json!({"v": 1, "id": format!("p-{n}"), "enqueuedAt": 1_795_000_000_000i64, "push": push});
    QueueMessage {
        message_id: format!("m-{n}"),
        body: body.to_string(),
        ..QueueMessage::default()
    }
}

fn messages(pushes: Vec<Value>) -> Vec<QueueMessage> {
    pushes
        .into_iter()
        .enumerate()
        .map(|(n, p)| message(n, p))
        .collect()
}

/// A time well after the fixtures' `enqueuedAt`, with no age limit.
const NOW: Expiry = Expiry {
    now_ms: 1_795_000_001_000,
    max_age_ms: None,
};

/// The batch planned (users resolved by `devices`) and every planned target won by its claim.
fn planned<'m>(msgs: &'m [QueueMessage], devices: &Resolution, expiry: Expiry) -> Batch<'m> {
    let mut batch = Batch::parse(msgs, false);
    batch.plan(devices, expiry, &HashSet::new());
    win_every_claim(&mut batch);
    batch
}

/// Every planned target of `batch` claimed, and won.
fn win_every_claim(batch: &mut Batch<'_>) {
    let won: HashMap<TargetKey, Claimed> = batch
        .claims()
        .into_iter()
        .map(|r| {
            (
                TargetKey::new(r.push_id, r.target),
                Claimed::Won { taken_over: false },
            )
        })
        .collect();
    batch.keep_claimed(&won);
}

/// Every claimed target answered by `answer` (given its target), then classified and settled.
fn answered(
    mut batch: Batch<'_>,
    answer: impl Fn(&TargetJob) -> Result<Sent, SendError>,
) -> Settled {
    let results = batch
        .to_send()
        .collect::<Vec<_>>()
        .into_iter()
        .map(|n| {
            let result = answer(&batch.targets[n]);
            (
                n,
                Attempted {
                    result,
                    attempts: 1,
                },
            )
        })
        .collect();
    batch.answered(results);
    batch.classify(Utc::now());
    batch.settle()
}

fn sent(_: &TargetJob) -> Result<Sent, SendError> {
    Ok(Sent {
        name: "projects/p/messages/1".into(),
    })
}

fn statuses(settled: &Settled) -> Vec<(String, &'static str, Option<String>)> {
    let mut v: Vec<_> = settled
        .rows
        .iter()
        .map(|r| (r.target.clone(), r.status.as_str(), r.error_code.clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_push_delivered_twice_in_one_batch_is_claimed_and_sent_once() {
    let first = message(0, json!({"tokens": ["a", "a", "b"]}));
    let again = QueueMessage {
        message_id: "m-again".into(),
        ..first.clone()
    };
    let msgs = [first, again];
    let mut batch = Batch::parse(&msgs, false);
    batch.plan(&Resolution::default(), NOW, &HashSet::new());
    assert_eq!(batch.claims().len(), 2, "a and b, once each");
    let settled = answered(planned(&msgs, &Resolution::default(), NOW), sent);
    assert_eq!(
        statuses(&settled),
        [("a".into(), "sent", None), ("b".into(), "sent", None)]
    );
    let c = &settled.outcome.counts;
    assert_eq!((c.sent, c.repeated, c.skipped), (2, 2, 2));
}

#[test]
fn an_expired_push_is_final_in_plan_and_never_sent() {
    let msgs = messages(vec![
        json!({"tokens": ["a", "b"], "expiresAt": "2026-11-17T09:00:00Z"}),
        json!({"token": "c"}),
    ]);
    let expiry = Expiry {
        now_ms: chrono::DateTime::parse_from_rfc3339("2026-11-17T09:00:01Z")
            .unwrap()
            .timestamp_millis(),
        max_age_ms: None,
    };
    let batch = planned(&msgs, &Resolution::default(), expiry);
    let to_send: Vec<&str> = batch
        .to_send()
        .map(|n| batch.targets[n].key.target.as_str())
        .collect();
    assert_eq!(to_send, ["c"]);
    let settled = answered(batch, sent);
    assert_eq!(
        statuses(&settled),
        [
            ("a".into(), "expired", None),
            ("b".into(), "expired", None),
            ("c".into(), "sent", None)
        ]
    );
    assert_eq!(settled.outcome.counts.expired, 2);
    assert_eq!(settled.outcome.apps["default"].expired, 2);
}

#[test]
fn a_payload_over_the_limit_fails_in_plan_for_each_target() {
    let big = "x".repeat(5000);
    let msgs = messages(vec![json!({"tokens": ["a", "b"], "data": {"big": big}})]);
    let batch = planned(&msgs, &Resolution::default(), NOW);
    assert_eq!(batch.to_send().count(), 0);
    let settled = answered(batch, sent);
    let too_large = Some(PAYLOAD_TOO_LARGE.to_owned());
    assert_eq!(
        statuses(&settled),
        [
            ("a".into(), "failed", too_large.clone()),
            ("b".into(), "failed", too_large)
        ]
    );
    assert_eq!(settled.outcome.counts.failed, 2);
}

fn mismatch(_: &TargetJob) -> Result<Sent, SendError> {
    Err(SendError::SenderMismatch {
        detail: "SenderId mismatch".into(),
    })
}

#[test]
fn a_lone_sender_id_mismatch_is_final_for_its_target() {
    let msgs = messages(vec![json!({"tokens": ["a", "b", "c"]})]);
    let settled = answered(planned(&msgs, &Resolution::default(), NOW), |t| {
        match t.key.target.as_str() {
            "b" => mismatch(t),
            _ => sent(t),
        }
    });
    assert_eq!(
        statuses(&settled)[1],
        ("b".into(), "failed", Some("SENDER_ID_MISMATCH".into()))
    );
    assert!(settled.outcome.failed_message_ids.is_empty());
    assert!(settled.dead_tokens.is_empty());
}

#[test]
fn sender_id_mismatch_for_most_sends_hands_the_batch_back_as_a_wrong_key() {
    let msgs = messages(vec![
        json!({"tokens": ["a", "b", "c"]}),
        json!({"token": "d", "app": "other"}),
    ]);
    let settled = answered(planned(&msgs, &Resolution::default(), NOW), |t| {
        match t.key.target.as_str() {
            "a" => sent(t),
            "d" => sent(t),
            _ => mismatch(t),
        }
    });
    let retrying = Some("SENDER_ID_MISMATCH".into());
    assert_eq!(
        statuses(&settled),
        [
            ("a".into(), "sent", None),
            ("b".into(), "retrying", retrying.clone()),
            ("c".into(), "retrying", retrying),
            ("d".into(), "sent", None)
        ]
    );
    // Only the app with the wrong key comes back; nothing is invalidated.
    assert_eq!(settled.outcome.failed_message_ids, ["m-0"]);
    assert_eq!(settled.outcome.counts.transient, 2);
}

#[test]
fn a_topic_answering_a_dead_token_fails_and_invalidates_nothing() {
    let msgs = messages(vec![json!({"topic": "news"}), json!({"token": "t"})]);
    let dead = |_: &TargetJob| -> Result<Sent, SendError> {
        Err(SendError::InvalidToken {
            code: "UNREGISTERED".into(),
            detail: "gone".into(),
        })
    };
    let settled = answered(planned(&msgs, &Resolution::default(), NOW), dead);
    let unregistered = Some("UNREGISTERED".into());
    assert_eq!(
        statuses(&settled),
        [
            ("t".into(), "invalid_token", unregistered.clone()),
            ("topic:news".into(), "failed", unregistered)
        ]
    );
    assert_eq!(settled.dead_tokens, [("default".into(), "t".into())]);
}

#[test]
fn dead_tokens_for_most_of_many_sends_are_the_deployments_fault() {
    let tokens: Vec<String> = (0..DEAD_TOKEN_MIN_SENDS).map(|i| format!("t{i}")).collect();
    let msgs = messages(vec![json!({"tokens": tokens})]);
    let settled = answered(planned(&msgs, &Resolution::default(), NOW), |_| {
        Err(SendError::InvalidToken {
            code: "UNREGISTERED".into(),
            detail: "gone".into(),
        })
    });
    assert!(settled.dead_tokens.is_empty());
    assert!(settled
        .rows
        .iter()
        .all(|r| r.status == DeliveryStatus::Retrying));
    assert_eq!(settled.outcome.failed_message_ids, ["m-0"]);
}

#[test]
fn a_dry_run_is_recorded_as_such_and_takes_no_idempotency_key() {
    let msgs = messages(vec![json!({"token": "a", "idempotencyKey": "k"})]);
    let mut batch = Batch::parse(&msgs, true);
    batch.plan(&Resolution::default(), NOW, &HashSet::new());
    win_every_claim(&mut batch);
    assert!(batch.key_claims().is_empty());
    let settled = answered(batch, sent);
    assert_eq!(statuses(&settled), [("a".into(), "dry_run", None)]);
    assert_eq!(
        (settled.outcome.counts.sent, settled.outcome.counts.dry_runs),
        (0, 1)
    );
}

#[test]
fn users_become_their_live_devices_or_a_no_devices_row() {
    let msgs = messages(vec![json!({"userIds": ["u1", "u2"]})]);
    let mut devices = Resolution::default();
    devices.live.insert(
        ("default".into(), "u1".into()),
        vec![Resolved {
            token: "tok-1".into(),
            kind: DeviceKind::Token,
        }],
    );
    devices.stale.insert(("default".into(), "u1".into()), 2);
    let settled = answered(planned(&msgs, &devices, NOW), sent);
    assert_eq!(
        statuses(&settled),
        [
            ("tok-1".into(), "sent", None),
            ("user:u2".into(), "no_devices", None)
        ]
    );
    let c = &settled.outcome.counts;
    assert_eq!((c.sent, c.no_devices, c.stale_devices), (1, 1, 2));
}

#[test]
fn a_target_final_in_the_log_or_held_elsewhere_is_not_sent() {
    let msgs = messages(vec![json!({"tokens": ["a", "b", "c"]})]);
    let mut batch = Batch::parse(&msgs, false);
    batch.plan(&Resolution::default(), NOW, &HashSet::new());
    batch.claims();
    let claimed = HashMap::from([
        (TargetKey::new("p-0", "a"), Claimed::Final),
        (TargetKey::new("p-0", "b"), Claimed::Busy),
        (
            TargetKey::new("p-0", "c"),
            Claimed::Won { taken_over: true },
        ),
    ]);
    batch.keep_claimed(&claimed);
    let settled = answered(batch, sent);
    assert_eq!(statuses(&settled), [("c".into(), "sent", None)]);
    let c = &settled.outcome.counts;
    assert_eq!(
        (c.already_final, c.busy, c.taken_over, c.skipped),
        (1, 1, 1, 1)
    );
    assert_eq!(settled.outcome.failed_message_ids, ["m-0"]);
}

#[test]
fn when_two_copies_of_a_push_disagree_the_one_that_sends_is_kept_whatever_their_order() {
    // A foreign producer's push without `enqueuedAt`: each copy is as old as its own SQS
    // timestamp, so the older copy is past the age limit and the newer one is not.
    let copy = |id: &str, sent_at_ms: i64| QueueMessage {
        message_id: id.into(),
        body: json!({"v": 1, "id": "p", "push": {"token": "t"}}).to_string(),
        sent_at_ms,
        ..QueueMessage::default()
    };
    let expiry = Expiry {
        now_ms: 10_000_000,
        max_age_ms: Some(3_600_000),
    };
    let (old, new) = (copy("m-old", 1_000), copy("m-new", 9_999_000));
    for msgs in [[old.clone(), new.clone()], [new, old]] {
        let settled = answered(planned(&msgs, &Resolution::default(), expiry), sent);
        assert_eq!(statuses(&settled), [("t".into(), "sent", None)]);
        assert_eq!(settled.outcome.counts.expired, 0);
    }
}

#[test]
fn a_device_target_over_the_payload_limit_counts_among_the_sends_a_wrong_key_is_judged_on() {
    // One send FCM answers SENDER_ID_MISMATCH, one refused before sending as too large: half of
    // the device sends, not most, so the mismatch is the token's own.
    let big = "x".repeat(5000);
    let msgs = messages(vec![
        json!({"token": "t-big", "data": {"big": big}}),
        json!({"token": "t-x"}),
    ]);
    let settled = answered(planned(&msgs, &Resolution::default(), NOW), mismatch);
    assert_eq!(
        statuses(&settled)[1],
        ("t-x".into(), "failed", Some("SENDER_ID_MISMATCH".into()))
    );
    assert!(settled.outcome.failed_message_ids.is_empty());
}

#[test]
fn stale_devices_are_counted_for_each_push_that_names_their_user() {
    let msgs = messages(vec![json!({"userId": "u"}), json!({"userId": "u"})]);
    let mut devices = Resolution::default();
    devices.stale.insert(("default".into(), "u".into()), 2);
    let settled = answered(planned(&msgs, &devices, NOW), sent);
    assert_eq!(settled.outcome.counts.stale_devices, 4);
    assert_eq!(settled.outcome.apps["default"].stale_devices, 4);
}

#[test]
fn a_dry_run_gives_its_app_a_metrics_line() {
    let msgs = messages(vec![json!({"token": "a"})]);
    let mut batch = Batch::parse(&msgs, true);
    batch.plan(&Resolution::default(), NOW, &HashSet::new());
    win_every_claim(&mut batch);
    let settled = answered(batch, sent);
    assert_eq!(settled.outcome.apps["default"], AppCounts::default());
}
