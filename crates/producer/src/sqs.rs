//! The SQS transport: sends batches with `SendMessageBatch`, retrying entries SQS failed on its
//! side. Its client is built in [`crate::aws`] (re-exported here: `client`, `SqsSettings`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tokio::sync::OnceCell;

use crate::aws::root_cause;
pub use crate::aws::{client, client_and_endpoint, SqsSettings};
use crate::config::ProducerConfig;
use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Outgoing, Transport};

/// Rounds of retrying entries that SQS failed on its side (the SDK itself retries whole requests).
const ENTRY_RETRIES: u32 = 4;

/// Sends batches to one SQS queue. The client is built on first use; a failure to build it is
/// reported to that batch and tried again for the next.
pub struct SqsTransport {
    config: ProducerConfig,
    /// The client, and the endpoint it sends to.
    client: OnceCell<(aws_sdk_sqs::Client, String)>,
}

impl SqsTransport {
    /// A transport to the queue of `config` (its `queue_url`, `region` and `endpoint_url`).
    pub fn new(config: ProducerConfig) -> Arc<SqsTransport> {
        Arc::new(SqsTransport {
            config,
            client: OnceCell::new(),
        })
    }

    async fn client(&self) -> Result<&(aws_sdk_sqs::Client, String)> {
        self.client
            .get_or_try_init(|| async {
                let settings = SqsSettings {
                    region: self.config.region.clone(),
                    endpoint_url: self.config.endpoint_url.clone(),
                    queue_url: self.config.queue_url.clone(),
                    ..SqsSettings::default()
                };
                client_and_endpoint(&settings).await
            })
            .await
    }
    /// Sends one batch and answers every entry, each by its own deadline. Entries SQS failed on
    /// its side are sent again (a few rounds). When SQS's answer is unknown (a timeout, a
    /// connection lost after the request went out, an answer that cannot be read, a 5xx), the
    /// same envelopes are sent again until SQS answers or each push's deadline passes: a copy
    /// that got in is harmless, as consumers send each (push id, target) once. Only a definite
    /// refusal is `Error::Queue` ("not enqueued"); an entry an unanswered request may have
    /// delivered ends `Error::QueueUnknown`.
    async fn send_batch(&self, batch: Vec<Outgoing>) {
        let queue_url = self.config.queue_url.as_deref().unwrap_or_default();
        let (client, endpoint) = match self.client().await {
            Ok(c) => c,
            Err(e) => return refuse_all(batch, e),
        };
        let queue = format!("{queue_url} at {endpoint}");
        // Each entry, and whether a request of it may have reached SQS unanswered.
        let mut pending: Vec<Entry> = batch
            .into_iter()
            .map(|o| Entry { o, maybe_in: false })
            .collect();
        let (mut entry_rounds, mut attempt) = (0u32, 0u32);
        // Why the last unanswered attempt went unanswered.
        let mut lost = String::from("SQS had not answered");
        loop {
            pending = settle_too_late(pending, &queue, &lost);
            if pending.is_empty() {
                return;
            }
            let timeout = self.attempt_timeout(&pending);
            let entries = request_entries(&pending);
            let request = self.request(client, endpoint, entries, timeout);
            let mut slots: Vec<Option<Entry>> = pending.into_iter().map(Some).collect();
            let Some(result) = answer_by_deadlines(request, &mut slots, &queue).await else {
                return;
            };
            attempt += 1;
            pending = match result {
                Ok(output) => {
                    entry_rounds += 1;
                    let retry = answer(output, slots, entry_rounds > ENTRY_RETRIES, &queue);
                    if retry.is_empty() {
                        return;
                    }
                    retry
                }
                Err(Outcome::Unknown(why)) => {
                    // The same envelopes again: a copy that got in is harmless.
                    lost = why;
                    slots
                        .into_iter()
                        .flatten()
                        .map(|e| Entry {
                            maybe_in: true,
                            ..e
                        })
                        .collect()
                }
                // SQS refused the request itself (no such queue, no permission, bad credentials):
                // an earlier copy of it, unanswered, was refused the same way. A refused
                // connection says nothing of an earlier copy that went unanswered.
                Err(Outcome::Refused(error)) => return answer_refused(slots, error, &queue, &lost),
            };
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// How long one attempt may wait for SQS: a third of the client's push timeout (so that a
    /// push whose first answer is lost has time to be sent again), at most the SDK's 10 s, and
    /// never past the latest deadline among the entries.
    fn attempt_timeout(&self, pending: &[Entry]) -> Duration {
        let latest = pending
            .iter()
            .map(|e| e.o.deadline)
            .max()
            .map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
        SqsSettings::default()
            .attempt_timeout
            .min(self.config.push_timeout / 3)
            .min(latest)
            .max(Duration::from_millis(100))
    }

    /// One `SendMessageBatch` attempt (the SDK's own retries off: each attempt is this
    /// transport's, so that it knows which may have reached SQS), given `timeout`.
    async fn request(
        &self,
        client: &aws_sdk_sqs::Client,
        endpoint: &str,
        entries: Vec<SendMessageBatchRequestEntry>,
        timeout: Duration,
    ) -> std::result::Result<SendMessageBatchOutput, Outcome> {
        let queue_url = self.config.queue_url.as_deref().unwrap_or_default();
        let result = client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .customize()
            .config_override(within(timeout))
            .send()
            .await;
        result.map_err(|e| outcome(e, queue_url, endpoint, timeout))
    }
}

/// One entry of a batch on its way, and whether an unanswered request may have delivered it.
struct Entry {
    o: Outgoing,
    maybe_in: bool,
}

/// A failed `SendMessageBatch`: SQS may have the messages, or it certainly does not.
enum Outcome {
    /// No answer, an unreadable one, or a 5xx: the request may have been carried out.
    Unknown(String),
    /// SQS refused the request (or it never left): the messages are not on the queue.
    Refused(Error),
}

/// Waits for `request` while each entry keeps its own deadline: at it, an entry still in the
/// request is answered (it may get in), whatever its batch-mates' deadlines. `None` when every
/// entry's deadline came before SQS answered.
async fn answer_by_deadlines<F: std::future::Future>(
    request: F,
    slots: &mut [Option<Entry>],
    queue: &str,
) -> Option<F::Output> {
    tokio::pin!(request);
    loop {
        let next = slots.iter().flatten().map(|e| e.o.deadline).min()?;
        tokio::select! {
            result = &mut request => return Some(result),
            _ = tokio::time::sleep_until(next.into()) => {
                let now = Instant::now();
                for slot in slots.iter_mut() {
                    if slot.as_ref().is_some_and(|e| e.o.deadline <= now) {
                        let e = slot.take().expect("checked");
                        e.o.refuse(unknown(queue, "SQS had not answered the request holding it by the push's deadline"));
                    }
                }
            }
        }
    }
}

/// Answers the entries of a refused request with its error; an entry an earlier, unanswered
/// request may have delivered (`lost` says why) is unknown, unless SQS itself refused.
fn answer_refused(slots: Vec<Option<Entry>>, error: Error, queue: &str, lost: &str) {
    let sqs_answered = matches!(
        &error,
        Error::Queue {
            aws_code: Some(_),
            ..
        } | Error::Config(_)
    );
    for e in slots.into_iter().flatten() {
        match e.maybe_in && !sqs_answered {
            true => e.o.refuse(unknown(
                queue,
                &format!("{lost}, then the connection was refused ({error})"),
            )),
            false => e.o.refuse(error.clone()),
        }
    }
}

/// The request's entries, their ids the entries' indices.
fn request_entries(pending: &[Entry]) -> Vec<SendMessageBatchRequestEntry> {
    pending
        .iter()
        .enumerate()
        .map(|(i, e)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&e.o.body)
                .set_delay_seconds(e.o.delay_seconds)
                .set_message_group_id(e.o.group_id.clone())
                .set_message_deduplication_id(e.o.dedup_id.clone())
                .build()
                .expect("id and body are set")
        })
        .collect()
}

