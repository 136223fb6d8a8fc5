//! pushq-fcm-emulator: a local stand-in for FCM HTTP v1 and its OAuth token endpoint, served by
//! `pushq fcm-emulator` and started in-process by tests.
//! Verifies JWT assertions against the service account's public key and bearer tokens on every
//! send, checks request bodies, records what it received, and injects faults on request.
//!
//! It serves plain HTTP (HTTP/1.1) or, given a certificate, TLS with HTTP/2 by ALPN, allowing
//! [`Options::max_streams`] concurrent streams per connection as FCM does (100), and can answer
//! after a round trip's [`Options::latency`].
//!
//! Control endpoints (for tests): `GET /__received` (accepted sends, each with the `protocol` and
//! `connection` it came on; `sendRequests`: every send request, faulted ones too,
//! `tokenRequests`; `connections`: each connection's protocol, requests and peak of requests in
//! flight), `POST /__reset`, `POST /__faults` with
//! `{"rules":[{"token":"t","error":"UNREGISTERED","times":1,"retryAfter":2,"delayMs":0,
//! "percent":20,"status":502,"body":"<html>","message":"…"}],"expireTokens":false}` (a rule
//! without `token` matches every send; `times` absent = always; `percent` answers that share of
//! the matching sends; `status`/`body` answer raw instead of with an FCM error; `error` is an FCM
//! error code, answered with FCM's HTTP status, or one of Google's statuses without an FCM code:
//! `PERMISSION_DENIED` (403), `NOT_FOUND` (404), `UNAUTHENTICATED` (401); `message` replaces
//! the error's message, e.g. an `INVALID_ARGUMENT` that names the registration token).

mod checks;
mod faults;
mod serve;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use serde_json::{json, Value};

use checks::check_body;
pub use checks::check_send_body;
use faults::{Faults, Rule};
use serve::{Connections, RequestInfo};
pub use serve::{Options, TlsFiles, FCM_MAX_STREAMS};

/// The project id the emulator's credentials name.
pub const PROJECT_ID: &str = "pushq-emulator";

#[derive(Default)]
struct Inner {
    tokens: HashSet<String>,
    received: Vec<Value>,
    rules: Vec<Rule>,
    token_requests: u64,
    /// Every send request that reached the handler, answered or faulted.
    send_requests: u64,
    /// Every access token issued, for tests that look for it where it must not be.
    issued: Vec<String>,
}

struct Emulator {
    public_key_pem: String,
    client_email: String,
    token_uri: String,
    inner: Mutex<Inner>,
    connections: Arc<Connections>,
}

/// A running emulator.
pub struct Running {
    /// Base URL, e.g. `http://127.0.0.1:41234` (the FCM endpoint to configure).
    pub base: String,
    /// A service-account key the emulator accepts (its `token_uri` points at the emulator).
    pub credentials: Value,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the emulator on 127.0.0.1:`port` (0 = any free port), plain HTTP, with a fresh RSA key.
pub async fn spawn(port: u16) -> Result<Running, EmulatorError> {
    spawn_with(&Options {
        port,
        ..Options::default()
    })
    .await
}

/// Starts the emulator as `options` say, with a fresh RSA key.
pub async fn spawn_with(options: &Options) -> Result<Running, EmulatorError> {
    let tls = match &options.tls {
        Some(files) => Some(serve::tls_acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", listener.local_addr()?);
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .map_err(|e| EmulatorError::Key(e.to_string()))?;
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| EmulatorError::Key(e.to_string()))?
        .to_string();
    let public_key_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| EmulatorError::Key(e.to_string()))?;
    let client_email = format!("pushq@{PROJECT_ID}.iam.gserviceaccount.com");
    let token_uri = format!("{base}/token");
    let credentials = json!({
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": "emulator-key",
        "private_key": private_pem,
        "client_email": client_email,
        "token_uri": token_uri,
    });
    let state = Arc::new(Emulator {
        public_key_pem,
        client_email,
        token_uri,
        inner: Mutex::new(Inner::default()),
        connections: Arc::default(),
    });
    let connections = state.connections.clone();
    let app = Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{project}/messages:send", post(send))
        .route("/__received", get(received))
        .route("/__reset", post(reset))
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
        task,
    })
}

