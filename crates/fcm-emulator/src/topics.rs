//! FCM v1's topic subscriptions, one registration token per call as firebase-admin makes them:
//! the members of each project's topics, and the record of every topic call as it was received.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::faults::Call;
use crate::serve::RequestInfo;
use crate::{fcm_error, google_error, injected, unauthorised, Emulator};

/// The most of a topic call's body the emulator reads (firebase-admin sends `{}` or nothing).
const MAX_BODY: usize = 1 << 20;

/// The members of each project's topics: project → topic → registration tokens. A topic left
/// without members, and a project left without topics, are dropped.
#[derive(Default)]
pub(crate) struct Membership(BTreeMap<String, BTreeMap<String, BTreeSet<String>>>);

impl Membership {
    fn subscribe(&mut self, project: &str, topic: &str, token: &str) {
        self.0
            .entry(project.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_default()
            .insert(token.to_owned());
    }

    /// Removes `token` from the topic; whether it was a member.
    fn unsubscribe(&mut self, project: &str, topic: &str, token: &str) -> bool {
        let Some(topics) = self.0.get_mut(project) else {
            return false;
        };
        let Some(members) = topics.get_mut(topic) else {
            return false;
        };
        let was_member = members.remove(token);
        if members.is_empty() {
            topics.remove(topic);
        }
        if topics.is_empty() {
            self.0.remove(project);
        }
        was_member
    }

    /// The tokens subscribed to `topic` in `project`, sorted.
    pub(crate) fn members(&self, project: &str, topic: &str) -> Vec<String> {
        self.0
            .get(project)
            .and_then(|topics| topics.get(topic))
            .map(|members| members.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// What a topic call asks, read from its path and query (decoded).
struct Ask {
    project: String,
    /// The registration token.
    token: String,
    /// The topic, without `/topics/`; `None` for a subscribe without `topic_name`.
    topic: Option<String>,
    action: Action,
}

#[derive(Clone, Copy)]
enum Action {
    Subscribe,
    /// `allow_missing`: removing a token that is not a member is not an error.
    Unsubscribe {
        allow_missing: bool,
    },
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Unsubscribe { .. } => "unsubscribe",
        }
    }
}

/// `POST /v1/projects/{project}/registrations/{token}/topicSubscriptions?topic_name={topic}`
/// with the body `{}`: subscribes the token to the topic.
pub(crate) async fn subscribe(
    State(emu): State<Arc<Emulator>>,
    Path((project, token)): Path<(String, String)>,
    request: Request,
) -> Response {
    let topic = query(&request).remove("topic_name");
    let action = Action::Subscribe;
    let ask = Ask {
        project,
        token,
        topic,
        action,
    };
    serve(&emu, ask, request).await
}

/// `DELETE /v1/projects/{project}/registrations/{token}/topicSubscriptions/{topic}`, with
/// `?allow_missing=true` as firebase-admin sends it: unsubscribes the token from the topic.
pub(crate) async fn unsubscribe(
    State(emu): State<Arc<Emulator>>,
    Path((project, token, topic)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let allow_missing = query(&request)
        .get("allow_missing")
        .is_some_and(|v| v == "true");
    let ask = Ask {
        project,
        token,
        topic: Some(topic),
        action: Action::Unsubscribe { allow_missing },
    };
    serve(&emu, ask, request).await
}

/// `GET /__topics`: `{"<project>": {"<topic>": ["<token>", …]}}`, tokens sorted.
pub(crate) async fn report(State(emu): State<Arc<Emulator>>) -> Json<Value> {
    let inner = emu.inner.lock().expect("emulator state");
    Json(json!(inner.topics.0))
}

/// The request's query parameters, decoded (the last of a name given twice).
fn query(request: &Request) -> HashMap<String, String> {
    Query::try_from_uri(request.uri())
        .map(|Query(params)| params)
        .unwrap_or_default()
}

/// Reads the call's body, answers the call, and records it with the status answered.
async fn serve(emu: &Emulator, ask: Ask, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let response = match &body {
        Ok(body) => answer(emu, &ask, &parts, body).await,
        Err(e) => fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("body: could not be read ({e})"),
        ),
    };
    let body = body.as_deref().unwrap_or_default();
    record(emu, &ask, &parts, body, response.status());
    response
}

/// A topic call in FCM's order, as a send is answered: authorise, check the body and the topic;
/// then a fault rule that matches answers instead, or the membership changes.
async fn answer(emu: &Emulator, ask: &Ask, parts: &Parts, body: &[u8]) -> Response {
    if let Some(refusal) = unauthorised(emu, &parts.headers, &ask.project) {
        return refusal;
    }
    let topic = match checked_topic(ask, body) {
        Ok(topic) => topic,
        Err(why) => return fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &why),
    };
    if let Some(response) = injected(emu, Call::Topics, Some(&ask.token)).await {
        return response;
    }
    change(emu, ask, topic)
}

/// The call's topic, once the body (a subscribe's must be the JSON object `{}`) and the topic
/// are what FCM takes; else the message of its `INVALID_ARGUMENT`.
fn checked_topic<'a>(ask: &'a Ask, body: &[u8]) -> Result<&'a str, String> {
    if let Action::Subscribe = ask.action {
        empty_object(body)?;
    }
    let topic = ask.topic.as_deref().ok_or("topic_name: is required")?;
    let name = topic.strip_prefix("private/").unwrap_or(topic);
    let fits = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b));
    if !fits {
        return Err(format!(
            "topic: must match ^(private/)?[a-zA-Z0-9-_.~%]+$ (got {topic:?})"
        ));
    }
    Ok(topic)
}

