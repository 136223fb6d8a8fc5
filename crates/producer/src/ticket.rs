//! What a caller holds for a push handed to the producer: its [`Ticket`], which resolves once
//! the queue has every part of the push (or says what is known of each), and [`Enqueued`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::transport::Fate;

/// A push the queue has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The push id (UUIDv7), as recorded in the delivery log.
    pub id: String,
}

/// A push handed to the producer; resolves once SQS has every part of it, or at its deadline.
#[must_use = "a ticket does nothing unless awaited"]
pub struct Ticket {
    pub(crate) id: String,
    pub(crate) parts: Vec<(oneshot::Receiver<Result<()>>, Arc<Fate>)>,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
}

impl Ticket {
    /// The push id, known before SQS answers.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits until SQS accepted the push (every part of a split push) or refused it. At the
    /// push's deadline, parts still waiting in the client are given up (they will not be sent)
    /// and the push is refused; a part already in a request is waited for, and the transport
    /// ends that request by the same deadline.
    pub async fn accepted(self) -> Result<Enqueued> {
        let total = self.parts.len();
        // What is known of each part: enqueued, maybe (an unanswered request held it), or not.
        let mut known: Vec<&'static str> = Vec::with_capacity(total);
        let mut failure = None;
        for (mut part, fate) in self.parts {
            let answer = tokio::select! {
                answer = &mut part => answer,
                _ = tokio::time::sleep_until(self.deadline.into()) => {
                    if fate.abandon() {
                        known.push("not enqueued");
                        failure = failure.or(Some(Error::queue(format!(
                            "not enqueued: still waiting for SQS after {} ms (the client's backlog did not drain in time); it will not be sent",
                            self.timeout.as_millis()
                        ))));
                        continue;
                    }
                    part.await
                }
            };
            let e = match answer {
                Ok(Ok(())) => {
                    known.push("enqueued");
                    continue;
                }
                Ok(Err(e)) => e,
                Err(_) => Error::queue("the producer stopped before the queue answered"),
            };
            let unknown = matches!(e, Error::QueueUnknown { .. });
            known.push(if unknown {
                "may be on the queue"
            } else {
                "not enqueued"
            });
            // The first failure, unless a later part's fate is unknown: that one decides.
            failure = match failure {
                Some(f @ Error::QueueUnknown { .. }) => Some(f),
                Some(f) if !unknown => Some(f),
                _ => Some(e),
            };
        }
        let Some(failure) = failure else {
            return Ok(Enqueued { id: self.id });
        };
        let some_in = known.iter().any(|k| *k != "not enqueued");
        match failure {
            // SQS may have it, or has some of its parts: the caller gets the push id, to enqueue
            // it again with (what is on the queue already is delivered once).
            Error::QueueUnknown { message, .. } => Err(Error::QueueUnknown {
                message: parts_said(message, &known, &self.id),
                push_id: Some(self.id),
            }),
            Error::Queue { message, .. } if total > 1 && some_in => Err(Error::QueueUnknown {
                message: parts_said(message, &known, &self.id),
                push_id: Some(self.id),
            }),
            e => Err(e),
        }
    }
}

/// A split push's error, with what is known of each part (`part 1 of 3: enqueued; …`).
fn parts_said(message: String, known: &[&str], id: &str) -> String {
    if known.len() < 2 {
        return message;
    }
    let parts: Vec<String> = known
        .iter()
        .enumerate()
        .map(|(i, k)| format!("part {} of {}: {k}", i + 1, known.len()))
        .collect();
    format!(
        "{message} (push {id}: {}; enqueue it again with the same id and each target is delivered once)",
        parts.join("; ")
    )
}
