//! The state of one batch as it moves through the engine's phases, and the phases that need no
//! I/O: parse, plan, classify. Rows, dead tokens and hand-backs accumulate here; the engine
//! writes them in one statement each.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use pushq_model::{Envelope, Target};

use super::QueueMessage;

mod claim;
mod classify;
mod plan;

use crate::fcm::{FcmError, Sent};
use crate::outcome::{AppCounts, BatchCounts, BatchOutcome};
use crate::sink::Attempted;
use crate::store::{
    Claimed, Delivery, DeliveryStatus, DeviceKind, KeyClaim, KeyOwner, Rejected, Resolution,
};

/// One (push, target) to send.
pub(super) struct Job {
    /// Index of the queue message it came from.
    pub message: usize,
    /// Index into [`Batch::envelopes`].
    pub envelope: usize,
    /// What the log records as the target.
    pub target: String,
    /// The device to send to (a token or a FID); `None` for a topic or condition push.
    pub device: Option<(DeviceKind, String)>,
    /// The user the token belongs to, when the push named users.
    pub user_id: Option<String>,
}

/// One batch in flight.
pub(super) struct Batch<'m> {
    pub messages: &'m [QueueMessage],
    /// The valid envelopes, with the index of their message.
    pub envelopes: Vec<(usize, Envelope)>,
    pub rejected: Vec<Rejected>,
    pub jobs: Vec<Job>,
    /// Rows that need no send (`no_devices`), with the index of their message, until claimed.
    unsent: Vec<(usize, Delivery)>,
    pub rows: Vec<Delivery>,
    /// (app, token or FID) of each device FCM said is dead.
    pub dead_tokens: Vec<(String, String)>,
    /// Messages to hand back for redelivery.
    handed_back: BTreeSet<usize>,
    /// Per envelope: its FCM payload's size and limit when it is over the limit (measured once,
    /// not per target).
    oversized: Vec<Option<(usize, usize)>>,
    /// `user:<id>` rows an earlier attempt left as a trace, now superseded by the user's device
    /// rows: deleted when the log is written.
    pub superseded: Vec<(String, String)>,
    pub counts: BatchCounts,
    /// The counts that carry the `App` dimension, per app.
    apps: BTreeMap<String, AppCounts>,
    send_latency_ms: Vec<u64>,
}

/// When a batch's pushes are too old to send ([`Batch::plan`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Expiry {
    /// Now, in epoch milliseconds.
    pub now_ms: i64,
    /// `PUSHQ_MAX_PUSH_AGE_SECONDS`, in milliseconds: a push enqueued longer ago expires.
    pub max_age_ms: Option<i64>,
}

impl Expiry {
    /// Whether `e` has expired: its `expiresAt` has passed, or it is older than the age limit,
    /// counted from when it was due (`enqueuedAt` plus its `delaySeconds`, or its `sendAt`).
    fn has_passed(&self, e: &Envelope) -> bool {
        let visible_at = e
            .enqueued_at
            .saturating_add(i64::from(e.push.delay_seconds().unwrap_or(0)) * 1000)
            .max(e.push.send_at_ms().unwrap_or(i64::MIN));
        e.push.expires_at_ms().is_some_and(|t| self.now_ms >= t)
            || self
                .max_age_ms
                .is_some_and(|age| self.now_ms.saturating_sub(visible_at) > age)
    }
}

