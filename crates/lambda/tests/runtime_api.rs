//! The real `pushq-lambda` binary (what cargo lambda packages as `bootstrap`) driven through a
//! minimal Lambda Runtime API served by this test, against the FCM emulator and SQLite.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushq_delivery::store::Store;
use pushq_test_support::lambda::{
    bootstrap_command, serve_runtime_api, sqs_record, Lambda, RuntimeApi,
};
use pushq_test_support::{leaks, temp_dir, Db, Fcm};
use serde_json::{json, Value};
use tokio::sync::mpsc;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary, as Lambda starts it.
fn bootstrap(
    runtime_api: std::net::SocketAddr,
    env: &[(&str, String)],
    stdout: Stdio,
    stderr: Stdio,
) -> Child {
    bootstrap_command(env!("CARGO_BIN_EXE_pushq-lambda"), runtime_api)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_reports_partial_failures_and_redelivery_sends_nothing_twice() {
    let (fcm, env) = sqlite_and_emulator().await;
    let database_url = env[0].1.clone();
    let store = Store::connect(&database_url, 1).await.unwrap();
    store.register_device("u1", "tok-u1", "ios").await.unwrap();

    let (addr, api, mut responses) = serve_runtime_api().await;
    let _bootstrap = Kill(bootstrap(addr, &env, Stdio::null(), Stdio::null()));

    let http = reqwest::Client::new();
    http.post(format!("{}/__faults", fcm.base))
        .json(&json!({"rules": [{"token": "tok-down", "error": "UNAVAILABLE"}]}))
        .send()
        .await
        .unwrap();
    let event = json!({"Records": [
        sqs_record("m-user", r#"{"v":1,"id":"p-user","enqueuedAt":1795000000000,"push":{"userId":"u1","notification":{"title":"hi"}}}"#),
        sqs_record("m-down", r#"{"v":1,"id":"p-down","enqueuedAt":1795000000000,"push":{"tokens":["tok-up","tok-down"]}}"#),
        sqs_record("m-junk", "this is not an envelope"),
    ]});
    let invoke = |id: &str, seconds: u64| api.invoke(id, event.clone(), seconds);

    // First delivery: FCM is down for one token until the deadline (5 s less the 3 s reserve).
    invoke("req-1", 5);
    let (id, answer) = tokio::time::timeout(Duration::from_secs(60), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "req-1");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-down"}]})
    );

    // SQS redelivers the same batch; FCM is back.
    http.post(format!("{}/__faults", fcm.base))
        .json(&json!({"rules": []}))
        .send()
        .await
        .unwrap();
    invoke("req-2", 30);
    let (id, answer) = tokio::time::timeout(Duration::from_secs(60), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, "req-2");
    assert_eq!(answer, json!({"batchItemFailures": []}));

    // Each device got its push once, across both invocations.
    let received: Value = http
        .get(format!("{}/__received", fcm.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tokens: Vec<&str> = received["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["message"]["token"].as_str().unwrap())
        .collect();
    tokens.sort();
    assert_eq!(tokens, ["tok-down", "tok-u1", "tok-up"]);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&database_url)
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT push_id, target, status FROM pushq_deliveries ORDER BY push_id, target",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let row = |p: &str, t: &str| (p.to_owned(), t.to_owned(), "sent".to_owned());
    assert_eq!(
        rows,
        vec![
            row("p-down", "tok-down"),
            row("p-down", "tok-up"),
            row("p-user", "tok-u1")
        ]
    );
    let rejected: Vec<(String,)> = sqlx::query_as("SELECT queue_message_id FROM pushq_rejected")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rejected, vec![("m-junk".to_owned(),)]);
}

/// A record of a FIFO queue's event: its event source ARN ends in `.fifo` and it names its group.
fn fifo_record(message_id: &str, group: &str, body: &str) -> Value {
    let mut record = sqs_record(message_id, body);
    record["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:123456789012:pushq.fifo");
    record["attributes"]["MessageGroupId"] = json!(group);
    record["attributes"]["MessageDeduplicationId"] = json!(message_id);
    record
}

/// On a FIFO queue, a message that fails holds back the later messages of its group in the
/// batch, unsent (AWS's guidance for partial batch responses on FIFO queues); other groups go on.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_fifo_queue_a_failure_hands_back_the_rest_of_its_group_unsent() {
    let (db, fcm) = (Db::sqlite().await, Fcm::start());
    Store::connect(&db.url, 1)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let mut env = fcm.env();
    env.push(("DATABASE_URL".into(), db.url.clone()));
    let mut lambda = Lambda::start(env!("CARGO_BIN_EXE_pushq-lambda"), &env).await;
    fcm.faults(json!({"rules": [{"token": "tok-a1", "error": "UNAVAILABLE"}]}))
        .await;
    let push = |id: &str, token: &str| {
        json!({"v": 1, "id": id, "enqueuedAt": 1795000000000u64, "push": {"token": token}})
            .to_string()
    };
    let event = json!({"Records": [
        fifo_record("m-a1", "user:a", &push("p-a1", "tok-a1")),
        fifo_record("m-b1", "user:b", &push("p-b1", "tok-b1")),
        fifo_record("m-a2", "user:a", &push("p-a2", "tok-a2")),
        fifo_record("m-b2", "user:b", &push("p-b2", "tok-b2")),
        fifo_record("m-a3", "user:a", &push("p-a3", "tok-a3")),
    ]});
    // FCM fails a's first push until the deadline (5 s less the 3 s reserve).
    let answer = lambda
        .invoke("req-1", event, 5, Duration::from_secs(60))
        .await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [
            {"itemIdentifier": "m-a1"}, {"itemIdentifier": "m-a2"}, {"itemIdentifier": "m-a3"}
        ]})
    );
    // b's pushes went, in order; none of a's later pushes overtook its first.
    assert_eq!(fcm.received_tokens().await, ["tok-b1", "tok-b2"]);

    // SQS hands a's messages back, in order; FCM is back.
    fcm.faults(json!({"rules": []})).await;
    let again = json!({"Records": [
        fifo_record("m-a1", "user:a", &push("p-a1", "tok-a1")),
        fifo_record("m-a2", "user:a", &push("p-a2", "tok-a2")),
        fifo_record("m-a3", "user:a", &push("p-a3", "tok-a3")),
    ]});
    let answer = lambda
        .invoke("req-2", again, 30, Duration::from_secs(60))
        .await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(
        fcm.received_tokens().await,
        ["tok-b1", "tok-b2", "tok-a1", "tok-a2", "tok-a3"]
    );
}

