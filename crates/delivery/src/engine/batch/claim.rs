//! Phase 4, claiming: the rows a batch claims its targets with, what it keeps of the answer, and
//! the same for idempotency keys.

use super::*;
use crate::store::{Claimed, KeyClaim, KeyOwner};

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

impl<'m> Batch<'m> {
    /// Phase 4, first half: a `sending` row for every planned (push, target), to claim them
    /// with. This is the batch's one deduplication point: a (push, target) the batch names again
    /// (the same message delivered twice, `tokens: ["a", "a"]`) is [`Skip::Repeated`]. Targets to
    /// send come first, whatever the order of their messages: when two copies of one push
    /// disagree (one expired by its own `enqueuedAt`, say), the one that sends is kept.
    pub fn claims(&mut self) -> Vec<Delivery> {
        let mut seen: HashSet<TargetKey> = HashSet::new();
        let mut rows = Vec::new();
        let to_send =
            (0..self.targets.len()).filter(|&n| matches!(self.targets[n].state, State::ToSend));
        let to_record = (0..self.targets.len())
            .filter(|&n| matches!(self.targets[n].state, State::ToRecord(..)));
        let order: Vec<usize> = to_send.chain(to_record).collect();
        for n in order {
            let t = &self.targets[n];
            if !seen.insert(t.key.clone()) {
                self.targets[n].state = State::Skipped(Skip::Repeated);
                continue;
            }
            rows.push(self.row(t, DeliveryStatus::Sending, None, 0));
        }
        rows
    }

    /// Phase 4, second half: a planned target this batch won is [`State::Claimed`] (to send)
    /// or [`State::Final`] (to record); one final in the log already is
    /// [`Skip::AlreadyFinal`]; one another consumer holds is not sent, and its message comes
    /// back.
    pub fn keep_claimed(&mut self, claimed: &HashMap<TargetKey, Claimed>) {
        for n in 0..self.targets.len() {
            let t = &self.targets[n];
            if !matches!(t.state, State::ToSend | State::ToRecord(..)) {
                continue;
            }
            let (next, taken_over) = match claimed.get(&t.key) {
                Some(Claimed::Won { taken_over }) => match &t.state {
                    State::ToRecord(status, error) => (
                        State::Final(self.row(t, *status, error.clone(), 0)),
                        *taken_over,
                    ),
                    _ => (State::Claimed, *taken_over),
                },
                Some(Claimed::Final) => (State::Skipped(Skip::AlreadyFinal), false),
                // Held by another consumer (or, should the database not answer for it,
                // unknown): not sent here; the message comes back.
                Some(Claimed::Busy) | None => {
                    (State::HandedBack(HandBack::ClaimedElsewhere), false)
                }
            };
            let t = &mut self.targets[n];
            t.state = next;
            t.taken_over = taken_over;
        }
    }

    /// The idempotency key of a claimed target whose push has one; dry runs neither take nor
    /// yield to a key.
    fn idempotency_key(&self, t: &TargetJob) -> Option<&str> {
        let e = self.envelope(t);
        match t.state {
            State::Claimed if !e.dry_run => e.push.idempotency_key(),
            _ => None,
        }
    }

    /// Phase 4b, first half: the (idempotency key, target) of each claimed target whose push
    /// has a key, once each (the first target names it).
    pub fn key_claims(&self) -> Vec<KeyClaim> {
        let mut seen = HashSet::new();
        let mut hashes: HashMap<usize, String> = HashMap::new();
        let mut claims = Vec::new();
        for t in &self.targets {
            let Some(key) = self.idempotency_key(t) else {
                continue;
            };
            let e = self.envelope(t);
            if seen.insert((e.push.app(), key, t.key.target.as_str())) {
                let hash = hashes.entry(t.push).or_insert_with(|| payload_hash(e));
                claims.push(KeyClaim {
                    app: e.push.app().to_owned(),
                    key: key.to_owned(),
                    target: t.key.target.clone(),
                    push_id: e.id.clone(),
                    payload_hash: hash.clone(),
                });
            }
        }
        claims
    }

    /// Phase 4b, second half: a target whose (key, target) another push owns is not sent; it
    /// is final as `duplicate`, with `IDEMPOTENCY_KEY_REUSED` when that push's payload
    /// differed.
    pub fn keep_key_owners(&mut self, owners: &HashMap<(String, String, String), KeyOwner>) {
        let mut hashes: HashMap<usize, String> = HashMap::new();
        for n in 0..self.targets.len() {
            let t = &self.targets[n];
            let Some(key) = self.idempotency_key(t) else {
                continue;
            };
            let e = self.envelope(t);
            let owner = owners.get(&(
                e.push.app().to_owned(),
                key.to_owned(),
                t.key.target.clone(),
            ));
            let next = match owner {
                None => State::HandedBack(HandBack::KeyUnanswered),
                Some(owner) if owner.push_id == e.id => continue,
                Some(owner) => {
                    let own = hashes.entry(t.push).or_insert_with(|| payload_hash(e));
                    let reused = owner.payload_hash.as_ref().is_some_and(|h| h != own);
                    if reused {
                        tracing::warn!(push_id = %e.id, owner = %owner.push_id, idempotency_key = key,
                            "idempotency key reused with a different payload; not sent (recorded as a duplicate)");
                    }
                    let error = reused.then(|| KEY_REUSED.to_owned());
                    State::Final(self.row(t, DeliveryStatus::Duplicate, error, 0))
                }
            };
            self.targets[n].state = next;
        }
    }
}
