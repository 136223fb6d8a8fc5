//! sqs-lite: an in-memory SQS for the benchmarks, where moto (about 100 messages/s) would be
//! the bottleneck. It speaks the JSON protocol the AWS SDKs use (`X-Amz-Target: AmazonSQS.*`)
//! for what pushq needs: queues, send (batch), receive with long polling and visibility
//! timeouts, delete (batch), change visibility (batch), queue attributes, purge.
//! Standard queues only: no FIFO, no DLQ redrive, no message attributes. Not for production.
//!
//!     sqs-lite --port 0     # prints "listening on http://127.0.0.1:PORT"

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Parser;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::sync::Notify;

#[derive(Parser)]
#[command(about = "An in-memory SQS (JSON protocol) for pushq's benchmarks")]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

struct Message {
    id: String,
    body: String,
    md5: String,
    sent_ms: u128,
    receives: u32,
    first_receive_ms: u128,
}

#[derive(Default)]
struct Queue {
    /// Visible now, oldest first.
    visible: VecDeque<String>,
    /// In flight or delayed: id → when it becomes visible again.
    hidden: HashMap<String, Instant>,
    messages: HashMap<String, Message>,
    /// Receipt handle → message id (only the latest receipt of a message is valid).
    receipts: HashMap<String, String>,
    visibility_timeout: u64,
}

impl Queue {
    /// Moves every hidden message whose time has come back to the visible list.
    fn wake(&mut self, now: Instant) {
        let due: Vec<String> = self
            .hidden
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.hidden.remove(&id);
            self.visible.push_back(id);
        }
    }
}

