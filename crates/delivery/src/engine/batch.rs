//! The state of one batch as it moves through the engine's phases, and the phases that need no
//! I/O: parse, plan, classify. Rows, dead tokens and hand-backs accumulate here; the engine
//! writes them in one statement each.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use pushq_model::{Envelope, Target};

use super::QueueMessage;
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

/// The fewest device sends of one app in a batch for its dead-token answers to be judged as a
/// whole: below it every dead-token answer is the token's own (final, the device invalidated), so
/// a lone dead token, or a user's few old devices, are never taken for a deployment fault.
pub const DEAD_TOKEN_MIN_SENDS: usize = 10;

/// What one send's answer means for its target.
enum Verdict {
    /// FCM accepted it.
    Sent(Sent),
    /// The token (or FID) is dead: a final row, and the device is invalidated.
    InvalidToken(String),
    /// FCM refused the message for good: a final row.
    Failed(String),
    /// `SENDER_ID_MISMATCH`: final (`failed`, nothing invalidated) for a lone target; when it
    /// is most of the batch's answers, the key is the wrong one and it is handed back.
    SenderMismatch(FcmError),
    /// Not final: a `retrying` row, and the message comes back.
    HandBack(FcmError),
}

impl From<Result<Sent, FcmError>> for Verdict {
    fn from(result: Result<Sent, FcmError>) -> Verdict {
        match result {
            Ok(sent) => Verdict::Sent(sent),
            Err(FcmError::InvalidToken { code, .. }) => Verdict::InvalidToken(code),
            Err(FcmError::Rejected { code, .. }) => Verdict::Failed(code),
            Err(e @ FcmError::SenderMismatch { .. }) => Verdict::SenderMismatch(e),
            // Transient trouble, the deployment's (403/404 without an FCM code, not FCM's
            // answer, THIRD_PARTY_AUTH_ERROR), credentials: never final.
            Err(other) => Verdict::HandBack(other),
        }
    }
}

impl Verdict {
    /// Whether FCM answered about the target or the message (not about the deployment or
    /// its own state): what a batch's share of `SENDER_ID_MISMATCH` is measured against.
    fn about_the_send(&self) -> bool {
        !matches!(self, Verdict::HandBack(_))
    }
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

    /// Phase 3: one job per (push, target), the first when the batch repeats one; a user
    /// without live devices becomes a `no_devices` row, each target of a `cancelled` push a
    /// `cancelled` row, and each target of a push whose time has passed an `expired` row. `devices` holds what each (app, user) resolved to.
    pub fn plan(&mut self, devices: &Resolution, expiry: Expiry, cancelled: &HashSet<String>) {
        let mut jobs = Vec::new();
        let mut unsent = Vec::new();
        let mut no_devices = Vec::new();
        let mut stale: Vec<(String, usize)> = Vec::new();
        for (k, (i, e)) in self.envelopes.iter().enumerate() {
            let not_sent = if cancelled.contains(&e.id) {
                Some(DeliveryStatus::Cancelled)
            } else {
                expiry.has_passed(e).then_some(DeliveryStatus::Expired)
            };
            let mut add =
                |target: String, device: Option<(DeviceKind, String)>, user_id: Option<String>| {
                    if let Some(status) = not_sent {
                        unsent.push((*i, row(e, target, user_id, status, None, 0)));
                    } else {
                        jobs.push(Job {
                            message: *i,
                            envelope: k,
                            target,
                            device,
                            user_id,
                        });
                    }
                };
            let token = |t: &String| (t.clone(), Some((DeviceKind::Token, t.clone())));
            let fid = |f: &String| {
                (
                    DeviceKind::Fid.target(f),
                    Some((DeviceKind::Fid, f.clone())),
                )
            };
            match e.push.target() {
                Target::Token(t) => {
                    let (target, device) = token(t);
                    add(target, device, None);
                }
                Target::Tokens(ts) => ts.iter().for_each(|t| {
                    let (target, device) = token(t);
                    add(target, device, None);
                }),
                Target::Fid(f) => {
                    let (target, device) = fid(f);
                    add(target, device, None);
                }
                Target::Fids(fs) => fs.iter().for_each(|f| {
                    let (target, device) = fid(f);
                    add(target, device, None);
                }),
                Target::Topic(t) => add(format!("topic:{t}"), None, None),
                Target::Condition(c) => add(format!("condition:{c}"), None, None),
                Target::User(_) | Target::Users(_) => {
                    let app = e.push.app();
                    for u in user_ids(e) {
                        let key = (app.to_owned(), u.clone());
                        if let Some(n) = devices.stale.get(&key) {
                            stale.push((app.to_owned(), *n));
                        }
                        match devices.live.get(&key) {
                            Some(ds) => ds.iter().for_each(|d| {
                                add(
                                    d.kind.target(&d.token),
                                    Some((d.kind, d.token.clone())),
                                    Some(u.clone()),
                                )
                            }),
                            None => no_devices.push((
                                *i,
                                row(
                                    e,
                                    format!("user:{u}"),
                                    Some(u.clone()),
                                    DeliveryStatus::NoDevices,
                                    None,
                                    0,
                                ),
                            )),
                        }
                    }
                }
            }
        }
        self.jobs.extend(jobs);
        self.unsent.extend(unsent);
        self.unsent.extend(no_devices);
        for (app, n) in stale {
            self.counts.stale_devices += n;
            self.app(&app).stale_devices += n;
        }
    }

