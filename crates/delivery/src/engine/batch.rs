//! One batch as it moves through the engine: every (push, target) of the batch is one
//! [`TargetJob`] in one `Vec`, and each phase moves targets from one [`State`] to the next. Rows,
//! dead devices, hand-backs and every count are derived once, at the end ([`Batch::settle`]).
//!
//! A target's states, in the order the engine moves it ([`super::Engine::process`]):
//!
//! ```text
//!            plan                  claim                      send        classify
//! ToSend ──────────────▶ Claimed ───────────────▶ Answered ─────────▶ Final(row)
//!   │                      │  └─ key owned by another push ─▶ Final(duplicate)
//!   │                      └─ key not answered ─▶ HandedBack(KeyUnanswered)        └─▶ HandedBack(Transient)
//! ToSend ─ rules ─▶ ToRecord(suppressed | deferred | expired)
//! ToRecord(status) ─ claim ─▶ Final(row)   (a won `deferred` row whose re-enqueue fails ─▶ HandedBack(Transient))
//! ToSend / ToRecord ─ claim ─▶ Skipped(Repeated | AlreadyFinal) / HandedBack(ClaimedElsewhere)
//! (a push for an app without a key) ─ parse ─▶ HandedBack(NoCredentials)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use pushq_model::topics::TopicChange;
use pushq_model::{Envelope, QueueBody, Target};

use super::QueueMessage;

mod claim;
mod classify;
mod plan;
mod rules;
mod settle;
#[cfg(test)]
mod tests;

pub(super) use classify::DEAD_TOKEN_MIN_SENDS;
pub(super) use rules::Deferral;
pub(super) use settle::Settled;

use crate::sink::{Attempted, SendError, Sent};
use crate::store::{Delivery, DeliveryStatus, DeviceKind, Rejected, TargetKey};

/// One push of the batch: a valid envelope and the message it came in.
pub(super) struct Push {
    /// Index of its queue message.
    pub message: usize,
    pub envelope: Envelope,
    /// Whether the deployment has an FCM key for its app; a push without is handed back whole.
    pub has_key: bool,
}

/// A device to send to: a registration token or a FID.
pub(super) type Device = (DeviceKind, String);

/// One (push, target) of the batch, and where it is.
pub(super) struct TargetJob {
    /// Index into [`Batch::pushes`].
    pub push: usize,
    /// The push id and what the log records as the target.
    pub key: TargetKey,
    /// The device to send to (a token or a FID); `None` for a topic or condition push, and for
    /// a user's `user:<id>` row.
    pub device: Option<Device>,
    /// The user the target belongs to, when the push named users.
    pub user_id: Option<String>,
    /// Whether this batch's claim took it over from a claim that had lapsed (its consumer died
    /// or overran): it may have been sent already.
    pub taken_over: bool,
    pub state: State,
}

/// Where a target is.
pub(super) enum State {
    /// To be claimed, then sent.
    ToSend,
    /// To be claimed, then recorded with this status and error code, never sent: a user without
    /// live devices, a push expired or cancelled, a payload over FCM's limit, a row an earlier
    /// attempt left open whose device is gone.
    ToRecord(DeliveryStatus, Option<String>),
    /// Claimed by this batch: to be sent.
    Claimed,
    /// Sent: FCM's answer.
    Answered(Attempted),
    /// Final: the row this batch writes.
    Final(Delivery),
    /// Not this batch's to write.
    Skipped(Skip),
    /// Not final: its message comes back for redelivery.
    HandedBack(HandBack),
}

/// Why a target is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Skip {
    /// The batch names this (push, target) again (the same message delivered twice, a token
    /// listed twice): the first one is planned.
    Repeated,
    /// The log has it final already (a redelivery).
    AlreadyFinal,
}

/// Why a target's message comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HandBack {
    /// Its push's app has no FCM key: recorded `retrying`, `NO_CREDENTIALS_FOR_APP`.
    NoCredentials,
    /// Another consumer's claim holds it (or the database did not answer for it).
    ClaimedElsewhere,
    /// The database did not answer for its idempotency key.
    KeyUnanswered,
    /// Transient trouble, or the deployment's: recorded `retrying` with the code, after
    /// `attempts` requests.
    Transient { code: String, attempts: u32 },
}

