//! The state of one batch as it moves through the engine's phases, and the phases that need no
//! I/O: parse, plan, classify. Rows, dead tokens and hand-backs accumulate here; the engine
//! writes them in one statement each.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use pushq_model::{Envelope, Target};

use super::QueueMessage;
use crate::fcm::{FcmError, Sent};
use crate::outcome::{BatchCounts, BatchOutcome};
use crate::sink::Attempted;
use crate::store::{Claimed, Delivery, DeliveryStatus, KeyClaim, KeyOwner, Rejected};

/// One (push, target) to send.
pub(super) struct Job {
    /// Index of the queue message it came from.
    pub message: usize,
    /// Index into [`Batch::envelopes`].
    pub envelope: usize,
    /// What the log records as the target.
    pub target: String,
    /// The token to send to; `None` for a topic or condition push.
    pub token: Option<String>,
    /// The user the token belongs to, when the push named users.
    pub user_id: Option<String>,
}

/// What one send's answer means for its target.
enum Verdict {
    /// FCM accepted it.
    Sent(Sent),
    /// The token is dead: a final row, and the device is invalidated.
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
    pub dead_tokens: Vec<String>,
    /// Messages to hand back for redelivery.
    handed_back: BTreeSet<usize>,
    /// Per envelope: its FCM payload's size and limit when it is over the limit (measured once,
    /// not per target).
    oversized: Vec<Option<(usize, usize)>>,
    pub counts: BatchCounts,
    send_latency_ms: Vec<u64>,
}