impl<'m> Batch<'m> {
    /// Phase 1: each message becomes an envelope, or a rejected row.
    pub fn parse(messages: &'m [QueueMessage]) -> Batch<'m> {
        let mut envelopes = Vec::new();
        let mut rejected = Vec::new();
        let mut handed_back = BTreeSet::new();
        for (i, m) in messages.iter().enumerate() {
            match Envelope::parse(&m.body, m.original_id(), m.sent_at_ms) {
                Ok(e) => envelopes.push((i, e)),
                // A newer producer's: it waits (in the DLQ at worst) for an upgraded consumer.
                Err(e) if e.is_from_newer_producer() => {
                    tracing::warn!(message_id = %m.message_id, reason = %e, "message from a newer producer, handed back for redelivery");
                    handed_back.insert(i);
                }
                // Stored as text whatever it holds: U+0000 (which PostgreSQL refuses) becomes
                // U+FFFD, so one hostile message cannot fail its batch forever.
                Err(e) => rejected.push(Rejected {
                    queue_message_id: fit(&m.message_id, 128),
                    body: m.body.replace('\0', "\u{FFFD}"),
                    reason: e.to_string().replace('\0', "\u{FFFD}"),
                }),
            }
        }
        let counts = BatchCounts {
            messages: messages.len(),
            rejected: rejected.len(),
            newer: handed_back.len(),
            ..Default::default()
        };
        let oversized = envelopes
            .iter()
            .map(|(_, e)| {
                let (size, limit) = (e.push.payload_size(), e.push.payload_limit());
                (size > limit).then_some((size, limit))
            })
            .collect();
        Batch {
            messages,
            oversized,
            envelopes,
            rejected,
            jobs: Vec::new(),
            unsent: Vec::new(),
            rows: Vec::new(),
            dead_tokens: Vec::new(),
            handed_back,
            superseded: Vec::new(),
            counts,
            apps: BTreeMap::new(),
            send_latency_ms: Vec::new(),
        }
    }

    /// Hands back, whole and before anything is resolved, each message whose push names an app
    /// the deployment has no FCM key for (a key not deployed yet, a misspelt `app`): it waits in
    /// the queue, then the DLQ, until the key is there. Nothing about it is final, whatever its
    /// users' devices; each target it names (`user:<id>` for a user) is recorded `retrying` with
    /// `NO_CREDENTIALS_FOR_APP`, so that the log says where it is.
    pub fn hand_back_apps_without_keys(&mut self, has_key: impl Fn(&str) -> bool) {
        let mut kept = Vec::with_capacity(self.envelopes.len());
        let mut oversized = Vec::with_capacity(self.oversized.len());
        let mut without: Vec<String> = Vec::new();
        let envelopes = std::mem::take(&mut self.envelopes);
        for ((i, e), size) in envelopes
            .into_iter()
            .zip(std::mem::take(&mut self.oversized))
        {
            let app = e.push.app();
            if has_key(app) {
                kept.push((i, e));
                oversized.push(size);
                continue;
            }
            tracing::error!(
                push_id = %e.id,
                message_id = %self.messages[i].message_id,
                app,
                code = crate::fcm::NO_CREDENTIALS,
                "the push's app has no FCM credentials (add its key to PUSHQ_FCM_CREDENTIALS' map); the message will be redelivered, and reach the DLQ if the key does not come"
            );
            self.handed_back.insert(i);
            without.push(app.to_owned());
            for (target, user_id) in named_targets(&e) {
                self.rows.push(row(
                    &e,
                    target,
                    user_id,
                    DeliveryStatus::Retrying,
                    Some(crate::fcm::NO_CREDENTIALS.to_owned()),
                    0,
                ));
            }
        }
        self.envelopes = kept;
        self.oversized = oversized;
        self.counts.no_credentials += without.len();
        for app in without {
            self.app(&app).handed_back += 1;
        }
    }

    /// Whether a job's push is over FCM's payload limit (4096 bytes, 2048 for a topic): a
    /// producer that is not pushq's may have enqueued it. It is recorded `failed` with
    /// `PAYLOAD_TOO_LARGE` and never sent.
    pub fn over_payload_limit(&self, job: &Job) -> Option<FcmError> {
        let (size, limit) = self.oversized[job.envelope]?;
        Some(FcmError::Rejected {
            code: "PAYLOAD_TOO_LARGE".into(),
            detail: format!("the FCM payload is {size} bytes, over FCM's limit of {limit}"),
        })
    }

    /// Every (app, user id) the batch's pushes name, once each.
    pub fn app_users(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .envelopes
            .iter()
            .flat_map(|(_, e)| {
                user_ids(e)
                    .iter()
                    .map(|u| (e.push.app().to_owned(), u.clone()))
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn app(&mut self, app: &str) -> &mut AppCounts {
        if !self.apps.contains_key(app) {
            self.apps.insert(app.to_owned(), AppCounts::default());
        }
        self.apps.get_mut(app).expect("inserted above")
    }

    /// The scheduled pushes of the batch (those with `sendAt`), once each: whether one was
    /// cancelled is asked of the database only for these.
    pub fn scheduled_push_ids(&self) -> Vec<String> {
        unique(
            self.envelopes
                .iter()
                .filter(|(_, e)| e.push.send_at_ms().is_some())
                .map(|(_, e)| e.id.clone()),
        )
    }

    /// The push ids and idempotency keys of the batch, once each.
    pub fn push_ids_and_keys(&self) -> (Vec<String>, Vec<String>) {
        let ids = unique(self.envelopes.iter().map(|(_, e)| e.id.clone()));
        let keys = unique(
            self.envelopes
                .iter()
                .filter_map(|(_, e)| e.push.idempotency_key().map(str::to_owned)),
        );
        (ids, keys)
    }

    /// What the engine made of the batch.
    pub fn outcome(self) -> BatchOutcome {
        let (push_ids, _) = self.push_ids_and_keys();
        BatchOutcome {
            failed_message_ids: self
                .handed_back
                .iter()
                .map(|&i| self.messages[i].message_id.clone())
                .collect(),
            counts: self.counts,
            apps: self.apps,
            send_latency_ms: self.send_latency_ms,
            push_ids,
        }
    }
}

/// The error code of a row closed because its device is gone: unregistered, stale, or another
/// user's since the push's earlier attempt ([`Batch::close_unplanned`]).
pub(super) const DEVICE_GONE: &str = "DEVICE_GONE";

/// Each target a push names, as the log records it, before users are resolved: the token,
/// `fid:<id>`, `topic:<name>`, `condition:<expr>`, or `user:<id>` (with the user id).
fn named_targets(e: &Envelope) -> Vec<(String, Option<String>)> {
    match e.push.target() {
        Target::Token(t) => vec![(t.clone(), None)],
        Target::Tokens(ts) => ts.iter().map(|t| (t.clone(), None)).collect(),
        Target::Fid(f) => vec![(DeviceKind::Fid.target(f), None)],
        Target::Fids(fs) => fs
            .iter()
            .map(|f| (DeviceKind::Fid.target(f), None))
            .collect(),
        Target::Topic(t) => vec![(format!("topic:{t}"), None)],
        Target::Condition(c) => vec![(format!("condition:{c}"), None)],
        Target::User(_) | Target::Users(_) => user_ids(e)
            .iter()
            .map(|u| (format!("user:{u}"), Some(u.clone())))
            .collect(),
    }
}

/// The user ids a push names (none for other targets).
fn user_ids(e: &Envelope) -> &[String] {
    match e.push.target() {
        Target::User(u) => std::slice::from_ref(u),
        Target::Users(us) => us.as_slice(),
        _ => &[],
    }
}

fn row(
    e: &Envelope,
    target: String,
    user_id: Option<String>,
    status: DeliveryStatus,
    error: Option<String>,
    attempts: u32,
) -> Delivery {
    Delivery {
        push_id: e.id.clone(),
        app: e.push.app().to_owned(),
        target,
        user_id,
        status,
        fcm_message_id: None,
        // FCM's codes are short; whatever else answers is cut to the column (VARCHAR(64)).
        error_code: error.map(|code| fit(&code, 64)),
        attempts,
        category: e.push.category().map(str::to_owned),
        idempotency_key: e.push.idempotency_key().map(str::to_owned),
        enqueued_at: Utc
            .timestamp_millis_opt(e.enqueued_at)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        sent_at: None,
        part: e.part,
    }
}

/// `text` cut to at most `chars` characters, without U+0000 (what a text column can hold).
fn fit(text: &str, chars: usize) -> String {
    text.chars()
        .take(chars)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}
