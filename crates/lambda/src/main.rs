//! pushq's SQS-triggered Lambda: a thin `main` over pushq-delivery's batch engine.
//! Config is read once at init (failing fast), the DB pool and FCM client are built once; then
//! one invocation at a time from the Runtime API ([`runtime`]), each an SQS batch.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use pushq_delivery::config::CredentialsSetting;
use pushq_delivery::logging::{self, Target};
use pushq_delivery::{metrics, DeliveryConfig, Engine, QueueMessage, WithoutCredentials};
use tracing::Instrument;

mod event;
mod runtime;
use event::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsRecord};
use runtime::{Invocation, Runtime};

/// What `main` ends with: init's errors (named, never a secret's value) and the Runtime API's.
type Error = Box<dyn std::error::Error + Send + Sync>;

/// mimalloc instead of glibc's malloc: the engine allocates and frees per target (rows, bodies,
/// answers) and glibc's allocator was a quarter of the worker's CPU in the audience benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process, before anything allocates. mimalloc asks for
/// huge pages on its arenas (`madvise`), and where the kernel grants them the first touch of each
/// 2 MiB region zeroes all of it: on the benchmark's machine that was over half of the init
/// profile's samples, and init fell from 13–23 to 11–16 ms without it (`docs/benchmarks.md`,
/// section 5). A Lambda's heap
/// (about 25 MiB) is too small for huge pages to pay that back. `PR_SET_THP_DISABLE` is the
/// kernel's switch for one process; this runs from `.init_array`, ahead of mimalloc's start-up
/// (an `.init_array.NNNNN` entry runs before the plain `.init_array` ones).
#[used]
#[allow(unsafe_code)]
#[link_section = ".init_array.00099"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

#[allow(unsafe_code)]
extern "C" fn no_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers only and touches none of our memory; its
    // failure (a kernel before 3.15) leaves the kernel's default, which is only slower.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Time kept back from the invocation deadline for writing the log and answering.
const RESERVE: Duration = Duration::from_secs(3);

/// One thread: a Lambda runs one invocation at a time on a fraction of a vCPU (256 MB is about a
/// seventh of one), so worker threads add only hand-offs between them. The sends of a batch still
/// run concurrently, as tasks of this thread (`docs/benchmarks.md`, the profile).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(Target::StdoutForLambda);
    let mut runtime = Runtime::from_env()?;
    let mut config = DeliveryConfig::from_env().map_err(|e| format!("pushq-lambda init: {e}"))?;
    read_secrets(&mut config)
        .await
        .map_err(|e| format!("pushq-lambda init: {e}"))?;
    pushq_delivery::store::warn_if_unverified(config.database_url.as_deref());
    let engine = Engine::connect(&config, WithoutCredentials::Refuse)
        .await
        .map_err(|e| format!("pushq-lambda init: {e}"))?;
    let namespace = config.metrics_namespace;
    loop {
        let invocation = runtime.next().await?;
        answer(&mut runtime, &engine, &namespace, invocation).await?;
    }
}

/// Runs one invocation and posts its answer: the batch response, or an error report for an
/// event that is not an SQS event or a handler that panicked (Lambda then hands the whole
/// batch back). Only a failed exchange with the Runtime API is an error here.
async fn answer(
    runtime: &mut Runtime,
    engine: &Engine,
    namespace: &str,
    invocation: Invocation,
) -> Result<(), runtime::RuntimeError> {
    let id = &invocation.request_id;
    // Every log line of the invocation carries its request id (under `spans`), as
    // CloudWatch's own lines for the invocation do.
    let span = tracing::info_span!("Lambda runtime invoke", requestId = %id);
    let event: SqsEvent = match serde_json::from_slice(&invocation.event) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(parent: &span, error = %e, "the invocation's event is not an SQS event");
            let message = format!("not an SQS event: {e}");
            return runtime.fail(id, "InvalidEvent", &message).await;
        }
    };
    let handled = AssertUnwindSafe(handle(engine, namespace, event, invocation.deadline_ms))
        .catch_unwind()
        .instrument(span)
        .await;
    match handled {
        Ok(response) => {
            let body = serde_json::to_vec(&response).expect("a batch response always serializes");
            runtime.respond(id, body).await
        }
        Err(_) => {
            // The panic's message is in the log (the panic hook printed it to stderr).
            let message = "the handler panicked; the batch comes back whole";
            runtime.fail(id, "Panic", message).await
        }
    }
}

/// Secrets named by ARN (`PUSHQ_FCM_CREDENTIALS_SECRET_ARN`, `PUSHQ_DATABASE_URL_SECRET_ARN`)
/// are read from Secrets Manager once, at init, so they never sit in plaintext environment values.
/// A secret set this way wins over the plain variable. Errors name the variable, never the value.
async fn read_secrets(config: &mut DeliveryConfig) -> Result<(), String> {
    let arns: Vec<(&'static str, String)> = [
        "PUSHQ_FCM_CREDENTIALS_SECRET_ARN",
        "PUSHQ_DATABASE_URL_SECRET_ARN",
    ]
    .into_iter()
    .filter_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|arn| (name, arn))
    })
    .collect();
    if arns.is_empty() {
        return Ok(());
    }
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_secretsmanager::Client::new(&shared);
    for (name, arn) in arns {
        let secret = client
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "{name}: cannot read the secret ({})",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?
            .secret_string
            .ok_or_else(|| format!("{name}: the secret has no string value"))?;
        match name {
            "PUSHQ_FCM_CREDENTIALS_SECRET_ARN" => {
                config.credentials = Some(CredentialsSetting {
                    variable: name,
                    value: secret,
                })
            }
            _ => config.database_url = Some(secret),
        }
    }
    Ok(())
}

/// One SQS batch: every record the engine could not finish is a batch item failure; on a FIFO
/// queue, so is every later record of its message group, unsent.
async fn handle(
    engine: &Engine,
    namespace: &str,
    event: SqsEvent,
    deadline_ms: u64,
) -> SqsBatchResponse {
    let started = Instant::now();
    let messages: Vec<QueueMessage> = event
        .records
        .iter()
        .map(|r| {
            QueueMessage::from_sqs(
                r.message_id.as_deref(),
                r.body.as_deref(),
                r.attributes.sent_timestamp.as_deref(),
            )
            .delivered_before(
                r.attributes.approximate_receive_count.as_deref(),
                r.message_attributes
                    .get(pushq_delivery::FIRST_MESSAGE_ID)
                    .and_then(|a| a.string_value.as_deref()),
            )
            .in_group(message_group(r))
        })
        .collect();
    let (failed, outcome) = engine.deliver(&messages, deadline(deadline_ms)).await;
    if let Some(outcome) = outcome {
        metrics::report(&outcome, started.elapsed(), namespace, "pushq-lambda", &[]);
    }
    SqsBatchResponse {
        batch_item_failures: failed
            .into_iter()
            .map(|item_identifier| BatchItemFailure { item_identifier })
            .collect(),
    }
}

/// A record's FIFO message group: its `MessageGroupId`; a record from a `.fifo` queue without
/// one (SQS always sets it) shares one group with its like, which keeps them in order. `None` on
/// a standard queue.
fn message_group(record: &SqsRecord) -> Option<&str> {
    record.attributes.message_group_id.as_deref().or_else(|| {
        record
            .event_source_arn
            .as_deref()
            .is_some_and(|arn| arn.ends_with(".fifo"))
            .then_some("")
    })
}

/// The invocation deadline (epoch milliseconds) as an `Instant`, less the reserve.
fn deadline(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now()
        + Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(RESERVE)
}
