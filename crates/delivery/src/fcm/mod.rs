//! The FCM HTTP v1 client: authenticated sends over pooled (HTTP/2 where offered) connections,
//! FCM's error bodies classified final or retryable, and retries with backoff within a deadline.

pub mod auth;
pub mod key;

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use pushq_model::Push;
use serde_json::Value;

use crate::sink::{Attempted, Sink};

pub use auth::TokenSource;
pub use key::ServiceAccount;

/// The FCM endpoint when `PUSHQ_FCM_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FcmError {
    /// The token is dead (`UNREGISTERED`, `SENDER_ID_MISMATCH`): final; the device is invalidated.
    #[error("{code}: {detail}")]
    InvalidToken {
        /// FCM's error code.
        code: String,
        /// FCM's message.
        detail: String,
    },
    /// FCM refused the message for good (`INVALID_ARGUMENT`, an unknown error…): final.
    #[error("{code}: {detail}")]
    Rejected {
        /// FCM's error code.
        code: String,
        /// FCM's message.
        detail: String,
    },
    /// Worth retrying: 429, 500, 503, network trouble.
    #[error("{code}: {detail}")]
    Transient {
        /// FCM's error code, or a pushq code for network trouble.
        code: String,
        /// What happened.
        detail: String,
        /// FCM's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The service-account key is missing or unusable. Never contains key material.
    #[error("FCM credentials: {0}")]
    Credentials(String),
}

impl FcmError {
    /// The error code recorded in the delivery log.
    pub fn code(&self) -> &str {
        match self {
            FcmError::InvalidToken { code, .. }
            | FcmError::Rejected { code, .. }
            | FcmError::Transient { code, .. } => code,
            FcmError::Credentials(_) => "CREDENTIALS",
        }
    }
}

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
}

impl Default for FcmConfig {
    fn default() -> Self {
        FcmConfig {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            dry_run: false,
            request_timeout: Duration::from_secs(10),
            cut_at_deadline: true,
        }
    }
}

/// A successful send and how many requests it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// FCM's message name (`projects/…/messages/…`).
    pub name: String,
}

/// Sends FCM v1 requests for one project. Build once; share.
pub struct FcmClient {
    http: reqwest::Client,
    tokens: TokenSource,
    send_url: String,
    dry_run: bool,
    cut_at_deadline: bool,
}

impl FcmClient {
    /// A client for the service account `account`.
    pub fn new(account: ServiceAccount, config: &FcmConfig) -> Result<FcmClient, FcmError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| FcmError::Credentials(format!("cannot build the HTTP client: {e}")))?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            config.endpoint.trim_end_matches('/'),
            account.project_id
        );
        let tokens = TokenSource::new(account, http.clone())?;
        Ok(FcmClient {
            http,
            tokens,
            send_url,
            dry_run: config.dry_run,
            cut_at_deadline: config.cut_at_deadline,
        })
    }

    /// Whether sends are `validate_only`.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// One attempt: POSTs the request body (already holding `validate_only` when dry-run).
    pub async fn send_once(&self, body: &Value) -> Result<Sent, FcmError> {
        let token = self.tokens.token().await?;
        let response = self
            .http
            .post(&self.send_url)
            .bearer_auth(&token)
            .json(body)
            .send()
            .await
            .map_err(|e| FcmError::Transient {
                code: "NETWORK".into(),
                detail: auth::without_url(&e),
                retry_after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| FcmError::Transient {
            code: "NETWORK".into(),
            detail: auth::without_url(&e),
            retry_after: None,
        })?;
        if status.is_success() {
            let name = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return Ok(Sent { name });
        }
        if status.as_u16() == 401 {
            // The token expired or was revoked early: drop it so the retry fetches a new one.
            self.tokens.invalidate(&token).await;
        }
        Err(classify(status.as_u16(), &text, retry_after))
    }

    /// Sends with retries: transient failures back off (honouring `Retry-After`) until
    /// `deadline`; returns the result and the number of attempts made (0 when the deadline had
    /// already passed). With `cut_at_deadline`, no attempt outlives the deadline: one still
    /// waiting for FCM then is cut short as a transient `DEADLINE` error (its message is
    /// redelivered), so a slow answer cannot run a Lambda batch past its invocation's end.
    pub async fn send_with_retries(&self, body: &Value, deadline: Instant) -> Attempted {
        let cut = self.cut_at_deadline;
        let mut attempts = 0;
        loop {
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Attempted {
                    result: Err(deadline_passed()),
                    attempts,
                };
            };
            attempts += 1;
            let result = if cut {
                tokio::time::timeout(left, self.send_once(body))
                    .await
                    .unwrap_or_else(|_| Err(deadline_passed()))
            } else {
                self.send_once(body).await
            };
            let Err(FcmError::Transient { retry_after, .. }) = &result else {
                return Attempted { result, attempts };
            };
            let wait = retry_after.unwrap_or_else(|| backoff(attempts));
            if Instant::now() + wait >= deadline {
                return Attempted { result, attempts };
            }
            tokio::time::sleep(wait).await;
        }
    }
}

