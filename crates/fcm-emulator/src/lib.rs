//! pushq-fcm-emulator: a local stand-in for FCM HTTP v1 and its OAuth token endpoint, served by
//! `pushq fcm-emulator` and started in-process by tests.
//!
//! It serves one or several Firebase projects ([`Options::projects`]), each with a
//! service-account key of its own ([`Running::keys`]). The token endpoint verifies a JWT
//! assertion against the key of the account its `iss` names and issues an access token bound to
//! that account's project. A send is refused without a token the emulator issued (401), to a
//! project it does not serve (404), and with another project's token (403 `PERMISSION_DENIED`,
//! as FCM does). It checks request bodies (one target: `token`, `fid`, `topic` or `condition`),
//! records what it received, and injects faults on request.
//!
//! It also serves FCM v1's topic subscriptions as firebase-admin calls them, one registration
//! token per call, authorised as sends are: `POST
//! /v1/projects/{project}/registrations/{token}/topicSubscriptions?topic_name={topic}` with the
//! body `{}` subscribes, `DELETE …/topicSubscriptions/{topic}?allow_missing=true` unsubscribes
//! (without `allow_missing`, a token that is not a member is 404 `NOT_FOUND`); both answer 200
//! `{}`, a topic that does not match `^(private/)?[a-zA-Z0-9-_.~%]+$` or another body 400
//! `INVALID_ARGUMENT`. A send to a topic records the tokens it reached.
//!
//! It serves plain HTTP (HTTP/1.1) or, given a certificate, TLS with HTTP/2 by ALPN, allowing
//! [`Options::max_streams`] concurrent streams per connection as FCM does (100), and can answer
//! after a round trip's [`Options::latency`].
//!
//! Control endpoints (for tests): `GET /__received` (accepted sends, each with the `project` it
//! was sent to and the `protocol` and `connection` it came on, a topic send with the sorted
//! tokens subscribed to its topic then, `reached`; `sendRequests`: every send request, faulted
//! ones too, `tokenRequests`; `topicRequests`: every topic call, faulted or refused ones too, as
//! `{"method","path","headers","body","project","token","topic","action","status","protocol",
//! "connection"}`, `path` with its query and percent-encoding as received, `headers` every one,
//! by lower-case name, `body` raw; `connections`: each connection's protocol, requests, peak
//! of requests in flight and whether it has `closed`), `GET /__topics` (`{"<project>":{"<topic>":["<token>",…]}}`, tokens
//! sorted, topics without members left out), `POST /__reset` (forgets the sends, topic calls,
//! subscriptions and faults), `POST /__close_connections` (closes every open connection as a
//! server going away does: HTTP/2 GOAWAY, requests in flight answered), `POST /__faults` with
//! `{"rules":[{"token":"t","on":"send","error":"UNREGISTERED","times":1,"retryAfter":2,
//! "delayMs":0,"percent":20,"status":502,"body":"<html>","message":"…"}],"expireTokens":false}`
//! (a rule's `token` matches a send to that token or FID and a topic call about that
//! registration token, a rule without one every call; `on` restricts it to sends (`"send"`) or
//! to topic calls (`"topics"`), absent both; `times` absent = always; `percent` answers that
//! share of the matching calls; `status`/`body` answer raw instead of with an FCM error; `error`
//! is an FCM error code, answered with FCM's HTTP status, or one of Google's statuses without an
//! FCM code: `PERMISSION_DENIED` (403), `NOT_FOUND` (404), `UNAUTHENTICATED` (401); `message`
//! replaces the error's message, e.g. an `INVALID_ARGUMENT` that names the registration token).

mod checks;
mod faults;
mod oauth;
mod serve;
mod topics;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use checks::check_body;
pub use checks::check_send_body;
use faults::{Call, Faults, Rule};
use serve::{Connections, RequestInfo};
pub use serve::{Options, TlsFiles, FCM_MAX_STREAMS};

/// The project the emulator serves unless [`Options::projects`] names others.
pub const PROJECT_ID: &str = "pushq-emulator";

