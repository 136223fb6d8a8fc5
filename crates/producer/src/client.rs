//! The batching client: validates pushes, writes their envelopes and hands them to a transport.
//! Concurrent pushes are coalesced into batches (`SendMessageBatch`); an idle producer sends at once.
//!
//! Coalescing works without timers: a dispatcher task takes the first waiting envelope, adds
//! whatever else is already waiting (up to 10 entries and [`MAX_BATCH_BYTES`]) and sends. While
//! [`MAX_IN_FLIGHT_BATCHES`] requests are out, envelopes wait and so batches fill up under load.

use std::sync::{Arc, Mutex};

use pushq_model::push::FCM_PAYLOAD_LIMIT;
use pushq_model::{Envelope, InvalidPush, Push, Target, TooLarge};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::transport::{Outgoing, Transport};

/// Most entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most body bytes pushq puts in one `SendMessageBatch` (SQS's original 256 KiB batch limit).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most `SendMessageBatch` requests one producer has out at once.
pub const MAX_IN_FLIGHT_BATCHES: usize = 8;

/// A push the queue has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The push id (UUIDv7), as recorded in the delivery log.
    pub id: String,
}

/// A push handed to the producer; resolves once SQS has every part of it.
#[must_use = "a ticket does nothing unless awaited"]
pub struct Ticket {
    id: String,
    parts: Vec<oneshot::Receiver<Result<()>>>,
}

impl Ticket {
    /// The push id, known before SQS answers.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits until SQS accepted the push (every part of a split push) or refused it.
    pub async fn accepted(self) -> Result<Enqueued> {
        let total = self.parts.len();
        let mut sent = 0;
        let mut failure = None;
        for part in self.parts {
            match part.await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => {
                    failure = failure.or(Some(Error::queue(
                        "the producer stopped before the queue answered",
                    )))
                }
            }
        }
        match failure {
            None => Ok(Enqueued { id: self.id }),
            // A split push whose other parts got in: say so, since SQS cannot take them back.
            Some(Error::Queue { message, cause }) if sent > 0 => Err(Error::Queue {
                message: format!(
                    "{message} ({sent} of {total} parts of push {} were enqueued and will be delivered)",
                    self.id
                ),
                cause,
            }),
            Some(e) => Err(e),
        }
    }
}

/// Sends pushes to one SQS queue. Cheap to share; `close` flushes and stops it.
pub struct Producer {
    config: ProducerConfig,
    sender: Mutex<Option<mpsc::UnboundedSender<Outgoing>>>,
    finished: watch::Receiver<bool>,
}

impl Producer {
    /// Starts a producer for `config` that hands its batches to `transport`, its dispatcher
    /// running on `runtime`.
    pub fn start(
        config: ProducerConfig,
        transport: Arc<dyn Transport>,
        runtime: &tokio::runtime::Handle,
    ) -> Producer {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (done, finished) = watch::channel(false);
        runtime.spawn(async move {
            dispatch(receiver, transport).await;
            let _ = done.send(true);
        });
        Producer {
            config,
            sender: Mutex::new(Some(sender)),
            finished,
        }
    }

    /// Validates a push given as JSON text and hands it to the queue.
    pub fn enqueue_json(&self, json: &str) -> Result<Ticket> {
        let push = Push::from_json(json)?;
        self.enqueue(push, None)
    }