/// moto_server on a free port, killed on drop.
fn moto() -> (Kill, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server on PATH");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "moto_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Kill(child), format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_and_database_url_come_from_secrets_manager_at_init() {
    let dir = temp_dir();
    let fcm = pushq_fcm_emulator::spawn(0).await.unwrap();
    let database_url = format!("sqlite://{}", dir.join("pushq.db").display());
    Store::connect(&database_url, 1)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();

    let (_moto, endpoint) = moto();
    let aws = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    let sm = secrets_manager(&endpoint).await;
    let secret = |name: &'static str, value: String| {
        let sm = sm.clone();
        async move {
            sm.create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await
                .unwrap()
                .arn
                .unwrap()
        }
    };
    let fcm_arn = secret("pushq/fcm", fcm.credentials.to_string()).await;
    let db_arn = secret("pushq/db", database_url.clone()).await;

    // A missing secret stops init with a message that names the variable.
    let mut env: Vec<(&str, String)> = aws.to_vec();
    env.push(("PUSHQ_FCM_ENDPOINT", fcm.base.clone()));
    env.push((
        "PUSHQ_FCM_CREDENTIALS_SECRET_ARN",
        format!("{fcm_arn}-missing"),
    ));
    env.push(("PUSHQ_DATABASE_URL_SECRET_ARN", db_arn.clone()));
    let (addr, api, mut responses) = serve_runtime_api().await;
    let out = bootstrap(addr, &env, Stdio::null(), Stdio::piped())
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PUSHQ_FCM_CREDENTIALS_SECRET_ARN"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("PRIVATE KEY") && !stderr.contains("sqlite:"),
        "a secret leaked: {stderr}"
    );

    // With both secrets, a push is delivered and recorded.
    env.retain(|(k, _)| *k != "PUSHQ_FCM_CREDENTIALS_SECRET_ARN");
    env.push(("PUSHQ_FCM_CREDENTIALS_SECRET_ARN", fcm_arn));
    let _lambda = Kill(bootstrap(addr, &env, Stdio::null(), Stdio::null()));
    let event =
        json!({"Records": [sqs_record("m1", r#"{"v":1,"id":"p1","push":{"token":"tok-1"}}"#)]});
    api.invoke("req-1", event, 30);
    let (_, answer) = tokio::time::timeout(Duration::from_secs(60), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&database_url)
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT target, status FROM pushq_deliveries")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, vec![("tok-1".to_owned(), "sent".to_owned())]);
}

/// A fresh PostgreSQL database, reached with a URL that carries a password (trust auth on the
/// test server ignores it, so it is a secret that must never be printed).
async fn postgres_with_password(password: &str) -> (String, String) {
    let name = format!("pushq_lambda_{}", uuid::Uuid::now_v7().simple());
    let admin = std::env::var("PUSHQ_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (trust auth), see README");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_password(Some(password)).unwrap();
    url.set_path(&name);
    (url.to_string(), name)
}

/// What an operator reads in CloudWatch: per batch one JSON log line with the push ids, batch
/// size, outcome counts and duration, and EMF metric lines with the same counters and the
/// enqueue-to-send latencies. Across a delivery with a dead token, a transient failure, a
/// rejected message, an OAuth token that expires mid-run and an init that fails on the
/// database, no line holds the private key, an OAuth token or the database password.
#[tokio::test(flavor = "multi_thread")]
async fn logs_and_metrics_carry_the_batch_and_never_a_secret() {
    let dir = temp_dir();
    let fcm = pushq_fcm_emulator::spawn(0).await.unwrap();
    let credentials = dir.join("sa.json");
    std::fs::write(&credentials, fcm.credentials.to_string()).unwrap();
    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
    let (database_url, database) = postgres_with_password(&password).await;
    let store = Store::connect(&database_url, 1).await.unwrap();
    store.migrate().await.unwrap();
    for (user, token) in [("u1", "tok-a"), ("u1", "tok-b"), ("u2", "tok-dead")] {
        store.register_device(user, token, "android").await.unwrap();
    }
    let http = reqwest::Client::new();
    let faults = |rules: Value| {
        let http = http.clone();
        let url = format!("{}/__faults", fcm.base);
        async move { http.post(url).json(&rules).send().await.unwrap() }
    };
    faults(json!({"rules": [
        {"token": "tok-dead", "error": "UNREGISTERED"},
        {"token": "tok-down", "error": "UNAVAILABLE"}
    ]}))
    .await;

    let (addr, api, mut responses) = serve_runtime_api().await;
    let stdout = dir.join("stdout.log");
    let stderr = dir.join("stderr.log");
    let env = [
        ("DATABASE_URL", database_url.clone()),
        ("PUSHQ_FCM_CREDENTIALS", credentials.display().to_string()),
        ("PUSHQ_FCM_ENDPOINT", fcm.base.clone()),
        ("PUSHQ_LOG", "debug".to_owned()),
    ];
    let child = Kill(bootstrap(
        addr,
        &env,
        std::fs::File::create(&stdout).unwrap().into(),
        std::fs::File::create(&stderr).unwrap().into(),
    ));
    let enqueued_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let envelope = |id: &str, push: Value| {
        json!({"v": 1, "id": id, "enqueuedAt": enqueued_at, "push": push}).to_string()
    };
    api.invoke(
        "req-1",
        json!({"Records": [
            sqs_record("m-users", &envelope("p-users", json!({"userIds": ["u1", "u2"]}))),
            sqs_record("m-down", &envelope("p-down", json!({"token": "tok-down"}))),
            sqs_record("m-junk", "{\"v\":1,"),
        ]}),
        5,
    );
    let (_, answer) = tokio::time::timeout(Duration::from_secs(60), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-down"}]})
    );
    // The OAuth token expires; the next batch gets a new one.
    faults(json!({"rules": [], "expireTokens": true})).await;
    api.invoke(
        "req-2",
        json!({"Records": [sqs_record("m-down", &envelope("p-down", json!({"token": "tok-down"})))]}),
        30,
    );
    let (_, answer) = tokio::time::timeout(Duration::from_secs(60), responses.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    drop(child);

    // An init that cannot reach its database says so, without the password.
    let dead_db = database_url.replace(&database, "pushq_missing_database");
    let init = Command::new(env!("CARGO_BIN_EXE_pushq-lambda"))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("DATABASE_URL", &dead_db)
        .env("PUSHQ_FCM_CREDENTIALS", &credentials)
        .env("PUSHQ_FCM_ENDPOINT", &fcm.base)
        .output()
        .unwrap();
    assert!(!init.status.success());
    let init_out = format!(
        "{}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(init_out.contains("pushq-lambda init"), "{init_out}");

    let out = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let batches: Vec<&Value> = lines
        .iter()
        .filter(|v| v["fields"]["message"] == "batch done")
        .collect();
    assert_eq!(batches.len(), 2, "{out}");
    let first = &batches[0]["fields"];
    assert_eq!(first["batch_size"], 3);
    assert_eq!(first["sent"], 2);
    assert_eq!(first["invalid_tokens"], 1);
    assert_eq!(first["rejected"], 1);
    assert_eq!(first["redelivered"], 1);
    assert!(first["duration_ms"].is_u64());
    assert_eq!(first["push_ids"], "p-down,p-users");
    let warn = lines
        .iter()
        .find(|v| v["level"] == "WARN" && v["fields"]["push_id"] == "p-down")
        .unwrap_or_else(|| panic!("no warning names the push that will be retried: {out}"));
    assert_eq!(warn["fields"]["code"], "UNAVAILABLE");

    // Per batch, one line with the dimension Service and one per app with Service and App.
    let (emf, per_app): (Vec<&Value>, Vec<&Value>) = lines
        .iter()
        .filter(|v| v.get("_aws").is_some())
        .partition(|v| v.get("App").is_none());
    assert_eq!(emf.len(), 2, "{out}");
    assert_eq!(per_app.len(), 2, "{out}");
    assert_eq!(
        (per_app[0]["App"].clone(), per_app[0]["Sent"].clone()),
        (json!("default"), json!(2))
    );
    assert_eq!(
        per_app[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Service", "App"]])
    );
    assert_eq!(per_app[0]["HandedBack"], 1);
    assert_eq!(emf[0]["Service"], "pushq-lambda");
    for (name, value) in [
        ("Messages", 3),
        ("Sent", 2),
        ("Failed", 0),
        ("InvalidTokens", 1),
        ("Redelivered", 1),
        ("Rejected", 1),
    ] {
        assert_eq!(emf[0][name], value, "{name}");
    }
    assert!(
        emf[0]["Retried"].as_u64().unwrap() >= 1,
        "UNAVAILABLE was retried"
    );
    assert_eq!(emf[0]["EnqueueToSendLatency"].as_array().unwrap().len(), 2);
    assert_eq!(emf[1]["Sent"], 1);

    let received: Value = http
        .get(format!("{}/__received", fcm.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens: Vec<String> = serde_json::from_value(received["accessTokens"].clone()).unwrap();
    assert!(
        tokens.len() >= 2,
        "the expiry made a second token: {tokens:?}"
    );
    let key = fcm.credentials["private_key"].as_str().unwrap();
    let key_lines: Vec<&str> = key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    assert!(key_lines.len() > 10);
    let everything = format!("{out}\n{err}\n{init_out}");
    assert!(!everything.contains(&password), "the DB password leaked");
    for t in &tokens {
        assert!(!everything.contains(t.as_str()), "an OAuth token leaked");
    }
    for l in key_lines {
        assert!(!everything.contains(l), "the private key leaked");
    }
    assert!(!everything.contains("PRIVATE KEY"));

    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(
        &std::env::var("PUSHQ_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    )
    .await
    .unwrap();
    drop(store);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
}

/// A bootstrap started with `env`, its stdout and stderr in files; the output read back as one text.
struct Watched {
    child: Kill,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Watched {
    fn start(runtime_api: std::net::SocketAddr, env: &[(&str, String)]) -> Watched {
        let dir = temp_dir();
        let (stdout, stderr) = (dir.join("stdout.log"), dir.join("stderr.log"));
        let child = Kill(bootstrap(
            runtime_api,
            env,
            std::fs::File::create(&stdout).unwrap().into(),
            std::fs::File::create(&stderr).unwrap().into(),
        ));
        Watched {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}\n{}", read(&self.stdout), read(&self.stderr))
    }

    /// Waits (polling, within 30 s) for the process to end, which a failing init does.
    async fn failed_init(mut self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "init did not fail within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "init failed with a success status");
        self.output()
    }

    /// Sends one invocation and waits for its answer, or for the process to end (a failed
    /// init); returns the answer (None if the process ended) and the output so far.
    async fn invoke(
        &mut self,
        api: &RuntimeApi,
        responses: &mut mpsc::UnboundedReceiver<(String, Value)>,
        id: &str,
        event: Value,
    ) -> (Option<Value>, String) {
        api.invoke(id, event, 30);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::select! {
                answer = responses.recv() => {
                    let (answered, answer) = answer.unwrap();
                    assert_eq!(answered, id);
                    return (Some(answer), self.output());
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if self.child.0.try_wait().unwrap().is_some() {
                        return (None, self.output());
                    }
                    assert!(std::time::Instant::now() < deadline, "no answer within 60 s");
                }
            }
        }
    }
}

/// The emulator's key with a realistic `private_key_id`, as JSON text, and its parts that must
/// never be printed.
fn key_and_secrets(fcm: &pushq_fcm_emulator::Running) -> (String, leaks::Secrets) {
    let mut key = fcm.credentials.clone();
    key["private_key_id"] = json!("8f14e45fceea167a5a36dedd4bea2543bb1c2e7d");
    let part = |name: &str| key[name].as_str().unwrap().to_owned();
    let secrets = leaks::Secrets::new().service_account(
        &part("private_key"),
        &part("private_key_id"),
        &part("client_email"),
    );
    (key.to_string(), secrets)
}

/// A service-account value in the shapes operators end up with, given to the real bootstrap:
/// BOM-prefixed and quoted JSON work (in an environment variable and as a Secrets Manager
/// secret); base64, truncated JSON and a path to nothing stop init with an error that names
/// the variable. Whatever happens, nothing the bootstrap prints holds a piece of the key.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_in_any_shape_work_or_name_their_variable_and_never_echo_the_key() {
    let dir = temp_dir();
    let fcm = pushq_fcm_emulator::spawn(0).await.unwrap();
    let (key, secrets) = key_and_secrets(&fcm);
    let database_url = format!("sqlite://{}", dir.join("pushq.db").display());
    Store::connect(&database_url, 1)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let base = [
        ("DATABASE_URL", database_url.clone()),
        ("PUSHQ_FCM_ENDPOINT", fcm.base.clone()),
    ];
    let missing = dir.join("no-such-service-account.json");
    let mut shapes = leaks::service_account_shapes(&key, &missing.display().to_string());

    // The same shapes as Secrets Manager secret strings, one that works and one that does not.
    let (_moto, endpoint) = moto();
    let sm = secrets_manager(&endpoint).await;
    let aws = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.clone()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    let as_secret: Vec<leaks::Shape> = shapes
        .iter()
        .filter(|s| s.name == "BOM-prefixed JSON" || s.name == "base64 of the JSON")
        .map(|s| leaks::Shape {
            name: s.name,
            variable: "PUSHQ_FCM_CREDENTIALS_SECRET_ARN",
            value: s.value.clone(),
            works: s.works,
        })
        .collect();
    let mut secret_arns = Vec::new();
    for (n, shape) in as_secret.iter().enumerate() {
        let arn = sm
            .create_secret()
            .name(format!("pushq/fcm-{n}"))
            .secret_string(&shape.value)
            .send()
            .await
            .unwrap()
            .arn
            .unwrap();
        secret_arns.push(arn);
    }

    let cases = shapes
        .drain(..)
        .map(|s| {
            let value = s.value.clone();
            (s, value, false)
        })
        .chain(
            as_secret
                .into_iter()
                .zip(secret_arns)
                .map(|(s, arn)| (s, arn, true)),
        );
    for (n, (shape, value, from_secret)) in cases.enumerate() {
        let label = if from_secret {
            format!("{} (Secrets Manager)", shape.name)
        } else {
            shape.name.to_owned()
        };
        let mut env = base.to_vec();
        env.push((shape.variable, value));
        if from_secret {
            env.extend(aws.iter().cloned());
        }
        // A Runtime API of its own: a killed bootstrap's pending `next` could take the event.
        let (addr, api, mut responses) = serve_runtime_api().await;
        let mut lambda = Watched::start(addr, &env);
        let output = if shape.works {
            let record = format!(r#"{{"v":1,"id":"p-{n}","push":{{"token":"tok-{n}"}}}}"#);
            let event = json!({"Records": [sqs_record(&format!("m-{n}"), &record)]});
            let (answer, output) = lambda
                .invoke(&api, &mut responses, &format!("req-{n}"), event)
                .await;
            assert_eq!(
                answer,
                Some(json!({"batchItemFailures": []})),
                "{label}: not delivered; output:\n{}",
                shape.secrets(secrets.clone()).mask(&output)
            );
            output
        } else {
            let output = lambda.failed_init().await;
            assert!(
                output.contains(shape.variable),
                "{label}: the error does not name {}; output:\n{}",
                shape.variable,
                shape.secrets(secrets.clone()).mask(&output)
            );
            output
        };
        if let Some(found) = shape.secrets(secrets.clone()).find_in(&output) {
            panic!("{label}: the bootstrap printed a piece of a secret: {found}");
        }
        assert!(
            !output.contains("PRIVATE KEY"),
            "{label}: printed PRIVATE KEY"
        );
    }
}

/// A Secrets Manager client for moto at `endpoint`.
async fn secrets_manager(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&conf)
}

/// A `DATABASE_URL` that is not a URL (an env file's `user:password@host/db`, the password
/// alone) stops init with an error naming DATABASE_URL and printing no part of the value.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_url_without_a_scheme_is_named_never_printed() {
    let fcm = pushq_fcm_emulator::spawn(0).await.unwrap();
    let dir = temp_dir();
    let credentials = dir.join("sa.json");
    std::fs::write(&credentials, fcm.credentials.to_string()).unwrap();
    let (addr, _api, _responses) = serve_runtime_api().await;
    let secrets = leaks::Secrets::new()
        .add("the password", "s3cret-pw")
        .add("the user", "pushq_owner");
    let env = |url: String| {
        [
            ("DATABASE_URL", url),
            ("PUSHQ_FCM_CREDENTIALS", credentials.display().to_string()),
            ("PUSHQ_FCM_ENDPOINT", fcm.base.clone()),
        ]
    };
    for url in [
        "pushq_owner:s3cret-pw@db.internal:5432/pushq",
        "s3cret-pw@db.internal/pushq",
        "s3cret-pw",
    ] {
        let output = Watched::start(addr, &env(url.to_owned()))
            .failed_init()
            .await;
        assert!(
            output.contains("DATABASE_URL"),
            "the error does not name DATABASE_URL:\n{}",
            secrets.mask(&output)
        );
        if let Some(found) = secrets.find_in(&output) {
            panic!("init printed {found} of a DATABASE_URL without a scheme");
        }
    }
}

/// A PostgreSQL URL to a host that is not loopback, without certificate verification, gets one
/// warning line at init that names the host, never the URL.
#[tokio::test(flavor = "multi_thread")]
async fn unverified_tls_to_a_remote_database_is_warned_about_once_naming_the_host() {
    let fcm = pushq_fcm_emulator::spawn(0).await.unwrap();
    let dir = temp_dir();
    let credentials = dir.join("sa.json");
    std::fs::write(&credentials, fcm.credentials.to_string()).unwrap();
    let (addr, _api, _responses) = serve_runtime_api().await;
    let server = leaks::NonLoopbackServer::start();
    let env = [
        ("DATABASE_URL", server.unverified_database_url()),
        ("PUSHQ_FCM_CREDENTIALS", credentials.display().to_string()),
        ("PUSHQ_FCM_ENDPOINT", fcm.base.clone()),
    ];
    // The server closes the connection: init fails after the warning.
    let output = Watched::start(addr, &env).failed_init().await;
    server.assert_warned_once(&output, "init");
}

/// A database nobody migrated: init fails, saying to run `pushq migrate`, instead of a function
/// that fails every batch until the messages reach the DLQ.
#[tokio::test(flavor = "multi_thread")]
async fn init_on_a_database_never_migrated_fails_saying_to_migrate() {
    let fcm = Fcm::start();
    let db = Db::sqlite().await;
    let (addr, _api, _responses) = serve_runtime_api().await;
    let mut env: Vec<(&str, String)> = vec![("DATABASE_URL", db.url.clone())];
    let fcm_env = fcm.env();
    env.extend(fcm_env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let out = Watched::start(addr, &env).failed_init().await;
    assert!(out.contains("pushq-lambda init"), "{out}");
    assert!(out.contains("run `pushq migrate`"), "{out}");
}

/// An invocation whose event is not an SQS event is reported to the Runtime API as that
/// invocation's error (Lambda then hands the batch back), and the function goes on: the next
/// invocation is answered, also when the API closes the connection after each answer.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_that_is_not_an_sqs_event_is_reported_as_its_error_and_the_next_is_answered() {
    let (_fcm, env) = sqlite_and_emulator().await;
    let (addr, api, mut responses) = serve_runtime_api().await;
    let mut function = Watched::start(addr, &env);

    let (answer, output) = function
        .invoke(
            &api,
            &mut responses,
            "req-bad",
            json!({"detail-type": "not SQS"}),
        )
        .await;
    let answer = answer.unwrap_or_else(|| panic!("the function ended; its output:\n{output}"));
    assert_eq!(
        answer["invocationError"]["errorType"], "InvalidEvent",
        "{answer}"
    );
    let message = answer["invocationError"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("Records"), "{message}");

    api.close_each_connection();
    for id in ["req-1", "req-2"] {
        let push = format!(
            r#"{{"v":1,"id":"p-{id}","enqueuedAt":1795000000000,"push":{{"tokens":["tok-{id}"]}}}}"#
        );
        let event = json!({ "Records": [sqs_record(&format!("m-{id}"), &push)] });
        let (answer, output) = function.invoke(&api, &mut responses, id, event).await;
        assert_eq!(
            answer,
            Some(json!({"batchItemFailures": []})),
            "the function's output:\n{output}"
        );
        // Its log lines carry the invocation's request id, as lambda_runtime's span did.
        let done = output
            .lines()
            .filter(|l| l.contains("batch done") && l.contains(&format!("p-{id}")))
            .collect::<Vec<_>>();
        assert!(
            done.len() == 1 && done[0].contains(&format!(r#""requestId":"{id}""#)),
            "no `batch done` line with requestId {id}:\n{output}"
        );
    }
}

/// The bootstrap turns transparent huge pages off for itself before anything allocates (each
/// huge page its allocator touched was zeroed whole at init): the kernel reports the process
/// with `THP_enabled: 0`, on any machine, whatever the system's setting.
#[tokio::test(flavor = "multi_thread")]
async fn the_bootstrap_runs_without_transparent_huge_pages() {
    let (_fcm, env) = sqlite_and_emulator().await;
    let (addr, api, _responses) = serve_runtime_api().await;
    let function = Watched::start(addr, &env);
    api.polled().await;

    let status =
        std::fs::read_to_string(format!("/proc/{}/status", function.child.0.id())).unwrap();
    let thp = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .unwrap_or_else(|| panic!("no THP_enabled line (a kernel before 5.0?):\n{status}"));
    assert_eq!(thp.split_whitespace().nth(1), Some("0"), "{thp}");
}

/// A migrated SQLite database and an FCM emulator, as the function's variables
/// (`DATABASE_URL` first; the emulator runs while the first value is kept).
async fn sqlite_and_emulator() -> (pushq_fcm_emulator::Running, [(&'static str, String); 3]) {
    let dir = temp_dir();
    let fcm = pushq_fcm_emulator::spawn(0).await.unwrap();
    let credentials = dir.join("sa.json");
    std::fs::write(&credentials, fcm.credentials.to_string()).unwrap();
    let database_url = format!("sqlite://{}", dir.join("pushq.db").display());
    let store = Store::connect(&database_url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let env = [
        ("DATABASE_URL", database_url),
        ("PUSHQ_FCM_CREDENTIALS", credentials.display().to_string()),
        ("PUSHQ_FCM_ENDPOINT", fcm.base.clone()),
    ];
    (fcm, env)
}
