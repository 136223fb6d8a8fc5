//! The batch engine on real parts (the fcm-emulator binary, SQLite/PostgreSQL/MariaDB): DB
//! statements per batch, FCM faults, redelivery, and FCM bodies equal to firebase-admin's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushq_delivery::store::PushLogState;
use pushq_delivery::{Engine, QueueMessage};
use pushq_test_support::*;

mod support;
use serde_json::{json, Value};
use support::soon;

async fn engine(db: &Db, fcm: &Fcm) -> Engine {
    engine_with(&db.url, fcm, &[]).await
}

/// An engine on `url` sending to `fcm`, its schema applied, with `extra` settings on top.
async fn engine_with(url: &str, fcm: &Fcm, extra: &[(&str, &str)]) -> Engine {
    support::engine_from(url, fcm.env(), extra).await
}

/// A queue message holding `push`, enqueued at a fixed time (November 2026).
fn message(push: Value) -> QueueMessage {
    support::message_at(push, 1_795_000_000_000)
}

/// Counts the statements one database executes, where the database sees them: PostgreSQL's
/// `pg_stat_statements` (on a cluster of the test's own: see [`PgCluster`]), MariaDB's general log
/// (for a user of the test's own), and on SQLite a trace hook on every connection this process
/// opens. Not the store's own count (`Store::statements`), which misses any statement the store
/// forgets to count.
enum ServerCount {
    Sqlite(std::path::PathBuf),
    Postgres {
        admin: sqlx::PgConnection,
        database: String,
    },
    MySql(GeneralLog),
}

impl ServerCount {
    /// Starts counting for `db`; returns the counter and the URL the engine must use (on MariaDB,
    /// the counted user's).
    async fn start(db: &Db) -> (ServerCount, String) {
        use sqlx::Connection;
        match db.dialect {
            "sqlite" => {
                sqlite_trace::install();
                let file = db.url.trim_start_matches("sqlite://").into();
                (ServerCount::Sqlite(file), db.url.clone())
            }
            "postgres" => {
                let mut admin = sqlx::PgConnection::connect(db.admin_url().unwrap())
                    .await
                    .unwrap();
                sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    .execute(&mut admin)
                    .await
                    .expect("pg_stat_statements (the server must preload it: use a PgCluster)");
                let database = db.url.rsplit('/').next().unwrap().to_owned();
                (ServerCount::Postgres { admin, database }, db.url.clone())
            }
            _ => {
                let (log, url) = GeneralLog::start(db).await;
                (ServerCount::MySql(log), url)
            }
        }
    }

    /// Statements executed so far on the database.
    async fn count(&mut self) -> u64 {
        match self {
            ServerCount::Sqlite(file) => sqlite_trace::statements(file),
            ServerCount::Postgres { admin, database } => {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(SUM(s.calls), 0)::bigint FROM pg_stat_statements s \
                     JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1",
                )
                .bind(&*database)
                .fetch_one(admin)
                .await
                .unwrap();
                n as u64
            }
            ServerCount::MySql(log) => log.count().await,
        }
    }

    async fn finish(self) {
        if let ServerCount::MySql(log) = self {
            log.finish().await;
        }
    }
}

/// MariaDB's general log, switched on (to the `mysql.general_log` table) for as long as the count
/// runs and restored after, under a named lock so that two test runs sharing the server do not
/// switch it off under each other. Counted: the `Query` and `Execute` commands of a user created
/// for the test, that only the engine connects as.
struct GeneralLog {
    admin: sqlx::MySqlConnection,
    user: String,
    general_log: i64,
    log_output: String,
    was_empty: bool,
}

impl GeneralLog {
    const LOCK: &str = "pushq_test_general_log";

    async fn start(db: &Db) -> (GeneralLog, String) {
        use sqlx::Connection;
        let mut admin = sqlx::MySqlConnection::connect(db.admin_url().unwrap())
            .await
            .unwrap();
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 300)")
            .bind(Self::LOCK)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(locked, Some(1), "the general log lock");
        let database = db.url.rsplit('/').next().unwrap().to_owned();
        let user = database.clone();
        for sql in [
            format!("CREATE USER '{user}'@'%'"),
            format!("GRANT ALL ON `{database}`.* TO '{user}'@'%'"),
        ] {
            sqlx::query(&sql).execute(&mut admin).await.unwrap();
        }
        let (general_log, log_output): (i64, String) = sqlx::query_as(
            "SELECT @@global.general_log + 0, CONVERT(@@global.log_output USING utf8mb4)",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.general_log")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        // Add TABLE to where logs go (NONE would win over it, so it is replaced).
        let outputs: Vec<&str> = log_output.split(',').collect();
        let output = if outputs.contains(&"TABLE") {
            log_output.clone()
        } else if outputs.contains(&"NONE") {
            "TABLE".to_owned()
        } else {
            format!("{log_output},TABLE")
        };
        sqlx::query(&format!("SET GLOBAL log_output = '{output}'"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query("SET GLOBAL general_log = 1")
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = reqwest::Url::parse(&db.url).unwrap();
        url.set_username(&user).unwrap();
        url.set_password(None).unwrap();
        let log = GeneralLog {
            admin,
            user,
            general_log,
            log_output,
            was_empty: rows == 0,
        };
        (log, url.to_string())
    }

    async fn count(&mut self) -> u64 {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM mysql.general_log \
             WHERE user_host LIKE CONCAT(?, '[%') AND command_type IN ('Query', 'Execute')",
        )
        .bind(&self.user)
        .fetch_one(&mut self.admin)
        .await
        .unwrap();
        n as u64
    }

    /// Puts the server's log settings back, drops the user and, if the log table was empty
    /// before, empties it again.
    async fn finish(mut self) {
        for sql in [
            format!("SET GLOBAL general_log = {}", self.general_log),
            format!("SET GLOBAL log_output = '{}'", self.log_output),
            format!("DROP USER '{}'@'%'", self.user),
        ] {
            sqlx::query(&sql).execute(&mut self.admin).await.unwrap();
        }
        if self.was_empty && self.general_log == 0 {
            sqlx::query("TRUNCATE TABLE mysql.general_log")
                .execute(&mut self.admin)
                .await
                .unwrap();
        }
        sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(Self::LOCK)
            .execute(&mut self.admin)
            .await
            .unwrap();
    }
}

/// A statement counter on every SQLite connection the process opens from now on (an SQLite
/// auto-extension installs a `SQLITE_TRACE_STMT` callback), per database file. The engine opens
/// its own connections inside pushq-delivery; this hook is how a test sees what they run. FFI, so
/// `unsafe` is allowed here and nowhere else.
#[allow(unsafe_code)]
mod sqlite_trace {
    use std::collections::BTreeMap;
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, Once};