    /// The pushes naming users that the queue may have delivered before (a later receive, a
    /// redrive): their earlier attempts may have left rows this one will not write.
    pub fn seen_user_pushes(&self) -> Vec<String> {
        unique(
            self.envelopes
                .iter()
                .filter(|(i, e)| self.messages[*i].maybe_seen_before() && !user_ids(e).is_empty())
                .map(|(_, e)| e.id.clone()),
        )
    }

    /// Phase 3b: the rows an earlier attempt left open (`open`: push id, target, user id) that
    /// this plan does not cover can no longer become final, so that `waitFor` would never end.
    /// A device row (the device was unregistered, went stale or moved to another user since) is
    /// closed `failed` with `DEVICE_GONE`, through the same claim as the rest; a `user:<id>`
    /// trace whose user now has devices is deleted once their rows are written.
    pub fn close_unplanned(&mut self, open: Vec<(String, String, String)>) {
        let planned: HashSet<(&str, &str)> = self
            .jobs
            .iter()
            .map(|j| (self.envelopes[j.envelope].1.id.as_str(), j.target.as_str()))
            .chain(
                self.unsent
                    .iter()
                    .map(|(_, r)| (r.push_id.as_str(), r.target.as_str())),
            )
            .collect();
        let unplanned: Vec<(String, String, String)> = open
            .into_iter()
            .filter(|(p, t, _)| !planned.contains(&(p.as_str(), t.as_str())))
            .collect();
        let by_id: HashMap<&str, (usize, &Envelope)> = self
            .envelopes
            .iter()
            .map(|(i, e)| (e.id.as_str(), (*i, e)))
            .collect();
        let mut closing = Vec::new();
        for (push_id, target, user_id) in unplanned {
            let Some(&(i, e)) = by_id.get(push_id.as_str()) else {
                continue;
            };
            if target.starts_with("user:") {
                self.superseded.push((push_id, target));
                continue;
            }
            closing.push((
                i,
                row(
                    e,
                    target,
                    Some(user_id),
                    DeliveryStatus::Failed,
                    Some(DEVICE_GONE.to_owned()),
                    0,
                ),
            ));
        }
        self.unsent.extend(closing);
    }

    /// Phase 4, first half: a `sending` row for every (push, target) the batch would write, to
    /// claim them with. A (push, target) the batch repeats (the same message delivered twice)
    /// is planned once.
    pub fn claims(&mut self) -> Vec<Delivery> {
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let envelopes = &self.envelopes;
        let before = self.jobs.len();
        self.jobs
            .retain(|j| seen.insert((envelopes[j.envelope].1.id.clone(), j.target.clone())));
        self.counts.skipped += before - self.jobs.len();
        let jobs = self.jobs.iter().map(|j| {
            row(
                &envelopes[j.envelope].1,
                j.target.clone(),
                j.user_id.clone(),
                DeliveryStatus::Sending,
                None,
                0,
            )
        });
        // A target the push names twice (`tokens: ["a", "a"]`) gets one row, counted once.
        self.unsent
            .retain(|(_, r)| seen.insert((r.push_id.clone(), r.target.clone())));
        let unsent = self.unsent.iter().map(|(_, r)| Delivery {
            status: DeliveryStatus::Sending,
            ..r.clone()
        });
        jobs.chain(unsent).collect()
    }