    /// Validates several pushes given as one JSON array; if any is invalid, none is enqueued.
    pub fn enqueue_json_many(&self, json: &str) -> Result<Vec<Ticket>> {
        let values: Vec<serde_json::Value> = serde_json::from_str(json)
            .map_err(|_| InvalidPush::new("push", "pushes must be an array of push objects"))?;
        let pushes = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| Push::from_value(v).map_err(|e| e.at_index(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let envelopes = pushes
            .into_iter()
            .enumerate()
            .map(|(i, push)| self.prepare(push, Some(i)))
            .collect::<Result<Vec<_>>>()?;
        envelopes
            .into_iter()
            .map(|prepared| self.submit(prepared))
            .collect()
    }

    /// Hands a validated push to the queue. `index` locates it in a list for error messages.
    pub fn enqueue(&self, push: Push, index: Option<usize>) -> Result<Ticket> {
        let prepared = self.prepare(push, index)?;
        self.submit(prepared)
    }

    /// Checks what the queue needs of a push and builds its messages, sending nothing.
    fn prepare(&self, push: Push, index: Option<usize>) -> Result<Prepared> {
        let locate = |e: InvalidPush| match index {
            Some(i) => e.at_index(i),
            None => e,
        };
        let subject = || index.map_or_else(|| "push".to_owned(), |i| format!("pushes[{i}]"));
        let (size, limit) = (push.payload_size(), push.payload_limit());
        if size > limit {
            let hint = if limit < FCM_PAYLOAD_LIMIT {
                " (FCM's limit for topic messages)"
            } else {
                " (FCM's limit)"
            };
            return Err(TooLarge {
                subject: subject(),
                what: "FCM payload",
                size,
                limit,
                hint,
            }
            .into());
        }
        let fifo = self.config.is_fifo();
        if fifo && push.delay_seconds().unwrap_or(0) > 0 {
            return Err(locate(InvalidPush::new(
                "delaySeconds",
                "FIFO queues do not support per-message delays (set the delay on the queue, or use a standard queue)",
            ))
            .into());
        }
        let group_id = fifo.then(|| match push.target() {
            // Pushes to one user stay in order; others need no ordering and should not wait on each other.
            Target::User(user) => format!("user:{user}"),
            _ => String::new(),
        });
        let delay_seconds = push.delay_seconds().filter(|d| *d > 0).map(|d| d as i32);
        let dedup_key = push.idempotency_key().map(str::to_owned);
        let envelope = Envelope::new(push);
        let bodies = envelope.to_bodies().map_err(|e| e.about(subject()))?;
        let id = envelope.id;
        let parts = bodies.len();
        let messages = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let dedup_id = fifo.then(|| {
                    let key = dedup_key.as_deref().unwrap_or(&id);
                    if parts == 1 {
                        key.to_owned()
                    } else {
                        uuid::Uuid::new_v5(
                            &uuid::Uuid::NAMESPACE_OID,
                            format!("{key}\n{i}").as_bytes(),
                        )
                        .to_string()
                    }
                });
                let group_id =
                    group_id
                        .as_ref()
                        .map(|g| if g.is_empty() { id.clone() } else { g.clone() });
                (body, group_id, dedup_id)
            })
            .collect();
        Ok(Prepared {
            id,
            delay_seconds,
            messages,
        })
    }

    fn submit(&self, prepared: Prepared) -> Result<Ticket> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let sender = guard.as_ref().ok_or(Error::Closed)?;
        let mut parts = Vec::with_capacity(prepared.messages.len());
        for (body, group_id, dedup_id) in prepared.messages {
            let (reply, answer) = oneshot::channel();
            let outgoing = Outgoing {
                body,
                group_id,
                dedup_id,
                delay_seconds: prepared.delay_seconds,
                reply,
            };
            sender.send(outgoing).map_err(|_| Error::Closed)?;
            parts.push(answer);
        }
        Ok(Ticket {
            id: prepared.id,
            parts,
        })
    }

    /// Stops taking pushes and waits until every push already handed over has been answered by SQS.
    pub async fn close(&self) {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// True once `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

struct Prepared {
    id: String,
    delay_seconds: Option<i32>,
    messages: Vec<(String, Option<String>, Option<String>)>,
}

/// Takes waiting messages in batches and sends each batch in its own task.
async fn dispatch(mut receiver: mpsc::UnboundedReceiver<Outgoing>, queue: Arc<dyn Transport>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES));
    let mut carried: Option<Outgoing> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let first = match carried.take() {
            Some(o) => o,
            None => match receiver.recv().await {
                Some(o) => o,
                None => break,
            },
        };
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_ENTRIES {
            let Ok(next) = receiver.try_recv() else { break };
            if bytes + next.body.len() > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += next.body.len();
            batch.push(next);
        }
        let queue = queue.clone();
        tokio::spawn(async move {
            queue.send(batch).await;
            drop(slot);
        });
    }
    // Wait for the batches still out: every slot back means every request answered.
    let _ = slots.acquire_many(MAX_IN_FLIGHT_BATCHES as u32).await;
}
