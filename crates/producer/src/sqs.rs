//! The SQS transport: sends batches with `SendMessageBatch`, retrying entries SQS failed on its
//! side; and the one place an SQS client is built (timeouts, retries, region, endpoint), for the
//! producer, `pushq worker` and `pushq dlq redrive` alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tokio::sync::OnceCell;

use crate::config::{region_from_queue_url, ProducerConfig};
use crate::error::{Error, Result};
use crate::transport::{BoxFuture, Outgoing, Transport};

/// Rounds of retrying entries that SQS failed on its side (the SDK itself retries whole requests).
const ENTRY_RETRIES: u32 = 4;

/// How an SQS client is built: where it sends and how long it waits.
#[derive(Debug, Clone)]
pub struct SqsSettings {
    /// Explicit region; else the AWS chain (`AWS_REGION`, profile), then the queue URL's host.
    pub region: Option<String>,
    /// Explicit endpoint; else the SDK's (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, the region's).
    pub endpoint_url: Option<String>,
    /// A queue URL to take the region from when nothing else names one.
    pub queue_url: Option<String>,
    /// Longest wait for one HTTP attempt; must exceed a long poll's wait time.
    pub attempt_timeout: Duration,
    /// Longest wait for one operation, its retries included.
    pub operation_timeout: Duration,
    /// Attempts per operation (the SDK's standard retry mode).
    pub max_attempts: u32,
}

impl Default for SqsSettings {
    /// The producer's: 10 s an attempt, 30 s an operation, 3 attempts.
    fn default() -> Self {
        SqsSettings {
            region: None,
            endpoint_url: None,
            queue_url: None,
            attempt_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

/// Builds an SQS client from `settings`. Fails with [`Error::Config`] when no region can be
/// found or the AWS credential chain yields no credentials.
pub async fn client(settings: &SqsSettings) -> Result<aws_sdk_sqs::Client> {
    Ok(client_and_endpoint(settings).await?.0)
}

/// [`client`], and the endpoint it sends to, for error messages.
pub async fn client_and_endpoint(settings: &SqsSettings) -> Result<(aws_sdk_sqs::Client, String)> {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
    use aws_sdk_sqs::config::ProvideCredentials;

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let mut shared = loader.load().await;
    if shared.region().is_none() {
        let Some(region) = settings
            .queue_url
            .as_deref()
            .and_then(region_from_queue_url)
        else {
            return Err(Error::Config(
                "region: not set (pass options.region, set AWS_REGION, or use an amazonaws.com queue URL)".into(),
            ));
        };
        shared = shared.into_builder().region(Region::new(region)).build();
    }
    // Credentials are checked here, once, so that a machine without any is told so as a
    // configuration error rather than as a failed request to the queue.
    if let Some(credentials) = shared.credentials_provider() {
        use aws_credential_types::provider::error::CredentialsError;
        credentials.provide_credentials().await.map_err(|e| match e {
            // Nothing configured, or configured wrongly: the deployment must change.
            CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_) => {
                Error::Config(format!(
                    "AWS credentials: none usable for SQS (the standard chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, a container or instance role): {}",
                    root_cause(&e)
                ))
            }
            // A provider that timed out or failed may answer next time.
            e => Error::queue(format!(
                "AWS credentials could not be loaded for SQS just now: {}",
                root_cause(&e)
            )),
        })?;
    }
    let endpoint = match shared.endpoint_url() {
        Some(url) => url.to_owned(),
        None => format!(
            "https://sqs.{}.amazonaws.com",
            shared.region().map_or("?", |r| r.as_ref())
        ),
    };
    Ok((aws_sdk_sqs::Client::new(&shared), endpoint))
}

/// The innermost error of a chain, on one line: what actually went wrong.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string().replace(['\n', '\r'], " ")
}

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
    /// Sends one batch, retrying entries SQS failed on its side, and answers every entry.
    async fn send_batch(&self, mut batch: Vec<Outgoing>) {
        let queue_url = self.config.queue_url.as_deref().unwrap_or_default();
        let (client, endpoint) = match self.client().await {
            Ok(c) => c,
            Err(e) => return refuse_all(batch, e),
        };
        for round in 0..=ENTRY_RETRIES {
            let wait = if round > 0 {
                backoff(round)
            } else {
                Duration::ZERO
            };
            let Some(left) = time_left(&batch, wait) else {
                let error = Error::queue(
                    "not enqueued: the push's deadline came before SQS took it; it will not be sent",
                );
                return refuse_all(batch, error);
            };
            tokio::time::sleep(wait).await;
            let output = match self.request(client, endpoint, &batch, left).await {
                Ok(output) => output,
                Err(error) => return refuse_all(batch, error),
            };
            let last = round == ENTRY_RETRIES;
            batch = answer(output, batch, last, &format!("{queue_url} at {endpoint}"));
            if batch.is_empty() {
                return;
            }
        }
    }