    /// Phase 4, second half: keeps the jobs and rows this batch won. One that is final already
    /// is skipped; one that another consumer holds is not sent, and its message comes back.
    pub fn keep_claimed(&mut self, claimed: &HashMap<(String, String), Claimed>) {
        let mut handed_back = Vec::new();
        let mut counts = (0, 0, 0);
        let mut keep = |message: usize, push_id: &str, target: &str| {
            match claimed.get(&(push_id.to_owned(), target.to_owned())) {
                Some(Claimed::Won { taken_over }) => {
                    counts.2 += usize::from(*taken_over);
                    true
                }
                Some(Claimed::Final) => {
                    counts.0 += 1;
                    false
                }
                // Held by another consumer (or, should the database not answer for it, unknown):
                // not sent here; the message comes back.
                Some(Claimed::Busy) | None => {
                    counts.1 += 1;
                    handed_back.push(message);
                    false
                }
            }
        };
        let envelopes = &self.envelopes;
        self.jobs
            .retain(|j| keep(j.message, &envelopes[j.envelope].1.id, &j.target));
        let unsent = std::mem::take(&mut self.unsent);
        let mut expired: Vec<String> = Vec::new();
        for (message, r) in unsent {
            if keep(message, &r.push_id, &r.target) {
                match r.status {
                    DeliveryStatus::Expired => expired.push(r.app.clone()),
                    DeliveryStatus::Cancelled => self.counts.cancelled += 1,
                    DeliveryStatus::Failed => self.counts.closed += 1,
                    _ => self.counts.no_devices += 1,
                }
                self.rows.push(r);
            }
        }
        self.counts.expired += expired.len();
        for app in expired {
            self.app(&app).expired += 1;
        }
        let (skipped, busy, taken_over) = counts;
        self.counts.skipped += skipped;
        self.counts.busy += busy;
        self.counts.taken_over += taken_over;
        if busy > 0 {
            tracing::info!(
                targets = busy,
                "targets claimed by another consumer; their messages will be redelivered"
            );
        }
        self.handed_back.extend(handed_back);
    }

    /// Phase 4b, first half: the (idempotency key, target) of each job whose push has a key,
    /// once each (the first job names it); dry runs neither take nor yield to a key.
    pub fn key_claims(&self) -> Vec<KeyClaim> {
        let mut seen = HashSet::new();
        let mut hashes: HashMap<usize, String> = HashMap::new();
        let mut claims = Vec::new();
        for j in &self.jobs {
            let e = &self.envelopes[j.envelope].1;
            let Some(key) = e.push.idempotency_key().filter(|_| !e.dry_run) else {
                continue;
            };
            if seen.insert((e.push.app(), key, j.target.as_str())) {
                let hash = hashes
                    .entry(j.envelope)
                    .or_insert_with(|| payload_hash(e))
                    .clone();
                claims.push(KeyClaim {
                    app: e.push.app().to_owned(),
                    key: key.to_owned(),
                    target: j.target.clone(),
                    push_id: e.id.clone(),
                    payload_hash: hash,
                });
            }
        }
        claims
    }

    /// Phase 4b, second half: a job whose (key, target) another push owns is not sent; its row
    /// says `duplicate`, with `IDEMPOTENCY_KEY_REUSED` when that push's payload differed.
    pub fn keep_key_owners(&mut self, owners: &HashMap<(String, String, String), KeyOwner>) {
        let mut duplicates = Vec::new();
        let mut handed_back = Vec::new();
        let envelopes = &self.envelopes;
        let mut hashes: HashMap<usize, String> = HashMap::new();
        self.jobs.retain(|j| {
            let e = &envelopes[j.envelope].1;
            let Some(key) = e.push.idempotency_key().filter(|_| !e.dry_run) else {
                return true;
            };
            let Some(owner) = owners.get(&(e.push.app().to_owned(), key.to_owned(), j.target.clone()))
            else {
                handed_back.push(j.message);
                return false;
            };
            if owner.push_id == e.id {
                return true;
            }
            let own = hashes.entry(j.envelope).or_insert_with(|| payload_hash(e));
            let reused = owner.payload_hash.as_ref().is_some_and(|h| h != own);
            if reused {
                tracing::warn!(push_id = %e.id, owner = %owner.push_id, idempotency_key = key,
                    "idempotency key reused with a different payload; not sent (recorded as a duplicate)");
            }
            duplicates.push(row(
                e,
                j.target.clone(),
                j.user_id.clone(),
                DeliveryStatus::Duplicate,
                reused.then(|| KEY_REUSED.to_owned()),
                0,
            ));
            false
        });
        self.counts.skipped += duplicates.len();
        self.counts.key_reused += duplicates.iter().filter(|d| d.error_code.is_some()).count();
        self.rows.extend(duplicates);
        self.handed_back.extend(handed_back);
    }

