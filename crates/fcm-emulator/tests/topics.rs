//! FCM v1's topic subscriptions on the emulator, called over HTTP as firebase-admin calls them:
//! membership per project (`/__topics`), the same authorisation and fault rules as sends, the
//! tokens a topic send reached, and each call recorded as received (`topicRequests`).

use std::time::{SystemTime, UNIX_EPOCH};

use pushq_fcm_emulator::{spawn, spawn_with, Options, Running, PROJECT_ID};
use serde_json::{json, Value};

/// An access token for `key`, from the emulator's token endpoint.
async fn access_token(key: &Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token_uri = key["token_uri"].as_str().unwrap();
    let claims = json!({"iss": key["client_email"], "aud": token_uri, "iat": now, "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/firebase.messaging"});
    let private_key = key["private_key"].as_str().unwrap();
    let assertion = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).unwrap(),
    )
    .unwrap();
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    let answer: Value = reqwest::Client::new()
        .post(token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// JavaScript's `encodeURIComponent`, as firebase-admin encodes tokens and topics.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' => {
                char::from(b).to_string()
            }
            b'\'' | b'(' | b')' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client of one emulator's project, calling as firebase-admin 14.5.1 does.
struct Admin {
    base: String,
    project: String,
    /// `None`: calls without an `Authorization` header.
    bearer: Option<String>,
}

impl Admin {
    async fn of(fcm: &Running, project: &str) -> Admin {
        Admin {
            base: fcm.base.clone(),
            project: project.to_owned(),
            bearer: Some(access_token(&fcm.keys[project]).await),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}/v1/projects/{}{path}", self.base, self.project);
        let mut request = reqwest::Client::new()
            .request(method, url)
            .header("X-Firebase-Client", "fire-admin-node/14.5.1")
            .header("access_token_auth", "true");
        if let Some(bearer) = &self.bearer {
            request = request.header("Authorization", format!("Bearer {bearer}"));
        }
        request
    }

    /// Subscribes `token` to `topic` with `body`: the status and JSON answer.
    async fn subscribe_with(&self, token: &str, topic: &str, body: &str) -> (u16, Value) {
        let path = format!(
            "/registrations/{}/topicSubscriptions?topic_name={}",
            encode(token),
            encode(topic)
        );
        let request = self
            .request(reqwest::Method::POST, &path)
            .header("content-type", "application/json")
            .body(body.to_owned());
        answer(request).await
    }

    async fn subscribe(&self, token: &str, topic: &str) -> (u16, Value) {
        self.subscribe_with(token, topic, "{}").await
    }

    /// Unsubscribes `token` from `topic`, with `?allow_missing=true` unless `strict`.
    async fn unsubscribe(&self, token: &str, topic: &str, strict: bool) -> (u16, Value) {
        let query = if strict { "" } else { "?allow_missing=true" };
        let path = format!(
            "/registrations/{}/topicSubscriptions/{}{query}",
            encode(token),
            encode(topic)
        );
        answer(self.request(reqwest::Method::DELETE, &path)).await
    }

