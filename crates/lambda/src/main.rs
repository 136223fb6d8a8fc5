//! pushq's SQS-triggered Lambda: a thin `main` over pushq-delivery's batch engine.
//! Config is read once at init (failing fast), the DB pool and FCM client are built once.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use pushq_delivery::config::CredentialsSetting;
use pushq_delivery::logging::{self, Target};
use pushq_delivery::{metrics, DeliveryConfig, Engine, QueueMessage, WithoutCredentials};

mod event;
use event::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsRecord};

/// mimalloc instead of glibc's malloc: the engine allocates and frees per target (rows, bodies,
/// answers) and glibc's allocator was a quarter of the worker's CPU in the audience benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Time kept back from the invocation deadline for writing the log and answering.
const RESERVE: Duration = Duration::from_secs(3);

/// One thread: a Lambda runs one invocation at a time on a fraction of a vCPU (256 MB is about a
/// seventh of one), so worker threads add only hand-offs between them. The sends of a batch still
/// run concurrently, as tasks of this thread (`docs/benchmarks.md`, the profile).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::init(Target::StdoutForLambda);
    let mut config = DeliveryConfig::from_env().map_err(|e| format!("pushq-lambda init: {e}"))?;
    read_secrets(&mut config)
        .await
        .map_err(|e| format!("pushq-lambda init: {e}"))?;
    pushq_delivery::store::warn_if_unverified(config.database_url.as_deref());
    let engine = Engine::connect(&config, WithoutCredentials::Refuse)
        .await
        .map_err(|e| format!("pushq-lambda init: {e}"))?;
    let engine = Arc::new(engine);
    let namespace: Arc<str> = config.metrics_namespace.into();
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (engine, namespace) = (engine.clone(), namespace.clone());
        async move { handle(&engine, &namespace, event).await }
    }))
    .await
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
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let started = Instant::now();
    let messages: Vec<QueueMessage> = event
        .payload
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
    let (failed, outcome) = engine
        .deliver(&messages, deadline(event.context.deadline))
        .await;
    if let Some(outcome) = outcome {
        metrics::report(&outcome, started.elapsed(), namespace, "pushq-lambda", &[]);
    }
    Ok(SqsBatchResponse {
        batch_item_failures: failed
            .into_iter()
            .map(|item_identifier| BatchItemFailure { item_identifier })
            .collect(),
    })
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