    use libsqlite3_sys as ffi;

    static STATEMENTS: Mutex<BTreeMap<PathBuf, u64>> = Mutex::new(BTreeMap::new());

    pub fn install() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: `on_open` has the signature SQLite's auto-extension entry point expects.
            let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
            assert_eq!(rc, ffi::SQLITE_OK, "sqlite3_auto_extension");
        });
    }

    /// Statements begun on connections to this file since `install`.
    pub fn statements(file: &Path) -> u64 {
        let file = std::fs::canonicalize(file).unwrap();
        STATEMENTS
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| std::fs::canonicalize(f).is_ok_and(|f| f == file))
            .map(|(_, n)| n)
            .sum()
    }

    unsafe extern "C" fn on_open(
        db: *mut ffi::sqlite3,
        _error: *mut *mut c_char,
        _api: *const ffi::sqlite3_api_routines,
    ) -> c_int {
        // SAFETY: `db` is the connection SQLite is opening; the callback has trace_v2's signature.
        unsafe {
            ffi::sqlite3_trace_v2(
                db,
                ffi::SQLITE_TRACE_STMT as c_uint,
                Some(on_statement),
                std::ptr::null_mut(),
            )
        }
    }

    unsafe extern "C" fn on_statement(
        _event: c_uint,
        _context: *mut c_void,
        statement: *mut c_void,
        sql: *mut c_void,
    ) -> c_int {
        // SAFETY: for SQLITE_TRACE_STMT, SQLite passes the statement and its SQL text (a
        // NUL-terminated string); a trigger's subprogram comes as a "-- " comment, not a statement.
        let (file, trigger) = unsafe {
            let sql = CStr::from_ptr(sql as *const c_char);
            let db = ffi::sqlite3_db_handle(statement as *mut ffi::sqlite3_stmt);
            let name = ffi::sqlite3_db_filename(db, c"main".as_ptr());
            let file =
                (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned());
            (file, sql.to_bytes().starts_with(b"--"))
        };
        if let (Some(file), false) = (file, trigger) {
            *STATEMENTS.lock().unwrap().entry(file.into()).or_default() += 1;
        }
        0
    }
}

