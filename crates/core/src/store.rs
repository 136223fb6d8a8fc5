//! The database: devices, the delivery log and rejected messages, on SQLite, PostgreSQL and
//! MySQL/MariaDB. Every batch operation is one statement, whatever the batch size.
//!
//! The SQL is written once with `QueryBuilder` and run against each dialect's own pool; where
//! dialects differ (conflict handling), the variants sit side by side in [`Dialect`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{MySqlPool, PgPool, QueryBuilder, SqlitePool};

// Every statement runs unprepared (`persistent(false)`): PostgreSQL caches a prepared
// statement's generic plan per connection, and one planned while `pushq_deliveries` was empty
// (a new deployment) stays a sequential scan as the table grows — measured by the benchmark at
// 4 ms per lookup over 15,000 rows instead of microseconds. Unprepared statements are planned
// with their values each time; the IN lists also vary in length, so caching them bought little.

/// Errors from the database. Messages never include the database URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is not a `sqlite:`, `postgres:` or `mysql:` URL, or does not parse.
    #[error("DATABASE_URL: {0}")]
    Url(String),
    /// The database could not be reached or refused the statement.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// `Result` with [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;

/// The SQL dialect of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Dialect {
    /// How an insert skips rows that already exist.
    fn insert_ignoring_duplicates(self, table_and_columns: &str) -> String {
        match self {
            Dialect::MySql => format!("INSERT IGNORE INTO {table_and_columns} "),
            Dialect::Sqlite | Dialect::Postgres => format!("INSERT INTO {table_and_columns} "),
        }
    }

    fn on_conflict_do_nothing(self) -> &'static str {
        match self {
            Dialect::MySql => "",
            Dialect::Sqlite | Dialect::Postgres => " ON CONFLICT DO NOTHING",
        }
    }

    /// A text column as a SELECT should read it. MySQL reports `utf8mb4_bin` columns (binary
    /// collation, so tokens stay case-sensitive) as VARBINARY; converting gives text back.
    fn text(self, column: &str) -> String {
        match self {
            Dialect::MySql => format!("CONVERT({column} USING utf8mb4)"),
            Dialect::Sqlite | Dialect::Postgres => column.to_owned(),
        }
    }

    /// Most bind parameters one statement may carry.
    fn max_binds(self) -> usize {
        match self {
            Dialect::Sqlite => 32_766,
            Dialect::Postgres | Dialect::MySql => 65_535,
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the store's concrete pool and `DB` to its database type.
macro_rules! with_pool {
    ($store:expr, $pool:ident, $body:block) => {
        match &$store.pool {
            Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Sqlite;
                $body
            }
            Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Postgres;
                $body
            }
            Pool::MySql($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::MySql;
                $body
            }
        }
    };
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The user the device belongs to.
    pub user_id: String,
    /// The FCM registration token.
    pub token: String,
    /// `android`, `ios`, `web` or what the registering app said.
    pub platform: String,
    /// False once FCM reported the token dead.
    pub live: bool,
}

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The push id.
    pub push_id: String,
    /// The token, `topic:<name>`, `condition:<expr>` or `user:<id>`.
    pub target: String,
    /// The user the target belongs to, when the push named users.
    pub user_id: Option<String>,
    /// `sent`, `failed`, `invalid_token` or `no_devices`.
    pub status: &'static str,
    /// FCM's message name, when sent.
    pub fcm_message_id: Option<String>,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made for this target.
    pub attempts: u32,
    /// The push's category.
    pub category: Option<String>,
    /// The push's idempotency key.
    pub idempotency_key: Option<String>,
    /// When the push was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When FCM accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

/// (target, user_id, status, error_code, attempts) as selected.
type DeliveryRow = (String, Option<String>, String, Option<String>, i32);

/// A delivery-log row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The token, `topic:<name>`, `condition:<expr>` or `user:<id>`.
    pub target: String,
    /// The user, when the push named users.
    pub user_id: Option<String>,
    /// `sent`, `failed`, `invalid_token` or `no_devices`.
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made.
    pub attempts: u32,
}

/// A queue message that is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The SQS message id.
    pub queue_message_id: String,
    /// The raw body.
    pub body: String,
    /// Why it was rejected.
    pub reason: String,
}

/// What was already delivered, as the delivery log knows it.
#[derive(Debug, Clone, Default)]
pub struct AlreadyDone {
    /// (push id, target) pairs with a final row.
    pub by_push: std::collections::HashSet<(String, String)>,
    /// (idempotency key, target) pairs that were sent.
    pub by_key: std::collections::HashSet<(String, String)>,
}

/// A connection pool to the pushq database, counting the statements it runs.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    dialect: Dialect,
    statements: Arc<AtomicU64>,
}

