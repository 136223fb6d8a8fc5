//! Phase 6, classifying: each answer becomes a row, a dead device or a hand-back, judged with the
//! batch's other answers (a wrong key, dead tokens everywhere).

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

impl<'m> Batch<'m> {
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
}