/// Answers the entries too close to their deadline for another request (a push never sent, with
/// less than its least time to send left; one an unanswered request may have delivered, at its
/// deadline): not enqueued, resp. unknown. Returns the others.
fn settle_too_late(pending: Vec<Entry>, queue: &str, lost: &str) -> Vec<Entry> {
    let now = Instant::now();
    // A push an unanswered request may have delivered is sent again while it has any time left:
    // its caller hears back at its deadline, whatever happens.
    let (go, late): (Vec<Entry>, Vec<Entry>) = pending.into_iter().partition(|e| {
        now + e.o.min_time_to_send < e.o.deadline || (e.maybe_in && now < e.o.deadline)
    });
    for e in late {
        match e.maybe_in {
            true => e.o.refuse(unknown(
                queue,
                &format!("{lost}, and the push's deadline came before an answer"),
            )),
            false => e.o.refuse(Error::queue(
                "not enqueued: the push's deadline came before SQS took it; it will not be sent",
            )),
        }
    }
    go
}

/// The error of a push whose fate SQS did not tell.
fn unknown(queue: &str, why: &str) -> Error {
    Error::QueueUnknown {
        message: format!(
            "SendMessageBatch to {queue}: {why}: the push may be on the queue; enqueue it again with the same id (pushId) and it is delivered once"
        )
        .replace(['\n', '\r'], " "),
        push_id: None,
    }
}

fn refuse_all(batch: Vec<Outgoing>, error: Error) {
    batch.into_iter().for_each(|o| o.refuse(error.clone()))
}

