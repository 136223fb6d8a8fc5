//! `pushq fcm-emulator` with a certificate: HTTPS with HTTP/2 by ALPN, at most `--max-streams`
//! requests in flight per connection, answers after `--latency-ms`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use pushq_test_support::{certs, temp_dir, Proc};
use serde_json::Value;

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
