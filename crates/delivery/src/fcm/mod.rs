//! The FCM HTTP v1 client: authenticated sends over pooled (HTTP/2 where offered) connections,
//! FCM's error bodies classified final or retryable, and retries with backoff within a deadline.

mod apps;
pub mod auth;
mod http2;
pub mod key;
mod pool;
mod topics;

use pool::read_answer;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::sink::{Attempted, Sink, TopicAttempted, TopicCall};
pub use crate::sink::{SendError, Sent, NO_CREDENTIALS};

/// Why the FCM client cannot be set up, at start: never a send's result (that is a
/// [`SendError`], the sink's own answer, which [`classify`] maps FCM's answers into).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FcmSetupError {
    /// The service-account key is missing or unusable. Never contains key material.
    #[error("FCM credentials: {0}")]
    Credentials(String),
    /// The HTTP client cannot be set up (e.g. `PUSHQ_FCM_CA_FILE` is unreadable, or
    /// `PUSHQ_FCM_ENDPOINT` is not a URL).
    #[error("FCM client: {0}")]
    Client(String),
}

pub use crate::config::{connections_for, DEFAULT_ENDPOINT, FCM_STREAMS_PER_CONNECTION};
pub use apps::FcmApps;
pub use auth::{AccessToken, TokenSource};
pub use key::ServiceAccount;
use std::sync::Arc;

/// FCM client settings.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// Base URL, e.g. `https://fcm.googleapis.com` or an emulator's.
    pub endpoint: String,
    /// Send with `validate_only` (FCM checks but does not deliver).
    pub dry_run: bool,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Cut an attempt still waiting for FCM at the batch's deadline (the Lambda, whose
    /// invocation ends there), or let it finish (`pushq worker`, which extends visibility).
    pub cut_at_deadline: bool,
    /// A PEM file of CA certificates to trust besides the built-in web roots
    /// (`PUSHQ_FCM_CA_FILE`): for an FCM stand-in or a TLS-inspecting proxy. Certificates are
    /// always verified.
    pub ca_file: Option<std::path::PathBuf>,
    /// HTTP/2 connections to keep to FCM, each a client of its own, sends going to the one with
    /// the fewest in flight (see [`connections_for`]). Default 1.
    pub connections: usize,
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            dry_run: false,
            request_timeout: Duration::from_secs(10),
            cut_at_deadline: true,
            ca_file: None,
            connections: 1,
        }
    }
}

/// Sends FCM v1 requests for one project. Build once; share.
pub struct FcmClient {
    http: pool::Pool,
    tokens: TokenSource,
    /// Where sends go, parsed once: every send posts to it.
    send_uri: hyper::Uri,
    /// The same, as a URL: the topic calls' paths are made from it.
    send_url: reqwest::Url,
    /// `projects/<project_id>/messages/`: a 2xx is a send only when its name starts with it.
    message_prefix: String,
    dry_run: bool,
    cut_at_deadline: bool,
    /// How long an attempt may outlive the deadline: none when attempts are cut at it, the
    /// request timeout otherwise.
    overrun: Duration,
    /// Until when the project's quota is exhausted: no send to the project starts before then.
    /// One per client, i.e. per FCM project, shared by every batch of the process.
    throttled_until: std::sync::Mutex<Option<Instant>>,
}

/// The least pause after a project-level `429 QUOTA_EXCEEDED` without `Retry-After`: FCM asks
/// for at least a minute (https://firebase.google.com/docs/cloud-messaging/scale-fcm#handling-retries).
pub const QUOTA_PAUSE: Duration = Duration::from_secs(60);

/// The code of a send not made because the project's quota throttle outlasts the batch.
pub const THROTTLED: &str = "THROTTLED";