/// Statements per batch at sizes 1, 10 and 100, and for one batch with every kind of work.
async fn statements_per_batch(db: Db) -> (Vec<(usize, u64)>, u64) {
    use futures::FutureExt;
    let fcm = Fcm::start();
    let (mut server, url) = ServerCount::start(&db).await;
    let counted = std::panic::AssertUnwindSafe(count_per_batch(&url, &fcm, &mut server))
        .catch_unwind()
        .await;
    // Even after a failed assertion: MariaDB's log settings go back to what they were.
    server.finish().await;
    db.drop_it().await;
    counted.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

async fn count_per_batch(
    url: &str,
    fcm: &Fcm,
    server: &mut ServerCount,
) -> (Vec<(usize, u64)>, u64) {
    // One connection: a second one opening mid-batch would add its own setup statements.
    // The recipient rules on: frequency caps add their counts to the rules' one statement.
    let rules = ("PUSHQ_FREQUENCY_CAPS", "marketing=3/week,advertising=1/day");
    let engine = engine_with(url, fcm, &[("PUSHQ_DB_POOL_SIZE", "1"), rules]).await;
    let store = engine.store();
    let mut out = Vec::new();
    for size in [1usize, 10, 100] {
        let mut batch = Vec::new();
        for i in 0..size {
            let user = format!("user-{size}-{i}");
            store
                .register_device(&user, &format!("tok-{size}-{i}"), "android")
                .await
                .unwrap();
            batch.push(message(
                json!({"userId": user, "category": "marketing", "notification": {"title": "x"}}),
            ));
        }
        let before = server.count().await;
        let outcome = engine.process(&batch, soon()).await.unwrap();
        assert_eq!(outcome.counts.sent, size);
        assert!(outcome.failed_message_ids.is_empty());
        out.push((size, server.count().await - before));
    }
    // A batch with every kind of work: users, claims, idempotency keys, log write, token
    // invalidation, rejected messages.
    store
        .register_device("dead-user", "tok-dead", "ios")
        .await
        .unwrap();
    fcm.faults(json!({"rules": [{"token": "tok-dead", "error": "UNREGISTERED"}]}))
        .await;
    let mixed = vec![
        message(json!({"userId": "dead-user"})),
        message(json!({"userIds": ["user-10-1", "nobody"]})),
        message(json!({"topic": "news", "idempotencyKey": "news-1"})),
        QueueMessage {
            message_id: "garbage".into(),
            body: "nope".into(),
            sent_at_ms: 0,
            ..QueueMessage::default()
        },
    ];
    let before = server.count().await;
    let outcome = engine.process(&mixed, soon()).await.unwrap();
    assert_eq!(
        (
            outcome.counts.invalid_tokens,
            outcome.counts.no_devices,
            outcome.counts.rejected
        ),
        (1, 1, 1)
    );
    let mixed_statements = server.count().await - before;
    store.close().await;
    (out, mixed_statements)
}

#[tokio::test(flavor = "multi_thread")]
async fn db_statements_per_batch_do_not_grow_with_the_batch() {
    // PostgreSQL counts with pg_stat_statements, which only a cluster of the test's own preloads.
    let cluster = PgCluster::start();
    let mut measured = Vec::new();
    for db in [
        Db::sqlite().await,
        Db::postgres_at(cluster.admin.clone()).await,
        Db::mariadb().await,
    ] {
        let dialect = db.dialect;
        let (counts, mixed) = statements_per_batch(db).await;
        println!("{dialect}: statements per batch (size, statements): {counts:?}; mixed: {mixed}");
        measured.push((dialect, counts, mixed));
    }
    for (dialect, counts, mixed) in measured {
        assert!(
            counts.iter().all(|(_, n)| *n == counts[0].1),
            "{dialect}: {counts:?}"
        );
        // MySQL cannot return rows from an insert: each claim is read back by a SELECT.
        let claim = if dialect == "mysql" { 2 } else { 1 };
        assert_eq!(
            counts[0].1,
            3 + claim,
            "{dialect}: resolve users, read the recipient rules, claim targets, write log"
        );
        assert_eq!(
            mixed,
            5 + 2 * claim,
            "{dialect}: one statement for each kind of work"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_faults_are_retried_and_final_ones_recorded() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    fcm.faults(json!({"rules": [
        {"token": "tok-429", "error": "QUOTA_EXCEEDED", "times": 1, "retryAfter": 3},
        {"token": "tok-503", "error": "UNAVAILABLE", "times": 2},
        {"token": "tok-500", "error": "INTERNAL", "times": 1},
        {"token": "tok-bad", "error": "INVALID_ARGUMENT"},
        {"token": "tok-gone", "error": "UNREGISTERED"},
    ]}))
    .await;
    let batch = vec![message(
        json!({"tokens": ["tok-429", "tok-503", "tok-500", "tok-bad", "tok-gone", "tok-ok"]}),
    )];
    let started = Instant::now();
    let outcome = engine.process(&batch, soon()).await.unwrap();
    // Retry-After: 3 was honoured. Without it, backoff alone waits at most 1.2 s in this batch
    // (sends run concurrently; the longest chain is tok-503's two waits of at most 400 and
    // 800 ms, see fcm::backoff), so 3 s cannot be reached by chance.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3),
        "the batch took {elapsed:?}: Retry-After: 3 was not waited for"
    );
    assert!(outcome.failed_message_ids.is_empty(), "{outcome:?}");
    assert_eq!(
        (
            outcome.counts.sent,
            outcome.counts.failed,
            outcome.counts.invalid_tokens
        ),
        (4, 1, 1)
    );
    assert_eq!(outcome.counts.retried, 4);
    let rows = db.deliveries().await;
    let status = |t: &str| {
        rows.iter()
            .find(|r| r.1 == t)
            .map(|r| (r.2.clone(), r.3.clone()))
            .unwrap()
    };
    assert_eq!(
        status("tok-bad"),
        ("failed".into(), Some("INVALID_ARGUMENT".into()))
    );
    assert_eq!(
        status("tok-gone"),
        ("invalid_token".into(), Some("UNREGISTERED".into()))
    );
    assert_eq!(status("tok-503"), ("sent".into(), None));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_oauth_token_is_replaced() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    engine
        .process(&[message(json!({"token": "a"}))], soon())
        .await
        .unwrap();
    fcm.faults(json!({"expireTokens": true})).await;
    let outcome = engine
        .process(&[message(json!({"token": "b"}))], soon())
        .await
        .unwrap();
    assert_eq!(outcome.counts.sent, 1);
    let state = fcm.call("GET", "/__received", None).await;
    assert_eq!(
        state["tokenRequests"], 2,
        "one token, then one refresh after FCM refused it"
    );
    assert_eq!(state["messages"].as_array().unwrap().len(), 2);
}

/// A target FCM fails transiently is recorded `retrying` and its message handed back; the
/// redelivery sends only that target and its final row replaces `retrying` (attempts added up);
/// a final row is never replaced. The push's log is in progress until then.
async fn a_redelivered_message_sends_only_what_failed(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    fcm.faults(json!({"rules": [{"token": "tok-down", "error": "UNAVAILABLE"}]}))
        .await;
    let msg = message(json!({"tokens": ["tok-up", "tok-down"]}));
    let push_id = serde_json::from_str::<Value>(&msg.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // FCM stays down for one token past the deadline: the message is a batch item failure.
    let outcome = engine
        .process(
            std::slice::from_ref(&msg),
            Instant::now() + Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(outcome.failed_message_ids, vec![msg.message_id.clone()]);
    type Row = (String, String, String, Option<String>, Option<String>);
    let statuses = |rows: Vec<Row>| {
        rows.into_iter()
            .map(|r| (r.1, r.2, r.3))
            .collect::<Vec<_>>()
    };
    // The code of the last attempt: UNAVAILABLE, or DEADLINE when the deadline cut an attempt
    // in flight (on a loaded machine an attempt can still be under way after 1 s of retries).
    let rows = statuses(db.deliveries().await);
    let down_code = rows[0].2.clone();
    assert!(
        matches!(down_code.as_deref(), Some("UNAVAILABLE" | "DEADLINE")),
        "{rows:?}"
    );
    assert_eq!(
        rows,
        [
            ("tok-down".into(), "retrying".into(), down_code),
            ("tok-up".into(), "sent".into(), None)
        ]
    );
    assert_eq!(
        store.push_log(&push_id).await.unwrap().state,
        PushLogState::InProgress
    );

    fcm.faults(json!({"rules": []})).await;
    let outcome = engine
        .process(std::slice::from_ref(&msg), soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty());
    assert_eq!(outcome.counts.skipped, 1);
    // The same message once more (SQS may deliver twice): nothing is sent.
    let outcome = engine
        .process(std::slice::from_ref(&msg), soon())
        .await
        .unwrap();
    assert_eq!((outcome.counts.sent, outcome.counts.skipped), (0, 2));

    let tokens: Vec<String> = fcm
        .received()
        .await
        .iter()
        .map(|m| m["body"]["message"]["token"].as_str().unwrap().to_owned())
        .collect();
    // The emulator records what it accepted: each token once.
    assert_eq!(tokens, ["tok-up", "tok-down"]);
    assert_eq!(
        statuses(db.deliveries().await),
        [
            ("tok-down".into(), "sent".into(), None),
            ("tok-up".into(), "sent".into(), None)
        ]
    );
    let log = store.push_log(&push_id).await.unwrap();
    assert_eq!(log.state, PushLogState::Final);
    // Every request the target took, across both deliveries.
    let down = log
        .deliveries
        .iter()
        .find(|d| d.target == "tok-down")
        .unwrap();
    assert!(down.attempts >= 2, "{down:?}");
}

on_every_db!(a_redelivered_message_sends_only_what_failed);

/// A push split into parts is final once every part is recorded; a push whose targets an
/// earlier push with the same idempotency key already got is recorded `duplicate`, so its log
/// is complete too.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_is_final_when_every_part_and_target_is_recorded() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let tokens: Vec<String> = (0..600).map(|i| format!("tok-{i:04}")).collect();
    let envelope = pushq_model::Envelope::new(
        pushq_model::Push::from_value(json!({"tokens": tokens, "idempotencyKey": "k"})).unwrap(),
    );
    let parts: Vec<QueueMessage> = envelope
        .to_bodies()
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, body)| QueueMessage {
            message_id: format!("part-{i}"),
            body,
            sent_at_ms: 0,
            ..QueueMessage::default()
        })
        .collect();
    assert_eq!(parts.len(), 2);
    engine.process(&parts[..1], soon()).await.unwrap();
    let log = store.push_log(&envelope.id).await.unwrap();
    assert_eq!(
        (log.state, log.deliveries.len()),
        (PushLogState::InProgress, 500)
    );
    engine.process(&parts[1..], soon()).await.unwrap();
    let log = store.push_log(&envelope.id).await.unwrap();
    assert_eq!(
        (log.state, log.deliveries.len()),
        (PushLogState::Final, 600)
    );

    // Another push with the same key, to one of those tokens and a new one.
    let again = message(json!({"tokens": ["tok-0001", "tok-new"], "idempotencyKey": "k"}));
    let again_id = serde_json::from_str::<Value>(&again.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    engine
        .process(std::slice::from_ref(&again), soon())
        .await
        .unwrap();
    let log = store.push_log(&again_id).await.unwrap();
    assert_eq!(log.state, PushLogState::Final);
    let statuses: Vec<(&str, &str)> = log
        .deliveries
        .iter()
        .map(|d| (d.target.as_str(), d.status.as_str()))
        .collect();
    assert_eq!(statuses, [("tok-0001", "duplicate"), ("tok-new", "sent")]);
    assert_eq!(fcm.received().await.len(), 601);
}

#[tokio::test(flavor = "multi_thread")]
async fn fcm_bodies_equal_firebase_admin_for_every_valid_corpus_push() {
    let corpus: Vec<Value> =
        serde_json::from_str(include_str!("../../model/tests/fixtures/fcm_corpus.json")).unwrap();
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = Arc::new(engine(&db, &fcm).await);
    let valid: Vec<&Value> = corpus.iter().filter(|c| c["valid"] == true).collect();
    let mut batch = Vec::new();
    for (i, case) in valid.iter().enumerate() {
        let push = &case["push"];
        for user in push["userIds"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .chain(push.get("userId"))
        {
            let user = user.as_str().unwrap();
            engine
                .store()
                .register_device(user, &format!("device-of-{user}-{i}"), "android")
                .await
                .unwrap();
        }
        batch.push(message(push.clone()));
    }
    // One case at a time, so the emulator's record holds that case's sends only.
    for (case, msg) in valid.iter().zip(&batch) {
        fcm.call("POST", "/__reset", None).await;
        let outcome = engine
            .process(std::slice::from_ref(msg), soon())
            .await
            .unwrap();
        assert_eq!(
            (outcome.counts.failed, outcome.failed_message_ids.len()),
            (0, 0),
            "{}: {outcome:?}",
            case["name"]
        );
        let received = fcm.received().await;
        assert_eq!(received.len(), outcome.counts.sent, "{}", case["name"]);
        assert!(!received.is_empty(), "{}: nothing sent", case["name"]);
        let fans_out = ["tokens", "userId", "userIds"]
            .iter()
            .any(|k| case["push"].get(*k).is_some());
        for sent in received {
            let mut body = sent["body"].clone();
            if case["push"].get("fids").is_some() {
                // firebase-admin's body in the fixture is for the FID "corpus-device-fid".
                body["message"]["fid"] = json!("corpus-device-fid");
            } else if fans_out {
                // firebase-admin's body in the fixture is for the device "corpus-device-token".
                body["message"]["token"] = json!("corpus-device-token");
            }
            // firebase-admin's body, with the push id tagging what is shown where the push
            // sets no collapse key of its own (so that a repeated send replaces the first).
            let mut expected = case["body"].clone();
            let push_id = serde_json::from_str::<Value>(&msg.body).unwrap()["id"].clone();
            pushq_delivery::request::collapse_repeats(
                &mut expected["message"],
                push_id.as_str().unwrap(),
            );
            assert_eq!(body, expected, "{}", case["name"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_sends_validate_only() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine_with(&db.url, &fcm, &[("PUSHQ_FCM_DRY_RUN", "1")]).await;
    engine
        .process(
            &[message(
                json!({"token": "a", "notification": {"title": "x"}}),
            )],
            soon(),
        )
        .await
        .unwrap();
    let received = fcm.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["validateOnly"], true);
    assert_eq!(received[0]["body"]["validate_only"], true);
}

/// What FCM (or a proxy in front of it) may answer besides its own errors: an HTML error page,
/// an empty body, an unknown error code, an answer that never comes. Each is classified (5xx and
/// no answer: retried and handed back; a 4xx that is not FCM's JSON: handed back; FCM's own
/// unknown code: final) and none holds the batch past its deadline.
#[tokio::test(flavor = "multi_thread")]
async fn odd_fcm_answers_are_classified_and_bounded_by_the_deadline() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    fcm.faults(json!({"rules": [
        {"token": "tok-html-502", "status": 502, "body": "<html><body><h1>502 Bad Gateway</h1></body></html>"},
        {"token": "tok-empty-500", "status": 500, "body": ""},
        {"token": "tok-html-400", "status": 400, "body": "<html>Bad Request</html>"},
        {"token": "tok-unknown", "error": "SOMETHING_NEW"},
        {"token": "tok-slow", "error": "", "delayMs": 60000},
    ]}))
    .await;
    let tokens = [
        "tok-html-502",
        "tok-empty-500",
        "tok-html-400",
        "tok-unknown",
        "tok-slow",
        "tok-ok",
    ];
    let batch = vec![message(json!({ "tokens": tokens }))];
    let started = Instant::now();
    let outcome = engine
        .process(&batch, Instant::now() + Duration::from_secs(2))
        .await
        .unwrap();
    // The slow answer (60 s) was cut at the deadline (2 s), not at the 10 s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        outcome.failed_message_ids,
        vec![batch[0].message_id.clone()]
    );
    assert_eq!((outcome.counts.sent, outcome.counts.failed), (1, 1));
    assert_eq!(
        outcome.counts.transient, 4,
        "502, 500, the slow one and the HTML 400"
    );
    let rows = db.deliveries().await;
    let status = |t: &str| {
        rows.iter()
            .find(|r| r.1 == t)
            .map(|r| (r.2.clone(), r.3.clone()))
    };
    assert_eq!(status("tok-ok"), Some(("sent".into(), None)));
    // A page that is not FCM's answer is not about the message: never final.
    assert_eq!(
        status("tok-html-400"),
        Some(("retrying".into(), Some("HTTP_400".into())))
    );
    assert_eq!(
        status("tok-unknown"),
        Some(("failed".into(), Some("SOMETHING_NEW".into())))
    );
    // No final row for what failed transiently: `retrying`, with what answered.
    assert_eq!(
        status("tok-html-502"),
        Some(("retrying".into(), Some("HTTP_502".into())))
    );
    for transient in ["tok-empty-500", "tok-slow"] {
        let (state, code) = status(transient).unwrap();
        assert_eq!(state, "retrying", "{transient}");
        assert!(code.is_some(), "{transient}");
    }
}

/// Messages a hostile or broken producer may put on the queue are recorded in `pushq_rejected`
/// (a newer producer's are handed back instead) and the rest of the batch is delivered; strings reach SQL only as bound parameters; an FCM
/// answer with an oversized error code still fits its column.
async fn hostile_messages_are_recorded_and_the_batch_goes_on(db: Db) {
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let long_code = "X".repeat(300);
    fcm.faults(json!({"rules": [{
        "token": "tok-long-code", "status": 400,
        "body": json!({"error": {"status": long_code, "message": "odd"}}).to_string()
    }]}))
    .await;
    let raw = |id: &str, body: String| QueueMessage {
        message_id: id.into(),
        body,
        sent_at_ms: 1_795_000_000_000,
        ..QueueMessage::default()
    };
    let mib = 1 << 20;
    let injection = "x'); DROP TABLE pushq_devices; --";
    let batch = vec![
        message(json!({"token": "tok-ok"})),
        message(json!({"token": "tok-long-code"})),
        message(
            json!({"userId": injection, "category": "c' OR '1'='1", "idempotencyKey": "k';--"}),
        ),
        raw("m-truncated", r#"{"v":1,"push":{"token":"t""#.into()),
        // A newer producer's: handed back, not rejected.
        raw("m-v3", r#"{"v":3,"push":{"token":"t"}}"#.into()),
        raw(
            "m-new-field",
            r#"{"v":1,"push":{"token":"t","laterField":{"x":1}}}"#.into(),
        ),
        raw(
            "m-year-10000",
            r#"{"v":1,"enqueuedAt":253402300800000,"push":{"token":"t"}}"#.into(),
        ),
        raw(
            "m-long-id",
            json!({"v": 1, "id": "i".repeat(1000), "push": {"token": "t"}}).to_string(),
        ),
        raw(
            "m-nul-user",
            r#"{"v":1,"push":{"userId":"a\u0000b"}}"#.into(),
        ),
        raw("m-nul-raw", "not json \u{0} at all".into()),
        raw(
            "m-proto",
            r#"{"v":1,"push":{"token":"t","__proto__":{"polluted":true}}}"#.into(),
        ),
        raw("m-mib-text", "z".repeat(mib)),
        raw(
            "m-mib-json",
            json!({"v": 1, "push": {"token": "t", "category": "j".repeat(mib)}}).to_string(),
        ),
    ];
    let outcome = engine.process(&batch, soon()).await.unwrap();
    let mut handed_back = outcome.failed_message_ids.clone();
    handed_back.sort();
    assert_eq!(handed_back, ["m-new-field", "m-v3"], "{outcome:?}");
    assert_eq!(outcome.counts.rejected, 8);
    assert_eq!(
        (
            outcome.counts.sent,
            outcome.counts.failed,
            outcome.counts.no_devices
        ),
        (1, 1, 1)
    );

    let rejected: Vec<String> = db.rejected().await.into_iter().map(|r| r.0).collect();
    assert_eq!(
        rejected,
        [
            "m-long-id",
            "m-mib-json",
            "m-mib-text",
            "m-nul-raw",
            "m-nul-user",
            "m-proto",
            "m-truncated",
            "m-year-10000"
        ]
    );
    let rows = db.deliveries().await;
    let row = |target: &str| rows.iter().find(|r| r.1 == target).cloned();
    assert_eq!(row("tok-ok").unwrap().2, "sent");
    let failed = row("tok-long-code").unwrap();
    assert_eq!(
        (failed.2.as_str(), failed.3.as_deref()),
        ("failed", Some(&long_code[..64]))
    );
    let nobody = row(&format!("user:{injection}")).expect("the injection string, stored as given");
    assert_eq!(
        (nobody.2.as_str(), nobody.4.as_deref()),
        ("no_devices", Some(injection))
    );
    // The table the injection string names is still there and still works.
    engine
        .store()
        .register_device("u", "tok-u", "ios")
        .await
        .unwrap();
    assert_eq!(engine.store().devices("u").await.unwrap().len(), 1);
    db.drop_it().await;
}

on_every_db!(hostile_messages_are_recorded_and_the_batch_goes_on);

/// A project-level `429 QUOTA_EXCEEDED` without `Retry-After` holds back every send of the
/// process for at least a minute: the sends still waiting are not made, their message is handed
/// back at once, and a later batch sends nothing either (no request per target, no retry storm).
#[tokio::test(flavor = "multi_thread")]
async fn a_project_quota_429_holds_back_every_send_of_the_process() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine_with(&db.url, &fcm, &[("PUSHQ_SEND_CONCURRENCY", "2")]).await;
    fcm.faults(json!({"rules": [{"error": "QUOTA_EXCEEDED"}]}))
        .await;
    let tokens: Vec<String> = (0..20).map(|i| format!("tok-{i}")).collect();
    let first = message(json!({ "tokens": tokens }));
    let outcome = engine
        .process(
            std::slice::from_ref(&first),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(outcome.failed_message_ids, vec![first.message_id.clone()]);
    // Only the sends already in flight when the first 429 came back were made.
    let requests = fcm.send_requests().await;
    assert!(requests <= 2, "{requests} requests for 20 targets");
    assert!(outcome.counts.throttled >= 18, "{:?}", outcome.counts);
    let until = engine.throttled_until().expect("throttled");
    assert!(
        until >= Instant::now() + Duration::from_secs(50),
        "at least a minute"
    );
    // Nothing is final: every target is retrying.
    assert!(db.deliveries().await.iter().all(|r| r.2 == "retrying"));

    // The next batch of the process sends nothing while the throttle lasts.
    let second = message(json!({"token": "tok-later"}));
    let outcome = engine
        .process(std::slice::from_ref(&second), soon())
        .await
        .unwrap();
    assert_eq!(outcome.failed_message_ids, vec![second.message_id.clone()]);
    assert_eq!(outcome.counts.throttled, 1);
    assert_eq!(fcm.send_requests().await, requests);
}

/// A 429 whose `QuotaFailure` names one device's rate throttles nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_quota_429_throttles_only_that_device() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let body = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Device message rate exceeded.", "details": [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.SendError", "errorCode": "QUOTA_EXCEEDED"},
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"subject": "device", "description": "Device message rate exceeded"}]}
    ]}});
    fcm.faults(json!({"rules": [{"token": "tok-hot", "status": 429, "body": body.to_string()}]}))
        .await;
    let msg = message(json!({"tokens": ["tok-hot", "tok-a", "tok-b"]}));
    let outcome = engine
        .process(
            std::slice::from_ref(&msg),
            Instant::now() + Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert_eq!(outcome.counts.sent, 2);
    assert_eq!(outcome.counts.throttled, 0);
    assert_eq!(engine.throttled_until(), None);
}