#[derive(Default)]
struct Inner {
    /// Every live access token, with the project it may send to.
    tokens: HashMap<String, String>,
    received: Vec<Value>,
    rules: Vec<Rule>,
    /// The members of each project's topics.
    topics: topics::Membership,
    /// Every topic call that reached its handler, answered or faulted, as received.
    topic_requests: Vec<Value>,
    token_requests: u64,
    /// Every send request that reached the handler, answered or faulted.
    send_requests: u64,
    /// Every access token issued, for tests that look for it where it must not be.
    issued: Vec<String>,
}

struct Emulator {
    /// The projects served.
    projects: Vec<String>,
    /// Their service accounts, by `client_email`.
    accounts: oauth::Accounts,
    token_uri: String,
    inner: Mutex<Inner>,
    connections: Arc<Connections>,
}

/// A running emulator.
pub struct Running {
    /// Base URL, e.g. `http://127.0.0.1:41234` (the FCM endpoint to configure).
    pub base: String,
    /// The service-account key of the first of [`Options::projects`] (its `token_uri` points at
    /// the emulator).
    pub credentials: Value,
    /// Every project's service-account key, by project.
    pub keys: BTreeMap<String, Value>,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the emulator on 127.0.0.1:`port` (0 = any free port), plain HTTP, serving
/// [`PROJECT_ID`] with a fresh RSA key.
pub async fn spawn(port: u16) -> Result<Running, EmulatorError> {
    spawn_with(&Options {
        port,
        ..Options::default()
    })
    .await
}

/// Starts the emulator as `options` say, with a fresh RSA key for each project.
pub async fn spawn_with(options: &Options) -> Result<Running, EmulatorError> {
    oauth::check_projects(&options.projects)?;
    let tls = match &options.tls {
        Some(files) => Some(serve::tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr()?);
    let token_uri = format!("{base}/token");
    let (accounts, keys) = oauth::make_accounts(&options.projects, &token_uri)?;
    let credentials = keys[&options.projects[0]].clone();
    let state = Arc::new(Emulator {
        projects: options.projects.clone(),
        accounts,
        token_uri,
        inner: Mutex::new(Inner::default()),
        connections: Arc::default(),
    });
    let connections = state.connections.clone();
    let app = Router::new()
        .route("/token", post(oauth::token))
        .route("/v1/projects/{project}/messages:send", post(send))
        .route(
            "/v1/projects/{project}/registrations/{token}/topicSubscriptions",
            post(topics::subscribe),
        )
        .route(
            "/v1/projects/{project}/registrations/{token}/topicSubscriptions/{topic}",
            delete(topics::unsubscribe),
        )
        .route("/__received", get(received))
        .route("/__topics", get(topics::report))
        .route("/__reset", post(reset))
        .route("/__close_connections", post(close_connections))
        .route("/__faults", post(faults))
        .with_state(state);
    let listener_options = serve::Listener {
        tls,
        max_streams: options.max_streams.max(1),
        latency: options.latency,
    };
    let task = tokio::spawn(serve::serve(listener, listener_options, app, connections));
    Ok(Running {
        base,
        credentials,
        keys,
        task,
    })
}

impl Running {
    /// What pushq's `PUSHQ_FCM_CREDENTIALS` takes to send to every project served: the one key
    /// when there is one project, else a JSON object mapping each project (as an app name) to
    /// its key.
    pub fn credentials_setting(&self) -> Value {
        if self.keys.len() == 1 {
            self.credentials.clone()
        } else {
            json!(self.keys)
        }
    }
}

/// Runs the emulator until it fails, writing [`Running::credentials_setting`] to
/// `credentials_out`: the service-account key, or with several projects the map of their keys.
/// Prints `listening on http://127.0.0.1:PORT` (`https://` with TLS) once it accepts requests.
pub async fn run(options: &Options, credentials_out: Option<PathBuf>) -> Result<(), EmulatorError> {
    let running = spawn_with(options).await?;
    if let Some(path) = credentials_out {
        let setting = serde_json::to_vec_pretty(&running.credentials_setting())
            .expect("a JSON value serializes");
        std::fs::write(&path, setting)?;
    }
    println!("listening on {}", running.base);
    running
        .task
        .await
        .map_err(|e| EmulatorError::Stopped(e.to_string()))
}

/// Why the emulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// Binding the port or writing the credentials file failed.
    #[error("emulator: {0}")]
    Io(#[from] std::io::Error),
    /// Making an RSA key failed.
    #[error("emulator key: {0}")]
    Key(String),
    /// The projects to serve are none, or one is named twice or has an unusable name.
    #[error("emulator projects: {0}")]
    Projects(String),
    /// The TLS certificate or key could not be read or used (names the file).
    #[error("emulator TLS: {0}")]
    Tls(String),
    /// The server task ended abnormally.
    #[error("emulator stopped: {0}")]
    Stopped(String),
}

/// An FCM v1 error response: `status`, the gRPC status name FCM gives with it, and `code` as
/// the `FcmError` detail pushq classifies by.
pub(crate) fn fcm_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": grpc_status(status),
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}});
    (status, Json(body)).into_response()
}

