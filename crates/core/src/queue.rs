//! The SQS producer: validates pushes, writes their envelopes and hands them to SQS.
//! Concurrent pushes are coalesced into `SendMessageBatch` calls; an idle producer sends at once.
//!
//! Coalescing works without timers: a dispatcher task takes the first waiting envelope, adds
//! whatever else is already waiting (up to 10 entries and [`MAX_BATCH_BYTES`]) and sends. While
//! [`MAX_IN_FLIGHT_BATCHES`] requests are out, envelopes wait and so batches fill up under load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tokio::sync::{mpsc, oneshot, watch, OnceCell, Semaphore};

use crate::config::{region_from_queue_url, Mode, ProducerConfig};
use crate::envelope::Envelope;
use crate::error::{Error, InvalidPush, Result};
use crate::push::{Push, Target};

/// Most entries SQS takes in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Most body bytes pushq puts in one `SendMessageBatch` (SQS's original 256 KiB batch limit).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most `SendMessageBatch` requests one producer has out at once.
pub const MAX_IN_FLIGHT_BATCHES: usize = 8;
/// Rounds of retrying entries that SQS failed on its side (the SDK itself retries whole requests).
const ENTRY_RETRIES: u32 = 4;

/// A push the queue has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The push id (UUIDv7), as recorded in the delivery log.
    pub id: String,
}

/// One queue message waiting to be sent.
struct Outgoing {
    body: String,
    group_id: Option<String>,
    dedup_id: Option<String>,
    delay_seconds: Option<i32>,
    reply: oneshot::Sender<Result<()>>,
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
                    failure = failure.or(Some(Error::Queue(
                        "the producer stopped before SQS answered".into(),
                    )))
                }
            }
        }
        match failure {
            None => Ok(Enqueued { id: self.id }),
            // A split push whose other parts got in: say so, since SQS cannot take them back.
            Some(Error::Queue(why)) if sent > 0 => Err(Error::Queue(format!(
                "{why} ({sent} of {total} parts of push {} were enqueued and will be delivered)",
                self.id
            ))),
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
    /// Starts a producer for `config`, its dispatcher running on `runtime`. In sqs mode the SQS
    /// client (credentials, region) is set up on first use; in local mode the database and the
    /// delivery engine are.
    pub fn start(config: ProducerConfig, runtime: &tokio::runtime::Handle) -> Result<Producer> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let (done, finished) = watch::channel(false);
        let queue = Arc::new(match config.mode {
            Mode::Sqs => Transport::Sqs(SqsQueue {
                config: config.clone(),
                client: OnceCell::new(),
            }),
            Mode::Local => Transport::Local(crate::local::LocalDelivery::new(&config)?),
        });
        runtime.spawn(async move {
            dispatch(receiver, queue).await;
            let _ = done.send(true);
        });
        Ok(Producer {
            config,
            sender: Mutex::new(Some(sender)),
            finished,
        })
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
            let hint = if limit < crate::push::FCM_PAYLOAD_LIMIT {
                " for topic messages"
            } else {
                ""
            };
            return Err(Error::TooLarge {
                subject: subject(),
                size,
                limit,
                hint,
            });
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
        let bodies = envelope.to_bodies().map_err(|e| match e {
            Error::TooLarge {
                size, limit, hint, ..
            } => Error::TooLarge {
                subject: subject(),
                size,
                limit,
                hint,
            },
            other => other,
        })?;
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
/// Where a producer's batches go.
enum Transport {
    Sqs(SqsQueue),
    Local(crate::local::LocalDelivery),
}

impl Transport {
    async fn send(&self, batch: Vec<Outgoing>) {
        match self {
            Transport::Sqs(q) => q.send(batch).await,
            Transport::Local(l) => {
                let bodies = batch
                    .into_iter()
                    .map(|o| {
                        // Accepted: in local mode the in-process queue is the queue.
                        let _ = o.reply.send(Ok(()));
                        o.body
                    })
                    .collect();
                l.deliver(bodies).await
            }
        }
    }
}

async fn dispatch(mut receiver: mpsc::UnboundedReceiver<Outgoing>, queue: Arc<Transport>) {
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

struct SqsQueue {
    config: ProducerConfig,
    client: OnceCell<Result<aws_sdk_sqs::Client>>,
}

impl SqsQueue {
    async fn client(&self) -> Result<&aws_sdk_sqs::Client> {
        self.client
            .get_or_init(|| build_client(&self.config))
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Sends one batch, retrying entries SQS failed on its side, and answers every entry.
    async fn send(&self, mut batch: Vec<Outgoing>) {
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                return batch
                    .into_iter()
                    .for_each(|o| drop(o.reply.send(Err(e.clone()))))
            }
        };
        let queue_url = self.config.queue_url.as_deref().unwrap_or_default();
        for round in 0..=ENTRY_RETRIES {
            if round > 0 {
                tokio::time::sleep(backoff(round)).await;
            }
            let entries = batch.iter().enumerate().map(|(i, o)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&o.body)
                    .set_delay_seconds(o.delay_seconds)
                    .set_message_group_id(o.group_id.clone())
                    .set_message_deduplication_id(o.dedup_id.clone())
                    .build()
                    .expect("id and body are set")
            });
            let result = client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries.collect()))
                .send()
                .await;
            let output = match result {
                Ok(output) => output,
                Err(e) => {
                    let error = queue_error(&e);
                    return batch
                        .into_iter()
                        .for_each(|o| drop(o.reply.send(Err(error.clone()))));
                }
            };
            let mut slots: Vec<Option<Outgoing>> = batch.into_iter().map(Some).collect();
            for ok in output.successful() {
                if let Some(o) = ok
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| slots.get_mut(i)?.take())
                {
                    let _ = o.reply.send(Ok(()));
                }
            }
            let mut retry = Vec::new();
            for failed in output.failed() {
                let Some(o) = failed
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| slots.get_mut(i)?.take())
                else {
                    continue;
                };
                if failed.sender_fault() || round == ENTRY_RETRIES {
                    let why = format!(
                        "SQS refused the message: {} {}",
                        failed.code(),
                        failed.message().unwrap_or("")
                    );
                    let _ = o.reply.send(Err(Error::Queue(why.trim_end().to_owned())));
                } else {
                    retry.push(o);
                }
            }
            // An entry SQS neither accepted nor failed is not known to be in the queue.
            for o in slots.into_iter().flatten() {
                let _ = o.reply.send(Err(Error::Queue(
                    "SQS did not report on the message".into(),
                )));
            }
            if retry.is_empty() {
                return;
            }
            batch = retry;
        }
    }
}

async fn build_client(config: &ProducerConfig) -> Result<aws_sdk_sqs::Client> {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let mut shared = loader.load().await;
    if shared.region().is_none() {
        let Some(region) = config.queue_url.as_deref().and_then(region_from_queue_url) else {
            return Err(Error::Config(
                "region: not set (pass options.region, set AWS_REGION, or use an amazonaws.com queue URL)".into(),
            ));
        };
        shared = shared.into_builder().region(Region::new(region)).build();
    }
    Ok(aws_sdk_sqs::Client::new(&shared))
}

fn queue_error<E, R>(e: &SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        // Requests that could not even be built: no credentials, a bad endpoint.
        SdkError::ConstructionFailure(_) => Error::Config(format!("{}", DisplayErrorContext(e))),
        _ => Error::Queue(format!("{}", DisplayErrorContext(e))),
    }
}

/// Exponential backoff with full jitter: 50 ms, 100 ms, 200 ms, … at most.
fn backoff(round: u32) -> Duration {
    let cap = 50u64 << round.min(6);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
}