/// The push id of a message made by [`message`].
fn push_id(m: &QueueMessage) -> String {
    serde_json::from_str::<Value>(&m.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The tokens FCM accepted, sorted, repeats kept.
async fn tokens_received(fcm: &Fcm) -> Vec<String> {
    let mut tokens = fcm.received_tokens().await;
    tokens.sort();
    tokens
}

/// A `sending` row for `push_id` and `target`, as a consumer claims it.
fn claim_row(push_id: &str, target: &str) -> pushq_delivery::store::Delivery {
    pushq_delivery::store::Delivery {
        push_id: push_id.into(),
        app: "default".into(),
        target: target.into(),
        user_id: None,
        status: pushq_delivery::store::DeliveryStatus::Sending,
        fcm_message_id: None,
        error_code: None,
        attempts: 0,
        category: None,
        advertising: false,
        idempotency_key: None,
        enqueued_at: chrono::Utc::now(),
        sent_at: None,
        part: None,
    }
}

/// A (push, target) another consumer has claimed is not sent: its message comes back, and once
/// that consumer has written its row, the redelivery has nothing left to send. A claim that
/// lapsed (its consumer died mid-batch) is taken over and sent, and the batch says so: the one
/// case where a device may get a push twice.
async fn a_target_claimed_by_another_consumer_is_not_sent(db: Db) {
    use pushq_delivery::store::{Claim, Claimed, DeliveryStatus, TargetKey};
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = engine.store();
    let msg = message(json!({"tokens": ["tok-a", "tok-b"]}));
    let id = push_id(&msg);

    // Another consumer holds tok-a, for a minute.
    let other = Claim::new(Duration::from_secs(60));
    let got = store
        .claim(&[claim_row(&id, "tok-a")], &other)
        .await
        .unwrap();
    assert_eq!(
        got.get(&TargetKey::new(&id, "tok-a")),
        Some(&Claimed::Won { taken_over: false })
    );
    let outcome = engine
        .process(std::slice::from_ref(&msg), soon())
        .await
        .unwrap();
    assert_eq!(outcome.failed_message_ids, vec![msg.message_id.clone()]);
    assert_eq!((outcome.counts.sent, outcome.counts.busy), (1, 1));
    assert_eq!(tokens_received(&fcm).await, ["tok-b"]);
    assert_eq!(
        store.push_log(&id).await.unwrap().state,
        PushLogState::InProgress
    );

    // The other consumer sends and records tok-a; the redelivery sends nothing.
    let mut sent = claim_row(&id, "tok-a");
    sent.status = DeliveryStatus::Sent;
    sent.attempts = 1;
    store
        .record_deliveries(&[sent], &other, Duration::from_secs(5))
        .await
        .unwrap();
    let outcome = engine
        .process(std::slice::from_ref(&msg), soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty());
    assert_eq!((outcome.counts.sent, outcome.counts.skipped), (0, 2));
    assert_eq!(tokens_received(&fcm).await, ["tok-b"]);
    assert_eq!(
        store.push_log(&id).await.unwrap().state,
        PushLogState::Final
    );

    // A consumer claimed tok-c and died: its claim lapsed a moment ago. It is taken over.
    let msg = message(json!({"token": "tok-c"}));
    let dead = Claim {
        until: chrono::Utc::now() - chrono::Duration::milliseconds(1),
        ..Claim::new(Duration::ZERO)
    };
    store
        .claim(&[claim_row(&push_id(&msg), "tok-c")], &dead)
        .await
        .unwrap();
    let outcome = engine
        .process(std::slice::from_ref(&msg), soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty());
    assert_eq!((outcome.counts.sent, outcome.counts.taken_over), (1, 1));
    assert_eq!(tokens_received(&fcm).await, ["tok-b", "tok-c"]);
    let rows = db.deliveries().await;
    assert!(
        rows.iter().all(|(_, _, status, ..)| status == "sent"),
        "{rows:?}"
    );
}

on_every_db!(a_target_claimed_by_another_consumer_is_not_sent);

/// Delivers `messages` as SQS would: what a batch hands back, or all of it when the batch
/// fails on the database, comes back, until nothing does (at most 20 rounds).
async fn deliver(engine: &Engine, messages: Vec<QueueMessage>) {
    let mut left = messages;
    for _ in 0..20 {
        if left.is_empty() {
            return;
        }
        match engine.process(&left, soon()).await {
            Ok(outcome) => left.retain(|m| outcome.failed_message_ids.contains(&m.message_id)),
            Err(e) => eprintln!("batch failed, redelivered: {e}"),
        }
    }
    panic!("still handed back after 20 deliveries");
}

/// Two pushes with one idempotency key, taken by two consumers at the same moment while FCM is
/// slow: each target gets one push, and the log says which push delivered it and which was the
/// duplicate. A third push reusing the key with other content is recorded as such, not sent.
async fn an_idempotency_key_is_delivered_once_per_target(db: Db) {
    let fcm = Fcm::start();
    let (first, second) = (engine(&db, &fcm).await, engine(&db, &fcm).await);
    // FCM answers after 300 ms: both batches have read the log before either writes to it.
    fcm.faults(json!({"rules": [{"delayMs": 300}]})).await;
    let spin = json!({"title": "Spin 45", "body": "starts at 18:00"});
    let m1 =
        message(json!({"tokens": ["t1", "t2"], "idempotencyKey": "class-7", "notification": spin}));
    let m2 =
        message(json!({"tokens": ["t2", "t3"], "idempotencyKey": "class-7", "notification": spin}));
    tokio::join!(
        deliver(&first, vec![m1.clone()]),
        deliver(&second, vec![m2.clone()])
    );
    assert_eq!(tokens_received(&fcm).await, ["t1", "t2", "t3"]);
    let t2: Vec<(String, String, Option<String>)> = db
        .deliveries()
        .await
        .into_iter()
        .filter(|r| r.1 == "t2")
        .map(|(p, _, status, code, _)| (p, status, code))
        .collect();
    let mut statuses: Vec<(&str, Option<&str>)> = t2
        .iter()
        .map(|(_, s, c)| (s.as_str(), c.as_deref()))
        .collect();
    statuses.sort();
    assert_eq!(statuses, [("duplicate", None), ("sent", None)], "{t2:?}");

    // The key again, other content, to t1: not sent, recorded as a reused key.
    fcm.faults(json!({"rules": []})).await;
    let m3 = message(json!({"token": "t1", "idempotencyKey": "class-7",
        "notification": {"title": "Yoga", "body": "cancelled"}}));
    let outcome = first
        .process(std::slice::from_ref(&m3), soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty());
    assert_eq!((outcome.counts.sent, outcome.counts.key_reused), (0, 1));
    let log = first.store().push_log(&push_id(&m3)).await.unwrap();
    assert_eq!(log.state, PushLogState::Final);
    assert_eq!(
        (
            log.deliveries[0].status.as_str(),
            log.deliveries[0].error_code.as_deref()
        ),
        ("duplicate", Some("IDEMPOTENCY_KEY_REUSED"))
    );
    assert_eq!(tokens_received(&fcm).await, ["t1", "t2", "t3"]);
}

on_every_db!(an_idempotency_key_is_delivered_once_per_target);

/// Tokens compare byte for byte in every dialect, trailing spaces included (MySQL's `utf8mb4_bin`
/// took "X" and "X " for one value): "tok-x" and "tok-x " are two users' devices; a push to both
/// sends to both and records both; FCM calling "tok-x " dead invalidates that one only; and
/// unregistering "tok-x " leaves "tok-x".
async fn trailing_spaces_make_another_token(db: Db) {
    use pushq_delivery::store::Store;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let store = Store::connect(&db.url, 1).await.unwrap();
    store
        .register_device("u1", "tok-x", "android")
        .await
        .unwrap();
    store
        .register_device("u2", "tok-x ", "android")
        .await
        .unwrap();
    let tokens_of = |devices: Vec<pushq_delivery::store::Device>| {
        devices
            .into_iter()
            .map(|d| (d.token, d.live))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tokens_of(store.devices("u1").await.unwrap()),
        [("tok-x".to_owned(), true)]
    );
    assert_eq!(
        tokens_of(store.devices("u2").await.unwrap()),
        [("tok-x ".to_owned(), true)]
    );

    let both = message(json!({"tokens": ["tok-x", "tok-x "], "notification": {"title": "hi"}}));
    let outcome = engine.process(&[both], soon()).await.unwrap();
    assert!(outcome.failed_message_ids.is_empty(), "{outcome:?}");
    let mut received = fcm.received_tokens().await;
    received.sort();
    assert_eq!(received, ["tok-x", "tok-x "]);
    let mut sent: Vec<(String, String)> = db
        .deliveries()
        .await
        .into_iter()
        .map(|r| (r.1, r.2))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("tok-x".to_owned(), "sent".to_owned()),
            ("tok-x ".to_owned(), "sent".to_owned())
        ]
    );

    fcm.faults(json!({"rules": [{"token": "tok-x ", "error": "UNREGISTERED"}]}))
        .await;
    let to_u2 = message(json!({"userId": "u2", "notification": {"title": "hi"}}));
    let outcome = engine.process(&[to_u2], soon()).await.unwrap();
    assert_eq!(outcome.counts.invalid_tokens, 1, "{outcome:?}");
    assert_eq!(
        tokens_of(store.devices("u1").await.unwrap()),
        [("tok-x".to_owned(), true)]
    );
    assert_eq!(
        tokens_of(store.devices("u2").await.unwrap()),
        [("tok-x ".to_owned(), false)]
    );

    assert!(store.unregister_device("tok-x ").await.unwrap());
    assert!(store.devices("u2").await.unwrap().is_empty());
    assert_eq!(
        tokens_of(store.devices("u1").await.unwrap()),
        [("tok-x".to_owned(), true)]
    );
    store.close().await;
}

