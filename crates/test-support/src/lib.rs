//! Real parts for pushq's integration tests: moto_server (SQS), the FCM emulator (the
//! pushq-fcm-emulator library, served on a thread of its own) and fresh databases on SQLite,
//! PostgreSQL and MariaDB. Each is stopped when dropped.
#![allow(missing_docs)]

pub mod certs;
mod db;
pub mod lambda;
pub mod leaks;
pub mod rules;

pub use db::{Db, PgCluster};

/// Runs the async test function `$test(db: Db)` on each dialect, as three tests:
/// `$test::sqlite`, `$test::postgres` and `$test::mariadb`.
#[macro_export]
macro_rules! on_every_db {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$test($crate::Db::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$test($crate::Db::postgres().await).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn mariadb() {
                super::$test($crate::Db::mariadb().await).await;
            }
        }
    };
}

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed on drop.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on, never the same twice in one test process: tests run in
/// parallel threads, and a port the OS hands out again before the first server bound it would
/// let two servers race for it (the loser exits, and its test talks to the winner until the
/// winner's test ends and stops it).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Polls `ready` until it holds or `within` passes (readiness polling, not a fixed sleep).
pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// As [`wait_until`], and on timeout shows `context()` (e.g. a process's log).
pub fn wait_until_or(
    what: &str,
    within: Duration,
    context: impl Fn() -> String,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pushq-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `bin` with `args` and `env` to completion, failing the test (with its stderr) unless it
/// succeeded; returns its stdout.
pub fn run_ok(bin: &str, args: &[&str], env: &[(String, String)]) -> String {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// moto_server on a free loopback port.
pub struct Sqs {
    pub endpoint: String,
    _proc: Proc,
}

impl Sqs {
    pub fn start() -> Sqs {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server on PATH (pip install 'moto[server]')");
        let proc = Proc(child);
        wait_until("moto_server", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sqs {
            endpoint: format!("http://127.0.0.1:{port}"),
            _proc: proc,
        }
    }

    pub async fn client(&self) -> aws_sdk_sqs::Client {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_sqs::Client::new(&conf)
    }

    pub async fn fresh_queue(&self) -> String {
        let name = format!("pushq-{}", uuid::Uuid::now_v7().simple());
        self.client()
            .await
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// A fresh FIFO queue (`<name>.fifo`).
    pub async fn fresh_fifo_queue(&self) -> String {
        self.client()
            .await
            .create_queue()
            .queue_name(format!("pushq-{}.fifo", uuid::Uuid::now_v7().simple()))
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// Sends these message bodies, ten per SendMessageBatch; every entry must be accepted.
    pub async fn send_bodies(&self, queue_url: &str, bodies: &[String]) {
        let client = self.client().await;
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed.is_empty(), "{:?}", out.failed);
        }
    }

    pub async fn depth(&self, queue_url: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client()
            .await
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes.unwrap_or_default();
        let get = |a: &A| attrs.get(a).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(&A::ApproximateNumberOfMessages),
            get(&A::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Environment for processes that talk to this SQS.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SQS".into(), self.endpoint.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }
}

/// How a test's FCM emulator serves. (Its projects are [`Fcm::start_projects`]'s argument, not
/// a field here: tests build this struct with every field named.)
#[derive(Debug, Clone)]
pub struct FcmOptions {
    /// HTTPS (HTTP/2 by ALPN) with a certificate from a test CA made for it ([`certs::make`]),
    /// which [`Fcm::env`] tells pushq to trust; else plain HTTP/1.1.
    pub tls: bool,
    /// Concurrent HTTP/2 streams per connection (FCM's 100 by default).
    pub max_streams: u32,
    /// How long each token and send answer waits.
    pub latency: Duration,
}

impl Default for FcmOptions {
    fn default() -> Self {
        FcmOptions {
            tls: false,
            max_streams: pushq_fcm_emulator::FCM_MAX_STREAMS,
            latency: Duration::ZERO,
        }
    }
}

/// The FCM emulator with its own key for each project it serves, served on a thread of its own
/// (so that tests which block their own thread do not stall it); stopped when dropped.
pub struct Fcm {
    pub endpoint: String,
    /// A file holding what `PUSHQ_FCM_CREDENTIALS` takes to send to every project served: the
    /// service-account key, or with several projects a JSON object mapping each to its key.
    pub credentials: PathBuf,
    /// Every project's service-account key, by project.
    pub keys: BTreeMap<String, Value>,
    /// With TLS: the emulator's certificates (`ca` is the CA pushq must trust).
    pub certs: Option<certs::Certs>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fcm {
    /// Plain HTTP/1.1, no latency.
    pub fn start() -> Fcm {
        Fcm::start_with(FcmOptions::default())
    }

    /// HTTPS (HTTP/2 by ALPN) with a test CA's certificate (`certs`), no latency.
    pub fn start_tls() -> Fcm {
        Fcm::start_with(FcmOptions {
            tls: true,
            ..FcmOptions::default()
        })
    }

    /// As `options` say, serving [`pushq_fcm_emulator::PROJECT_ID`]; with TLS, the certificates
    /// are made in a temp dir of the emulator's own.
    pub fn start_with(options: FcmOptions) -> Fcm {
        Fcm::start_projects(&[pushq_fcm_emulator::PROJECT_ID], options)
    }

    /// As [`Fcm::start_with`], serving these Firebase projects, each with a key of its own (the
    /// credentials file maps each project, as an app name, to its key when there are several).
    pub fn start_projects(projects: &[&str], options: FcmOptions) -> Fcm {
        let dir = temp_dir();
        let credentials = dir.join("service-account.json");
        let certs = options.tls.then(|| certs::make(&dir));
        let emulator = pushq_fcm_emulator::Options {
            port: 0,
            tls: certs.as_ref().map(|c| pushq_fcm_emulator::TlsFiles {
                cert: c.server_cert.clone(),
                key: c.server_key.clone(),
            }),
            max_streams: options.max_streams,
            latency: options.latency,
            projects: projects.iter().map(|p| (*p).to_owned()).collect(),
        };
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("emulator runtime");
            runtime.block_on(async move {
                let running = pushq_fcm_emulator::spawn_with(&emulator)
                    .await
                    .expect("emulator starts");
                let setting = running.credentials_setting();
                ready
                    .send((running.base.clone(), setting, running.keys.clone()))
                    .expect("test waits");
                let _ = stopped.await;
                running.task.abort();
            });
        });
        let (endpoint, setting, keys) = started.recv().expect("emulator started");
        std::fs::write(&credentials, serde_json::to_vec_pretty(&setting).unwrap()).unwrap();
        Fcm {
            endpoint,
            credentials,
            keys,
            certs,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A client for the control endpoints (trusting the emulator's CA, with TLS).
    fn http(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder();
        if let Some(certs) = &self.certs {
            let pem = std::fs::read(&certs.ca).unwrap();
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        builder.build().unwrap()
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let http = self.http();
        let url = format!("{}{path}", self.endpoint);
        let req = if method == "GET" {
            http.get(url)
        } else {
            http.post(url)
        };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let res = req.send().await.unwrap();
        res.json().await.unwrap_or(Value::Null)
    }

    /// Every send the emulator accepted: `{"name", "project", "body", "validateOnly", …}`.
    pub async fn received(&self) -> Vec<Value> {
        self.call("GET", "/__received", None).await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The device of every send the emulator accepted, in the order it received them: its
    /// registration token, or `fid:<id>` for a send to a Firebase Installation ID (as the
    /// delivery log's `target`), empty for a topic or condition send.
    pub async fn received_tokens(&self) -> Vec<String> {
        self.received()
            .await
            .iter()
            .map(|m| {
                let message = &m["body"]["message"];
                match (message["token"].as_str(), message["fid"].as_str()) {
                    (Some(token), _) => token.to_owned(),
                    (None, Some(fid)) => format!("fid:{fid}"),
                    (None, None) => String::new(),
                }
            })
            .collect()
    }

    /// Every send request the emulator got, faulted ones too.
    pub async fn send_requests(&self) -> u64 {
        self.call("GET", "/__received", None).await["sendRequests"]
            .as_u64()
            .unwrap_or_default()
    }

    /// Every connection the emulator accepted: `{"id", "protocol", "requests", "peakInFlight"}`.
    pub async fn connections(&self) -> Vec<Value> {
        self.call("GET", "/__received", None).await["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the emulator's fault rules; a rule set it refuses fails the test.
    pub async fn faults(&self, faults: Value) {
        let res = self
            .http()
            .post(format!("{}/__faults", self.endpoint))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "the emulator refused the faults {faults}: {}",
            res.text().await.unwrap_or_default()
        );
    }

    /// Environment for pushq to send to this emulator (with TLS: trusting its CA).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PUSHQ_FCM_CREDENTIALS".into(),
                self.credentials.display().to_string(),
            ),
            ("PUSHQ_FCM_ENDPOINT".into(), self.endpoint.clone()),
        ];
        if let Some(certs) = &self.certs {
            env.push(("PUSHQ_FCM_CA_FILE".into(), certs.ca.display().to_string()));
        }
        env
    }
}

impl Drop for Fcm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