impl Store {
    /// Connects to `url` (`sqlite:`, `postgres:`/`postgresql:`, `mysql:`/`mariadb:`) with at most
    /// `pool_size` connections. SQLite files are created if missing.
    pub async fn connect(url: &str, pool_size: u32) -> StoreResult<Store> {
        let scheme = url.split(':').next().unwrap_or_default();
        let bad = |e: sqlx::Error| {
            StoreError::Url(format!(
                "cannot parse the {scheme}: URL ({})",
                redact(&e.to_string(), url)
            ))
        };
        let pool = match scheme {
            "sqlite" => {
                let options: SqliteConnectOptions = url.parse().map_err(bad)?;
                let options = options
                    .create_if_missing(true)
                    .busy_timeout(std::time::Duration::from_secs(10));
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(pool_size)
                        .connect_with(options)
                        .await?,
                )
            }
            "postgres" | "postgresql" => {
                let options: PgConnectOptions = url.parse().map_err(bad)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(pool_size)
                        .connect_with(options)
                        .await?,
                )
            }
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let options: MySqlConnectOptions = url.parse().map_err(bad)?;
                Pool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(pool_size)
                        .connect_with(options)
                        .await?,
                )
            }
            _ => {
                return Err(StoreError::Url(format!(
                    "must start with sqlite:, postgres: or mysql: (got {scheme:?})"
                )))
            }
        };
        let dialect = match pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::MySql(_) => Dialect::MySql,
        };
        Ok(Store {
            pool,
            dialect,
            statements: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The store's SQL dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Statements this store has run (all clones together).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies the schema (migrations are embedded in the binary).
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
            Pool::MySql(p) => sqlx::migrate!("./migrations/mysql").run(p).await?,
        }
        Ok(())
    }

    /// Registers a device for a user, or moves an existing token to this user and revives it.
    pub async fn register_device(
        &self,
        user_id: &str,
        token: &str,
        platform: &str,
    ) -> StoreResult<()> {
        let now = Utc::now();
        let upsert = match self.dialect {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), platform = VALUES(platform), updated_at = VALUES(updated_at), invalidated_at = NULL",
            _ => "ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id, platform = excluded.platform, updated_at = excluded.updated_at, invalidated_at = NULL",
        };
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO pushq_devices (user_id, token, platform, created_at, updated_at) VALUES (");
            q.push_bind(user_id)
                .push(", ")
                .push_bind(token)
                .push(", ")
                .push_bind(platform);
            q.push(", ")
                .push_bind(now)
                .push(", ")
                .push_bind(now)
                .push(") ")
                .push(upsert);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Removes a device; true if it was registered.
    pub async fn unregister_device(&self, token: &str) -> StoreResult<bool> {
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM pushq_devices WHERE token = ");
            q.push_bind(token);
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// A user's devices, live and invalidated, oldest first.
    pub async fn devices(&self, user_id: &str) -> StoreResult<Vec<Device>> {
        self.count();
        let rows: Vec<(String, String, String, String)> = with_pool!(self, pool, {
            let d = self.dialect;
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {} FROM pushq_devices WHERE user_id = ",
                d.text("user_id"),
                d.text("token"),
                d.text("platform"),
                d.text("CASE WHEN invalidated_at IS NULL THEN 'live' ELSE 'dead' END"),
            ));
            q.push_bind(user_id).push(" ORDER BY id");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(user_id, token, platform, state)| Device {
                user_id,
                token,
                platform,
                live: state == "live",
            })
            .collect())
    }

    /// Live tokens of every user in `user_ids`, in one query.
    pub async fn live_tokens(
        &self,
        user_ids: &[String],
    ) -> StoreResult<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in user_ids.chunks(self.dialect.max_binds()) {
            self.count();
            let rows: Vec<(String, String)> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {}, {} FROM pushq_devices WHERE invalidated_at IS NULL AND user_id IN (",
                    self.dialect.text("user_id"),
                    self.dialect.text("token"),
                ));
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                q.push(") ORDER BY id");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            for (user, token) in rows {
                out.entry(user).or_default().push(token);
            }
        }
        Ok(out)
    }

    /// What the log already holds for these pushes (final rows) and idempotency keys (sent rows).
    pub async fn already_done(
        &self,
        push_ids: &[String],
        keys: &[String],
    ) -> StoreResult<AlreadyDone> {
        let mut done = AlreadyDone::default();
        if push_ids.is_empty() && keys.is_empty() {
            return Ok(done);
        }
        self.count();
        let rows: Vec<(String, String, Option<String>, String)> = with_pool!(self, pool, {
            let d = self.dialect;
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {} FROM pushq_deliveries WHERE push_id IN (",
                d.text("push_id"),
                d.text("target"),
                d.text("idempotency_key"),
                d.text("status"),
            ));
            let mut list = q.separated(", ");
            for id in push_ids {
                list.push_bind(id.as_str());
            }
            if push_ids.is_empty() {
                list.push("NULL");
            }
            q.push(")");
            if !keys.is_empty() {
                q.push(" OR idempotency_key IN (");
                let mut list = q.separated(", ");
                for key in keys {
                    list.push_bind(key.as_str());
                }
                q.push(")");
            }
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        for (push_id, target, key, status) in rows {
            if let Some(key) = key.filter(|_| status == "sent") {
                done.by_key.insert((key, target.clone()));
            }
            done.by_push.insert((push_id, target));
        }
        Ok(done)
    }

    /// Writes delivery rows; rows already present (same push and target) are left as they are.
    pub async fn record_deliveries(&self, rows: &[Delivery]) -> StoreResult<()> {
        const COLUMNS: usize = 11;
        for chunk in rows.chunks(self.dialect.max_binds() / COLUMNS) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(self.dialect.insert_ignoring_duplicates(
                    "pushq_deliveries (push_id, target, user_id, status, fcm_message_id, error_code, attempts, category, idempotency_key, enqueued_at, sent_at)",
                ));
                q.push_values(chunk, |mut b, d| {
                    b.push_bind(d.push_id.as_str())
                        .push_bind(d.target.as_str())
                        .push_bind(d.user_id.as_deref())
                        .push_bind(d.status)
                        .push_bind(d.fcm_message_id.as_deref())
                        .push_bind(d.error_code.as_deref())
                        .push_bind(d.attempts as i32)
                        .push_bind(d.category.as_deref())
                        .push_bind(d.idempotency_key.as_deref())
                        .push_bind(d.enqueued_at)
                        .push_bind(d.sent_at);
                });
                q.push(self.dialect.on_conflict_do_nothing());
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Marks tokens dead (FCM said `UNREGISTERED` or similar), in one statement.
    pub async fn invalidate_tokens(&self, tokens: &[String]) -> StoreResult<()> {
        let now = Utc::now();
        for chunk in tokens.chunks(self.dialect.max_binds() - 1) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new("UPDATE pushq_devices SET invalidated_at = ");
                q.push_bind(now).push(", updated_at = ").push_bind(now);
                q.push(" WHERE invalidated_at IS NULL AND token IN (");
                let mut list = q.separated(", ");
                for t in chunk {
                    list.push_bind(t.as_str());
                }
                q.push(")");
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Records queue messages that are not valid envelopes (a message recorded twice stays once).
    pub async fn record_rejected(&self, rows: &[Rejected]) -> StoreResult<()> {
        let now = Utc::now();
        for chunk in rows.chunks(self.dialect.max_binds() / 4) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(self.dialect.insert_ignoring_duplicates(
                    "pushq_rejected (queue_message_id, body, reason, received_at)",
                ));
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.queue_message_id.as_str())
                        .push_bind(r.body.as_str())
                        .push_bind(r.reason.as_str())
                        .push_bind(now);
                });
                q.push(self.dialect.on_conflict_do_nothing());
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// The delivery log of one push, by target.
    pub async fn deliveries_for_push(&self, push_id: &str) -> StoreResult<Vec<DeliveryRecord>> {
        self.count();
        let d = self.dialect;
        let rows: Vec<DeliveryRow> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, attempts FROM pushq_deliveries WHERE push_id = ",
                d.text("target"),
                d.text("user_id"),
                d.text("status"),
                d.text("error_code"),
            ));
            q.push_bind(push_id).push(" ORDER BY target");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(target, user_id, status, error_code, attempts)| DeliveryRecord {
                    target,
                    user_id,
                    status,
                    error_code,
                    attempts: attempts.max(0) as u32,
                },
            )
            .collect())
    }

    /// Checks a device before registering it: the fields must fit the schema.
    pub fn check_device(user_id: &str, token: &str, platform: &str) -> Result<(), String> {
        for (field, value, max) in [
            ("userId", user_id, 255),
            ("token", token, 512),
            ("platform", platform, 32),
        ] {
            let n = value.chars().count();
            if n == 0 || n > max {
                return Err(format!("{field}: must be 1 to {max} characters (got {n})"));
            }
            if value.contains('\0') {
                return Err(format!(
                    "{field}: must not contain the NUL character (U+0000)"
                ));
            }
        }
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(self, pool, { pool.close().await })
    }
}

/// Removes a URL's password from a text that may quote it.
fn redact(text: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::Store;

    #[test]
    fn devices_are_checked_against_their_columns() {
        assert!(Store::check_device("u", "t", "ios").is_ok());
        let err = Store::check_device("u\0", "t", "ios").unwrap_err();
        assert!(err.starts_with("userId: must not contain the NUL"), "{err}");
        let err = Store::check_device("u", &"t".repeat(513), "ios").unwrap_err();
        assert!(err.starts_with("token: must be 1 to 512"), "{err}");
    }
}