impl Sink for FcmClient {
    /// Builds the request body for this target (with `validate_only` when the client is dry-run
    /// or the push is)
    /// and sends it with retries.
    fn send<'a>(
        &'a self,
        push: &'a Push,
        token: Option<&'a str>,
        validate_only: bool,
        deadline: Instant,
    ) -> BoxFuture<'a, Attempted> {
        Box::pin(async move {
            let body = crate::sink::request_body(push, token, self.dry_run || validate_only);
            self.send_with_retries(&body, deadline).await
        })
    }
}

fn deadline_passed() -> FcmError {
    FcmError::Transient {
        code: "DEADLINE".into(),
        detail: "the batch's time ran out before FCM answered".into(),
        retry_after: None,
    }
}

/// FCM's error body → final or retryable. `details[].errorCode` wins over `error.status`.
pub fn classify(http_status: u16, body: &str, retry_after: Option<Duration>) -> FcmError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let detail_code = error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        });
    let status_code = error.and_then(|e| e.get("status")).and_then(Value::as_str);
    let code = detail_code
        .or(status_code)
        .map_or_else(|| format!("HTTP_{http_status}"), str::to_owned);
    let detail = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| body.chars().take(200).collect::<String>(), str::to_owned);
    match code.as_str() {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => FcmError::InvalidToken { code, detail },
        "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" | "UNAUTHENTICATED" => FcmError::Transient {
            code,
            detail,
            retry_after,
        },
        _ if matches!(http_status, 401 | 429 | 500 | 502 | 503 | 504) => FcmError::Transient {
            code,
            detail,
            retry_after,
        },
        _ => FcmError::Rejected { code, detail },
    }
}

/// Exponential backoff with full jitter: up to 200 ms, 400 ms, … capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (200u64 << attempt.min(6)).min(10_000);
    Duration::from_millis(fastrand::u64(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_fcm_errors() {
        let body = |status: &str, code: &str| {
            format!(
                r#"{{"error":{{"code":404,"message":"m","status":"{status}","details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"{code}"}}]}}}}"#
            )
        };
        assert!(matches!(
            classify(404, &body("NOT_FOUND", "UNREGISTERED"), None),
            FcmError::InvalidToken { .. }
        ));
        assert!(matches!(
            classify(400, &body("INVALID_ARGUMENT", "INVALID_ARGUMENT"), None),
            FcmError::Rejected { .. }
        ));
        let e = classify(
            429,
            &body("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(
            e,
            FcmError::Transient {
                code: "QUOTA_EXCEEDED".into(),
                detail: "m".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        // Not JSON at all (an HTML error page from a proxy): classified by HTTP status.
        assert!(matches!(
            classify(503, "<html>busy</html>", None),
            FcmError::Transient { .. }
        ));
        assert_eq!(classify(418, "", None).code(), "HTTP_418");
    }
}
