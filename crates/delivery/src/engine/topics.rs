//! Topic changes in a batch: each (app, topic, user or token) is brought in line with the
//! database. Phases, after the batch's pushes:
//! 1. a change for an app without a key is handed back whole;
//! 2. one query resolves the changes' users to their devices (registration tokens: FCM's topic
//!    API takes no FIDs);
//! 3. one query says which of the (app, topic, token)s the database wants subscribed
//!    ([`Store::wanted_memberships`]): each is subscribed, the others unsubscribed;
//! 4. the calls go to the sink, each (app, topic, token) once, at most
//!    [`TOPIC_CALLS_AT_ONCE`] at once (firebase-admin's own bound);
//! 5. one query reads the subscriptions again: a call the database no longer agrees with (another
//!    consumer made a later change for the same device meanwhile) is made again;
//! 6. a dead token is invalidated (unless most of an app's calls in the batch said so: a
//!    wrong key or endpoint, handed back); a change with a call that failed for the deployment
//!    or transiently, or that the database no longer agrees with, is handed back whole, to be
//!    made again (the calls are idempotent).

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use pushq_model::topics::{Subscriber, TopicChange};

use super::batch::DEAD_TOKEN_MIN_SENDS;
use super::{Engine, QueueMessage};
use crate::outcome::BatchOutcome;
use crate::sink::{SendError, TopicAttempted, TopicCall};
use crate::store::{DeviceKind, Membership, StoreError};

/// Most topic calls in flight at once, as firebase-admin's `runWithConcurrencyLimit(tasks, 100)`.
pub const TOPIC_CALLS_AT_ONCE: usize = 100;

/// What a call's answer makes of its change.
enum Verdict {
    Done,
    DeadToken,
    Failed,
    HandBack,
}

impl Engine {
    /// The batch's topic changes (see the module docs); adds what became of them to `outcome`.
    pub(super) async fn manage_topics(
        &self,
        messages: &[QueueMessage],
        changes: Vec<(usize, TopicChange)>,
        deadline: Instant,
        outcome: &mut BatchOutcome,
    ) -> Result<(), StoreError> {
        outcome.counts.topic_changes += changes.len();
        let changes = self.hand_back_keyless(messages, changes, outcome);
        let tokens = self.topic_tokens(&changes, deadline).await?;
        let candidates: Vec<Membership> = unique(tokens.iter().map(|(_, m)| m.clone()));
        if candidates.is_empty() {
            // Users without token devices: nothing to call.
            return Ok(());
        }
        let read = || {
            self.timed(
                "reading topic subscriptions",
                Some(deadline),
                self.store.wanted_memberships(&candidates),
            )
        };
        let wanted = read().await?;
        let answers = self.topic_calls(&candidates, &wanted, deadline).await;
        let (dead, mut handed_back) = tally(&candidates, &answers, outcome);
        // Read again once the calls are answered: a later change for the same device may have
        // been made meanwhile by another consumer, whose call FCM took before this one's. A
        // call the database no longer agrees with comes back, to be made as it now says.
        let now_wanted = read().await?;
        handed_back.extend(
            candidates
                .iter()
                .filter(|c| wanted.contains(*c) != now_wanted.contains(*c)),
        );
        // A change comes back whole when any of its calls does.
        let back: HashSet<usize> = tokens
            .iter()
            .filter(|(_, call)| handed_back.contains(call))
            .map(|(change, _)| *change)
            .collect();
        for (i, (m, _)) in changes.iter().enumerate() {
            if back.contains(&i) {
                outcome
                    .failed_message_ids
                    .push(messages[*m].message_id.clone());
            }
        }
        self.end_dead_tokens(&dead, deadline).await
    }

    /// Invalidates the dead tokens' devices (one statement) and ends their own subscriptions
    /// (one statement each, also for a token never registered as a device; rare).
    async fn end_dead_tokens(
        &self,
        dead: &[(String, String)],
        deadline: Instant,
    ) -> Result<(), StoreError> {
        if dead.is_empty() {
            return Ok(());
        }
        self.timed(
            "invalidating dead tokens",
            Some(deadline),
            self.store.invalidate_tokens(dead),
        )
        .await?;
        for (app, token) in dead {
            self.timed(
                "ending a dead token's subscriptions",
                Some(deadline),
                self.store.end_token_subscriptions(app, token),
            )
            .await?;
        }
        Ok(())
    }

