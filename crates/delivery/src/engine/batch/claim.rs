//! Phase 4, claiming: the rows a batch claims its targets with, what it keeps of the answer, and
//! the same for idempotency keys.

use super::*;

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
}
