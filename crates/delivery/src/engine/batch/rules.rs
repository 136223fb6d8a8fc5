//! Phase 3c, the recipient rules: each planned send to a user's device is kept, or recorded
//! `suppressed`, or `deferred` (its push enqueued again for the user at the window's end, by
//! the engine once the claim is won: [`Batch::deferrals`]).

use super::*;
use crate::rules::{PushFacts, RecipientRules, Verdict, NO_CONSENT};
use crate::store::RulesData;

/// A deferral to make: a push again, for these users, due then.
pub(in crate::engine) struct Deferral {
    /// Index into [`Batch::pushes`].
    pub push: usize,
    pub users: Vec<String>,
    pub until_ms: i64,
    /// The targets whose `deferred` rows this deferral backs.
    pub targets: Vec<usize>,
}

impl<'m> Batch<'m> {
    /// Phase 3c: the rules' verdict for each (push, user) of the planned sends, once each, in
    /// plan order; a push that passes a user counts against that user's caps for the pushes
    /// after it in the batch. An advertising push to a target that names no user (a producer
    /// that is not pushq's) is `suppressed` `NO_CONSENT`: no one's consent can be checked.
    pub fn apply_rules(&mut self, rules: &RecipientRules, data: &RulesData, now: DateTime<Utc>) {
        let mut verdicts: HashMap<(String, String), Verdict> = HashMap::new();
        let mut counted: HashMap<(String, String, usize), u64> = HashMap::new();
        for n in 0..self.targets.len() {
            let t = &self.targets[n];
            if !matches!(t.state, State::ToSend) {
                continue;
            }
            let e = self.envelope(t);
            let facts = PushFacts {
                advertising: e.push.is_advertising(),
                category: e.push.category(),
            };
            let Some(user) = t.user_id.clone() else {
                if facts.advertising {
                    self.targets[n].state =
                        State::ToRecord(DeliveryStatus::Suppressed, Some(NO_CONSENT.to_owned()));
                }
                continue;
            };
            let app = e.push.app().to_owned();
            let verdict = verdicts
                .entry((e.id.clone(), user.clone()))
                .or_insert_with(|| {
                    let key = (app.clone(), user.clone());
                    let opted_out = data.opted_out.get(&key).map_or(&[][..], Vec::as_slice);
                    let count = |cap: usize| {
                        let k = (app.clone(), user.clone(), cap);
                        data.counts.get(&k).copied().unwrap_or(0)
                            + counted.get(&k).copied().unwrap_or(0)
                    };
                    let verdict =
                        rules.judge(facts, data.preferences.get(&key), opted_out, count, now);
                    if verdict == Verdict::Send {
                        for cap in rules.caps_of(facts) {
                            *counted.entry((app.clone(), user.clone(), cap)).or_default() += 1;
                        }
                    }
                    verdict
                })
                .clone();
            let expires = e.push.expires_at_ms();
            self.targets[n].state = match verdict {
                Verdict::Send => State::ToSend,
                Verdict::Suppress(code) => {
                    State::ToRecord(DeliveryStatus::Suppressed, Some(code.to_owned()))
                }
                // `expiresAt` wins: a push that would expire before the window ends is expired.
                Verdict::Defer { until_ms, .. } if expires.is_some_and(|x| x <= until_ms) => {
                    State::ToRecord(DeliveryStatus::Expired, None)
                }
                Verdict::Defer { until_ms, reason } => {
                    self.deferred_until.insert(n, until_ms);
                    State::ToRecord(DeliveryStatus::Deferred, Some(reason.to_owned()))
                }
            };
        }
    }

    /// After the claim: the deferrals backing the `deferred` rows this batch won, one per
    /// (push, time), with the users each covers.
    pub fn deferrals(&self) -> Vec<Deferral> {
        let mut by: BTreeMap<(usize, i64), Deferral> = BTreeMap::new();
        for (&n, &until_ms) in &self.deferred_until {
            let t = &self.targets[n];
            let won = matches!(&t.state, State::Final(r) if r.status == DeliveryStatus::Deferred);
            let Some(user) = t.user_id.clone().filter(|_| won) else {
                continue;
            };
            let d = by.entry((t.push, until_ms)).or_insert_with(|| Deferral {
                push: t.push,
                users: Vec::new(),
                until_ms,
                targets: Vec::new(),
            });
            if !d.users.contains(&user) {
                d.users.push(user);
            }
            d.targets.push(n);
        }
        by.into_values().collect()
    }

    /// A deferral that could not be enqueued: its targets come back (recorded `retrying` with
    /// `code`), to be judged again when their message is redelivered.
    pub fn defer_failed(&mut self, targets: &[usize], code: &str) {
        for &n in targets {
            self.targets[n].state = State::HandedBack(HandBack::Transient {
                code: code.to_owned(),
                attempts: 0,
            });
        }
    }
}