    /// Sends `message`: the status and JSON answer.
    async fn send(&self, message: Value) -> (u16, Value) {
        let request = self
            .request(reqwest::Method::POST, "/messages:send")
            .json(&json!({"message": message}));
        answer(request).await
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(fcm: &Running, path: &str) -> Value {
    let url = format!("{}{path}", fcm.base);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn post(fcm: &Running, path: &str, body: Value) {
    let url = format!("{}{path}", fcm.base);
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}: {response:?}");
}

#[tokio::test]
async fn subscribing_and_unsubscribing_change_the_projects_topics() {
    let fcm = spawn(0).await.unwrap();
    let admin = Admin::of(&fcm, PROJECT_ID).await;
    for (token, topic) in [
        ("tok-b", "news"),
        ("tok-a", "news"),
        ("tok-a", "private/vip"),
    ] {
        assert_eq!(admin.subscribe(token, topic).await, (200, json!({})));
    }
    assert_eq!(
        admin.subscribe("tok-a", "news").await,
        (200, json!({})),
        "already subscribed"
    );
    let topics = json!({PROJECT_ID: {"news": ["tok-a", "tok-b"], "private/vip": ["tok-a"]}});
    assert_eq!(get(&fcm, "/__topics").await, topics);

    assert_eq!(admin.unsubscribe("tok-a", "news", false).await.0, 200);
    assert_eq!(
        admin.unsubscribe("tok-a", "news", false).await.0,
        200,
        "missing, allowed"
    );
    let (status, answer) = admin.unsubscribe("tok-a", "news", true).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["status"], "NOT_FOUND", "{answer}");
    assert_eq!(
        admin.unsubscribe("tok-a", "private/vip", false).await.0,
        200
    );
    let topics = json!({PROJECT_ID: {"news": ["tok-b"]}});
    assert_eq!(
        get(&fcm, "/__topics").await,
        topics,
        "empty topics left out"
    );

    post(&fcm, "/__reset", json!({})).await;
    assert_eq!(get(&fcm, "/__topics").await, json!({}));
    assert_eq!(get(&fcm, "/__received").await["topicRequests"], json!([]));
}

#[tokio::test]
async fn topic_calls_are_authorised_as_sends_are() {
    let projects = vec!["member".to_owned(), "trainer".to_owned()];
    let fcm = spawn_with(&Options {
        projects,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut admin = Admin::of(&fcm, "member").await;
    let bearer = admin.bearer.take();
    let (status, answer) = admin.subscribe("tok-1", "news").await;
    assert_eq!(status, 401, "no token: {answer}");
    assert_eq!(answer["error"]["status"], "UNAUTHENTICATED", "{answer}");

    admin.bearer = bearer;
    admin.project = "trainer".to_owned();
    let (status, answer) = admin.unsubscribe("tok-1", "news", false).await;
    assert_eq!(status, 403, "another project's token: {answer}");
    assert_eq!(answer["error"]["status"], "PERMISSION_DENIED", "{answer}");
    admin.project = "stranger".to_owned();
    assert_eq!(
        admin.subscribe("tok-1", "news").await.0,
        404,
        "unknown project"
    );

    admin.project = "member".to_owned();
    assert_eq!(admin.subscribe("tok-1", "news").await.0, 200);
    assert_eq!(
        get(&fcm, "/__topics").await,
        json!({"member": {"news": ["tok-1"]}})
    );
    let received = get(&fcm, "/__received").await;
    let statuses: Vec<&Value> = received["topicRequests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [401, 403, 404, 200], "refused calls recorded too");
}

#[tokio::test]
async fn an_invalid_topic_or_body_is_invalid_argument() {
    const TOKEN: &str = "fcm-token-1";
    let fcm = spawn(0).await.unwrap();
    let admin = Admin::of(&fcm, PROJECT_ID).await;
    for topic in ["bad topic", "private/", "/topics/news", "a/b", ""] {
        let (status, answer) = admin.subscribe(TOKEN, topic).await;
        assert_eq!(status, 400, "{topic:?}: {answer}");
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{answer}");
        let (status, _) = admin.unsubscribe(TOKEN, topic, false).await;
        if topic.is_empty() {
            assert_ne!(status, 200, "an empty path segment");
        } else {
            assert_eq!(status, 400, "{topic:?}");
        }
    }
    for body in ["", "{\"topic\":\"news\"}", "[]", "{"] {
        let (status, answer) = admin.subscribe_with(TOKEN, "news", body).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("body: must be the JSON object {}"),
            "{answer}"
        );
    }
    for topic in ["news", "private/news", "a-b_c.d~e%f"] {
        assert_eq!(admin.subscribe(TOKEN, topic).await.0, 200, "{topic}");
    }
    assert_eq!(
        get(&fcm, "/__topics").await[PROJECT_ID]
            .as_object()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_fault_rule_on_topics_answers_topic_calls_and_not_sends() {
    let fcm = spawn(0).await.unwrap();
    let admin = Admin::of(&fcm, PROJECT_ID).await;
    let rules = json!({"rules": [
        {"token": "tok-gone", "on": "topics", "error": "UNREGISTERED"},
        {"token": "tok-busy", "on": "send", "error": "QUOTA_EXCEEDED"},
        {"token": "tok-slow", "status": 502, "body": "<html>bad gateway</html>", "times": 1},
    ]});
    post(&fcm, "/__faults", rules).await;

    let (status, answer) = admin.subscribe("tok-gone", "news").await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["errorCode"], "UNREGISTERED",
        "{answer}"
    );
    assert_eq!(admin.unsubscribe("tok-gone", "news", false).await.0, 404);
    assert_eq!(admin.send(json!({"token": "tok-gone"})).await.0, 200);

    assert_eq!(admin.subscribe("tok-busy", "news").await.0, 200);
    assert_eq!(admin.send(json!({"token": "tok-busy"})).await.0, 429);

    assert_eq!(
        admin.subscribe("tok-slow", "news").await.0,
        502,
        "raw answer"
    );
    assert_eq!(admin.subscribe("tok-slow", "news").await.0, 200, "used up");
    let topics = json!({PROJECT_ID: {"news": ["tok-busy", "tok-slow"]}});
    assert_eq!(get(&fcm, "/__topics").await, topics);
}

#[tokio::test]
async fn a_topic_send_records_the_tokens_it_reached() {
    let fcm = spawn(0).await.unwrap();
    let admin = Admin::of(&fcm, PROJECT_ID).await;
    for token in ["tok-b", "tok-a"] {
        admin.subscribe(token, "news").await;
    }
    admin.subscribe("tok-c", "sport").await;
    assert_eq!(admin.send(json!({"topic": "news"})).await.0, 200);
    admin.unsubscribe("tok-b", "news", false).await;
    assert_eq!(admin.send(json!({"topic": "news"})).await.0, 200);
    assert_eq!(admin.send(json!({"topic": "nobody"})).await.0, 200);
    let condition = json!({"condition": "'news' in topics"});
    assert_eq!(admin.send(condition).await.0, 200);
    assert_eq!(admin.send(json!({"token": "tok-a"})).await.0, 200);

    let received = get(&fcm, "/__received").await;
    let reached: Vec<&Value> = received["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["reached"])
        .collect();
    let expected = [
        json!(["tok-a", "tok-b"]),
        json!(["tok-a"]),
        json!([]),
        Value::Null,
        Value::Null,
    ];
    assert_eq!(reached, expected.iter().collect::<Vec<_>>());
    assert!(
        received["messages"][3].get("reached").is_none(),
        "a condition"
    );
}

#[tokio::test]
async fn topic_requests_are_recorded_as_received() {
    let fcm = spawn(0).await.unwrap();
    let admin = Admin::of(&fcm, PROJECT_ID).await;
    let token = "fcm:APA91b-x_y";
    admin.subscribe(token, "private/news").await;
    admin.unsubscribe(token, "private/news", false).await;

    let received = get(&fcm, "/__received").await;
    let requests = received["topicRequests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{received}");
    let base =
        format!("/v1/projects/{PROJECT_ID}/registrations/fcm%3AAPA91b-x_y/topicSubscriptions");
    let (subscribe, unsubscribe) = (&requests[0], &requests[1]);
    assert_eq!(subscribe["method"], "POST");
    assert_eq!(
        subscribe["path"],
        format!("{base}?topic_name=private%2Fnews")
    );
    assert_eq!(subscribe["body"], "{}");
    assert_eq!(subscribe["action"], "subscribe");
    assert_eq!(unsubscribe["method"], "DELETE");
    assert_eq!(
        unsubscribe["path"],
        format!("{base}/private%2Fnews?allow_missing=true")
    );
    assert_eq!(unsubscribe["body"], "");
    assert_eq!(unsubscribe["action"], "unsubscribe");
    for request in requests {
        assert_eq!(request["project"], PROJECT_ID);
        assert_eq!(request["token"], token);
        assert_eq!(request["topic"], "private/news");
        assert_eq!(request["status"], 200);
        assert_eq!(request["protocol"], "HTTP/1.1");
        assert!(request["connection"].as_u64().unwrap() >= 1);
        let headers = &request["headers"];
        assert_eq!(headers["x-firebase-client"], "fire-admin-node/14.5.1");
        assert_eq!(headers["access_token_auth"], "true");
        let bearer = admin.bearer.as_deref().unwrap();
        assert_eq!(headers["authorization"], format!("Bearer {bearer}"));
        assert!(headers["host"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert_eq!(requests[0]["headers"]["content-type"], "application/json");
}
