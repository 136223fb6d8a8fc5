//! Options of `new PushClient(options)`, as they appear in `index.d.ts`, and the one reader of
//! every option and argument object JS passes ([`read`]): serde, on the same `#[napi(object)]`
//! structs that generate `index.d.ts`, with unknown fields refused (`deny_unknown_fields`), so
//! that a wrong type or an unknown key is an error naming it.

use napi_derive::napi;
use pushq_producer::{Error, ProducerOptions};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What is wrong with an object JS passed: where (`maxBacklogBytes`, `userId`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misread {
    /// The field, as JS names it; empty for the object itself.
    pub field: String,
    /// What is wrong with it: `unknown option (known: …)`, `missing`, serde's `invalid type: …`.
    pub problem: String,
}

impl Misread {
    /// The message for an object JS calls `what` (`options`, `device`): `options.app: …`.
    pub fn message(&self, what: &str) -> String {
        match self.field.as_str() {
            "" => format!("{what}: {}", self.problem),
            field => format!("{what}.{field}: {}", self.problem),
        }
    }
}

/// Reads an object JS passed (as JSON text; `None` or `null` when it passed none) into `T`. Not
/// an object, a field of the wrong type, an unknown field (`T` denies them; called an `option` or
/// a `field` as `kind` says) or a missing required one is a [`Misread`] naming the field.
pub(crate) fn read<T: DeserializeOwned + Default>(
    json: Option<&str>,
    kind: &str,
) -> Result<T, Misread> {
    let value = match json.map(serde_json::from_str::<Value>) {
        None | Some(Ok(Value::Null)) => return Ok(T::default()),
        Some(Ok(value @ Value::Object(_))) => value,
        _ => {
            return Err(Misread {
                field: String::new(),
                problem: "must be an object".to_owned(),
            })
        }
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let problem = e.into_inner().to_string();
        if let Some(rest) = problem.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default().to_owned();
            let problem = "missing".to_owned();
            return Misread { field, problem };
        }
        let problem = match problem.strip_prefix("unknown field `") {
            // serde: "unknown field `x`, expected one of `a`, `b`" (or "there are no fields").
            Some(rest) => format!(
                "unknown {kind} (known: {})",
                rest.split_once(", expected ")
                    .map(|(_, known)| known.trim_start_matches("one of ").replace('`', ""))
                    .unwrap_or_default()
            ),
            // serde names Rust's number types; JS has numbers.
            None => ["f64", "u32", "u64"].iter().fold(problem, |p, t| {
                p.replace(&format!("expected {t}"), "expected a number")
            }),
        };
        let field = if path == "." { String::new() } else { path };
        Misread { field, problem }
    })
}

/// Options for a {@link PushClient}. Every option falls back to an environment variable;
/// an explicit option wins over the environment.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    let o: PushClientOptions =
        read(json, "option").map_err(|e| Error::Config(e.message("options")))?;
    Ok(ClientOptions {
        producer: ProducerOptions {
            queue_url: o.queue_url,
            region: o.region,
            endpoint_url: o.endpoint_url,
            mode: o.mode,
            app: o.app,
            max_backlog_bytes: whole_number("maxBacklogBytes", o.max_backlog_bytes)?,
            push_timeout_ms: whole_number("pushTimeoutMs", o.push_timeout_ms)?,
            scheduler_role_arn: o.scheduler_role_arn,
            schedule_group: o.schedule_group,
        },
        database_url: o.database_url,
    })
}

/// A number option that must be a whole number (its range is the producer's to check).
fn whole_number(name: &str, value: Option<f64>) -> Result<Option<u64>, Error> {
    match value {
        Some(n) if n.fract() != 0.0 || !(0.0..=u64::MAX as f64).contains(&n) => Err(Error::Config(
            format!("options.{name}: must be a whole number (got {n})"),
        )),
        other => Ok(other.map(|n| n as u64)),
    }
}