/// FCM's 400 for what it refuses beyond firebase-admin's checks ([`pushq_model::check_fcm_shape`]):
/// an unknown field or enum value as Google's JSON parser answers it (a `BadRequest` field
/// violation naming the field's parent, resp. the field), a reserved data key or a link that is
/// not HTTPS as an FCM `INVALID_ARGUMENT` naming the field (the wording of these two is the
/// emulator's). `None`: FCM takes the message's shape.
fn shape_refusal(message: &serde_json::Map<String, Value>) -> Option<Response> {
    use pushq_model::Violation;
    let violation = pushq_model::check_fcm_shape(message).err()?;
    let path = format!("message.{}", violation.field);
    let (parent, name) = path.rsplit_once('.').unwrap_or(("message", path.as_str()));
    let status = StatusCode::BAD_REQUEST;
    let (description, field) = match violation.kind {
        Violation::UnknownField => (
            format!("Invalid JSON payload received. Unknown name \"{name}\" at '{parent}': Cannot find field."),
            parent.to_owned(),
        ),
        Violation::NotAnEnumValue(_) => {
            let value = path
                .strip_prefix("message.")
                .and_then(|p| pointer(message, p))
                .map(Value::to_string)
                .unwrap_or_default();
            (format!("Invalid value at '{path}', {value}"), path.clone())
        }
        Violation::ReservedKey => (format!("Invalid data payload key: {name}"), path.clone()),
        Violation::NotHttps => (format!("Invalid value at '{path}': the link must be an HTTPS URL"), path.clone()),
    };
    let body = json!({"error": {"code": 400, "message": description, "status": "INVALID_ARGUMENT",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.BadRequest",
             "fieldViolations": [{"field": field, "description": description}]},
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]}});
    Some((status, Json(body)).into_response())
}

/// The value at a dotted path of a message, keys holding dots aside.
fn pointer<'a>(message: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = message.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// Google's own error response, without an FCM error code: what its front end answers for a bad
/// access token (401 `UNAUTHENTICATED`), a key without the send permission (403
/// `PERMISSION_DENIED`) or an unknown project (404 `NOT_FOUND`).
pub(crate) fn google_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": grpc_status(status)}});
    (status, Json(body)).into_response()
}

/// The gRPC status name Google gives with an HTTP status.
fn grpc_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

