use super::*;

#[test]
fn a_missing_sqlite_file_is_told_from_an_existing_one_and_from_servers() {
    let dir = std::env::temp_dir().join(format!("pushq-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let existing = dir.join("there.db");
    std::fs::write(&existing, b"").unwrap();
    let missing = dir.join("not-there.db");
    assert!(names_missing_sqlite_file(&format!(
        "sqlite://{}",
        missing.display()
    )));
    assert!(!names_missing_sqlite_file(&format!(
        "sqlite://{}",
        existing.display()
    )));
    // As Store::connect reads it: quotes around the value are removed first.
    assert!(!names_missing_sqlite_file(&format!(
        "\"sqlite://{}\"",
        existing.display()
    )));
    assert!(!names_missing_sqlite_file(
        "postgres://pushq@127.0.0.1/pushq"
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_url_without_a_known_scheme_is_refused_without_quoting_it() {
    for url in [
        "pushq_owner:s3cret-pw@db.internal:5432/pushq",
        "s3cret-pw@db.internal/pushq",
        "s3cret-pw",
        "postgress://pushq_owner:s3cret-pw@db.internal/pushq",
    ] {
        let e = Store::connect(url, 1).await.unwrap_err().to_string();
        assert!(e.starts_with("DATABASE_URL: expected a URL"), "{e}");
        assert!(
            !e.contains("s3cret") && !e.contains("pushq_owner"),
            "the error quotes the URL"
        );
    }
}

#[tokio::test]
async fn a_url_in_quotes_or_after_a_bom_connects() {
    for url in [
        "'sqlite::memory:'",
        "\"sqlite::memory:\"",
        "\u{feff}sqlite::memory:",
    ] {
        let store = Store::connect(url, 1).await.unwrap();
        assert_eq!(store.dialect(), Dialect::Sqlite);
    }
}

/// The server's process id of the connection a statement of `store` runs on.
async fn backend_pid(store: &Store) -> i32 {
    let Pool::Postgres(pool) = &store.pool else {
        panic!("a PostgreSQL store")
    };
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Connections are not pinged before every statement, but one that sat in the pool longer than
/// `PING_AFTER_IDLE` is: if the server dropped it meanwhile (a restart, a failover, an idle
/// timeout), the pool replaces it and the statement runs, rather than failing its batch.
#[tokio::test]
async fn a_connection_the_server_dropped_while_it_sat_idle_is_replaced_before_use() {
    let db = pushq_test_support::Db::postgres().await;
    let store = Store::connect(&db.url, 1).await.unwrap();
    let first = backend_pid(&store).await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
    // The pool's one connection, now dead, stays idle past the threshold.
    tokio::time::sleep(probe::PING_AFTER_IDLE + std::time::Duration::from_millis(200)).await;
    let second = backend_pid(&store).await;
    assert_ne!(second, first);
}
