//! `pushq fcm-emulator` with a certificate: HTTPS with HTTP/2 by ALPN, at most `--max-streams`
//! requests in flight per connection, answers after `--latency-ms`. With several `--project`s:
//! a key each, and a token good for its own project only. Sends to Firebase Installation IDs.
//! What FCM refuses beyond firebase-admin, refused with FCM's error body.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use pushq_delivery::fcm::{ServiceAccount, TokenSource};
use pushq_test_support::{certs, temp_dir, Fcm, FcmOptions, Proc};
use serde_json::{json, Value};

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");

/// Starts the emulator with `args`; returns it and the base URL it printed.
fn emulator(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(PUSHQ)
        .args(["fcm-emulator", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the emulator printed {line:?}"))
        .to_owned();
    (proc, base)
}

fn trusting(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_certificate_it_serves_http2_over_tls_within_its_stream_limit() {
    let dir = temp_dir();
    let certs = certs::make(&dir);
    let credentials = dir.join("sa.json");
    let (_emulator, base) = tokio::task::block_in_place(|| {
        emulator(&[
            "--write-credentials",
            credentials.to_str().unwrap(),
            "--tls-cert",
            certs.server_cert.to_str().unwrap(),
            "--tls-key",
            certs.server_key.to_str().unwrap(),
            "--max-streams",
            "2",
            "--latency-ms",
            "300",
        ])
    });
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let key: Value = serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    assert_eq!(key["token_uri"], format!("{base}/token"));

    // A client that trusts only the built-in roots refuses the emulator's certificate.
    let refused = reqwest::Client::new()
        .get(format!("{base}/__received"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // Six token requests at once on one client's one connection: the emulator lets two streams
    // be open at a time, and each answer waits for the latency, so two are in flight at once.
    let http = trusting(&certs.ca);
    let requests = (0..6).map(|_| {
        http.post(format!("{base}/token"))
            .form(&[("grant_type", "password"), ("assertion", "x")])
            .send()
    });
    for answer in futures::future::join_all(requests).await {
        let answer = answer.unwrap();
        assert_eq!(answer.version(), reqwest::Version::HTTP_2);
        assert_eq!(answer.status(), 400, "an unsupported grant is refused");
    }

    let state: Value = http
        .get(format!("{base}/__received"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_connections: Vec<&Value> = state["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["requests"].as_u64() >= Some(6))
        .collect();
    assert_eq!(token_connections.len(), 1, "{state}");
    let connection = token_connections[0];
    assert_eq!(connection["protocol"], "HTTP/2", "{connection}");
    assert_eq!(connection["peakInFlight"], 2, "{connection}");
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let out = Command::new(PUSHQ)
        .args(["fcm-emulator", "--port", "0", "--tls-cert", "server.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

/// An access token for `key`, fetched from its `token_uri` the way pushq fetches one.
async fn access_token(key: &Value) -> String {
    let account: ServiceAccount = serde_json::from_value(key.clone()).unwrap();
    TokenSource::new(account, reqwest::Client::new())
        .unwrap()
        .token()
        .await
        .unwrap()
        .token
        .clone()
}

/// `POST {base}/v1/projects/{project}/messages:send` with `bearer`: the status and JSON answer.
async fn send(base: &str, project: &str, bearer: &str, body: Value) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/projects/{project}/messages:send"))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_several_projects_each_has_its_key_and_a_token_sends_to_its_own_project_only() {
    let credentials = temp_dir().join("keys.json");
    let (_emulator, base) = tokio::task::block_in_place(|| {
        emulator(&[
            "--project",
            "member",
            "--project",
            "trainer",
            "--write-credentials",
            credentials.to_str().unwrap(),
        ])
    });

    // The credentials file is pushq's map of apps to keys, one key per project.
    let keys: Value = serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    let keys = keys.as_object().unwrap();
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["member", "trainer"]);
    for (project, key) in keys {
        assert_eq!(key["project_id"], *project);
        assert_eq!(
            key["client_email"],
            format!("pushq@{project}.iam.gserviceaccount.com")
        );
        assert_eq!(key["token_uri"], format!("{base}/token"));
    }
    assert_ne!(
        keys["member"]["private_key_id"],
        keys["trainer"]["private_key_id"]
    );
    assert_ne!(
        keys["member"]["private_key"],
        keys["trainer"]["private_key"]
    );

    let member = access_token(&keys["member"]).await;
    let trainer = access_token(&keys["trainer"]).await;
    let message = |token: &str| json!({"message": {"token": token, "data": {"k": "v"}}});

    let (status, answer) = send(&base, "member", &member, message("tok-m")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["name"]
            .as_str()
            .unwrap()
            .starts_with("projects/member/messages/"),
        "{answer}"
    );
    let (status, answer) = send(&base, "trainer", &trainer, message("tok-t")).await;
    assert_eq!(status, 200, "{answer}");

    // member's token on trainer's path: Google's refusal, without an FCM error code.
    let (status, answer) = send(&base, "trainer", &member, message("tok-x")).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["status"], "PERMISSION_DENIED", "{answer}");
    assert!(answer["error"].get("details").is_none(), "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("projects/trainer"),
        "{answer}"
    );
    // A project the emulator does not serve is not found; a token it did not issue is refused.
    let (status, answer) = send(&base, "pushq-emulator", &member, message("tok-x")).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = send(&base, "member", "ya29.forged", message("tok-x")).await;
    assert_eq!(status, 401, "{answer}");

    let state: Value = reqwest::get(format!("{base}/__received"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let accepted: Vec<(&Value, &Value)> = state["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (&m["project"], &m["body"]["message"]["token"]))
        .collect();
    assert_eq!(
        accepted,
        [
            (&json!("member"), &json!("tok-m")),
            (&json!("trainer"), &json!("tok-t"))
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_to_a_firebase_installation_id_is_accepted_recorded_and_faulted_by_its_id() {
    let fcm = tokio::task::block_in_place(|| {
        Fcm::start_projects(&["member", "trainer"], FcmOptions::default())
    });
    let written: Value = serde_json::from_slice(&std::fs::read(&fcm.credentials).unwrap()).unwrap();
    assert_eq!(written, json!(fcm.keys));
    let trainer = access_token(&fcm.keys["trainer"]).await;

    let fid = |id: &str| json!({"message": {"fid": id, "notification": {"title": "hi"}}});
    let (status, answer) = send(&fcm.endpoint, "trainer", &trainer, fid("fid-1")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = send(
        &fcm.endpoint,
        "trainer",
        &trainer,
        json!({"message": {"fid": "fid-2", "token": "tok-2"}}),
    )
    .await;
    assert_eq!(status, 400, "a token and a FID are two targets: {answer}");

    // A fault rule's `token` matches a FID as it matches a registration token.
    fcm.faults(json!({"rules": [{"token": "fid-gone", "error": "UNREGISTERED"}]}))
        .await;
    let (status, answer) = send(&fcm.endpoint, "trainer", &trainer, fid("fid-gone")).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["errorCode"], "UNREGISTERED",
        "{answer}"
    );

    assert_eq!(fcm.received_tokens().await, ["fid:fid-1"]);
    assert_eq!(fcm.received().await[0]["project"], "trainer");
}

/// What FCM refuses beyond firebase-admin's checks, sent as firebase-admin would send it (the
/// corpus's `firebaseAdmin: accepts` cases, with firebase-admin's own request bodies): the
/// emulator answers 400 `INVALID_ARGUMENT` as FCM does, its `BadRequest` field violation naming
/// the field (an unknown field: the object it was found in, as Google's parser says), records
/// nothing. Every valid corpus body is still accepted.
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_refuses_what_fcm_refuses_beyond_firebase_admin() {
    let fcm = tokio::task::block_in_place(Fcm::start);
    let project = pushq_fcm_emulator::PROJECT_ID;
    let bearer = access_token(&fcm.keys[project]).await;
    let corpus: Vec<Value> =
        serde_json::from_str(include_str!("../../model/tests/fixtures/fcm_corpus.json")).unwrap();
    let fcm_only: Vec<&Value> = corpus
        .iter()
        .filter(|c| c["firebaseAdmin"] == "accepts")
        .collect();
    assert!(fcm_only.len() >= 15);
    for case in fcm_only {
        let (status, answer) = send(&fcm.endpoint, project, &bearer, case["body"].clone()).await;
        assert_eq!(status, 400, "{}: {answer}", case["name"]);
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{answer}");
        let field = format!("message.{}", case["field"].as_str().unwrap());
        let violation = answer["error"]["details"][0]["fieldViolations"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let description = answer["error"]["message"].as_str().unwrap_or_default();
        // The body spells fields as firebase-admin sends them (lightSettings → light_settings).
        let spelling = |path: &str| path.replace('_', "").to_ascii_lowercase();
        if description.contains("Unknown name") {
            let (parent, name) = field.rsplit_once('.').unwrap();
            assert_eq!(
                spelling(&violation),
                spelling(parent),
                "{}: {answer}",
                case["name"]
            );
            assert!(description.contains(&format!("\"{name}\"")), "{answer}");
        } else {
            // firebase-admin renames some fields it sends (priority → notification_priority).
            let (parent, name) = field.rsplit_once('.').unwrap();
            let (got_parent, got_name) = violation.rsplit_once('.').unwrap_or_default();
            assert_eq!(
                spelling(got_parent),
                spelling(parent),
                "{}: {answer}",
                case["name"]
            );
            assert!(
                spelling(got_name).ends_with(&spelling(name)),
                "{}: {answer}",
                case["name"]
            );
        }
    }
    assert!(fcm.received().await.is_empty());
    for case in corpus.iter().filter(|c| c["valid"] == true) {
        let mut body = case["body"].clone();
        if body["message"].get("fid").is_none()
            && body["message"].get("topic").is_none()
            && body["message"].get("condition").is_none()
        {
            body["message"]["token"] = json!("corpus-device-token");
        }
        let (status, answer) = send(&fcm.endpoint, project, &bearer, body).await;
        assert_eq!(status, 200, "{}: {answer}", case["name"]);
    }
}
