//! The database: devices, the delivery log and rejected messages, on SQLite, PostgreSQL and
//! MySQL/MariaDB. Every batch operation is one statement, whatever the batch size.
//!
//! The SQL is written once with `QueryBuilder` and run against each dialect's own pool; where
//! dialects differ (conflict handling), the variants sit side by side in [`Dialect`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{MySqlPool, PgPool, SqlitePool};

// `with_pool!`, before every module and function that uses it.
#[macro_use]
mod with_pool;

// Every statement runs unprepared (`persistent(false)`): PostgreSQL caches a prepared
// statement's generic plan per connection, and one planned while `pushq_deliveries` was empty
// (a new deployment) stays a sequential scan as the table grows — measured by the benchmark at
// 4 ms per lookup over 15,000 rows instead of microseconds. Unprepared statements are planned
// with their values each time; the IN lists also vary in length, so caching them bought little.

/// Pushes `(?, ?), (?, ?), …`: (push id, target) pairs for a `(push_id, target) IN (…)` list.
pub(crate) fn push_pairs<'a, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut list = q.separated(", ");
    for (push_id, target) in pairs {
        list.push("(");
        list.push_bind_unseparated(push_id);
        list.push_unseparated(", ");
        list.push_bind_unseparated(target);
        list.push_unseparated(")");
    }
}