/// FCM's `messages:send`, in FCM's order: authorise, check the body; then a fault rule that
/// matches answers instead, or the send is recorded and accepted.
async fn send(
    State(emu): State<Arc<Emulator>>,
    Path(project): Path<String>,
    Extension(info): Extension<RequestInfo>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refusal) = unauthorised(&emu, &headers, &project) {
        return refusal;
    }
    let value = match checked_body(&body) {
        Ok(value) => value,
        Err(why) => return fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &why),
    };
    if let Some(refusal) = value["message"].as_object().and_then(shape_refusal) {
        return refusal;
    }
    let message = &value["message"];
    let device = message["token"].as_str().or(message["fid"].as_str());
    emu.inner.lock().expect("emulator state").send_requests += 1;
    if let Some(response) = injected(&emu, Call::Send, device).await {
        return response;
    }
    record(&emu, &project, value, info)
}

/// The answer of the first fault rule that answers a `call` about `device`, once its delay is
/// waited out; `None` when no rule matches or the one that does only delays.
async fn injected(emu: &Emulator, call: Call, device: Option<&str>) -> Option<Response> {
    let rule = {
        let mut inner = emu.inner.lock().expect("emulator state");
        faults::take_fault(&mut inner.rules, call, device)
    }?;
    faults::answer(&rule).await
}

/// The refusal of a send or topic call without a bearer token the emulator issued (401), then of
/// one to a project it does not serve (404), then of one with another project's token (403);
/// `None` when the call may go on.
fn unauthorised(emu: &Emulator, headers: &HeaderMap, project: &str) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let granted = bearer.and_then(|t| {
        let inner = emu.inner.lock().expect("emulator state");
        inner.tokens.get(t).cloned()
    });
    let Some(granted) = granted else {
        return Some(google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    };
    if !emu.projects.iter().any(|p| p == project) {
        return Some(google_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
        ));
    }
    if granted != project {
        return Some(google_error(
            StatusCode::FORBIDDEN,
            &format!("Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."),
        ));
    }
    None
}

/// The send request's body, once it is JSON and passes [`check_body`]; else the message of
/// FCM's `INVALID_ARGUMENT` answer.
fn checked_body(body: &str) -> Result<Value, String> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Err("Invalid JSON payload received.".to_owned());
    };
    check_body(&value)?;
    Ok(value)
}

/// Accepts a send: records it for `/__received` (with its project, the connection and protocol
/// it came on, and for a topic the tokens subscribed to it now) and answers with the new
/// message's name.
fn record(emu: &Emulator, project: &str, value: Value, info: RequestInfo) -> Response {
    let name = format!(
        "projects/{project}/messages/{}",
        uuid::Uuid::now_v7().simple()
    );
    let validate_only = value
        .get("validate_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let topic = value["message"]["topic"].as_str().map(str::to_owned);
    let mut entry = json!({"name": name, "project": project, "body": value,
        "validateOnly": validate_only, "protocol": info.protocol, "connection": info.connection});
    let mut inner = emu.inner.lock().expect("emulator state");
    if let Some(topic) = topic {
        entry["reached"] = json!(inner.topics.members(project, &topic));
    }
    inner.received.push(entry);
    Json(json!({"name": name})).into_response()
}

async fn received(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let inner = emu.inner.lock().expect("emulator state");
    Json(json!({
        "messages": inner.received,
        "tokenRequests": inner.token_requests,
        "sendRequests": inner.send_requests,
        "topicRequests": inner.topic_requests,
        "accessTokens": inner.issued,
        "connections": emu.connections.report(),
    }))
}

async fn reset(State(emu): State<Arc<Emulator>>) -> StatusCode {
    let mut inner = emu.inner.lock().expect("emulator state");
    inner.received.clear();
    inner.rules.clear();
    inner.topics.clear();
    inner.topic_requests.clear();
    StatusCode::NO_CONTENT
}

async fn close_connections(State(emu): State<Arc<Emulator>>) -> StatusCode {
    emu.connections.close_all();
    StatusCode::NO_CONTENT
}

async fn faults(State(emu): State<Arc<Emulator>>, Json(faults): Json<Faults>) -> StatusCode {
    let mut inner = emu.inner.lock().expect("emulator state");
    inner.rules = faults.rules;
    if faults.expire_tokens {
        inner.tokens.clear();
    }
    StatusCode::NO_CONTENT
}
