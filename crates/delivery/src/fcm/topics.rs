//! FCM's topic-management calls, as firebase-admin 14.5's `subscribeToTopic` /
//! `unsubscribeFromTopic` make them (`sendTopicManagementRequestV1`): one token per request, on
//! the client's own connections and access token, with the sends' retries and quota throttle.
//! - subscribe: `POST …/registrations/<token>/topicSubscriptions?topic_name=<topic>`, body `{}`;
//! - unsubscribe: `DELETE …/registrations/<token>/topicSubscriptions/<topic>?allow_missing=true`.
//!
//! Token and topic are encoded as JavaScript's `encodeURIComponent` encodes them. Answers are
//! read as firebase-admin reads them (FCM's `details[].errorCode`, else Google's `status`): 200 is
//! done (and a subscribe answered 409 or `ALREADY_EXISTS`); everything else is judged as a send's
//! answer is ([`super::classify`]): FCM's own `UNREGISTERED`, or `INVALID_ARGUMENT` naming the
//! token, says the token is dead; Google's bare `NOT_FOUND` (a wrong project answers so too) and
//! the other faults of the deployment or the service hand the change back.

use std::time::Instant;

use serde_json::Value;

use std::sync::Arc;

use super::{read_answer, AccessToken, FcmClient, Request, SendError};
use crate::sink::{TopicAttempted, TopicCall};

impl FcmClient {
    /// Subscribes or unsubscribes one token, with retries until `deadline`.
    pub async fn manage_topic(&self, call: TopicCall<'_>, deadline: Instant) -> TopicAttempted {
        let request: &Request<'_, ()> =
            &|token| Box::pin(async move { self.topic_request(call, token).await });
        let (result, attempts) = self.with_retries(request, deadline).await;
        TopicAttempted { result, attempts }
    }

    async fn topic_request(
        &self,
        call: TopicCall<'_>,
        token: Arc<AccessToken>,
    ) -> Result<(), SendError> {
        let base = self
            .send_url
            .as_str()
            .strip_suffix("messages:send")
            .unwrap_or_default();
        let path = format!(
            "{base}registrations/{}/topicSubscriptions",
            encode_uri_component(call.token)
        );
        let topic = encode_uri_component(call.topic);
        let lane = self.http.borrow();
        let request = match call.subscribe {
            true => lane
                .http()
                .post(format!("{path}?topic_name={topic}"))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json;charset=utf-8",
                )
                .body("{}"),
            false => lane
                .http()
                .delete(format!("{path}/{topic}?allow_missing=true")),
        };
        let request = request
            .header(reqwest::header::AUTHORIZATION, token.header.clone())
            .header("access_token_auth", "true");
        let (status, retry_after, text) = read_answer(request).await?;
        if status == 200 && is_json_object(&text) {
            return Ok(());
        }
        if call.subscribe
            && (status == 409 || error_code(&text).as_deref() == Some("ALREADY_EXISTS"))
        {
            return Ok(());
        }
        if (200..300).contains(&status) {
            return Err(SendError::Deployment {
                code: format!("HTTP_{status}"),
                detail: format!(
                    "a {status} answer to a topic call that is not FCM's ({})",
                    text.chars().take(200).collect::<String>()
                ),
            });
        }
        // Judged as a send's answer: FCM's own `UNREGISTERED`, or `INVALID_ARGUMENT` naming the
        // registration token, is a dead token; Google's bare `NOT_FOUND` (what a wrong project
        // answers too) is the deployment's, never a reason to invalidate a device.
        Err(self.refused(status, &text, retry_after, &token.token).await)
    }
}

/// An FCM error body's code, as firebase-admin's `getErrorCode` reads it: FCM's own
/// `details[].errorCode`, else Google's `status`.
fn error_code(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    error
        .get("details")
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find_map(|d| d.get("errorCode").and_then(Value::as_str))
        })
        .or_else(|| error.get("status").and_then(Value::as_str))
        .map(str::to_owned)
}

fn is_json_object(body: &str) -> bool {
    matches!(serde_json::from_str::<Value>(body), Ok(Value::Object(_)))
}

/// JavaScript's `encodeURIComponent`: every byte but `A–Z a–z 0–9 - _ . ! ~ * ' ( )`
/// percent-encoded, as UTF-8.
pub(crate) fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_topics_are_encoded_as_encode_uri_component_does() {
        assert_eq!(encode_uri_component("abc:APA91b-_.~"), "abc%3AAPA91b-_.~");
        assert_eq!(encode_uri_component("private/news%"), "private%2Fnews%25");
        assert_eq!(encode_uri_component("ü *'()!"), "%C3%BC%20*'()!");
    }

    #[test]
    fn only_fcms_own_code_says_a_token_is_dead() {
        let google = |code: &str, status: u16| {
            format!(r#"{{"error":{{"code":{status},"message":"m","status":"{code}"}}}}"#)
        };
        let fcm = r#"{"error":{"code":404,"message":"m","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        let dead = |status, body: &str| {
            matches!(
                super::super::classify(status, body, None),
                SendError::InvalidToken { .. }
            )
        };
        assert!(dead(404, fcm));
        // A wrong project answers Google's bare NOT_FOUND too: the deployment's, handed back.
        assert!(matches!(
            super::super::classify(404, &google("NOT_FOUND", 404), None),
            SendError::Deployment { .. }
        ));
        assert!(!dead(403, &google("PERMISSION_DENIED", 403)));
        assert!(!dead(404, "<html>Not Found</html>"));
        assert_eq!(
            error_code(&google("ALREADY_EXISTS", 409)).as_deref(),
            Some("ALREADY_EXISTS")
        );
    }
}
