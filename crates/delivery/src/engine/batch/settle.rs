//! The end of a batch: what the engine writes and reports, derived once from the targets'
//! states ([`Batch::settle`]).

use super::*;
use crate::outcome::{AppCounts, BatchCounts, BatchOutcome};

/// What a batch writes to the database and reports, derived from its targets' states.
pub(in crate::engine) struct Settled {
    /// The delivery rows: every final target's, and a `retrying` row for each target handed
    /// back with a reason to record.
    pub rows: Vec<Delivery>,
    /// The messages that were not envelopes.
    pub rejected: Vec<Rejected>,
    /// (app, token or FID) of each device FCM said is dead.
    pub dead_tokens: Vec<(String, String)>,
    /// `user:<id>` traces superseded by their user's device rows.
    pub superseded: Vec<(String, String)>,
    /// What the engine made of the batch.
    pub outcome: BatchOutcome,
}

impl Settled {
    /// The (push, target) of each row FCM did not accept (all but `sent` and `dry_run`): what
    /// is released when the log write fails after the sends.
    pub fn unaccepted(&self) -> Vec<(&str, &str)> {
        self.rows
            .iter()
            .filter(|r| !matches!(r.status, DeliveryStatus::Sent | DeliveryStatus::DryRun))
            .map(|r| (r.push_id.as_str(), r.target.as_str()))
            .collect()
    }
}

impl<'m> Batch<'m> {
    /// The row a target leaves in the log, if any (a final target's is moved, not copied).
    fn settled_row(&self, t: TargetJob) -> Option<Delivery> {
        match t.state {
            State::Final(row) => Some(row),
            State::HandedBack(HandBack::NoCredentials) => Some(self.row(
                &t,
                DeliveryStatus::Retrying,
                Some(crate::sink::NO_CREDENTIALS.to_owned()),
                0,
            )),
            State::HandedBack(HandBack::Transient { ref code, attempts }) => {
                Some(self.row(&t, DeliveryStatus::Retrying, Some(code.clone()), attempts))
            }
            _ => None,
        }
    }

    /// The messages that come back for redelivery, in batch order: those with a target handed
    /// back, and (should a phase ever leave one unfinished) a target neither final nor skipped,
    /// so that nothing is deleted from the queue unrecorded.
    fn handed_back(&self) -> BTreeSet<usize> {
        let targets = self
            .targets
            .iter()
            .filter(|t| !matches!(t.state, State::Final(_) | State::Skipped(_)))
            .map(|t| self.pushes[t.push].message);
        let without_key = self.pushes.iter().filter(|p| !p.has_key).map(|p| p.message);
        self.newer
            .iter()
            .copied()
            .chain(targets)
            .chain(without_key)
            .collect()
    }

    /// The batch's end: rows, dead devices, hand-backs and counts, each derived from the
    /// targets' states.
    pub fn settle(mut self) -> Settled {
        let dead_tokens = self
            .targets
            .iter()
            .filter_map(|t| match (&t.state, &t.device) {
                (State::Final(r), Some((_, id))) if r.status == DeliveryStatus::InvalidToken => {
                    Some((r.app.clone(), id.clone()))
                }
                _ => None,
            })
            .collect();
        let (counts, apps) = self.counts();
        let outcome = BatchOutcome {
            failed_message_ids: self
                .handed_back()
                .iter()
                .map(|&i| self.messages[i].message_id.clone())
                .collect(),
            send_latency_ms: apps
                .values()
                .flat_map(|a| a.send_latency_ms.clone())
                .collect(),
            counts,
            apps,
            push_ids: unique(self.sendable().map(|(_, e)| e.id.clone())),
        };
        let targets = std::mem::take(&mut self.targets);
        let rows: Vec<Delivery> = targets
            .into_iter()
            .filter_map(|t| self.settled_row(t))
            .collect();
        Settled {
            rows,
            rejected: self.rejected,
            dead_tokens,
            superseded: self
                .superseded
                .into_iter()
                .map(|k| (k.push_id, k.target))
                .collect(),
            outcome,
        }
    }

