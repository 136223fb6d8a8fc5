//! Fault injection: the rules a test posts to `/__faults`, which request (send or topic call) each
//! rule answers, and the answer (a delay, a raw HTTP response, or an FCM error) that stands in.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{fcm_error, google_error};

/// The kind of FCM call a rule may be restricted to (its `on`).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Call {
    /// `messages:send`.
    Send,
    /// A topic subscription's `POST` or `DELETE`.
    Topics,
}

/// One fault rule, as posted to `/__faults`.
#[derive(Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Rule {
    /// The device the rule answers calls about: a send's registration token or FID, a topic
    /// call's registration token.
    token: Option<String>,
    /// The kind of call the rule answers; absent: every kind.
    on: Option<Call>,
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
    /// The error's message (default: "injected by the emulator").
    message: Option<String>,
    #[serde(skip)]
    seen: u64,
}

/// The body of `POST /__faults`: the rules replace any set before.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Faults {
    /// Tried in order for every send and topic call; the first that answers it wins.
    #[serde(default)]
    pub(crate) rules: Vec<Rule>,
    /// Forget every access token issued so far, so that sends get 401 until a new one is fetched.
    #[serde(default)]
    pub(crate) expire_tokens: bool,
}

impl Rule {
    /// Whether this rule answers a `call` about `device` (its token or FID). Counts the call
    /// towards `percent`, so a rule with a share must be asked once per matching call.
    fn answers(&mut self, call: Call, device: Option<&str>) -> bool {
        if self.on.is_some_and(|on| on != call) {
            return false;
        }
        if self.token.is_some() && self.token.as_deref() != device {
            return false;
        }
        let Some(percent) = self.percent else {
            return true;
        };
        self.seen += 1;
        let share = |n: u64| n * u64::from(percent.min(100)) / 100;
        share(self.seen) > share(self.seen - 1)
    }
}

/// Takes the first rule that answers a `call` about `device` (a send's `token` or `fid`, `None`
/// for a send to a topic or condition; a topic call's registration token), using up one of its
/// `times` (the rule leaves the list with its last one).
pub(crate) fn take_fault(rules: &mut Vec<Rule>, call: Call, device: Option<&str>) -> Option<Rule> {
    let i = rules.iter_mut().position(|r| r.answers(call, device))?;
    let rule = rules[i].clone();
    if let Some(times) = rules[i].times.as_mut() {
        // `times: 0` answers nothing more than `times: 1` would: the rule is used up at once.
        *times = times.saturating_sub(1);
        if *times == 0 {
            rules.remove(i);
        }
    }
    Some(rule)
}

/// Waits out the rule's delay, then gives the response it answers with: a raw one, an FCM error,
/// or `None` when the rule only delays and the call goes on.
pub(crate) async fn answer(rule: &Rule) -> Option<Response> {
    if rule.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
    }
    if let Some(status) = rule.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = rule.body.clone().unwrap_or_default();
        return Some((status, [("content-type", "text/html")], body).into_response());
    }
    if rule.error.is_empty() {
        return None;
    }
    let message = rule
        .message
        .as_deref()
        .unwrap_or("injected by the emulator");
    let mut response = match google_status(&rule.error) {
        Some(status) => google_error(status, message),
        None => fcm_error(error_status(&rule.error), &rule.error, message),
    };
    if let Some(secs) = rule.retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().expect("digits"));
    }
    Some(response)
}

/// Google's statuses that its front end answers without an FCM error code, and their HTTP status.
fn google_status(error: &str) -> Option<StatusCode> {
    match error {
        "PERMISSION_DENIED" => Some(StatusCode::FORBIDDEN),
        "NOT_FOUND" => Some(StatusCode::NOT_FOUND),
        "UNAUTHENTICATED" => Some(StatusCode::UNAUTHORIZED),
        _ => None,
    }
}

/// The HTTP status FCM answers an error code with.
fn error_status(code: &str) -> StatusCode {
    match code {
        "UNREGISTERED" => StatusCode::NOT_FOUND,
        "SENDER_ID_MISMATCH" => StatusCode::FORBIDDEN,
        "THIRD_PARTY_AUTH_ERROR" => StatusCode::UNAUTHORIZED,
        "QUOTA_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}