struct Sqs {
    base: String,
    queues: Mutex<HashMap<String, Queue>>,
    arrived: Notify,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn error(code: &str, query_code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("content-type", "application/x-amz-json-1.0".to_owned()),
            ("x-amzn-query-error", format!("{query_code};Sender")),
        ],
        json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

fn no_queue() -> Response {
    error(
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )
}

fn queue_name(req: &Value) -> String {
    req["QueueUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// The entries of a batch action, or the single action's request as one entry.
fn entries(req: &Value, single: bool, as_entry: impl FnOnce() -> Value) -> Vec<Value> {
    if single {
        vec![as_entry()]
    } else {
        req["Entries"].as_array().cloned().unwrap_or_default()
    }
}

/// Answers one SQS request: the action named by `X-Amz-Target`, with its JSON body.
async fn handle(State(sqs): State<Arc<Sqs>>, headers: HeaderMap, body: String) -> Response {
    let action = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("AmazonSQS."))
        .unwrap_or_default()
        .to_owned();
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    match action.as_str() {
        "CreateQueue" => create_queue(&sqs, &req),
        "GetQueueUrl" => get_queue_url(&sqs, &req),
        "DeleteQueue" => delete_queue(&sqs, &req),
        "PurgeQueue" => purge_queue(&sqs, &req),
        "SendMessage" => send_messages(&sqs, &req, true),
        "SendMessageBatch" => send_messages(&sqs, &req, false),
        "ReceiveMessage" => receive_message(&sqs, &req).await,
        "DeleteMessage" => delete_messages(&sqs, &req, true),
        "DeleteMessageBatch" => delete_messages(&sqs, &req, false),
        "ChangeMessageVisibility" => change_visibility(&sqs, &req, true),
        "ChangeMessageVisibilityBatch" => change_visibility(&sqs, &req, false),
        "GetQueueAttributes" => queue_attributes(&sqs, &req),
        other => error(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            &format!("sqs-lite does not implement {other}"),
        ),
    }
}

/// The request's `QueueName`, unless it is missing or empty.
fn queue_name_param(req: &Value) -> Option<String> {
    let name = req["QueueName"].as_str().unwrap_or_default();
    (!name.is_empty()).then(|| name.to_owned())
}

/// What SQS answers a missing or empty `QueueName` with.
fn no_queue_name() -> Response {
    error(
        "InvalidParameterValue",
        "InvalidParameterValue",
        "QueueName",
    )
}

/// The response naming a queue's URL.
fn queue_url(sqs: &Sqs, name: &str) -> Response {
    ok(json!({"QueueUrl": format!("{}/000000000000/{name}", sqs.base)}))
}

/// CreateQueue: makes the queue, with its `VisibilityTimeout` attribute (default 30 s), unless
/// it exists; an existing queue keeps its attributes.
fn create_queue(sqs: &Sqs, req: &Value) -> Response {
    let Some(name) = queue_name_param(req) else {
        return no_queue_name();
    };
    let vt = req["Attributes"]["VisibilityTimeout"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    sqs.queues
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_insert_with(|| Queue {
            visibility_timeout: vt,
            ..Queue::default()
        });
    queue_url(sqs, &name)
}

/// GetQueueUrl.
fn get_queue_url(sqs: &Sqs, req: &Value) -> Response {
    let Some(name) = queue_name_param(req) else {
        return no_queue_name();
    };
    if !sqs.queues.lock().unwrap().contains_key(&name) {
        return no_queue();
    }
    queue_url(sqs, &name)
}

/// DeleteQueue (a queue that does not exist is not an error).
fn delete_queue(sqs: &Sqs, req: &Value) -> Response {
    sqs.queues.lock().unwrap().remove(&queue_name(req));
    ok(json!({}))
}

/// PurgeQueue: drops every message, keeps the queue's visibility timeout.
fn purge_queue(sqs: &Sqs, req: &Value) -> Response {
    let mut queues = sqs.queues.lock().unwrap();
    let Some(q) = queues.get_mut(&queue_name(req)) else {
        return no_queue();
    };
    let vt = q.visibility_timeout;
    *q = Queue {
        visibility_timeout: vt,
        ..Queue::default()
    };
    ok(json!({}))
}

/// SendMessage (`single`) or SendMessageBatch: queues each entry, hidden for its
/// `DelaySeconds`, and wakes the long polls.
fn send_messages(sqs: &Sqs, req: &Value, single: bool) -> Response {
    let entries = entries(req, single, || req.clone());
    let mut queues = sqs.queues.lock().unwrap();
    let Some(q) = queues.get_mut(&queue_name(req)) else {
        return no_queue();
    };
    let now = Instant::now();
    let mut successful = Vec::new();
    for e in &entries {
        let body = e["MessageBody"].as_str().unwrap_or_default().to_owned();
        let id = uuid::Uuid::now_v7().to_string();
        let md5 = md5_hex(&body);
        successful.push(json!({
            "Id": e["Id"], "MessageId": id, "MD5OfMessageBody": md5,
        }));
        let delay = e["DelaySeconds"].as_u64().unwrap_or(0);
        if delay > 0 {
            q.hidden
                .insert(id.clone(), now + Duration::from_secs(delay));
        } else {
            q.visible.push_back(id.clone());
        }
        q.messages.insert(
            id.clone(),
            Message {
                id,
                body,
                md5,
                sent_ms: now_ms(),
                receives: 0,
                first_receive_ms: 0,
            },
        );
    }
    drop(queues);
    sqs.arrived.notify_waiters();
    if single {
        let s = &successful[0];
        ok(json!({"MessageId": s["MessageId"], "MD5OfMessageBody": s["MD5OfMessageBody"]}))
    } else {
        ok(json!({"Successful": successful, "Failed": []}))
    }
}

/// ReceiveMessage: up to `MaxNumberOfMessages` (1–10) visible messages, waiting up to
/// `WaitTimeSeconds` (at most 20) for one to arrive or come back.
async fn receive_message(sqs: &Sqs, req: &Value) -> Response {
    let max = req["MaxNumberOfMessages"]
        .as_u64()
        .unwrap_or(1)
        .clamp(1, 10) as usize;
    let wait = Duration::from_secs(req["WaitTimeSeconds"].as_u64().unwrap_or(0).min(20));
    let give_up = Instant::now() + wait;
    loop {
        let arrived = sqs.arrived.notified();
        {
            let mut queues = sqs.queues.lock().unwrap();
            let Some(q) = queues.get_mut(&queue_name(req)) else {
                return no_queue();
            };
            let out = take_visible(q, req, max);
            if !out.is_empty() || Instant::now() >= give_up {
                return ok(json!({ "Messages": out }));
            }
        }
        // Wait for a send, or re-check in-flight messages every 50 ms.
        let left = give_up.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), arrived).await;
    }
}

/// Receives up to `max` of the queue's visible messages: each is hidden for the request's
/// `VisibilityTimeout` (or the queue's) and gets a new receipt handle.
fn take_visible(q: &mut Queue, req: &Value, max: usize) -> Vec<Value> {
    let now = Instant::now();
    q.wake(now);
    let vt = req["VisibilityTimeout"]
        .as_u64()
        .unwrap_or(q.visibility_timeout);
    let mut out = Vec::new();
    while out.len() < max {
        let Some(id) = q.visible.pop_front() else {
            break;
        };
        let Some(m) = q.messages.get_mut(&id) else {
            continue; // deleted while visible
        };
        m.receives += 1;
        if m.first_receive_ms == 0 {
            m.first_receive_ms = now_ms();
        }
        let receipt = uuid::Uuid::now_v7().simple().to_string();
        q.hidden.insert(id.clone(), now + Duration::from_secs(vt));
        out.push(json!({
            "MessageId": m.id, "ReceiptHandle": receipt, "MD5OfBody": m.md5,
            "Body": m.body,
            "Attributes": {
                "SentTimestamp": m.sent_ms.to_string(),
                "ApproximateReceiveCount": m.receives.to_string(),
                "ApproximateFirstReceiveTimestamp": m.first_receive_ms.to_string(),
                "SenderId": "000000000000",
            },
        }));
        q.receipts.insert(receipt, id);
    }
    out
}

/// DeleteMessage (`single`) or DeleteMessageBatch; an unknown receipt handle is not an error.
fn delete_messages(sqs: &Sqs, req: &Value, single: bool) -> Response {
    let entries = entries(
        req,
        single,
        || json!({"Id": "0", "ReceiptHandle": req["ReceiptHandle"]}),
    );
    let mut queues = sqs.queues.lock().unwrap();
    let Some(q) = queues.get_mut(&queue_name(req)) else {
        return no_queue();
    };
    let mut successful = Vec::new();
    for e in &entries {
        let receipt = e["ReceiptHandle"].as_str().unwrap_or_default();
        if let Some(id) = q.receipts.remove(receipt) {
            q.hidden.remove(&id);
            q.messages.remove(&id);
        }
        successful.push(json!({"Id": e["Id"]}));
    }
    if single {
        ok(json!({}))
    } else {
        ok(json!({"Successful": successful, "Failed": []}))
    }
}

/// ChangeMessageVisibility (`single`) or its batch: a message still in flight becomes visible
/// after the entry's `VisibilityTimeout` from now; others are left alone.
fn change_visibility(sqs: &Sqs, req: &Value, single: bool) -> Response {
    let entries = entries(
        req,
        single,
        || json!({"Id": "0", "ReceiptHandle": req["ReceiptHandle"], "VisibilityTimeout": req["VisibilityTimeout"]}),
    );
    let mut queues = sqs.queues.lock().unwrap();
    let Some(q) = queues.get_mut(&queue_name(req)) else {
        return no_queue();
    };
    let now = Instant::now();
    let mut successful = Vec::new();
    for e in &entries {
        let receipt = e["ReceiptHandle"].as_str().unwrap_or_default();
        if let Some(id) = q.receipts.get(receipt) {
            if q.hidden.contains_key(id) {
                let vt = e["VisibilityTimeout"].as_u64().unwrap_or(0);
                q.hidden.insert(id.clone(), now + Duration::from_secs(vt));
            }
        }
        successful.push(json!({"Id": e["Id"]}));
    }
    if single {
        ok(json!({}))
    } else {
        ok(json!({"Successful": successful, "Failed": []}))
    }
}

/// GetQueueAttributes: the message counts (visible, in flight, delayed), ARN and visibility
/// timeout, whatever attributes were asked for.
fn queue_attributes(sqs: &Sqs, req: &Value) -> Response {
    let name = queue_name(req);
    let mut queues = sqs.queues.lock().unwrap();
    let Some(q) = queues.get_mut(&name) else {
        return no_queue();
    };
    let now = Instant::now();
    q.wake(now);
    let delayed = q
        .hidden
        .keys()
        .filter(|id| q.messages.get(*id).is_some_and(|m| m.receives == 0))
        .count();
    ok(json!({"Attributes": {
        "ApproximateNumberOfMessages": q.visible.len().to_string(),
        "ApproximateNumberOfMessagesNotVisible": (q.hidden.len() - delayed).to_string(),
        "ApproximateNumberOfMessagesDelayed": delayed.to_string(),
        "QueueArn": format!("arn:aws:sqs:us-east-1:000000000000:{name}"),
        "VisibilityTimeout": q.visibility_timeout.to_string(),
    }}))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let sqs = Arc::new(Sqs {
        base: base.clone(),
        queues: Mutex::new(HashMap::new()),
        arrived: Notify::new(),
    });
    let app = Router::new().route("/", post(handle)).with_state(sqs);
    println!("listening on {base}");
    axum::serve(listener, app).await.expect("serve");
}