    /// The batch's counts, and those per app, from its pushes and its targets' states.
    fn counts(&self) -> (BatchCounts, BTreeMap<String, AppCounts>) {
        let mut c = BatchCounts {
            messages: self.messages.len(),
            rejected: self.rejected.len(),
            newer: self.newer.len(),
            scheduled_fired: self.scheduled_push_ids().len(),
            ..Default::default()
        };
        let mut apps: BTreeMap<String, AppCounts> = BTreeMap::new();
        for push in self.pushes.iter().filter(|p| !p.has_key) {
            c.no_credentials += 1;
            apps.entry(push.envelope.push.app().to_owned())
                .or_default()
                .handed_back += 1;
        }
        for (app, n) in &self.stale_devices {
            c.stale_devices += n;
            apps.entry(app.clone()).or_default().stale_devices += n;
        }
        for t in &self.targets {
            c.taken_over += usize::from(t.taken_over);
            let app = || self.envelope(t).push.app().to_owned();
            match &t.state {
                State::Final(r) if per_app(r) => {
                    count_final(&mut c, apps.entry(app()).or_default(), r)
                }
                State::Final(r) => count_final(&mut c, &mut AppCounts::default(), r),
                State::HandedBack(HandBack::Transient { code, attempts }) => {
                    let app = apps.entry(app()).or_default();
                    c.retried += attempts.saturating_sub(1) as usize;
                    c.transient += 1;
                    app.handed_back += 1;
                    if code == crate::fcm::THROTTLED {
                        c.throttled += 1;
                        app.throttled += 1;
                    }
                }
                State::HandedBack(HandBack::ClaimedElsewhere) => c.busy += 1,
                State::Skipped(Skip::Repeated) => c.repeated += 1,
                State::Skipped(Skip::AlreadyFinal) => c.already_final += 1,
                _ => {}
            }
        }
        c.skipped = c.repeated + c.already_final + c.duplicates;
        if c.busy > 0 {
            tracing::info!(
                targets = c.busy,
                "targets claimed by another consumer; their messages will be redelivered"
            );
        }
        (c, apps)
    }
}

/// Whether a final row is counted in its app's metrics line: what FCM answered, what expired;
/// not a user without devices, a cancelled push, a duplicate or a row closed `DEVICE_GONE`.
fn per_app(r: &Delivery) -> bool {
    !matches!(
        r.status,
        DeliveryStatus::NoDevices | DeliveryStatus::Cancelled | DeliveryStatus::Duplicate
    ) && r.error_code.as_deref() != Some(DEVICE_GONE)
}

/// Counts a final target's row, in the batch's counts and its app's.
fn count_final(c: &mut BatchCounts, app: &mut AppCounts, r: &Delivery) {
    c.retried += r.attempts.saturating_sub(1) as usize;
    match r.status {
        DeliveryStatus::Sent => {
            c.sent += 1;
            app.sent += 1;
            let sent_at = r.sent_at.unwrap_or(r.enqueued_at);
            let latency = (sent_at - r.enqueued_at).num_milliseconds().max(0) as u64;
            app.send_latency_ms.push(latency);
        }
        DeliveryStatus::DryRun => c.dry_runs += 1,
        DeliveryStatus::InvalidToken => {
            c.invalid_tokens += 1;
            app.invalid_tokens += 1;
        }
        DeliveryStatus::Failed if r.error_code.as_deref() == Some(DEVICE_GONE) => c.closed += 1,
        DeliveryStatus::Failed => {
            c.failed += 1;
            app.failed += 1;
        }
        DeliveryStatus::NoDevices => c.no_devices += 1,
        DeliveryStatus::Expired => {
            c.expired += 1;
            app.expired += 1;
        }
        DeliveryStatus::Cancelled => c.cancelled += 1,
        DeliveryStatus::Suppressed | DeliveryStatus::Deferred => {
            let metric = if r.status == DeliveryStatus::Suppressed {
                c.suppressed += 1;
                "Suppressed"
            } else {
                c.deferred += 1;
                "Deferred"
            };
            let reason = r.error_code.clone().unwrap_or_default();
            *app.held_back.entry((metric, reason)).or_default() += 1;
        }
        DeliveryStatus::Duplicate => {
            c.duplicates += 1;
            c.key_reused += usize::from(r.error_code.is_some());
        }
        // Never a final row's (and no reason to fail a batch whose sends are done).
        DeliveryStatus::Sending | DeliveryStatus::Retrying => {}
    }
}