on_every_db!(trailing_spaces_make_another_token);

/// `pushq worker` lets an attempt in flight at the deadline finish (its claims last a request
/// timeout longer). An access token that comes only after the deadline (a slow token endpoint,
/// or a wait behind another send's fetch) must not start a send then: the send could outlast
/// the claim, and another consumer take the target over and send it too. The target comes back
/// unsent; its redelivery sends it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_whose_token_comes_after_the_deadline_is_not_started() {
    let fcm = Fcm::start_with(FcmOptions {
        latency: Duration::from_millis(1500),
        ..FcmOptions::default()
    });
    let db = Db::sqlite().await;
    let env: Vec<(String, String)> = fcm
        .env()
        .into_iter()
        .chain([("DATABASE_URL".to_string(), db.url.clone())])
        .collect();
    let config = pushq_delivery::DeliveryConfig::from_env_with(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    // As `pushq worker` builds it.
    let config = pushq_delivery::DeliveryConfig {
        migrate: true,
        cut_sends_at_deadline: false,
        ..config
    };
    let engine = Engine::connect(&config, pushq_delivery::WithoutCredentials::Refuse)
        .await
        .unwrap();
    let msg = message(json!({"token": "tok-1"}));
    let outcome = engine
        .process(
            std::slice::from_ref(&msg),
            Instant::now() + Duration::from_millis(500),
        )
        .await
        .unwrap();
    assert_eq!(outcome.failed_message_ids, vec![msg.message_id.clone()]);
    assert_eq!(fcm.send_requests().await, 0, "no send started");

    let outcome = engine
        .process(std::slice::from_ref(&msg), soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty());
    assert_eq!(tokens_received(&fcm).await, ["tok-1"]);
}