/// Runs the emulator until it fails, writing its service-account key to `credentials_out`.
/// Prints `listening on http://127.0.0.1:PORT` (`https://` with TLS) once it accepts requests.
pub async fn run(options: &Options, credentials_out: Option<PathBuf>) -> Result<(), EmulatorError> {
    let running = spawn_with(options).await?;
    if let Some(path) = credentials_out {
        let key = serde_json::to_vec_pretty(&running.credentials).expect("a JSON value serializes");
        std::fs::write(&path, key)?;
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
    /// Making the RSA key failed.
    #[error("emulator key: {0}")]
    Key(String),
    /// The TLS certificate or key could not be read or used (names the file).
    #[error("emulator TLS: {0}")]
    Tls(String),
    /// The server task ended abnormally.
    #[error("emulator stopped: {0}")]
    Stopped(String),
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
    exp: u64,
    iat: u64,
}

async fn token(State(emu): State<Arc<Emulator>>, Form(req): Form<TokenRequest>) -> Response {
    let refuse = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": why})),
        )
            .into_response()
    };
    if req.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return refuse("unsupported grant_type");
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(emu.public_key_pem.as_bytes()) else {
        return refuse("emulator key");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&emu.token_uri]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Claims>(&req.assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return refuse(&format!("invalid JWT: {e}")),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if claims.iss != emu.client_email
        || !claims.scope.contains("firebase.messaging")
        || claims.aud != emu.token_uri
    {
        return refuse("wrong iss, scope or aud");
    }
    if claims.exp <= now || claims.iat > now + 60 || claims.exp - claims.iat > 3600 {
        return refuse("bad iat/exp");
    }
    let access = format!("ya29.emulator-{}", uuid::Uuid::now_v7().simple());
    let mut inner = emu.inner.lock().expect("emulator state");
    inner.tokens.insert(access.clone());
    inner.issued.push(access.clone());
    inner.token_requests += 1;
    Json(json!({"access_token": access, "expires_in": 3600, "token_type": "Bearer"}))
        .into_response()
}

/// An FCM v1 error response: `status`, the gRPC status name FCM gives with it, and `code` as
/// the `FcmError` detail pushq classifies by.
pub(crate) fn fcm_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": grpc_status(status),
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}});
    (status, Json(body)).into_response()
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
    let token = value["message"]["token"].as_str();
    let fault = {
        let mut inner = emu.inner.lock().expect("emulator state");
        inner.send_requests += 1;
        faults::take_fault(&mut inner.rules, token)
    };
    if let Some(rule) = fault {
        if let Some(response) = faults::answer(&rule).await {
            return response;
        }
    }
    record(&emu, &project, value, info)
}

/// The refusal of a send without a bearer token the emulator issued (401), then of one to
/// another project than [`PROJECT_ID`] (404); `None` when the send may go on.
fn unauthorised(emu: &Emulator, headers: &HeaderMap, project: &str) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authorized =
        bearer.is_some_and(|t| emu.inner.lock().expect("emulator state").tokens.contains(t));
    if !authorized {
        return Some(google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ));
    }
    if project != PROJECT_ID {
        return Some(google_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
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

/// Accepts a send: records it for `/__received` (with the connection and protocol it came on)
/// and answers with the new message's name.
fn record(emu: &Emulator, project: &str, value: Value, info: RequestInfo) -> Response {
    let name = format!(
        "projects/{project}/messages/{}",
        uuid::Uuid::now_v7().simple()
    );
    let validate_only = value
        .get("validate_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    emu.inner.lock().expect("emulator state").received.push(
        json!({"name": name, "body": value, "validateOnly": validate_only,
            "protocol": info.protocol, "connection": info.connection}),
    );
    Json(json!({"name": name})).into_response()
}

async fn received(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let inner = emu.inner.lock().expect("emulator state");
    Json(json!({
        "messages": inner.received,
        "tokenRequests": inner.token_requests,
        "sendRequests": inner.send_requests,
        "accessTokens": inner.issued,
        "connections": emu.connections.report(),
    }))
}

async fn reset(State(emu): State<Arc<Emulator>>) -> StatusCode {
    let mut inner = emu.inner.lock().expect("emulator state");
    inner.received.clear();
    inner.rules.clear();
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
