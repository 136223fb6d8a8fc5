//! Real parts for pushq's integration tests: moto_server (SQS), the FCM emulator (the
//! pushq-fcm-emulator library, served on a thread of its own) and fresh databases on SQLite,
//! PostgreSQL and MariaDB. Each is stopped when dropped.
#![allow(missing_docs)]

pub mod certs;
pub mod lambda;
pub mod leaks;

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

/// A fresh, empty database of one dialect; dropped with the value (server databases).
pub struct Db {
    pub url: String,
    pub dialect: &'static str,
    admin: Option<(String, String)>, // (admin url, database name)
}

impl Db {
    pub async fn sqlite() -> Db {
        let path = temp_dir().join("pushq.db");
        Db {
            url: format!("sqlite://{}", path.display()),
            dialect: "sqlite",
            admin: None,
        }
    }

    pub async fn postgres() -> Db {
        let admin = std::env::var("PUSHQ_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        Db::postgres_at(admin).await
    }

    /// A fresh database on the PostgreSQL server this admin URL reaches.
    pub async fn postgres_at(admin: String) -> Db {
        let name = format!("pushq_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Db {
            url,
            dialect: "postgres",
            admin: Some((admin, name)),
        }
    }

    pub async fn mariadb() -> Db {
        let admin = std::env::var("PUSHQ_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let name = format!("pushq_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("MariaDB on 127.0.0.1:3306");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Db {
            url,
            dialect: "mysql",
            admin: Some((admin, name)),
        }
    }

    /// The admin URL the database was created with (server databases).
    pub fn admin_url(&self) -> Option<&str> {
        self.admin.as_ref().map(|(url, _)| url.as_str())
    }

    pub async fn drop_it(self) {
        let Some((admin, name)) = &self.admin else {
            return;
        };
        if self.dialect == "postgres" {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
                .await
                .unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        } else {
            let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(admin)
                .await
                .unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE {name}"))
                .execute(&mut conn)
                .await;
        }
    }

    /// How many rows of the delivery log are final (not `sending` under a claim, not `retrying`).
    pub async fn final_deliveries(&self) -> usize {
        self.deliveries()
            .await
            .iter()
            .filter(|r| r.2 != "sending" && r.2 != "retrying")
            .count()
    }

    /// Rows of the delivery log as (push_id, target, status, error_code, user_id).
    pub async fn deliveries(
        &self,
    ) -> Vec<(String, String, String, Option<String>, Option<String>)> {
        let q = if self.dialect == "mysql" {
            "SELECT CONVERT(push_id USING utf8mb4), CONVERT(target USING utf8mb4), CONVERT(status USING utf8mb4), CONVERT(error_code USING utf8mb4), CONVERT(user_id USING utf8mb4) FROM pushq_deliveries ORDER BY push_id, target"
        } else {
            "SELECT push_id, target, status, error_code, user_id FROM pushq_deliveries ORDER BY push_id, target"
        };
        match self.dialect {
            "postgres" => {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
            }
            "mysql" => {
                let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
            }
            _ => {
                let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
            }
        }
    }

    /// Runs SQL as the test's own hand on the database (e.g. to age a device), unprepared: one
    /// or several statements, DDL such as a trigger included.
    pub async fn execute(&self, sql: &str) {
        match self.dialect {
            "postgres" => {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
            "mysql" => {
                let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
            _ => {
                let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }

    /// Rows of pushq_rejected as (queue_message_id, reason).
    pub async fn rejected(&self) -> Vec<(String, String)> {
        let q = if self.dialect == "mysql" {
            "SELECT CONVERT(queue_message_id USING utf8mb4), CONVERT(reason USING utf8mb4) FROM pushq_rejected ORDER BY queue_message_id"
        } else {
            "SELECT queue_message_id, reason FROM pushq_rejected ORDER BY queue_message_id"
        };
        match self.dialect {
            "postgres" => {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
            }
            "mysql" => {
                let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
            }
            _ => {
                let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url)
                    .await
                    .unwrap();
                sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
            }
        }
    }
}

/// A PostgreSQL cluster of the test's own with `pg_stat_statements` preloaded, for counting the
/// statements the server executes: the shared server on 127.0.0.1:5432 does not preload it, and
/// preloading needs a restart. initdb in a temp dir, started on a free loopback port (as
/// `bench/lib.js` does), stopped and removed on drop. Needs the PostgreSQL server binaries
/// (`/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`); as root it runs them as the
/// `postgres` user, since initdb refuses to run as root.
pub struct PgCluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`, trust authentication.
    pub admin: String,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut bins: Vec<PathBuf> = versions
                    .filter_map(|v| Some(v.ok()?.path().join("bin")))
                    .filter(|b| b.join("initdb").exists())
                    .collect();
                bins.sort_by_key(|b| {
                    let version = b.parent().and_then(|v| v.file_name());
                    version.and_then(|v| v.to_str()?.parse::<u32>().ok())
                });
                bins.pop()
            })
            .or_else(|| {
                let out = Command::new("pg_config").arg("--bindir").output().ok()?;
                Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
            })
            .expect("the PostgreSQL server binaries (initdb, pg_ctl) for a private cluster");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = temp_dir();
        let mut cluster = PgCluster {
            admin: String::new(),
            dir,
            bin,
            as_postgres: root,
        };
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cluster.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "--auth=trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top",
            cluster.dir.display()
        );
        // `pg_ctl -w` returns once the server accepts connections.
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                cluster.dir.join("log").to_str().unwrap(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        cluster.admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        cluster
    }

    /// A command running one of the server binaries (as `postgres` when we are root).
    fn command(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(tool);
            command
        } else {
            Command::new(tool)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if !self.admin.is_empty() {
            let data = self.dir.join("data");
            let _ = self
                .command("pg_ctl")
                .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