/// A scheduled push whose copy comes before `sendAt`: one due within the batch's time is sent
/// when due, after the rest of the batch; one too early to wait for is handed back unsent and
/// unrecorded. A copy that comes late is sent at once.
#[tokio::test(flavor = "multi_thread")]
async fn early_copies_of_scheduled_pushes_wait_or_come_back() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() + ms)
            .unwrap()
            .to_rfc3339()
    };
    let soon_due = at(1_500);
    let now = message(json!({"token": "now", "data": {"k": "v"}}));
    let late = message(json!({"token": "late", "data": {"k": "v"}, "sendAt": at(-60_000)}));
    let early = message(json!({"token": "early", "data": {"k": "v"}, "sendAt": soon_due}));
    let too_early =
        message(json!({"token": "too-early", "data": {"k": "v"}, "sendAt": at(60_000)}));
    // 20 s left: up to 10 s of waiting, 10 s kept for the sends.
    let outcome = engine
        .process(&[now, late, early.clone(), too_early.clone()], soon())
        .await
        .unwrap();
    assert_eq!(
        outcome.failed_message_ids,
        vec![too_early.message_id.clone()]
    );
    assert_eq!(outcome.counts.sent, 3);
    assert_eq!(outcome.counts.scheduled_fired, 2);
    assert_eq!(outcome.counts.scheduled_early, 1);
    assert_eq!(tokens_received(&fcm).await, ["early", "late", "now"]);
    let log = engine.store().push_log(&push_id(&too_early)).await.unwrap();
    assert!(log.deliveries.is_empty(), "{:?}", log.deliveries);
    // The held copy reached FCM when due, not when it came: the emulator names each message
    // with a UUIDv7, whose first 48 bits are the time it received it.
    let rows = engine
        .store()
        .deliveries_for_push(&push_id(&early))
        .await
        .unwrap();
    let name = rows[0].fcm_message_id.as_deref().unwrap();
    let received_ms = i64::from_str_radix(&name.rsplit('/').next().unwrap()[..12], 16).unwrap();
    let due_ms = chrono::DateTime::parse_from_rfc3339(&soon_due)
        .unwrap()
        .timestamp_millis();
    assert!(
        received_ms >= due_ms,
        "received at {received_ms}, due at {due_ms}"
    );
}

/// A scheduled push cancelled before a consumer took its copy: each target is recorded
/// `cancelled`, none is sent; the push's log says cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_push_is_recorded_cancelled_per_target_and_not_sent() {
    let db = Db::sqlite().await;
    let fcm = Fcm::start();
    let engine = engine(&db, &fcm).await;
    let send_at = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let m = message(json!({"tokens": ["c-1", "c-2"], "data": {"k": "v"}, "sendAt": send_at}));
    engine.store().record_cancelled(&push_id(&m)).await.unwrap();
    let outcome = engine
        .process(std::slice::from_ref(&m), soon())
        .await
        .unwrap();
    assert!(outcome.failed_message_ids.is_empty());
    assert_eq!(outcome.counts.cancelled, 2);
    assert!(tokens_received(&fcm).await.is_empty());
    let log = engine.store().push_log(&push_id(&m)).await.unwrap();
    assert_eq!(log.state, PushLogState::Cancelled);
    let statuses: Vec<&str> = log.deliveries.iter().map(|d| d.status.as_str()).collect();
    assert_eq!(statuses, ["cancelled", "cancelled"]);
}