    /// The apps whose answers in this batch describe the deployment rather than the targets,
    /// judged over device sends only (a topic or condition send that worked says nothing about
    /// tokens): `SENDER_ID_MISMATCH` for most of them (the app's key is another project's), and
    /// dead-token answers for most of at least [`DEAD_TOKEN_MIN_SENDS`] of them (an APNs
    /// environment mismatch answers every iOS token so). Nothing of theirs is invalidated; their
    /// messages come back.
    fn deployment_wide(
        &self,
        verdicts: &[(usize, u32, Verdict)],
    ) -> (HashSet<String>, HashSet<String>) {
        #[derive(Default)]
        struct Answers {
            device_sends: usize,
            mismatched: usize,
            dead: usize,
        }
        let mut by_app: HashMap<&str, Answers> = HashMap::new();
        for (n, _, v) in verdicts
            .iter()
            .filter(|(n, ..)| self.jobs[*n].device.is_some())
        {
            let app = self.envelopes[self.jobs[*n].envelope].1.push.app();
            let answers = by_app.entry(app).or_default();
            answers.device_sends += usize::from(v.about_the_send());
            answers.mismatched += usize::from(matches!(v, Verdict::SenderMismatch(_)));
            answers.dead += usize::from(matches!(v, Verdict::InvalidToken(_)));
        }
        let (mut wrong_keys, mut dead_everywhere) = (HashSet::new(), HashSet::new());
        for (app, a) in by_app {
            if a.mismatched > 0 && a.mismatched * 2 > a.device_sends {
                tracing::error!(
                    app = %app,
                    mismatched = a.mismatched,
                    answered = a.device_sends,
                    "most sends answered SENDER_ID_MISMATCH: the app's FCM key belongs to another project; nothing is invalidated, the messages will be redelivered"
                );
                wrong_keys.insert(app.to_owned());
            }
            if a.device_sends >= DEAD_TOKEN_MIN_SENDS && a.dead * 2 > a.device_sends {
                tracing::error!(
                    app = %app,
                    dead = a.dead,
                    answered = a.device_sends,
                    "most device sends answered a dead token: taken for the deployment's fault (e.g. the APNs environment); nothing is invalidated, the messages will be redelivered"
                );
                dead_everywhere.insert(app.to_owned());
            }
        }
        (wrong_keys, dead_everywhere)
    }