impl<'m> Batch<'m> {
    /// Phase 1: each message becomes an envelope, or a rejected row.
    pub fn parse(messages: &'m [QueueMessage]) -> Batch<'m> {
        let mut envelopes = Vec::new();
        let mut rejected = Vec::new();
        let mut handed_back = BTreeSet::new();
        for (i, m) in messages.iter().enumerate() {
            match Envelope::parse(&m.body, &m.message_id, m.sent_at_ms) {
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
            counts,
            send_latency_ms: Vec::new(),
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

    /// Every user id the batch's pushes name, once each.
    pub fn user_ids(&self) -> Vec<String> {
        unique(
            self.envelopes
                .iter()
                .flat_map(|(_, e)| user_ids(e).iter().cloned()),
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
    /// without live devices becomes a `no_devices` row. `tokens` maps each user to their live
    /// tokens.
    pub fn plan(&mut self, tokens: &HashMap<String, Vec<String>>) {
        for (k, (i, e)) in self.envelopes.iter().enumerate() {
            let job = |target: String, token: Option<String>, user_id: Option<String>| Job {
                message: *i,
                envelope: k,
                target,
                token,
                user_id,
            };
            match e.push.target() {
                Target::Token(t) => self.jobs.push(job(t.clone(), Some(t.clone()), None)),
                Target::Tokens(ts) => self
                    .jobs
                    .extend(ts.iter().map(|t| job(t.clone(), Some(t.clone()), None))),
                Target::Topic(t) => self.jobs.push(job(format!("topic:{t}"), None, None)),
                Target::Condition(c) => self.jobs.push(job(format!("condition:{c}"), None, None)),
                Target::User(_) | Target::Users(_) => {
                    for u in user_ids(e) {
                        match tokens.get(u) {
                            Some(ts) => self.jobs.extend(
                                ts.iter()
                                    .map(|t| job(t.clone(), Some(t.clone()), Some(u.clone()))),
                            ),
                            None => self.unsent.push((
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
        for (message, r) in unsent {
            if keep(message, &r.push_id, &r.target) {
                self.counts.no_devices += 1;
                self.rows.push(r);
            }
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
            if seen.insert((key, j.target.as_str())) {
                let hash = hashes
                    .entry(j.envelope)
                    .or_insert_with(|| payload_hash(e))
                    .clone();
                claims.push(KeyClaim {
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
    pub fn keep_key_owners(&mut self, owners: &HashMap<(String, String), KeyOwner>) {
        let mut duplicates = Vec::new();
        let mut handed_back = Vec::new();
        let envelopes = &self.envelopes;
        let mut hashes: HashMap<usize, String> = HashMap::new();
        self.jobs.retain(|j| {
            let e = &envelopes[j.envelope].1;
            let Some(key) = e.push.idempotency_key().filter(|_| !e.dry_run) else {
                return true;
            };
            let Some(owner) = owners.get(&(key.to_owned(), j.target.clone())) else {
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

    /// Phase 6: each send's answer becomes a delivery row, a dead token, or a message handed
    /// back. `results` pairs a job's index with its send.
    pub fn classify(&mut self, results: Vec<(usize, Attempted)>) {
        let now = Utc::now();
        let verdicts: Vec<(usize, u32, Verdict)> = results
            .into_iter()
            .map(|(n, a)| (n, a.attempts, Verdict::from(a.result)))
            .collect();
        // A key of another Firebase project gets SENDER_ID_MISMATCH for every token: when that
        // is the answer to most sends, it is the key that is wrong, not the tokens.
        let answered = verdicts.iter().filter(|v| v.2.about_the_send()).count();
        let mismatched = verdicts
            .iter()
            .filter(|v| matches!(v.2, Verdict::SenderMismatch(_)))
            .count();
        let wrong_key = mismatched > 0 && mismatched * 2 > answered;
        if wrong_key {
            tracing::error!(
                mismatched,
                answered,
                "most sends answered SENDER_ID_MISMATCH: the FCM key belongs to another project; nothing is invalidated, the messages will be redelivered"
            );
        }
        for (n, attempts, verdict) in verdicts {
            let job = &self.jobs[n];
            let e = &self.envelopes[job.envelope].1;
            let verdict = match verdict {
                Verdict::SenderMismatch(error) if wrong_key => Verdict::HandBack(error),
                Verdict::SenderMismatch(error) => Verdict::Failed(error.code().to_owned()),
                // A topic or condition has no token to invalidate: the message failed.
                Verdict::InvalidToken(code) if job.token.is_none() => Verdict::Failed(code),
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
            match verdict {
                Verdict::Sent(_) if e.dry_run => {
                    self.counts.dry_runs += 1;
                    self.rows.push(r(DeliveryStatus::DryRun, None));
                }
                Verdict::Sent(sent) => {
                    self.counts.sent += 1;
                    let mut d = r(DeliveryStatus::Sent, None);
                    d.fcm_message_id = Some(fit(&sent.name, 255)).filter(|n| !n.is_empty());
                    d.sent_at = Some(now);
                    let latency = (now - d.enqueued_at).num_milliseconds().max(0) as u64;
                    self.send_latency_ms.push(latency);
                    self.rows.push(d);
                }
                Verdict::InvalidToken(code) => {
                    self.counts.invalid_tokens += 1;
                    self.dead_tokens.extend(job.token.clone());
                    self.rows.push(r(DeliveryStatus::InvalidToken, Some(code)));
                }
                Verdict::Failed(code) => {
                    self.counts.failed += 1;
                    self.rows.push(r(DeliveryStatus::Failed, Some(code)));
                }
                Verdict::SenderMismatch(_) => unreachable!("decided above"),
                // Transient, or the deployment's fault: not final, the message comes back.
                // A `retrying` row says so in the log until the final row replaces it.
                Verdict::HandBack(error) => {
                    self.counts.transient += 1;
                    if error.code() == crate::fcm::THROTTLED {
                        self.counts.throttled += 1;
                    }
                    self.rows
                        .push(r(DeliveryStatus::Retrying, Some(error.code().to_owned())));
                    tracing::warn!(push_id = %e.id, code = error.code(), "send failed, will retry on redelivery");
                    self.handed_back.insert(job.message);
                }
            }
        }
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