/// Pushes `?, ?, …`: the values of an `IN (…)` list.
pub(crate) fn push_values_list<'a, DB: sqlx::Database>(
    q: &mut sqlx::QueryBuilder<'a, DB>,
    values: impl Iterator<Item = &'a str>,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value);
    }
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
    pub(crate) fn insert_ignoring_duplicates(self, table_and_columns: &str) -> String {
        match self {
            Dialect::MySql => format!("INSERT IGNORE INTO {table_and_columns} "),
            Dialect::Sqlite | Dialect::Postgres => format!("INSERT INTO {table_and_columns} "),
        }
    }

    pub(crate) fn on_conflict_do_nothing(self) -> &'static str {
        match self {
            Dialect::MySql => "",
            Dialect::Sqlite | Dialect::Postgres => " ON CONFLICT DO NOTHING",
        }
    }

    /// A boolean literal.
    pub(crate) fn boolean(self, value: bool) -> &'static str {
        match (self, value) {
            (Dialect::Sqlite, true) => "1",
            (Dialect::Sqlite, false) => "0",
            (_, true) => "TRUE",
            (_, false) => "FALSE",
        }
    }

    /// An integer expression as a 64-bit integer (what a UNION's branches agree on).
    pub(crate) fn integer(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => expr.to_owned(),
            Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
        }
    }

    /// A text NULL (what a UNION's branches agree on).
    pub(crate) fn null_text(self) -> &'static str {
        match self {
            Dialect::Sqlite => "NULL",
            Dialect::Postgres => "CAST(NULL AS TEXT)",
            Dialect::MySql => "CONVERT(NULL USING utf8mb4)",
        }
    }

    /// A text column as a SELECT should read it. MySQL reports `utf8mb4_bin` columns (binary
    /// collation, so tokens stay case-sensitive) as VARBINARY; converting gives text back.
    pub(crate) fn text(self, column: &str) -> String {
        match self {
            Dialect::MySql => format!("CONVERT({column} USING utf8mb4)"),
            Dialect::Sqlite | Dialect::Postgres => column.to_owned(),
        }
    }

    /// A text column as a SELECT list should name it, for reading into a `sqlx::FromRow`
    /// struct: [`Dialect::text`], under the column's own name.
    pub(crate) fn column(self, column: &str) -> String {
        match self {
            Dialect::MySql => format!("{} AS {column}", self.text(column)),
            Dialect::Sqlite | Dialect::Postgres => column.to_owned(),
        }
    }

    /// Most bind parameters one statement may carry.
    pub(crate) fn max_binds(self) -> usize {
        match self {
            Dialect::Sqlite => 32_766,
            Dialect::Postgres | Dialect::MySql => 65_535,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// The (app, user id)s a batch asks about, as its statements bind them: the distinct apps and
/// the distinct ids (a statement matches `app IN (…) AND user_id IN (…)`), and the pairs
/// themselves, to keep only the rows of pairs asked about.
pub(crate) struct UserKeys<'a> {
    pub wanted: std::collections::HashSet<(&'a str, &'a str)>,
    pub apps: Vec<&'a str>,
    pub ids: Vec<&'a str>,
}

impl<'a> UserKeys<'a> {
    pub(crate) fn of(users: &'a [(String, String)]) -> UserKeys<'a> {
        let distinct = |pick: fn(&(String, String)) -> &str| {
            let mut v: Vec<&str> = users.iter().map(pick).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        UserKeys {
            wanted: users
                .iter()
                .map(|(a, u)| (a.as_str(), u.as_str()))
                .collect(),
            apps: distinct(|(a, _)| a.as_str()),
            ids: distinct(|(_, u)| u.as_str()),
        }
    }
}

mod audiences;
mod claims;
mod deliveries;
mod devices;
mod error;
mod local_queue;
mod log;
mod preferences;
mod probe;
mod rejected;
mod scheduled;
mod tls;
mod topics;

pub use audiences::{AudienceProgress, AudienceRow, AudienceState, PageDevices, PageQuery};
pub use claims::{Claim, Claimed, KeyClaim, KeyOwner, TargetKey};
pub use deliveries::{Delivery, DeliveryStatus};
pub use devices::{Device, DeviceKind, InvalidDevice, NewDevice, Resolution, Resolved};
pub use error::{StoreError, Unanswered};
pub use local_queue::LocalMessage;
pub use log::{DeliveryRecord, PushLog, PushLogState, UserDelivery};
pub use preferences::{CapCount, Consent, ConsentReminder, RulesData, UserPreferences};
use probe::probe;
pub use rejected::Rejected;
pub use scheduled::ScheduledPush;
pub use tls::{tls_warning, warn_if_unverified};
pub use topics::Membership;

/// Opens (creating it if missing) the SQLite file `options` names.
async fn open_sqlite(
    options: sqlx::sqlite::SqliteConnectOptions,
    pool_size: u32,
) -> StoreResult<Pool> {
    let what = format!("the SQLite file {}", options.get_filename().display());
    let pool = SqlitePoolOptions::new()
        .max_connections(pool_size)
        .connect_with(
            options
                .create_if_missing(true)
                .busy_timeout(std::time::Duration::from_secs(10)),
        )
        .await
        .map_err(|source| StoreError::CannotOpen { what, source })?;
    Ok(Pool::Sqlite(pool))
}

/// The error for a server pool that could not connect: a server that is down or unroutable
/// (`what`, not answering within `timeout`) is [`StoreError::Unreachable`]; a refused
/// certificate or login is not that.
fn unreachable(
    what: String,
    timeout: std::time::Duration,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e: sqlx::Error| match e {
        sqlx::Error::PoolTimedOut => StoreError::Unreachable {
            what,
            seconds: timeout.as_secs(),
            source: Some(e.into()),
        },
        e => StoreError::Database(e),
    }
}

/// A connection pool to the pushq database, counting the statements it runs.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) dialect: Dialect,
    statements: Arc<AtomicU64>,
}

impl Store {
    /// Connects to `url` (`sqlite:`, `postgres:`/`postgresql:`, `mysql:`/`mariadb:`) with at most
    /// `pool_size` connections. SQLite files are created if missing. What env files wrap around
    /// a value (a byte-order mark, quotes) is removed first. A URL without one of these schemes
    /// is refused without quoting it: a `user:password@host` value would start with the password.
    pub async fn connect(url: &str, pool_size: u32) -> StoreResult<Store> {
        Self::connect_within(url, pool_size, std::time::Duration::from_secs(30)).await
    }

    /// [`Store::connect`], giving up on a server that has not answered within `timeout` with
    /// [`StoreError::Unreachable`] naming its host and port.
    pub async fn connect_within(
        url: &str,
        pool_size: u32,
        timeout: std::time::Duration,
    ) -> StoreResult<Store> {
        tls::install_crypto_provider();
        let pool = match ConnectOptions::parse(url)? {
            ConnectOptions::Sqlite(options) => open_sqlite(options, pool_size).await?,
            ConnectOptions::Postgres(options) => {
                let what = format!(
                    "PostgreSQL at {}:{}",
                    options.get_host(),
                    options.get_port()
                );
                probe::<sqlx::PgConnection>(&options, &what, timeout).await?;
                Pool::Postgres(
                    probe::server_pool_options(pool_size, timeout)
                        .connect_with(options)
                        .await
                        .map_err(unreachable(what, timeout))?,
                )
            }
            ConnectOptions::MySql(options) => {
                let what = format!("MySQL at {}:{}", options.get_host(), options.get_port());
                probe::<sqlx::MySqlConnection>(&options, &what, timeout).await?;
                Pool::MySql(
                    probe::server_pool_options(pool_size, timeout)
                        .connect_with(options)
                        .await
                        .map_err(unreachable(what, timeout))?,
                )
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

    pub(crate) fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies the schema (migrations are embedded in the binary).
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.pool {
            Pool::Sqlite(p) => self.migrator().run(p).await?,
            Pool::Postgres(p) => self.migrator().run(p).await?,
            Pool::MySql(p) => self.migrator().run(p).await?,
        }
        Ok(())
    }

    /// Applies the schema up to and including migration `version` only: the schema of an older
    /// pushq, for tests of what an upgrade does to an existing deployment's rows.
    pub async fn migrate_to(&self, version: i64) -> StoreResult<()> {
        let all = self.migrator();
        let mut migrator = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                all.migrations
                    .iter()
                    .filter(|m| m.version <= version)
                    .cloned()
                    .collect(),
            ),
            ..all
        };
        migrator.set_ignore_missing(true);
        match &self.pool {
            Pool::Sqlite(p) => migrator.run(p).await?,
            Pool::Postgres(p) => migrator.run(p).await?,
            Pool::MySql(p) => migrator.run(p).await?,
        }
        Ok(())
    }

    /// The embedded migrations of this store's dialect.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
            Dialect::MySql => sqlx::migrate!("./migrations/mysql"),
        }
    }

    /// Checks, without changing anything, that every migration this build carries has been
    /// applied; fails with [`StoreError::SchemaOutdated`] naming the first one missing.
    pub async fn check_schema(&self) -> StoreResult<()> {
        self.count();
        let applied: Result<Vec<(i64,)>, sqlx::Error> = with_pool!(self, pool, {
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .persistent(false)
                .fetch_all(pool)
                .await
        });
        let applied: Vec<i64> = match applied {
            Ok(rows) => rows.into_iter().map(|(v,)| v).collect(),
            // No migrations table: no pushq schema at all. (Any other error, e.g. a user
            // without SELECT on `_sqlx_migrations`, is reported as it is.)
            Err(sqlx::Error::Database(e)) if is_missing_table(e.as_ref()) => {
                return Err(StoreError::SchemaOutdated(
                    "not there (no pushq tables)".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        match self
            .migrator()
            .iter()
            .find(|m| !applied.contains(&m.version))
        {
            Some(missing) => Err(StoreError::SchemaOutdated(format!(
                "older than this pushq needs (migration {} {:?} is not applied)",
                missing.version, missing.description
            ))),
            None => Ok(()),
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(self, pool, { pool.close().await })
    }
}

/// Whether a database error says a table does not exist, in each dialect's words.
fn is_missing_table(e: &dyn sqlx::error::DatabaseError) -> bool {
    // PostgreSQL 42P01 undefined_table; MySQL/MariaDB 42S02 (ER_NO_SUCH_TABLE); SQLite has
    // no specific code, only its message.
    matches!(
        e.code().as_deref(),
        Some("42P01") | Some("42S02") | Some("1146")
    ) || e.message().contains("no such table")
}

/// Whether `url` is a SQLite URL whose file does not exist (connecting would create an empty
/// one); an in-memory database counts, as it holds nothing yet. Read as [`Store::connect`] reads
/// the URL.
pub fn names_missing_sqlite_file(url: &str) -> bool {
    match ConnectOptions::parse(url) {
        Ok(ConnectOptions::Sqlite(options)) => !options.get_filename().exists(),
        _ => false,
    }
}

/// A database URL parsed into its dialect's connect options (what [`Store::connect`] connects
/// with and [`tls_warning`] judges).
pub(crate) enum ConnectOptions {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

impl ConnectOptions {
    /// Parses `url` once what env files wrap around a value is removed
    /// ([`crate::setting::unwrap_value`]). A URL without a known scheme is refused without being
    /// quoted; a parse error has the password removed.
    pub(crate) fn parse(url: &str) -> StoreResult<ConnectOptions> {
        let url = crate::setting::unwrap_value(url);
        let bad = |scheme: &'static str| {
            let url = &url;
            move |e: sqlx::Error| {
                StoreError::Url(format!(
                    "cannot parse the {scheme} URL ({})",
                    redact(&e.to_string(), url)
                ))
            }
        };
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(ConnectOptions::Sqlite(url.parse().map_err(bad("sqlite:"))?)),
            Some("postgres" | "postgresql") => Ok(ConnectOptions::Postgres(
                url.parse().map_err(bad("postgres:"))?,
            )),
            Some("mysql" | "mariadb") => Ok(ConnectOptions::MySql(
                url.replacen("mariadb:", "mysql:", 1)
                    .parse()
                    .map_err(bad("mysql:"))?,
            )),
            _ => Err(StoreError::Url(
                "expected a URL starting with sqlite:, postgres:, postgresql:, mysql: or \
                 mariadb:; the value starts with none of these (it is not printed: it may hold \
                 a password)"
                    .into(),
            )),
        }
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
mod tests;