/// One batch in flight.
pub(super) struct Batch<'m> {
    messages: &'m [QueueMessage],
    pub pushes: Vec<Push>,
    pub targets: Vec<TargetJob>,
    rejected: Vec<Rejected>,
    /// Messages from a newer producer, handed back whole.
    newer: Vec<usize>,
    /// `user:<id>` rows an earlier attempt left as a trace, now superseded by the user's device
    /// rows: deleted when the log is written.
    superseded: Vec<TargetKey>,
    /// Live devices of the batch's users left out as stale, per app.
    stale_devices: BTreeMap<String, usize>,
    /// The batch's topic changes, with the index of their message: taken out by the engine
    /// ([`super::Engine::manage_topics`]) before the pushes are planned.
    pub changes: Vec<(usize, TopicChange)>,
    /// The targets the recipient rules deferred, by index, with when they are due.
    deferred_until: BTreeMap<usize, i64>,
    /// The batch's audience pushes to expand into pages (not pages themselves), with the index
    /// of their message: taken out by the engine ([`super::Engine::expand_audiences`]).
    pub expansions: Vec<(usize, Envelope)>,
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
    pub(in crate::engine) fn has_passed(&self, e: &Envelope) -> bool {
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
    /// Phase 1: each message becomes a push, or a rejected row; every push is a dry run when
    /// `all_dry_runs` (`PUSHQ_FCM_DRY_RUN`).
    pub fn parse(messages: &'m [QueueMessage], all_dry_runs: bool) -> Batch<'m> {
        let mut batch = Batch {
            messages,
            pushes: Vec::new(),
            targets: Vec::new(),
            rejected: Vec::new(),
            newer: Vec::new(),
            superseded: Vec::new(),
            stale_devices: BTreeMap::new(),
            changes: Vec::new(),
            deferred_until: BTreeMap::new(),
            expansions: Vec::new(),
        };
        for (i, m) in messages.iter().enumerate() {
            match pushq_model::read_body(&m.body, m.original_id(), m.sent_at_ms) {
                Ok(QueueBody::Topics(change)) => batch.changes.push((i, change)),
                Ok(QueueBody::Push(mut envelope))
                    if envelope.page.is_none()
                        && matches!(envelope.push.target(), Target::Audience(_)) =>
                {
                    envelope.dry_run |= all_dry_runs;
                    batch.expansions.push((i, envelope));
                }
                Ok(QueueBody::Push(mut envelope)) => {
                    envelope.dry_run |= all_dry_runs;
                    batch.pushes.push(Push {
                        message: i,
                        envelope,
                        has_key: true,
                    });
                }
                // A newer producer's: it waits (in the DLQ at worst) for an upgraded consumer.
                Err(e) if e.is_from_newer_producer() => {
                    tracing::warn!(message_id = %m.message_id, reason = %e, "message from a newer producer, handed back for redelivery");
                    batch.newer.push(i);
                }
                // Stored as text whatever it holds: U+0000 (which PostgreSQL refuses) becomes
                // U+FFFD, so one hostile message cannot fail its batch forever.
                Err(e) => batch.rejected.push(Rejected {
                    queue_message_id: fit(&m.message_id, 128),
                    body: m.body.replace('\0', "\u{FFFD}"),
                    reason: e.to_string().replace('\0', "\u{FFFD}"),
                }),
            }
        }
        batch
    }

    /// Hands back, whole and before anything is resolved, each push naming an app the
    /// deployment has no FCM key for (a key not deployed yet, a misspelt `app`): it waits in
    /// the queue, then the DLQ, until the key is there. Nothing about it is final, whatever its
    /// users' devices; each target it names (`user:<id>` for a user) is recorded `retrying` with
    /// `NO_CREDENTIALS_FOR_APP`, so that the log says where it is.
    pub fn hand_back_apps_without_keys(&mut self, has_key: impl Fn(&str) -> bool) {
        for (p, push) in self.pushes.iter_mut().enumerate() {
            let e = &push.envelope;
            push.has_key = has_key(e.push.app());
            if push.has_key {
                continue;
            }
            tracing::error!(
                push_id = %e.id,
                message_id = %self.messages[push.message].message_id,
                app = e.push.app(),
                code = crate::sink::NO_CREDENTIALS,
                "the push's app has no FCM credentials (add its key to PUSHQ_FCM_CREDENTIALS' map); the message will be redelivered, and reach the DLQ if the key does not come"
            );
            for (target, user_id) in named_targets(e) {
                self.targets.push(TargetJob {
                    push: p,
                    key: TargetKey::new(&e.id, target),
                    device: None,
                    user_id,
                    taken_over: false,
                    state: State::HandedBack(HandBack::NoCredentials),
                });
            }
        }
    }

    /// The pushes the batch sends for (those whose app has a key), with their index.
    fn sendable(&self) -> impl Iterator<Item = (usize, &Envelope)> {
        self.pushes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.has_key)
            .map(|(i, p)| (i, &p.envelope))
    }

    /// The ids of the pushes the batch sends for, once each.
    pub fn sendable_push_ids(&self) -> Vec<String> {
        unique(self.sendable().map(|(_, e)| e.id.clone()))
    }

    /// Every (app, user id) the batch's pushes name, once each.
    pub fn app_users(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .sendable()
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

    /// The scheduled pushes of the batch (those with `sendAt`), once each.
    pub fn scheduled_push_ids(&self) -> Vec<String> {
        unique(
            self.sendable()
                .filter(|(_, e)| e.push.send_at_ms().is_some())
                .map(|(_, e)| e.id.clone()),
        )
    }

    /// The pushes of the batch that `cancelPush` may have stopped (scheduled pushes, those with
    /// `sendAt`, and audience pages), once each: whether one was cancelled is asked of the
    /// database only for these.
    pub fn cancellable_push_ids(&self) -> Vec<String> {
        unique(
            self.sendable()
                .filter(|(_, e)| e.push.send_at_ms().is_some() || e.page.is_some())
                .map(|(_, e)| e.id.clone()),
        )
    }

    /// The audience pages of the batch to resolve, each (push id, page) once.
    pub fn page_queries(&self) -> super::audience::PageQueries<'_> {
        let mut seen = HashSet::new();
        self.sendable()
            .filter_map(|(_, e)| match (e.push.target(), e.page) {
                (Target::Audience(audience), Some(page)) => Some((e, audience, page)),
                _ => None,
            })
            .filter(|(e, _, page)| seen.insert((e.id.clone(), *page)))
            .map(|(e, audience, page)| {
                let query = crate::store::PageQuery {
                    app: e.push.app(),
                    audience,
                    after: page.after,
                    through: page.through,
                };
                ((e.id.clone(), page), query)
            })
            .collect()
    }

    /// The batch's audience pages: (message id, push id, page number), for
    /// [`super::Engine::record_pages_done`] once the batch is settled.
    pub fn page_messages(&self) -> Vec<(String, String, u32)> {
        self.pushes
            .iter()
            .filter_map(|p| {
                let n = p.envelope.page?.n;
                let message = self.messages[p.message].message_id.clone();
                Some((message, p.envelope.id.clone(), n))
            })
            .collect()
    }

    /// Every (app, user id) the recipient rules judge: those the pushes name, and those of the
    /// planned targets (an audience page's users are known once it is resolved), once each.
    pub fn rule_users(&self) -> Vec<(String, String)> {
        let mut v = self.app_users();
        v.extend(self.targets.iter().filter_map(|t| {
            let user = t.user_id.clone()?;
            Some((self.envelope(t).push.app().to_owned(), user))
        }));
        v.sort();
        v.dedup();
        v
    }

    /// The push a target belongs to.
    fn envelope(&self, job: &TargetJob) -> &Envelope {
        &self.pushes[job.push].envelope
    }

    /// A row for `job` with this status, error code and number of FCM requests.
    fn row(
        &self,
        job: &TargetJob,
        status: DeliveryStatus,
        error: Option<String>,
        attempts: u32,
    ) -> Delivery {
        row(
            self.envelope(job),
            job.key.target.clone(),
            job.user_id.clone(),
            status,
            error,
            attempts,
        )
    }
}

/// The error code of a row closed because its device is gone: unregistered, stale, or another
/// user's since the push's earlier attempt ([`Batch::close_unplanned`]).
pub(super) const DEVICE_GONE: &str = "DEVICE_GONE";

/// The error code of a push over FCM's payload limit, recorded `failed` and never sent.
pub(super) const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";

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
        Target::Audience(a) => vec![(format!("audience:{}", a.summary()), None)],
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

pub(super) fn row(
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
        advertising: e.push.is_advertising(),
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
