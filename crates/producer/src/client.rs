//! The batching client: validates pushes, writes their envelopes and hands them to a transport.
//! Concurrent pushes are coalesced into batches (`SendMessageBatch`); an idle producer sends at once.
//!
//! Coalescing works without timers: a dispatcher task takes the first waiting envelope, adds
//! whatever else is already waiting (up to 10 entries and [`MAX_BATCH_BYTES`]) and sends. While
//! [`MAX_IN_FLIGHT_BATCHES`] requests are out, envelopes wait and so batches fill up under load.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushq_model::push::FCM_PAYLOAD_LIMIT;
use pushq_model::topics::{Subscriber, TopicChange};
use pushq_model::{Envelope, InvalidPush, Push, Target, TooLarge};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::config::{Mode, ProducerConfig};
use crate::dispatch::dispatch;
use crate::error::{Error, Result};
use crate::schedule::{Booking, Scheduled, Scheduler};
pub use crate::ticket::{Enqueued, Ticket};
use crate::transport::{Fate, Outgoing, Pending, Transport};

/// Most entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most body bytes pushq puts in one `SendMessageBatch` (SQS's original 256 KiB batch limit).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most `SendMessageBatch` requests one producer has out at once.
pub const MAX_IN_FLIGHT_BATCHES: usize = 8;
/// A push is sent only with at least this much of its time left (a quarter of its timeout when
/// that is shorter); closer to its deadline it is refused rather than sent into a request that
/// would likely end unanswered.
pub const MIN_TIME_TO_SEND: Duration = Duration::from_secs(1);

