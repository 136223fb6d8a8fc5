//! What `pushq worker` makes of its secrets at start-up: a service-account key or a database URL
//! in a broken shape either works or stops the worker with an error that names the variable, and
//! nothing it prints holds a piece of the secret.

use std::process::Command;
use std::time::Duration;

use pushq_test_support::leaks::{self, NonLoopbackServer, Secrets};
use pushq_test_support::*;
use serde_json::{json, Value};

const PUSHQ: &str = env!("CARGO_BIN_EXE_pushq");
/// A queue for workers that must stop at start-up: settings are read before the first poll.
const NO_QUEUE: &str = "http://127.0.0.1:9/000000000000/none";

/// `pushq worker` with `env` only (no inherited FCM or database settings), its stdout and stderr
/// in files.
struct Worker {
    proc: Proc,
    dir: std::path::PathBuf,
}

impl Worker {
    fn start(queue: &str, env: &[(String, String)]) -> Worker {
        let dir = temp_dir();
        let child = Command::new(PUSHQ)
            .args(["worker", "--queue-url", queue])
            .env_remove("PUSHQ_FCM_CREDENTIALS")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("DATABASE_URL")
            .envs(env.iter().cloned())
            .stdout(std::fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Worker {
            proc: Proc(child),
            dir,
        }
    }

    fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}\n{}", read("stdout.log"), read("stderr.log"))
    }

    fn exited(&mut self) -> bool {
        self.proc.0.try_wait().unwrap().is_some()
    }

    /// Waits (polling, within 30 s) for the worker to give up at start-up.
    fn failed_start(mut self) -> String {
        wait_until("the worker to exit", Duration::from_secs(30), || {
            self.exited()
        });
        let status = self.proc.0.wait().unwrap();
        assert!(
            !status.success(),
            "the worker gave up with a success status"
        );
        self.output()
    }
}

/// The emulator's key (the file `Fcm::start` wrote) with a realistic `private_key_id`, as the
/// pretty JSON a key file holds, and its parts that must never be printed.
fn key_and_secrets(fcm: &Fcm) -> (String, Secrets) {
    let mut key: Value = serde_json::from_slice(&std::fs::read(&fcm.credentials).unwrap()).unwrap();
    key["private_key_id"] = json!("8f14e45fceea167a5a36dedd4bea2543bb1c2e7d");
    let part = |name: &str| key[name].as_str().unwrap().to_owned();
    let secrets = Secrets::new().service_account(
        &part("private_key"),
        &part("private_key_id"),
        &part("client_email"),
    );
    (serde_json::to_string_pretty(&key).unwrap(), secrets)
}

/// BOM-prefixed and quoted JSON keys deliver; base64, truncated JSON and a path to nothing stop
/// the worker with an error that names the variable. Nothing it prints holds a piece of the key.
#[tokio::test(flavor = "multi_thread")]
async fn worker_credentials_in_any_shape_work_or_name_their_variable_and_never_echo_the_key() {
    let (sqs, fcm) = (Sqs::start(), Fcm::start());
    let db = Db::sqlite().await;
    let migrated = Command::new(PUSHQ)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let (key, secrets) = key_and_secrets(&fcm);
    let missing = temp_dir().join("no-such-service-account.json");
    let rt = tokio::runtime::Handle::current();
    for (n, shape) in leaks::service_account_shapes(&key, &missing.display().to_string())
        .into_iter()
        .enumerate()
    {
        let secrets = shape.secrets(secrets.clone());
        let mut env = sqs.env();
        env.extend([
            ("DATABASE_URL".to_owned(), db.url.clone()),
            ("PUSHQ_FCM_ENDPOINT".to_owned(), fcm.endpoint.clone()),
            (shape.variable.to_owned(), shape.value.clone()),
        ]);
        let output = if shape.works {
            let token = format!("tok-{n}");
            let body = json!({"v": 1, "push": {"token": token}}).to_string();
            // A queue of its own: a killed worker's long poll may still take the next message.
            let queue = sqs.fresh_queue().await;
            sqs.send_bodies(&queue, &[body]).await;
            let mut worker = Worker::start(&queue, &env);
            let delivered = || {
                rt.block_on(fcm.received())
                    .iter()
                    .any(|m| m["body"]["message"]["token"] == token.as_str())
            };
            let sent = tokio::task::block_in_place(|| {
                wait_until(
                    "the push or the worker's exit",
                    Duration::from_secs(60),
                    || delivered() || worker.exited(),
                );
                delivered()
            });
            let output = worker.output();
            assert!(
                sent && !worker.exited(),
                "{}: not delivered; output:\n{}",
                shape.name,
                secrets.mask(&output)
            );
            output
        } else {
            let output =
                tokio::task::block_in_place(|| Worker::start(NO_QUEUE, &env).failed_start());
            assert!(
                output.contains(shape.variable),
                "{}: the error does not name {}; output:\n{}",
                shape.name,
                shape.variable,
                secrets.mask(&output)
            );
            output
        };
        if let Some(found) = secrets.find_in(&output) {
            panic!(
                "{}: the worker printed a piece of a secret: {found}",
                shape.name
            );
        }
        assert!(!output.contains("PRIVATE KEY"), "{}", shape.name);
    }
}

/// A `DATABASE_URL` that is not a URL stops the worker with an error naming DATABASE_URL and no
/// part of the value.
#[tokio::test(flavor = "multi_thread")]
async fn worker_names_a_database_url_without_a_scheme_and_never_prints_it() {
    let fcm = Fcm::start();
    let secrets = Secrets::new()
        .add("the password", "s3cret-pw")
        .add("the user", "pushq_owner");
    let env = |url: &str| {
        let mut env = fcm.env();
        env.push(("DATABASE_URL".to_owned(), url.to_owned()));
        env
    };
    for url in [
        "pushq_owner:s3cret-pw@db.internal:5432/pushq",
        "s3cret-pw@db.internal/pushq",
        "s3cret-pw",
    ] {
        let output =
            tokio::task::block_in_place(|| Worker::start(NO_QUEUE, &env(url)).failed_start());
        assert!(
            output.contains("DATABASE_URL"),
            "the error does not name DATABASE_URL:\n{}",
            secrets.mask(&output)
        );
        if let Some(found) = secrets.find_in(&output) {
            panic!("the worker printed {found} of a DATABASE_URL without a scheme");
        }
    }
}

/// A PostgreSQL URL to a host that is not loopback, without certificate verification, gets one
/// warning line at start-up that names the host, never the URL.
#[tokio::test(flavor = "multi_thread")]
async fn worker_warns_once_about_unverified_tls_to_a_remote_database_naming_the_host() {
    let fcm = Fcm::start();
    let server = NonLoopbackServer::start();
    let mut env = fcm.env();
    env.push(("DATABASE_URL".to_owned(), server.unverified_database_url()));
    // The server closes the connection: the worker stops after the warning.
    let output = tokio::task::block_in_place(|| Worker::start(NO_QUEUE, &env).failed_start());
    server.assert_warned_once(&output, "the worker");
}
