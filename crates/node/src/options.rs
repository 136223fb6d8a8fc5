//! Options of `new PushClient(options)`, as they appear in `index.d.ts`.
//! Read through JSON so that a wrong type or an unknown key is a `PUSHQ_CONFIG` error naming it;
//! the struct documents the options for TypeScript and is never converted itself.

use napi_derive::napi;
use pushq_producer::{Error, ProducerOptions};
use serde_json::Value;

/// Options for a {@link PushClient}. Every option falls back to an environment variable;
/// an explicit option wins over the environment.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct PushClientOptions {
    /// URL of the SQS queue pushes go to. Falls back to `PUSHQ_QUEUE_URL`.
    /// Required in `sqs` mode: without it the client throws `PUSHQ_CONFIG`.
    /// A URL ending in `.fifo` is a FIFO queue (no per-push `delaySeconds` there).
    pub queue_url: Option<String>,
    /// AWS region. Falls back to `AWS_REGION`, the AWS profile, then the region in an
    /// `amazonaws.com` queue URL; none of these is a `PUSHQ_CONFIG` error at the first push.
    pub region: Option<String>,
    /// SQS endpoint, for a local or private SQS. Falls back to `AWS_ENDPOINT_URL_SQS`, then
    /// `AWS_ENDPOINT_URL`, then the region's public endpoint.
    pub endpoint_url: Option<String>,
    /// Where pushes go: `'sqs'` puts them on the queue; `'local'` delivers them in-process
    /// without AWS (development). Falls back to `PUSHQ_MODE`.
    /// @default 'sqs'
    #[napi(ts_type = "'sqs' | 'local'")]
    pub mode: Option<String>,
    /// The app (Firebase project) of pushes that name none: the key of the deployment's
    /// credentials map that sends them. 1–64 characters of `A-Z a-z 0-9 _ . -`. Falls back to
    /// `PUSHQ_APP`.
    /// @default 'default'
    pub app: Option<String>,
    /// Database of local mode; in `sqs` mode, where pushes scheduled beyond 900 s are written
    /// down and `cancelPush` records cancellations (no default there). Falls back to
    /// `DATABASE_URL`.
    /// @default 'sqlite://pushq-dev.db' (local mode)
    pub database_url: Option<String>,
    /// Most bytes of pushes (as queue messages) waiting in the client for SQS. A push that would
    /// pass it is refused at once with `PUSHQ_QUEUE` ("backlog is full") and never sent, so a
    /// slow or unreachable SQS cannot grow the server's memory. 65536 to 1073741824.
    /// @default 16777216
    pub max_backlog_bytes: Option<f64>,
    /// Most milliseconds a push may spend in the client before SQS has it. At this deadline its
    /// promise rejects: `PUSHQ_QUEUE` when it never left the client (it is not sent later),
    /// `PUSHQ_QUEUE_UNKNOWN` when a request holding it went unanswered (it may be on the queue:
    /// enqueue it again with `id: err.pushId`). Each attempt gets a third of it, at most 10 s.
    /// @default 30000
    pub push_timeout_ms: Option<f64>,
    /// The IAM role EventBridge Scheduler sends scheduled pushes to the queue with (the SAM
    /// template's `SchedulerRoleArn` output). Falls back to `PUSHQ_SCHEDULER_ROLE_ARN`. Needed
    /// only for `sendAt` more than 900 s ahead (or any `sendAt` on a FIFO queue).
    pub scheduler_role_arn: Option<String>,
    /// EventBridge Scheduler group of scheduled pushes. Falls back to `PUSHQ_SCHEDULE_GROUP`.
    /// @default 'pushq'
    pub schedule_group: Option<String>,
}

/// The option names, in the order `index.d.ts` lists them.
const KNOWN: [&str; 10] = [
    "queueUrl",
    "region",
    "endpointUrl",
    "mode",
    "app",
    "databaseUrl",
    "maxBacklogBytes",
    "pushTimeoutMs",
    "schedulerRoleArn",
    "scheduleGroup",
];

/// The options of a client: the producer's, and the database of local mode.
#[derive(Debug, Default)]
pub struct ClientOptions {
    /// Queue, region, endpoint, mode.
    pub producer: ProducerOptions,
    /// Local mode's database (`databaseUrl`).
    pub database_url: Option<String>,
}

/// Reads options given as JSON text (`None` when the caller passed none).
pub fn from_json(json: Option<&str>) -> Result<ClientOptions, Error> {
    let bad = |why: String| Error::Config(why);
    let map = match json.map(serde_json::from_str::<Value>) {
        None | Some(Ok(Value::Null)) => return Ok(ClientOptions::default()),
        Some(Ok(Value::Object(map))) => map,
        _ => return Err(bad("options: must be an object".to_owned())),
    };
    let mut options = ClientOptions::default();
    for (key, value) in map {
        let number = match key.as_str() {
            "maxBacklogBytes" => Some(&mut options.producer.max_backlog_bytes),
            "pushTimeoutMs" => Some(&mut options.producer.push_timeout_ms),
            _ => None,
        };
        if let Some(slot) = number {
            *slot = match &value {
                Value::Null => None,
                Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
                other => {
                    return Err(bad(format!(
                        "options.{key}: must be a whole number (got {other})"
                    )))
                }
            };
            continue;
        }
        let value = match value {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => {
                return Err(bad(format!(
                    "options.{key}: must be a string (got {other})"
                )))
            }
        };
        let slot = match key.as_str() {
            "queueUrl" => &mut options.producer.queue_url,
            "region" => &mut options.producer.region,
            "endpointUrl" => &mut options.producer.endpoint_url,
            "mode" => &mut options.producer.mode,
            "app" => &mut options.producer.app,
            "databaseUrl" => &mut options.database_url,
            "schedulerRoleArn" => &mut options.producer.scheduler_role_arn,
            "scheduleGroup" => &mut options.producer.schedule_group,
            _ => {
                return Err(bad(format!(
                    "options.{key}: unknown option (known: {})",
                    KNOWN.join(", ")
                )))
            }
        };
        *slot = value;
    }
    Ok(options)
}
