//! Errors from the database.

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
    /// The database server could not be reached in time (`what` is `PostgreSQL at host:port`, or
    /// MySQL's; never the password).
    #[error("{what} could not be reached within {seconds} s: {}", .source.as_ref().map_or_else(|| "no answer".to_owned(), |e| e.to_string()))]
    Unreachable {
        /// The database and where it was looked for.
        what: String,
        /// How long was waited.
        seconds: u64,
        /// The driver's last error (none when the server never answered at all).
        #[source]
        source: Option<Unanswered>,
    },
    /// A statement of a batch did not finish in time (`PUSHQ_DB_STATEMENT_TIMEOUT_MS`, or the
    /// batch's deadline for the lookups before its sends); pushq stopped waiting for it.
    #[error("database: {what} did not finish within {limit_ms} ms (PUSHQ_DB_STATEMENT_TIMEOUT_MS, or the batch's deadline)")]
    TimedOut {
        /// Which statement (`resolve users`, `record deliveries`, …).
        what: &'static str,
        /// How long was waited, in milliseconds.
        limit_ms: u64,
    },
    /// A SQLite file could not be opened or created (`what` names the file).
    #[error("cannot open {what}: {source} (does its directory exist, and may this process write there?)")]
    CannotOpen {
        /// The database, e.g. `the SQLite file ./pushq-dev.db`.
        what: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An audience push names a segment whose view or table (`pushq_segment_<name>`, with a
    /// `user_id` column) the database does not have: the push's error, recorded once.
    #[error("no view or table {table} with a user_id column: {why}")]
    UnknownSegment {
        /// `pushq_segment_<name>`.
        table: String,
        /// The database's words.
        why: String,
    },
    /// The database's schema is older than this build needs (or absent); nothing was changed.
    #[error("the database schema is {0}: run `pushq migrate` (or pass migrate: true) to apply it")]
    SchemaOutdated(String),
}

/// Why a database server was not reached: the driver's error, or the network's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unanswered {
    /// The pool's (it timed out waiting for a connection).
    #[error(transparent)]
    Driver(#[from] sqlx::Error),
    /// The network's, while probing the server.
    #[error(transparent)]
    Network(#[from] std::io::Error),
}