    /// Hands back the changes for apps without a key (as a push for one is); the others.
    fn hand_back_keyless(
        &self,
        messages: &[QueueMessage],
        changes: Vec<(usize, TopicChange)>,
        outcome: &mut BatchOutcome,
    ) -> Vec<(usize, TopicChange)> {
        let (changes, keyless): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|(_, c)| self.sink.has_app(&c.app));
        for (m, change) in &keyless {
            tracing::error!(change_id = %change.id, app = %change.app, code = crate::sink::NO_CREDENTIALS,
                "the topic change's app has no FCM credentials; the message will be redelivered");
            outcome
                .failed_message_ids
                .push(messages[*m].message_id.clone());
        }
        outcome.counts.no_credentials += keyless.len();
        changes
    }

    /// Each change's (app, topic, token)s, by the change's index: its token, or its user's
    /// registration tokens (one query for every user of the batch's changes).
    async fn topic_tokens(
        &self,
        changes: &[(usize, TopicChange)],
        deadline: Instant,
    ) -> Result<Vec<(usize, Membership)>, StoreError> {
        let users: Vec<(String, String)> =
            unique(changes.iter().filter_map(|(_, c)| match &c.subscriber {
                Subscriber::User(u) => Some((c.app.clone(), u.clone())),
                Subscriber::Token(_) => None,
            }));
        let devices = match users.is_empty() {
            true => Default::default(),
            false => {
                self.timed(
                    "resolving users' devices",
                    Some(deadline),
                    self.store.resolve_devices(&users, None),
                )
                .await?
            }
        };
        let mut tokens = Vec::new();
        for (i, (_, c)) in changes.iter().enumerate() {
            let membership = |token: &str| (i, (c.app.clone(), c.topic.clone(), token.to_owned()));
            match &c.subscriber {
                Subscriber::Token(t) => tokens.push(membership(t)),
                Subscriber::User(u) => {
                    let live = devices.live.get(&(c.app.clone(), u.clone()));
                    tokens.extend(
                        live.into_iter()
                            .flatten()
                            .filter(|d| d.kind == DeviceKind::Token)
                            .map(|d| membership(&d.token)),
                    );
                }
            }
        }
        Ok(tokens)
    }

    /// Phase 4: one call per (app, topic, token), subscribe when the database wants it, else
    /// unsubscribe; answers in the order of `calls`.
    async fn topic_calls(
        &self,
        calls: &[Membership],
        wanted: &HashSet<Membership>,
        deadline: Instant,
    ) -> Vec<TopicAttempted> {
        let sink = self.sink.as_ref();
        // By index: futures over borrowed calls must name one lifetime to stay `Send`.
        let mut answers: Vec<(usize, TopicAttempted)> = stream::iter(0..calls.len())
            .map(|n| {
                let (app, topic, token) = &calls[n];
                let subscribe = wanted.contains(&calls[n]);
                let call = TopicCall {
                    token,
                    topic,
                    subscribe,
                };
                let answer = sink.manage_topic(app, call, deadline);
                async move { (n, answer.await) }
            })
            .buffer_unordered(TOPIC_CALLS_AT_ONCE)
            .collect()
            .await;
        answers.sort_by_key(|(n, _)| *n);
        answers.into_iter().map(|(_, a)| a).collect()
    }
}

/// Counts each call's verdict into `outcome`: the dead tokens to invalidate, and the calls whose
/// changes come back.
fn tally<'c>(
    calls: &'c [Membership],
    answers: &[TopicAttempted],
    outcome: &mut BatchOutcome,
) -> (Vec<(String, String)>, HashSet<&'c Membership>) {
    let (mut dead, mut handed_back) = (Vec::new(), HashSet::new());
    for ((call, verdict), attempted) in calls.iter().zip(judge(calls, answers)).zip(answers) {
        let (app, topic, token) = call;
        outcome.counts.retried += attempted.attempts.saturating_sub(1) as usize;
        match verdict {
            Verdict::Done => outcome.counts.topic_calls += 1,
            Verdict::DeadToken => {
                outcome.counts.topic_failed += 1;
                outcome.counts.invalid_tokens += 1;
                dead.push((app.clone(), token.clone()));
            }
            Verdict::Failed | Verdict::HandBack => {
                let error = attempted.result.as_ref().err();
                tracing::warn!(app = %app, topic = %topic, code = error.map_or("", SendError::code),
                    error = ?error.map(ToString::to_string), "topic call failed");
                if matches!(verdict, Verdict::Failed) {
                    outcome.counts.topic_failed += 1;
                } else {
                    handed_back.insert(call);
                }
            }
        }
    }
    (dead, handed_back)
}

/// Each call's verdict. Dead-token answers for most of an app's calls in the batch (at least
/// [`DEAD_TOKEN_MIN_SENDS`] of them) are not believed, as for sends: a wrong key or endpoint
/// answers so for every token; they are handed back and nothing is invalidated.
fn judge(calls: &[Membership], answers: &[TopicAttempted]) -> Vec<Verdict> {
    let mut per_app: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((app, _, _), a) in calls.iter().zip(answers) {
        let entry = per_app.entry(app).or_default();
        entry.0 += 1;
        entry.1 += usize::from(matches!(a.result, Err(SendError::InvalidToken { .. })));
    }
    let unbelieved = |app: &str| {
        let (calls, dead) = per_app[app];
        calls >= DEAD_TOKEN_MIN_SENDS && dead * 2 > calls
    };
    calls
        .iter()
        .zip(answers)
        .map(|((app, _, _), a)| match &a.result {
            Ok(()) => Verdict::Done,
            Err(SendError::InvalidToken { .. }) if unbelieved(app) => Verdict::HandBack,
            Err(SendError::InvalidToken { .. }) => Verdict::DeadToken,
            Err(SendError::Rejected { .. }) => Verdict::Failed,
            Err(_) => Verdict::HandBack,
        })
        .collect()
}

fn unique<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_unstable();
    v.dedup();
    v
}
