//! A minimal Lambda Runtime API served by the test, and the real `pushq-lambda` binary started
//! against it the way Lambda starts `bootstrap`: invocations go in, their answers come back.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::{temp_dir, Proc};

/// A minimal Lambda Runtime API: invocations queued by the test, handed to the function's
/// `next` polls, and its answers passed back.
pub struct RuntimeApi {
    events: Mutex<VecDeque<(String, Value, u64)>>,
    ready: Notify,
    responses: mpsc::UnboundedSender<(String, Value)>,
    /// Whether the function has asked for an invocation yet (it is initialised and waiting).
    polled: tokio::sync::watch::Sender<bool>,
    /// Whether each answer closes its connection (`Connection: close`), so that the function
    /// must connect again for its next request.
    close_connections: std::sync::atomic::AtomicBool,
}

impl RuntimeApi {
    /// Queues one invocation of `event` whose deadline is `seconds` from now.
    pub fn invoke(&self, id: &str, event: Value, seconds: u64) {
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + seconds * 1000;
        self.events
            .lock()
            .unwrap()
            .push_back((id.to_owned(), event, deadline));
        self.ready.notify_waiters();
    }

    /// From now on, closes the function's connection after each answer (`Connection: close`).
    pub fn close_each_connection(&self) {
        self.close_connections
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until the function has asked for its first invocation: its initialisation is
    /// over, and an invocation queued now reaches it at once.
    pub async fn polled(&self) {
        let mut polled = self.polled.subscribe();
        polled.wait_for(|p| *p).await.unwrap();
    }
}

/// `binary` (the test's `CARGO_BIN_EXE_pushq-lambda`) as Lambda starts `bootstrap`: pointed at
/// the Runtime API at `runtime_api`, with the function's variables and none of pushq's own from
/// the test's environment.
pub fn bootstrap_command(binary: &str, runtime_api: std::net::SocketAddr) -> Command {
    let mut command = Command::new(binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "pushq")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .env_remove("DATABASE_URL")
        .env_remove("PUSHQ_FCM_CREDENTIALS")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    command
}

/// Serves the Runtime API on a free loopback port; returns its address, the API (to invoke)
/// and the function's answers, `(request id, body)`.
pub async fn serve_runtime_api() -> (
    std::net::SocketAddr,
    Arc<RuntimeApi>,
    mpsc::UnboundedReceiver<(String, Value)>,
) {
    let (tx, responses) = mpsc::unbounded_channel();
    let api = Arc::new(RuntimeApi {
        events: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        responses: tx,
        polled: tokio::sync::watch::channel(false).0,
        close_connections: std::sync::atomic::AtomicBool::new(false),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, api, responses)
}

/// The Runtime API on a free loopback port, with one `bootstrap` process polling it.
pub struct Lambda {
    api: Arc<RuntimeApi>,
    responses: mpsc::UnboundedReceiver<(String, Value)>,
    _bootstrap: Proc,
    /// Where the bootstrap's stdout and stderr go.
    pub output: PathBuf,
}

impl Lambda {
    /// Serves the Runtime API and starts `binary` (the test's `CARGO_BIN_EXE_pushq-lambda`) with
    /// `env` on top of a clean environment for pushq's variables.
    pub async fn start(binary: &str, env: &[(String, String)]) -> Lambda {
        let (addr, api, responses) = serve_runtime_api().await;
        let output = temp_dir().join("bootstrap.log");
        let log = std::fs::File::create(&output).unwrap();
        let child = bootstrap_command(binary, addr)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Lambda {
            api,
            responses,
            _bootstrap: Proc(child),
            output,
        }
    }

    /// Invokes the function with `event` and an invocation deadline `seconds` from now; waits
    /// up to `wait` for its answer (the function's output is shown if none comes).
    pub async fn invoke(&mut self, id: &str, event: Value, seconds: u64, wait: Duration) -> Value {
        self.api.invoke(id, event, seconds);
        self.answer(id, wait).await
    }

    /// Waits until the bootstrap has initialised and asks for an invocation.
    pub async fn ready(&self) {
        self.api.polled().await
    }

    /// Queues an invocation without waiting for its answer ([`Lambda::answer`] waits).
    pub fn start_invocation(&self, id: &str, event: Value, seconds: u64) {
        self.api.invoke(id, event, seconds);
    }

    /// Waits up to `wait` for the answer to invocation `id` (the function's output is shown if
    /// none comes).
    pub async fn answer(&mut self, id: &str, wait: Duration) -> Value {
        let answer = tokio::time::timeout(wait, self.responses.recv()).await;
        let Ok(Some((answered, answer))) = answer else {
            panic!(
                "no answer to {id} within {wait:?}; the function's output:\n{}",
                self.output()
            );
        };
        assert_eq!(answered, id);
        answer
    }

    /// What the function printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

/// The message ids a `{"batchItemFailures": […]}` answer names, sorted.
pub fn failed_items(answer: &Value) -> Vec<String> {
    let mut ids: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// An SQS event of these (message id, body) records, as Lambda's event source mapping sends it.
pub fn sqs_event(records: &[(&str, String)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| sqs_record(id, body))
        .collect();
    json!({ "Records": records })
}

/// One record of an SQS event, as Lambda's event source mapping sends it.
pub fn sqs_record(message_id: &str, body: &str) -> Value {
    json!({
        "messageId": message_id, "receiptHandle": "rh", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000",
            "SenderId": "x", "ApproximateFirstReceiveTimestamp": "1795000000001"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:pushq", "awsRegion": "us-east-1"
    })
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> (HeaderMap, String) {
    api.polled.send_replace(true);
    loop {
        let notified = api.ready.notified();
        if let Some((id, event, deadline_ms)) = api.events.lock().unwrap().pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            headers.insert(
                "lambda-runtime-deadline-ms",
                deadline_ms.to_string().parse().unwrap(),
            );
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:pushq"
                    .parse()
                    .unwrap(),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".parse().unwrap(),
            );
            headers.extend(closing(&api));
            return (headers, event.to_string());
        }
        notified.await;
    }
}

async fn response(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    body: String,
) -> (HeaderMap, &'static str) {
    let _ = api.responses.send((
        id,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    (closing(&api), "ok")
}

async fn error(
    State(api): State<Arc<RuntimeApi>>,
    Path(id): Path<String>,
    body: String,
) -> (HeaderMap, &'static str) {
    let error = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api
        .responses
        .send((id, json!({ "invocationError": error })));
    (closing(&api), "ok")
}

/// `Connection: close` when the API closes each connection after its answer.
fn closing(api: &RuntimeApi) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if api
        .close_connections
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        headers.insert("connection", "close".parse().unwrap());
    }
    headers
}