    /// Phase 6: each send's answer becomes a delivery row, a dead token, or a message handed
    /// back. `results` pairs a job's index with its send.
    pub fn classify(&mut self, results: Vec<(usize, Attempted)>) {
        let now = Utc::now();
        let verdicts: Vec<(usize, u32, Verdict)> = results
            .into_iter()
            .map(|(n, a)| (n, a.attempts, Verdict::from(a.result)))
            .collect();
        let (wrong_keys, dead_everywhere) = self.deployment_wide(&verdicts);
        for (n, attempts, verdict) in verdicts {
            let job = &self.jobs[n];
            let e = &self.envelopes[job.envelope].1;
            let app = e.push.app().to_owned();
            let verdict = match verdict {
                Verdict::SenderMismatch(error) if wrong_keys.contains(&app) => {
                    Verdict::HandBack(error)
                }
                Verdict::SenderMismatch(error) => Verdict::Failed(error.code().to_owned()),
                // A topic or condition has no token to invalidate: the message failed.
                Verdict::InvalidToken(code) if job.device.is_none() => Verdict::Failed(code),
                Verdict::InvalidToken(code) if dead_everywhere.contains(&app) => {
                    Verdict::HandBack(FcmError::Deployment {
                        detail: format!(
                            "{code} for most of the batch's device sends: the deployment's, not the tokens'"
                        ),
                        code,
                    })
                }
                other => other,
            };
            self.counts.retried += attempts.saturating_sub(1) as usize;
            let r = |status, error: Option<String>| {
                row(
                    e,
                    job.target.clone(),
                    job.user_id.clone(),
                    status,
                    error,
                    attempts,
                )
            };
            let mut per_app = AppCounts::default();
            match verdict {
                Verdict::Sent(_) if e.dry_run => {
                    self.counts.dry_runs += 1;
                    self.rows.push(r(DeliveryStatus::DryRun, None));
                }
                Verdict::Sent(sent) => {
                    self.counts.sent += 1;
                    per_app.sent += 1;
                    let mut d = r(DeliveryStatus::Sent, None);
                    d.fcm_message_id = Some(fit(&sent.name, 255)).filter(|n| !n.is_empty());
                    d.sent_at = Some(now);
                    let latency = (now - d.enqueued_at).num_milliseconds().max(0) as u64;
                    self.send_latency_ms.push(latency);
                    per_app.send_latency_ms.push(latency);
                    self.rows.push(d);
                }
                Verdict::InvalidToken(code) => {
                    self.counts.invalid_tokens += 1;
                    per_app.invalid_tokens += 1;
                    if let Some((_, id)) = &job.device {
                        self.dead_tokens.push((app.clone(), id.clone()));
                    }
                    self.rows.push(r(DeliveryStatus::InvalidToken, Some(code)));
                }
                Verdict::Failed(code) => {
                    self.counts.failed += 1;
                    per_app.failed += 1;
                    self.rows.push(r(DeliveryStatus::Failed, Some(code)));
                }
                Verdict::SenderMismatch(_) => unreachable!("decided above"),
                // Transient, or the deployment's fault: not final, the message comes back.
                // A `retrying` row says so in the log until the final row replaces it.
                Verdict::HandBack(error) => {
                    self.counts.transient += 1;
                    per_app.handed_back += 1;
                    if error.code() == crate::fcm::THROTTLED {
                        self.counts.throttled += 1;
                        per_app.throttled += 1;
                    }
                    self.rows
                        .push(r(DeliveryStatus::Retrying, Some(error.code().to_owned())));
                    match &error {
                        FcmError::UnknownApp { .. } => {
                            tracing::error!(push_id = %e.id, app = %app, code = error.code(), "{error}; the message will be redelivered (and reach the DLQ if the key does not come)")
                        }
                        _ => {
                            tracing::warn!(push_id = %e.id, app = %app, code = error.code(), "send failed, will retry on redelivery")
                        }
                    }
                    self.handed_back.insert(job.message);
                }
            }
            self.app(&app).add(per_app);
        }
    }

    /// The (push, target) of each row FCM did not accept (all but `sent` and `dry_run`): what
    /// is released when the log write fails after the sends.
    pub fn unaccepted(&self) -> Vec<(&str, &str)> {
        self.rows
            .iter()
            .filter(|r| !matches!(r.status, DeliveryStatus::Sent | DeliveryStatus::DryRun))
            .map(|r| (r.push_id.as_str(), r.target.as_str()))
            .collect()
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

/// The error code of a `duplicate` row whose push reused another push's idempotency key with a
/// different payload.
pub(super) const KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";

/// A hash of the FCM payload a push sends (its target aside), with object keys in sorted
/// order: two pushes with the same content hash the same however their producers ordered it.
fn payload_hash(e: &Envelope) -> String {
    use serde_json::{Map, Value};
    use sha2::{Digest, Sha256};
    fn object(hasher: &mut Sha256, map: &Map<String, Value>) {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        hasher.update(b"{");
        for (k, v) in entries {
            hasher.update(Value::from(k.as_str()).to_string().as_bytes());
            hasher.update(b":");
            value(hasher, v);
            hasher.update(b",");
        }
        hasher.update(b"}");
    }
    fn value(hasher: &mut Sha256, v: &Value) {
        match v {
            Value::Object(map) => object(hasher, map),
            Value::Array(items) => {
                hasher.update(b"[");
                for item in items {
                    value(hasher, item);
                    hasher.update(b",");
                }
                hasher.update(b"]");
            }
            scalar => hasher.update(scalar.to_string().as_bytes()),
        }
    }
    let mut hasher = Sha256::new();
    object(&mut hasher, e.push.fcm_payload());
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