/// Whether `body` is the JSON object `{}`; else why not.
fn empty_object(body: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) if fields.is_empty() => Ok(()),
        _ if body.is_empty() => Err("body: must be the JSON object {} (got no body)".to_owned()),
        Ok(_) => Err(format!("body: must be the JSON object {{}} (got {shown})")),
        Err(_) => Err(format!(
            "Invalid JSON payload received. body: must be the JSON object {{}} (got {shown:?})"
        )),
    }
}

/// Subscribes or unsubscribes the call's token: 200 `{}`, or Google's 404 `NOT_FOUND` for an
/// unsubscribe of a token that is not a member, unless it allows that.
fn change(emu: &Emulator, ask: &Ask, topic: &str) -> Response {
    let mut inner = emu.inner.lock().expect("emulator state");
    match ask.action {
        Action::Subscribe => inner.topics.subscribe(&ask.project, topic, &ask.token),
        Action::Unsubscribe { allow_missing } => {
            let was_member = inner.topics.unsubscribe(&ask.project, topic, &ask.token);
            if !was_member && !allow_missing {
                return google_error(StatusCode::NOT_FOUND, "Requested entity was not found.");
            }
        }
    }
    Json(json!({})).into_response()
}

/// Records a topic call for `/__received`'s `topicRequests` as it was received (its path and
/// query still percent-encoded, every header, the raw body), with what it asked and the status
/// it was answered.
fn record(emu: &Emulator, ask: &Ask, parts: &Parts, body: &[u8], status: StatusCode) {
    let path = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let mut headers = BTreeMap::<&str, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str())
            .and_modify(|joined| *joined = format!("{joined}, {value}"))
            .or_insert_with(|| value.into_owned());
    }
    let info = parts.extensions.get::<RequestInfo>();
    let entry = json!({
        "method": parts.method.as_str(),
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(body),
        "project": ask.project,
        "token": ask.token,
        "topic": ask.topic,
        "action": ask.action.name(),
        "status": status.as_u16(),
        "protocol": info.map(|i| i.protocol),
        "connection": info.map(|i| i.connection),
    });
    let mut inner = emu.inner.lock().expect("emulator state");
    inner.topic_requests.push(entry);
}