/// Answers every entry SQS accepted or refused for good; returns those to try again (failed on
/// SQS's side, unless this was the `last` round). An entry SQS did not report on is unknown.
fn answer(
    output: SendMessageBatchOutput,
    mut slots: Vec<Option<Entry>>,
    last: bool,
    queue: &str,
) -> Vec<Entry> {
    let mut take = |id: &str| {
        id.parse::<usize>()
            .ok()
            .and_then(|i| slots.get_mut(i)?.take())
    };
    for ok in output.successful() {
        if let Some(e) = take(ok.id()) {
            e.o.accept();
        }
    }
    let mut retry = Vec::new();
    for failed in output.failed() {
        let Some(e) = take(failed.id()) else { continue };
        if failed.sender_fault() || last {
            let why = format!(
                "SendMessageBatch to {queue} failed: SQS refused the message: {}{}",
                failed.code(),
                failed
                    .message()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
            let error = Error::Queue {
                message: why.replace(['\n', '\r'], " "),
                aws_code: Some(failed.code().to_owned()),
                cause: None,
            };
            match e.maybe_in {
                true => e.o.refuse(unknown(
                    queue,
                    &format!("an earlier request went unanswered, then {why}"),
                )),
                false => e.o.refuse(error),
            }
        } else {
            retry.push(e);
        }
    }
    for e in slots.into_iter().flatten() {
        e.o.refuse(unknown(queue, "SQS did not report on the message"));
    }
    retry
}

/// One attempt, no SDK retry, ended within `left`.
fn within(left: Duration) -> aws_sdk_sqs::config::Builder {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig};
    aws_sdk_sqs::config::Builder::default()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3).min(left))
                .operation_attempt_timeout(left)
                .operation_timeout(left)
                .build(),
        )
}

/// What a failed `SendMessageBatch` means for its messages: a definite refusal (SQS answered
/// 4xx, the request could not be built, the connection was refused before anything was sent)
/// or an unknown outcome (no answer in time, a connection lost after the request went out, an
/// answer that cannot be read, a 5xx).
fn outcome<E>(
    e: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
    queue_url: &str,
    endpoint: &str,
    timeout: Duration,
) -> Outcome
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    match &e {
        SdkError::TimeoutError(_) => Outcome::Unknown(format!(
            "SQS did not answer within {} ms",
            timeout.as_millis()
        )),
        SdkError::DispatchFailure(_) if !connection_refused(&e) => {
            Outcome::Unknown(format!("the connection failed: {}", root_cause(&e)))
        }
        SdkError::ResponseError(_) => Outcome::Unknown(format!(
            "SQS's answer could not be read: {}",
            root_cause(&e)
        )),
        // Throttled: this request was not carried out, but an earlier copy may have been.
        SdkError::ServiceError(_) if e.code().is_some_and(|c| c.contains("Throttl")) => {
            Outcome::Unknown(format!(
                "SQS throttled the request: {}",
                e.code().unwrap_or_default()
            ))
        }
        SdkError::ServiceError(service) if service.raw().status().as_u16() >= 500 => {
            Outcome::Unknown(format!(
                "SQS answered {}{}",
                service.raw().status().as_u16(),
                e.code().map(|c| format!(" {c}")).unwrap_or_default()
            ))
        }
        _ => Outcome::Refused(queue_error(e, queue_url, endpoint)),
    }
}

/// Whether the connection was refused (nothing listening, no route, no such host): the request
/// never went out.
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut source = Some(e);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            ) {
                return true;
            }
        }
        source = error.source();
    }
    false
}

impl Transport for SqsTransport {
    fn send(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, ()> {
        Box::pin(self.send_batch(batch))
    }
}

/// The producer's error for a failed request: one line naming the queue and the endpoint, with
/// SQS's error code when it gave one, and the SDK's error kept whole as the cause.
fn queue_error<E, R>(e: SdkError<E, R>, queue_url: &str, endpoint: &str) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let aws_code = e.code().map(str::to_owned);
    let what = match &e {
        SdkError::ServiceError(_) => format!(
            "SQS refused it: {}{}",
            aws_code.as_deref().unwrap_or("an error without a code"),
            e.message().map(|m| format!(" ({m})")).unwrap_or_default()
        ),
        SdkError::DispatchFailure(_) => format!("SQS could not be reached: {}", root_cause(&e)),
        SdkError::ResponseError(_) => format!("SQS's answer could not be read: {}", root_cause(&e)),
        _ => root_cause(&e),
    };
    let message = format!("SendMessageBatch to {queue_url} at {endpoint} failed: {what}")
        .replace(['\n', '\r'], " ");
    // Codes that say the credentials themselves are unusable: the deployment must change.
    const CREDENTIALS: [&str; 6] = [
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    ];
    match e {
        // Requests that could not even be built: a bad endpoint, no credentials.
        SdkError::ConstructionFailure(_) => Error::Config(message),
        _ if aws_code
            .as_deref()
            .is_some_and(|c| CREDENTIALS.contains(&c)) =>
        {
            Error::Config(format!("AWS credentials: unusable for SQS: {message}"))
        }
        e => Error::Queue {
            message,
            aws_code,
            cause: Some(Arc::new(e)),
        },
    }
}

/// Exponential backoff with full jitter: 50 ms, 100 ms, 200 ms, … at most.
fn backoff(round: u32) -> Duration {
    let cap = 50u64 << round.min(6);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
}
