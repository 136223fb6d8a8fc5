//! Phases 5 and 6, answering and classifying: each send's answer becomes a final row or a
//! hand-back, judged with the batch's other answers (a wrong key, dead tokens everywhere).

use super::*;

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
    SenderMismatch(SendError),
    /// Not final: a `retrying` row, and the message comes back.
    HandBack(SendError),
}

impl From<&Result<Sent, SendError>> for Verdict {
    fn from(result: &Result<Sent, SendError>) -> Verdict {
        match result.clone() {
            Ok(sent) => Verdict::Sent(sent),
            Err(SendError::InvalidToken { code, .. }) => Verdict::InvalidToken(code),
            Err(SendError::Rejected { code, .. }) => Verdict::Failed(code),
            Err(e @ SendError::SenderMismatch { .. }) => Verdict::SenderMismatch(e),
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

/// The apps whose answers in a batch describe the deployment rather than the targets.
#[derive(Default)]
struct DeploymentFaults {
    /// Most device sends answered `SENDER_ID_MISMATCH`: the app's key is another project's.
    wrong_keys: HashSet<String>,
    /// Most of at least [`DEAD_TOKEN_MIN_SENDS`] device sends answered a dead token (an APNs
    /// environment mismatch answers every iOS token so).
    dead_everywhere: HashSet<String>,
}

impl<'m> Batch<'m> {
    /// The targets to send: claimed by this batch, by index.
    pub fn to_send(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.targets.len()).filter(|&n| matches!(self.targets[n].state, State::Claimed))
    }

    /// Phase 5's end: each send's answer, paired with its target's index.
    pub fn answered(&mut self, results: Vec<(usize, Attempted)>) {
        for (n, attempted) in results {
            self.targets[n].state = State::Answered(attempted);
        }
    }

    /// The apps whose answers in this batch describe the deployment rather than the targets,
    /// judged over device sends only (a topic or condition send that worked says nothing about
    /// tokens): `verdicts` are the answered targets', and a device target over FCM's payload
    /// limit counts as a send FCM refused, as it would have. Nothing of theirs is invalidated;
    /// their messages come back.
    fn deployment_faults(&self, verdicts: &[(usize, Verdict)]) -> DeploymentFaults {
        #[derive(Default)]
        struct Answers {
            device_sends: usize,
            mismatched: usize,
            dead: usize,
        }
        let mut by_app: HashMap<&str, Answers> = HashMap::new();
        let app = |t: &TargetJob| self.envelope(t).push.app();
        for (t, v) in verdicts.iter().map(|(n, v)| (&self.targets[*n], v)) {
            if t.device.is_none() {
                continue;
            }
            let answers = by_app.entry(app(t)).or_default();
            answers.device_sends += usize::from(v.about_the_send());
            answers.mismatched += usize::from(matches!(v, Verdict::SenderMismatch(_)));
            answers.dead += usize::from(matches!(v, Verdict::InvalidToken(_)));
        }
        for t in self.targets.iter().filter(|t| t.device.is_some()) {
            if let State::Final(r) = &t.state {
                if r.error_code.as_deref() == Some(PAYLOAD_TOO_LARGE) {
                    by_app.entry(app(t)).or_default().device_sends += 1;
                }
            }
        }
        let mut faults = DeploymentFaults::default();
        for (app, a) in by_app {
            if a.mismatched > 0 && a.mismatched * 2 > a.device_sends {
                tracing::error!(
                    app = %app,
                    mismatched = a.mismatched,
                    answered = a.device_sends,
                    "most sends answered SENDER_ID_MISMATCH: the app's FCM key belongs to another project; nothing is invalidated, the messages will be redelivered"
                );
                faults.wrong_keys.insert(app.to_owned());
            }
            if a.device_sends >= DEAD_TOKEN_MIN_SENDS && a.dead * 2 > a.device_sends {
                tracing::error!(
                    app = %app,
                    dead = a.dead,
                    answered = a.device_sends,
                    "most device sends answered a dead token: taken for the deployment's fault (e.g. the APNs environment); nothing is invalidated, the messages will be redelivered"
                );
                faults.dead_everywhere.insert(app.to_owned());
            }
        }
        faults
    }

    /// Phase 6: each answered target becomes final (a row; a dead device is invalidated when
    /// the log is written) or is handed back; a sent one was sent at `now`.
    pub fn classify(&mut self, now: DateTime<Utc>) {
        let verdicts: Vec<(usize, Verdict)> = (0..self.targets.len())
            .filter_map(|n| match &self.targets[n].state {
                State::Answered(a) => Some((n, Verdict::from(&a.result))),
                _ => None,
            })
            .collect();
        let faults = self.deployment_faults(&verdicts);
        for (n, verdict) in verdicts {
            let t = &self.targets[n];
            // Always answered: the verdicts are the answered targets'.
            let State::Answered(answer) = &t.state else {
                continue;
            };
            let verdict = judged(verdict, t, self.envelope(t), &faults);
            let attempts = answer.attempts;
            let next = match verdict {
                Verdict::Sent(_) if self.envelope(t).dry_run => {
                    State::Final(self.row(t, DeliveryStatus::DryRun, None, attempts))
                }
                Verdict::Sent(sent) => {
                    let mut row = self.row(t, DeliveryStatus::Sent, None, attempts);
                    row.fcm_message_id = Some(fit(&sent.name, 255)).filter(|n| !n.is_empty());
                    row.sent_at = Some(now);
                    State::Final(row)
                }
                Verdict::InvalidToken(code) => {
                    State::Final(self.row(t, DeliveryStatus::InvalidToken, Some(code), attempts))
                }
                Verdict::Failed(code) => {
                    State::Final(self.row(t, DeliveryStatus::Failed, Some(code), attempts))
                }
                Verdict::SenderMismatch(_) => unreachable!("judged"),
                // Transient, or the deployment's fault: not final, the message comes back.
                // A `retrying` row says so in the log until the final row replaces it.
                Verdict::HandBack(error) => {
                    log_hand_back(self.envelope(t), &error);
                    let code = error.code().to_owned();
                    State::HandedBack(HandBack::Transient { code, attempts })
                }
            };
            self.targets[n].state = next;
        }
    }
}

/// A send's verdict, judged with the batch's other answers: a `SENDER_ID_MISMATCH` is final
/// unless the app's key is the wrong one; a dead-token answer for a topic or condition is the
/// message's failure, and for most of an app's device sends the deployment's fault.
fn judged(verdict: Verdict, t: &TargetJob, e: &Envelope, faults: &DeploymentFaults) -> Verdict {
    let app = e.push.app();
    match verdict {
        Verdict::SenderMismatch(error) if faults.wrong_keys.contains(app) => {
            Verdict::HandBack(error)
        }
        Verdict::SenderMismatch(error) => Verdict::Failed(error.code().to_owned()),
        // A topic or condition has no token to invalidate: the message failed.
        Verdict::InvalidToken(code) if t.device.is_none() => Verdict::Failed(code),
        Verdict::InvalidToken(code) if faults.dead_everywhere.contains(app) => {
            Verdict::HandBack(SendError::Deployment {
                detail: format!(
                    "{code} for most of the batch's device sends: the deployment's, not the tokens'"
                ),
                code,
            })
        }
        other => other,
    }
}

fn log_hand_back(e: &Envelope, error: &SendError) {
    let app = e.push.app();
    match error {
        SendError::UnknownApp { .. } => {
            tracing::error!(push_id = %e.id, app = %app, code = error.code(), "{error}; the message will be redelivered (and reach the DLQ if the key does not come)")
        }
        _ => {
            tracing::warn!(push_id = %e.id, app = %app, code = error.code(), "send failed, will retry on redelivery")
        }
    }
}