/// Sends pushes to one queue. Cheap to share; `close` flushes and stops it.
pub struct Producer {
    pub(crate) config: ProducerConfig,
    sender: Mutex<Option<mpsc::UnboundedSender<Outgoing>>>,
    /// Envelope bytes the backlog may still take (one permit a byte).
    backlog: Arc<Semaphore>,
    /// Messages handed over and not yet answered by the queue.
    unanswered: Arc<Pending>,
    finished: watch::Receiver<bool>,
    /// Creates the schedules of pushes due beyond SQS's delay (SQS mode).
    scheduler: Option<Arc<Scheduler>>,
    runtime: tokio::runtime::Handle,
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
            backlog: Arc::new(Semaphore::new(config.max_backlog_bytes)),
            unanswered: Arc::default(),
            config,
            sender: Mutex::new(Some(sender)),
            finished,
            scheduler: None,
            runtime: runtime.clone(),
        }
    }

    /// The same producer, scheduling pushes due beyond SQS's delay with `scheduler`.
    pub fn with_scheduler(self, scheduler: Arc<Scheduler>) -> Producer {
        Producer {
            scheduler: Some(scheduler),
            ..self
        }
    }

    /// Validates a push given as JSON text and hands it to the queue; a `dry_run` push is
    /// validated by FCM and delivered to no one (firebase-admin's `send(message, true)`).
    pub fn enqueue_json(&self, json: &str, dry_run: bool) -> Result<Ticket> {
        let push = Push::from_json(json)?;
        let prepared = self.prepare(push, None, dry_run)?;
        self.submit(prepared)
    }

    /// Validates several pushes given as one JSON array; if any is invalid, none is enqueued.
    /// `dry_run` applies to every one (firebase-admin's `sendEach(messages, true)`).
    pub fn enqueue_json_many(&self, json: &str, dry_run: bool) -> Result<Vec<Ticket>> {
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
            .map(|(i, push)| self.prepare(push, Some(i), dry_run))
            .collect::<Result<Vec<_>>>()?;
        self.submit_all(envelopes)
    }

    /// Hands a validated push to the queue. `index` locates it in a list for error messages.
    pub fn enqueue(&self, push: Push, index: Option<usize>) -> Result<Ticket> {
        let prepared = self.prepare(push, index, false)?;
        self.submit(prepared)
    }

    /// Hands a topic change (a subscription stored in the database, to bring FCM in line with)
    /// to the queue. On a FIFO queue the changes of one (app, user or token) stay in order.
    pub fn enqueue_topic_change(&self, change: &TopicChange) -> Result<Ticket> {
        let fifo = self.config.is_fifo();
        // A name for the subscriber that fits SQS's 128-character group id, whatever its length.
        let group_id = fifo.then(|| {
            let who = match &change.subscriber {
                Subscriber::User(u) => format!("{}\nuser\n{u}", change.app),
                Subscriber::Token(t) => format!("{}\ntoken\n{t}", change.app),
            };
            format!(
                "topics:{}",
                uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, who.as_bytes())
            )
        });
        self.submit(Prepared {
            id: change.id.clone(),
            schedule_as: None,
            booking: None,
            delay_seconds: None,
            messages: queue_messages(vec![change.to_json()], &change.id, fifo, group_id),
        })
    }

    /// Checks what the queue needs of a push and builds its messages, sending nothing.
    pub(crate) fn prepare(
        &self,
        push: Push,
        index: Option<usize>,
        dry_run: bool,
    ) -> Result<Prepared> {
        let subject = || index.map_or_else(|| "push".to_owned(), |i| format!("pushes[{i}]"));
        check_size(&push, subject)?;
        push.check_advertising(&self.config.ad_prefix)
            .map_err(|e| match index {
                Some(i) => e.at_index(i),
                None => e,
            })?;
        let fifo = self.config.is_fifo();
        let (delay_seconds, scheduled_at) = self.when(&push, fifo).map_err(|e| match index {
            Some(i) => e.at_index(i),
            None => e,
        })?;
        if scheduled_at.is_some() {
            self.scheduler()?;
        }
        let push = push.with_default_app(&self.config.app);
        let envelope = Envelope::new(push).into_dry_run(dry_run);
        self.prepare_envelope(envelope, scheduled_at.is_some(), delay_seconds, index)
    }

    /// Builds the queue messages of an envelope whose time to send was decided (`scheduled`:
    /// a schedule, else `delay_seconds`), sending nothing.
    pub(crate) fn prepare_envelope(
        &self,
        envelope: Envelope,
        scheduled: bool,
        delay_seconds: Option<i32>,
        index: Option<usize>,
    ) -> Result<Prepared> {
        let subject = || index.map_or_else(|| "push".to_owned(), |i| format!("pushes[{i}]"));
        let fifo = self.config.is_fifo();
        let push = &envelope.push;
        let group_id = fifo.then(|| match push.target() {
            // Pushes to one user stay in order; others need no ordering and should not wait on each other.
            Target::User(user) => format!("user:{user}"),
            _ => String::new(),
        });
        let (app, target) = (push.app().to_owned(), push.target().summary());
        let send_at_ms = push.send_at_ms();
        let bodies = envelope.to_bodies().map_err(|e| e.about(subject()))?;
        let id = envelope.id;
        Ok(Prepared {
            booking: send_at_ms.filter(|_| scheduled).map(|send_at_ms| Booking {
                push_id: id.clone(),
                app,
                target,
                send_at_ms,
            }),
            messages: queue_messages(bodies, &id, fifo, group_id),
            schedule_as: None,
            id,
            delay_seconds,
        })
    }

    /// The scheduler, when this producer can schedule pushes; else why not.
    pub(crate) fn scheduler(&self) -> Result<&Arc<Scheduler>> {
        let scheduler = self.scheduler.as_ref().ok_or_else(|| {
            Error::Config("this client cannot schedule pushes beyond 900 s (no scheduler)".into())
        })?;
        match scheduler.missing() {
            Some(e) => Err(e),
            None => Ok(scheduler),
        }
    }

    /// Cancels a push's schedules that have not fired: true when one was deleted. `Ok(false)`
    /// when this producer schedules nothing (local mode, or no scheduler).
    pub async fn cancel_schedule(&self, push_id: &str) -> Result<bool> {
        match (&self.scheduler, self.config.mode) {
            (Some(s), Mode::Sqs) if self.config.scheduler_role_arn.is_some() => {
                s.cancel(push_id, Instant::now() + self.config.push_timeout)
                    .await
            }
            _ => Ok(false),
        }
    }

    pub(crate) fn submit(&self, prepared: Prepared) -> Result<Ticket> {
        Ok(self.submit_all(vec![prepared])?.remove(0))
    }

    /// Hands prepared pushes to the dispatcher, all or none: their bytes are reserved in the
    /// backlog first, and a backlog too full to take them all refuses them all, at once.
    fn submit_all(&self, prepared: Vec<Prepared>) -> Result<Vec<Ticket>> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let sender = guard.as_ref().ok_or(Error::Closed)?;
        let bytes: usize = prepared
            .iter()
            .filter(|p| p.booking.is_none())
            .flat_map(|p| p.messages.iter().map(|(body, _, _)| body.len().max(1)))
            .sum();
        let mut reserved = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.backlog.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                Error::queue(format!(
                    "not enqueued: the client's backlog is full ({} bytes of pushes are waiting for SQS; maxBacklogBytes is {})",
                    self.config.max_backlog_bytes - self.backlog.available_permits(),
                    self.config.max_backlog_bytes
                ))
            })?;
        let timeout = self.config.push_timeout;
        let deadline = Instant::now() + timeout;
        let min_time_to_send = (timeout / 4).min(MIN_TIME_TO_SEND);
        let mut tickets = Vec::with_capacity(prepared.len());
        for push in prepared {
            if push.booking.is_some() {
                tickets.push(self.schedule(push, deadline, timeout)?);
                continue;
            }
            let mut parts = Vec::with_capacity(push.messages.len());
            for (body, group_id, dedup_id) in push.messages {
                let (reply, answer) = oneshot::channel();
                let fate = Arc::new(Fate::default());
                let outgoing = Outgoing {
                    _backlog: reserved.split(body.len().max(1)).expect("reserved above"),
                    body,
                    group_id,
                    dedup_id,
                    delay_seconds: push.delay_seconds,
                    deadline,
                    min_time_to_send,
                    fate: fate.clone(),
                    _unanswered: self.unanswered.enter(),
                    reply,
                };
                sender.send(outgoing).map_err(|_| Error::Closed)?;
                parts.push((answer, fate));
            }
            tickets.push(Ticket {
                id: push.id,
                parts,
                deadline,
                timeout,
            });
        }
        Ok(tickets)
    }

    /// Hands a push due beyond SQS's delay to the scheduler, in a task of its own: its ticket
    /// resolves once every schedule exists (or is refused), by the push's deadline.
    fn schedule(&self, push: Prepared, deadline: Instant, timeout: Duration) -> Result<Ticket> {
        let scheduler = self.scheduler()?.clone();
        let (reply, answer) = oneshot::channel();
        let fate = Arc::new(Fate::default());
        // Taken at once: the ticket waits for the scheduler's answer, which comes by the deadline.
        fate.take();
        let unanswered = self.unanswered.enter();
        let booking = push.booking.expect("a scheduled push has its booking");
        let scheduled = Scheduled {
            name: push.schedule_as.unwrap_or_else(|| booking.push_id.clone()),
            booking,
            parts: push
                .messages
                .into_iter()
                .map(|(body, group_id, _)| (body, group_id))
                .collect(),
        };
        self.runtime.spawn(async move {
            let answer = scheduler.schedule(scheduled, deadline).await;
            let _ = reply.send(answer);
            drop(unanswered);
        });
        Ok(Ticket {
            id: push.id,
            parts: vec![(answer, fate)],
            deadline,
            timeout,
        })
    }

    /// Stops taking pushes and waits until every push already handed over has been answered by SQS.
    pub async fn close(&self) {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut finished = self.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Waits until every push handed over so far has been answered by the queue (accepted or
    /// refused), without closing: pushes handed over meanwhile are waited for too.
    pub async fn flush(&self) {
        self.unanswered.idle().await
    }

    /// The count of messages handed over and not yet answered, to wait on without borrowing
    /// the producer.
    pub fn unanswered(&self) -> Arc<Pending> {
        self.unanswered.clone()
    }

    /// True once `close` has been called.
    pub fn is_closed(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// Refuses a push over FCM's payload limit (4096 bytes, 2048 for a topic), naming its largest
/// field.
fn check_size(push: &Push, subject: impl Fn() -> String) -> Result<()> {
    let (size, limit) = (push.payload_size(), push.payload_limit());
    if size <= limit {
        return Ok(());
    }
    let hint = if limit < FCM_PAYLOAD_LIMIT {
        " (FCM's limit for topic messages)"
    } else {
        " (FCM's limit)"
    };
    let (largest_field, largest_size) = push.largest_field().unzip();
    Err(TooLarge {
        subject: subject(),
        what: "FCM payload",
        size,
        limit,
        hint,
        largest_field,
        largest_size: largest_size.unwrap_or(0),
    }
    .into())
}

/// The queue messages of a push's envelope bodies: (body, FIFO message group, FIFO
/// deduplication id). The deduplication id is the push id (per part, for a split push), never
/// the idempotencyKey: SQS drops a message whose deduplication id it saw in the last five
/// minutes, and a key reused for another user, target or payload must still reach the consumer,
/// which delivers a key once per device and records the rest as duplicates. SQS then only
/// merges the producer's own retries of one message. A push not to one user is its own group.
fn queue_messages(
    bodies: Vec<String>,
    id: &str,
    fifo: bool,
    group_id: Option<String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let parts = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let dedup_id = fifo.then(|| match parts {
                1 => id.to_owned(),
                _ => {
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{id}\n{i}").as_bytes())
                        .to_string()
                }
            });
            let group_id = group_id.as_ref().map(|g| match g.is_empty() {
                true => id.to_owned(),
                false => g.clone(),
            });
            (body, group_id, dedup_id)
        })
        .collect()
}

impl Prepared {
    /// Messages already written: sent now, to the queue (no schedule, no delay).
    pub(crate) fn raw(
        id: &str,
        messages: Vec<(String, Option<String>, Option<String>)>,
    ) -> Prepared {
        Prepared {
            id: id.to_owned(),
            schedule_as: None,
            booking: None,
            delay_seconds: None,
            messages,
        }
    }
}

pub(crate) struct Prepared {
    id: String,
    /// What its schedules are named after, when it is scheduled and not named after its id
    /// (a deferral).
    pub(crate) schedule_as: Option<String>,
    /// Set when the push is scheduled (EventBridge Scheduler) rather than sent to the queue.
    booking: Option<Booking>,
    delay_seconds: Option<i32>,
    messages: Vec<(String, Option<String>, Option<String>)>,
}