impl FcmClient {
    /// A client for the service account `account`.
    pub fn new(account: ServiceAccount, config: &FcmConfig) -> Result<FcmClient, FcmSetupError> {
        let http = pool::Pool::new(config)?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            config.endpoint.trim_end_matches('/'),
            account.project_id
        );
        let not_a_url = |e: &dyn std::fmt::Display| {
            FcmSetupError::Client(format!("PUSHQ_FCM_ENDPOINT: not a URL to send to ({e})"))
        };
        let send_uri: hyper::Uri = send_url.parse().map_err(|e| not_a_url(&e))?;
        let send_url = reqwest::Url::parse(&send_url).map_err(|e| not_a_url(&e))?;
        let message_prefix = format!("projects/{}/messages/", account.project_id);
        let tokens = TokenSource::new(account, http.first().clone())?;
        Ok(FcmClient {
            http,
            tokens,
            send_uri,
            send_url,
            message_prefix,
            dry_run: config.dry_run,
            cut_at_deadline: config.cut_at_deadline,
            overrun: if config.cut_at_deadline {
                Duration::ZERO
            } else {
                config.request_timeout
            },
            throttled_until: std::sync::Mutex::new(None),
        })
    }

    /// Until when sends to this project are held back, if they are now.
    pub fn throttled_until(&self) -> Option<Instant> {
        let until = *self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.filter(|t| *t > Instant::now())
    }

    /// Holds back every send to the project for `pause` (or longer, if already held).
    fn throttle(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut slot = self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }

    /// Whether sends are `validate_only`.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// One attempt: POSTs the request body (already holding `validate_only` when dry-run).
    pub async fn send_once(&self, body: &Value) -> Result<Sent, SendError> {
        let body = Bytes::from(serde_json::to_vec(body).expect("a JSON value always serializes"));
        let post: &Request<'_, Sent> = &|token| Box::pin(self.post(body.clone(), token));
        self.attempt(post, None)
            .await
            .unwrap_or_else(|| Err(deadline_passed()))
    }

    /// One attempt, made only if its request can start before `start_by`: the access token may
    /// take a while (fetched, or waited for behind another send's fetch), and a request that
    /// starts after the batch's deadline could outlast the batch's claim on its target, when
    /// another consumer may send it too. `None`: no request was made.
    async fn attempt<T>(
        &self,
        request: &Request<'_, T>,
        start_by: Option<Instant>,
    ) -> Option<Result<T, SendError>> {
        let token = match self.tokens.token().await {
            Ok(token) => token,
            Err(e) => return Some(Err(e)),
        };
        if start_by.is_some_and(|t| Instant::now() >= t) {
            return None;
        }
        Some(request(token).await)
    }

    /// The request itself, with an access token.
    async fn post(&self, body: Bytes, token: Arc<AccessToken>) -> Result<Sent, SendError> {
        // Counted in flight on its connection until the answer is read.
        let lane = self.http.borrow();
        let (status, retry_after, text) = lane.send(&self.send_uri, &token.header, body).await?;
        if (200..300).contains(&status) {
            return accepted(status, &text, &self.message_prefix);
        }
        Err(self.refused(status, &text, retry_after, &token.token).await)
    }

    /// FCM's error answer, classified; what it says of the project's quota and of the access
    /// token acted on.
    async fn refused(
        &self,
        status: u16,
        text: &str,
        retry_after: Option<Duration>,
        token: &str,
    ) -> SendError {
        let error = classify(status, text, retry_after);
        if status == 429 && project_quota(text) {
            // The project's quota: every send of the process waits, not only this one.
            self.throttle(retry_after.unwrap_or(QUOTA_PAUSE));
        }
        if access_token_refused(status, &error) {
            // Google says the access token itself is bad (expired or revoked early): drop it so
            // the retry fetches a new one. Not for THIRD_PARTY_AUTH_ERROR (a 401 about the APNs
            // or web push credentials), which a new token does not cure.
            self.tokens.invalidate(token).await;
        }
        error
    }

    /// Sends with retries: transient failures back off (honouring `Retry-After`) until
    /// `deadline`; returns the result and the number of attempts made (0 when the deadline had
    /// already passed). With `cut_at_deadline`, no attempt outlives the deadline: one still
    /// waiting for FCM then is cut short as a transient `DEADLINE` error (its message is
    /// redelivered), so a slow answer cannot run a Lambda batch past its invocation's end.
    pub async fn send_with_retries(&self, body: Bytes, deadline: Instant) -> Attempted {
        let post: &Request<'_, Sent> = &|token| Box::pin(self.post(body.clone(), token));
        let (result, attempts) = self.with_retries(post, deadline).await;
        Attempted { result, attempts }
    }

    /// `request` with retries, as [`FcmClient::send_with_retries`] describes: the result and
    /// the number of attempts made.
    async fn with_retries<T>(
        &self,
        request: &Request<'_, T>,
        deadline: Instant,
    ) -> (Result<T, SendError>, u32) {
        let cut = self.cut_at_deadline;
        let mut attempts = 0;
        loop {
            // The project's quota throttle: waited out when it ends within the batch's time;
            // otherwise the send is not made and its message comes back later.
            if let Some(until) = self.throttled_until() {
                if until >= deadline {
                    let throttled = SendError::Transient {
                        code: THROTTLED.into(),
                        detail: "the project's FCM quota is exhausted: sends wait until it passes"
                            .into(),
                        retry_after: Some(until - Instant::now()),
                    };
                    return (Err(throttled), attempts);
                }
                tokio::time::sleep_until(until.into()).await;
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return (Err(deadline_passed()), attempts);
            };
            let attempt = self.attempt(request, Some(deadline));
            let made = if cut {
                tokio::time::timeout(left, attempt)
                    .await
                    .unwrap_or(Some(Err(deadline_passed())))
            } else {
                attempt.await
            };
            let Some(result) = made else {
                // The token came after the deadline: no request was started.
                return (Err(deadline_passed()), attempts);
            };
            attempts += 1;
            let Err(SendError::Transient { retry_after, .. }) = &result else {
                return (result, attempts);
            };
            if self.throttled_until().is_some() {
                // The throttle decides when (and whether) the next attempt goes.
                continue;
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempts));
            if Instant::now() + wait >= deadline {
                return (result, attempts);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// One kind of request, given an access token: a send, or a topic call.
type Request<'r, T> =
    dyn Fn(Arc<AccessToken>) -> BoxFuture<'r, Result<T, SendError>> + Send + Sync + 'r;

impl Sink for FcmClient {
    /// Sends the body with retries.
    fn send<'a>(
        &'a self,
        _app: &'a str,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'a, Attempted> {
        Box::pin(self.send_with_retries(body, deadline))
    }

    fn throttled_until(&self) -> Option<Instant> {
        FcmClient::throttled_until(self)
    }

    fn validate_only(&self) -> bool {
        self.dry_run
    }

    fn overrun(&self) -> Duration {
        self.overrun
    }

    fn manage_topic<'a>(
        &'a self,
        _app: &'a str,
        call: TopicCall<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, TopicAttempted> {
        Box::pin(FcmClient::manage_topic(self, call, deadline))
    }
}

/// Whether a 429's body says the project's quota ran out, rather than one device's or topic's
/// (FCM's `QuotaFailure` details name the violated quota; without details it is taken to be
/// the project's, the one FCM asks every client to back off from).
fn project_quota(body: &str) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return true;
    };
    let details = value["error"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let violations: Vec<String> = details
        .iter()
        .filter(|d| {
            d["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("google.rpc.QuotaFailure"))
        })
        .flat_map(|d| d["violations"].as_array().cloned().unwrap_or_default())
        .map(|v| format!("{} {}", v["subject"], v["description"]).to_ascii_lowercase())
        .collect();
    !violations
        .iter()
        .any(|v| v.contains("device") || v.contains("topic"))
}

/// A 2xx answer → a send, only when it is FCM's: JSON whose `name` is a message of the key's own
/// project (`prefix` is `projects/<project_id>/messages/`). Anything else that answers 2xx (a
/// TLS-inspecting proxy's page, an empty 204, a wrong `PUSHQ_FCM_ENDPOINT`, another project's
/// name) did not deliver: the deployment's fault, handed back, never recorded `sent`.
fn accepted(http_status: u16, body: &str, prefix: &str) -> Result<Sent, SendError> {
    /// FCM's answer, of which only the message name is read.
    #[derive(serde::Deserialize)]
    struct Answer {
        name: Option<String>,
    }
    let name = serde_json::from_str::<Answer>(body)
        .ok()
        .and_then(|a| a.name);
    match name {
        Some(name) if name.len() > prefix.len() && name.starts_with(prefix) => Ok(Sent { name }),
        _ => Err(SendError::Deployment {
            code: format!("HTTP_{http_status}"),
            detail: format!(
                "a {http_status} answer without a message name under {prefix}: not FCM's ({})",
                body.chars().take(200).collect::<String>()
            ),
        }),
    }
}

fn deadline_passed() -> SendError {
    SendError::Transient {
        code: "DEADLINE".into(),
        detail: "the batch's time ran out before FCM answered".into(),
        retry_after: None,
    }
}

/// Whether an answer says the access token itself is not valid: a 401 without an FCM error code
/// (Google's `UNAUTHENTICATED`), which [`classify`] makes transient.
fn access_token_refused(http_status: u16, error: &SendError) -> bool {
    http_status == 401 && matches!(error, SendError::Transient { .. })
}

/// FCM's answer → whose fault it is and whether it is final (the rule table in
/// `docs/operations.md`, "Which FCM answers are final"). `details[].errorCode` (FCM's own code)
/// wins over `error.status` (Google's).
pub fn classify(http_status: u16, body: &str, retry_after: Option<Duration>) -> SendError {
    let retryable = matches!(http_status, 429 | 500 | 502 | 503 | 504);
    let transient = |code, detail| SendError::Transient {
        code,
        detail,
        retry_after,
    };
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let Some(error) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object())
    else {
        // Not FCM's JSON: a proxy's page, a wrong PUSHQ_FCM_ENDPOINT. Never about the message.
        let code = format!("HTTP_{http_status}");
        let detail = format!(
            "the answer is not FCM's ({})",
            body.chars().take(200).collect::<String>()
        );
        return match retryable {
            true => transient(code, detail),
            false => SendError::Deployment { code, detail },
        };
    };
    let details = error.get("details").and_then(Value::as_array);
    let fcm_code = details.and_then(|d| {
        d.iter()
            .find_map(|d| d.get("errorCode").and_then(Value::as_str))
    });
    let status_code = error.get("status").and_then(Value::as_str);
    let code = fcm_code
        .or(status_code)
        .map_or_else(|| format!("HTTP_{http_status}"), str::to_owned);
    let detail = error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| body.chars().take(200).collect::<String>(), str::to_owned);
    match fcm_code {
        Some("UNREGISTERED") => SendError::InvalidToken { code, detail },
        Some("SENDER_ID_MISMATCH") => SendError::SenderMismatch { detail },
        Some("INVALID_ARGUMENT") if names_the_token(&detail, details) => {
            SendError::InvalidToken { code, detail }
        }
        Some("THIRD_PARTY_AUTH_ERROR") => SendError::Deployment { code, detail },
        Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => transient(code, detail),
        Some(_) if retryable => transient(code, detail),
        // FCM's own code for the message (INVALID_ARGUMENT, UNSPECIFIED_ERROR, one added later).
        Some(_) => SendError::Rejected { code, detail },
        // Google's answer without FCM's: about the access token, the key's rights, the project.
        None if http_status == 401 || retryable => transient(code, detail),
        None if matches!(http_status, 403 | 404) => SendError::Deployment { code, detail },
        None => SendError::Rejected { code, detail },
    }
}

/// Whether an `INVALID_ARGUMENT` is about the registration token rather than the message: its
/// message says so ("The registration token is not a valid FCM registration token"), or a
/// `google.rpc.BadRequest` names the field `message.token` (or `message.fid`, for a device
/// registered by its Firebase Installation ID).
fn names_the_token(message: &str, details: Option<&Vec<Value>>) -> bool {
    let field_is_token = details.is_some_and(|d| {
        d.iter()
            .filter_map(|d| d.get("fieldViolations").and_then(Value::as_array))
            .flatten()
            .any(|v| {
                matches!(
                    v.get("field").and_then(Value::as_str),
                    Some("message.token" | "message.fid")
                )
            })
    });
    field_is_token || message.to_ascii_lowercase().contains("registration token")
}

/// Exponential backoff with full jitter: up to 200 ms, 400 ms, … capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (200u64 << attempt.min(6)).min(10_000);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
}

#[cfg(test)]
mod tests;