    /// One `SendMessageBatch` of `batch`, given `left` to finish, retries included.
    async fn request(
        &self,
        client: &aws_sdk_sqs::Client,
        endpoint: &str,
        batch: &[Outgoing],
        left: Duration,
    ) -> Result<SendMessageBatchOutput> {
        let queue_url = self.config.queue_url.as_deref().unwrap_or_default();
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
            .customize()
            .config_override(within(left))
            .send()
            .await;
        match result {
            Ok(output) => Ok(output),
            Err(SdkError::TimeoutError(_)) => Err(Error::queue(format!(
                "SendMessageBatch to {queue_url} at {endpoint}: SQS did not answer within the push's deadline ({} ms left when the request went out): the push is not known to be enqueued and will not be sent again",
                left.as_millis()
            ))),
            Err(e) => Err(queue_error(e, queue_url, endpoint)),
        }
    }
}

/// The time from now plus `wait` to the earliest deadline in the batch, if any is left. Every
/// request ends by it, so that each caller hears back by its push's deadline and nothing is
/// sent after it.
fn time_left(batch: &[Outgoing], wait: Duration) -> Option<Duration> {
    let deadline = batch.iter().map(|o| o.deadline).min()?;
    let least = batch.iter().map(|o| o.min_time_to_send).max()?;
    deadline
        .checked_duration_since(Instant::now() + wait)
        .filter(|left| !left.is_zero() && *left >= least)
}

fn refuse_all(batch: Vec<Outgoing>, error: Error) {
    batch.into_iter().for_each(|o| o.refuse(error.clone()))
}

/// Answers every entry SQS accepted or refused for good; returns those to try again (failed on
/// SQS's side, unless this was the `last` round).
fn answer(
    output: SendMessageBatchOutput,
    batch: Vec<Outgoing>,
    last: bool,
    queue: &str,
) -> Vec<Outgoing> {
    let mut slots: Vec<Option<Outgoing>> = batch.into_iter().map(Some).collect();
    let mut take = |id: &str| {
        id.parse::<usize>()
            .ok()
            .and_then(|i| slots.get_mut(i)?.take())
    };
    for ok in output.successful() {
        if let Some(o) = take(ok.id()) {
            o.accept();
        }
    }
    let mut retry = Vec::new();
    for failed in output.failed() {
        let Some(o) = take(failed.id()) else { continue };
        if failed.sender_fault() || last {
            let why = format!(
                "SendMessageBatch to {queue} failed: SQS refused the message: {}{}",
                failed.code(),
                failed
                    .message()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            );
            o.refuse(Error::Queue {
                message: why.replace(['\n', '\r'], " "),
                aws_code: Some(failed.code().to_owned()),
                cause: None,
            });
        } else {
            retry.push(o);
        }
    }
    // An entry SQS neither accepted nor failed is not known to be in the queue.
    for o in slots.into_iter().flatten() {
        o.refuse(Error::queue(format!(
            "SendMessageBatch to {queue}: SQS did not report on the message"
        )));
    }
    retry
}

/// Timeouts that end a request (its retries included) within `left`.
fn within(left: Duration) -> aws_sdk_sqs::config::Builder {
    use aws_config::timeout::TimeoutConfig;
    let defaults = SqsSettings::default();
    aws_sdk_sqs::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3).min(left))
            .operation_attempt_timeout(defaults.attempt_timeout.min(left))
            .operation_timeout(defaults.operation_timeout.min(left))
            .build(),
    )
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
