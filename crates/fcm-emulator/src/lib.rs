//! pushq-fcm-emulator: a local stand-in for FCM HTTP v1 and its OAuth token endpoint, served by
//! `pushq fcm-emulator` and started in-process by tests.
//! Verifies JWT assertions against the service account's public key and bearer tokens on every
//! send, checks request bodies, records what it received, and injects faults on request.
//!
//! Control endpoints (for tests): `GET /__received`, `POST /__reset`, `POST /__faults` with
//! `{"rules":[{"token":"t","error":"UNREGISTERED","times":1,"retryAfter":2,"delayMs":0,
//! "percent":20,"status":502,"body":"<html>"}],"expireTokens":false}` (a rule without `token`
//! matches every send; `times` absent = always; `percent` answers that share of the matching
//! sends; `status`/`body` answer raw instead of with an FCM error).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use serde_json::{json, Value};

/// The project id the emulator's credentials name.
pub const PROJECT_ID: &str = "pushq-emulator";

#[derive(Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Rule {
    token: Option<String>,
    #[serde(default)]
    error: String,
    times: Option<u32>,
    retry_after: Option<u64>,
    #[serde(default)]
    delay_ms: u64,
    /// The rule answers this share (0–100) of the sends it matches, spread evenly and
    /// deterministically (20: the 5th, 10th, 15th, …); the others fall through to later rules.
    percent: Option<u32>,
    /// Answer with this HTTP status and raw body instead of an FCM error (e.g. a proxy's HTML
    /// page, an empty body).
    status: Option<u16>,
    body: Option<String>,
    #[serde(skip)]
    seen: u64,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Faults {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    expire_tokens: bool,
}

#[derive(Default)]
struct Inner {
    tokens: HashSet<String>,
    received: Vec<Value>,
    rules: Vec<Rule>,
    token_requests: u64,
    /// Every access token issued, for tests that look for it where it must not be.
    issued: Vec<String>,
}

struct Emulator {
    public_key_pem: String,
    client_email: String,
    token_uri: String,
    inner: Mutex<Inner>,
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

/// Starts the emulator on 127.0.0.1:`port` (0 = any free port) with a fresh RSA key.
pub async fn spawn(port: u16) -> Result<Running, EmulatorError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let base = format!("http://{}", listener.local_addr()?);
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
    });
    let app = Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{project}/messages:send", post(send))
        .route("/__received", get(received))
        .route("/__reset", post(reset))
        .route("/__faults", post(faults))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "emulator stopped");
        }
    });
    Ok(Running {
        base,
        credentials,
        task,
    })
}

/// Runs the emulator until it fails, writing its service-account key to `credentials_out`.
/// Prints `listening on http://127.0.0.1:PORT` once it accepts requests.
pub async fn run(
    port: u16,
    credentials_out: Option<std::path::PathBuf>,
) -> Result<(), EmulatorError> {
    let running = spawn(port).await?;
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

fn fcm_error(status: StatusCode, code: &str, message: &str) -> Response {
    let grpc_status = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": grpc_status,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}});
    (status, Json(body)).into_response()
}

fn error_status(code: &str) -> StatusCode {
    match code {
        "UNREGISTERED" => StatusCode::NOT_FOUND,
        "SENDER_ID_MISMATCH" => StatusCode::FORBIDDEN,
        "QUOTA_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The FCM v1 `Message` fields a request may carry (proto3 JSON: snake_case or lowerCamelCase).
const MESSAGE_FIELDS: [&str; 10] = [
    "token",
    "topic",
    "condition",
    "data",
    "notification",
    "android",
    "apns",
    "webpush",
    "fcm_options",
    "fcmOptions",
];

/// The emulator's verdict on a send request's body: `Err` holds the `INVALID_ARGUMENT` message
/// it would answer with (for property tests of pushq's own bodies).
pub fn check_send_body(body: &Value) -> Result<(), String> {
    check_body(body).map(|_| ())
}

/// Shape checks FCM makes before it accepts a message.
fn check_body(body: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    let top = body.as_object().ok_or("body must be a JSON object")?;
    if let Some(key) = top
        .keys()
        .find(|k| !["message", "validate_only"].contains(&k.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\""
        ));
    }
    let message = top
        .get("message")
        .and_then(Value::as_object)
        .ok_or("message is required")?;
    if let Some(key) = message
        .keys()
        .find(|k| !MESSAGE_FIELDS.contains(&k.as_str()))
    {
        return Err(format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at 'message'"
        ));
    }
    let targets = ["token", "topic", "condition"]
        .iter()
        .filter(|t| {
            message
                .get(**t)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    if targets != 1 {
        return Err("exactly one of token, topic, condition is required".into());
    }
    if let Some(data) = message.get("data") {
        if !data
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
        {
            return Err("message.data must map strings to strings".into());
        }
    }
    if let Some(ttl) = message.get("android").and_then(|a| a.get("ttl")) {
        let ok = ttl
            .as_str()
            .and_then(|s| s.strip_suffix('s'))
            .is_some_and(|n| n.parse::<f64>().is_ok());
        if !ok {
            return Err("message.android.ttl must be a duration like \"3.5s\"".into());
        }
    }
    Ok(message)
}

async fn send(
    State(emu): State<Arc<Emulator>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authorized =
        bearer.is_some_and(|t| emu.inner.lock().expect("emulator state").tokens.contains(t));
    if !authorized {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    }
    if project != PROJECT_ID {
        return fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
        );
    }
    let Ok(value) = serde_json::from_str::<Value>(&body) else {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
        );
    };
    let message = match check_body(&value) {
        Ok(m) => m,
        Err(why) => return fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &why),
    };
    let token = message
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let fault = {
        let mut inner = emu.inner.lock().expect("emulator state");
        let index = inner.rules.iter_mut().position(|r| {
            if r.token.is_some() && r.token != token {
                return false;
            }
            let Some(percent) = r.percent else {
                return true;
            };
            r.seen += 1;
            let share = |n: u64| n * u64::from(percent.min(100)) / 100;
            share(r.seen) > share(r.seen - 1)
        });
        index.map(|i| {
            let rule = inner.rules[i].clone();
            if let Some(times) = inner.rules[i].times.as_mut() {
                *times -= 1;
                if *times == 0 {
                    inner.rules.remove(i);
                }
            }
            rule
        })
    };
    if let Some(rule) = &fault {
        if rule.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
        }
        if let Some(status) = rule.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = rule.body.clone().unwrap_or_default();
            return (status, [("content-type", "text/html")], body).into_response();
        }
        if !rule.error.is_empty() {
            let mut response = fcm_error(
                error_status(&rule.error),
                &rule.error,
                "injected by the emulator",
            );
            if let Some(secs) = rule.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.to_string().parse().expect("digits"));
            }
            return response;
        }
    }
    let name = format!(
        "projects/{project}/messages/{}",
        uuid::Uuid::now_v7().simple()
    );
    let validate_only = value
        .get("validate_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    emu.inner
        .lock()
        .expect("emulator state")
        .received
        .push(json!({"name": name, "body": value, "validateOnly": validate_only}));
    Json(json!({"name": name})).into_response()
}

async fn received(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let inner = emu.inner.lock().expect("emulator state");
    Json(json!({
        "messages": inner.received,
        "tokenRequests": inner.token_requests,
        "accessTokens": inner.issued,
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
