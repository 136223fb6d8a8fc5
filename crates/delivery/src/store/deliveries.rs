//! The delivery log: its statuses and rows, and the one-statement write of a batch's rows (claims
//! are in `claims.rs`, reading the log back in `log.rs`).

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::claims::Claim;
use super::{Dialect, Pool, Store, StoreResult};

/// The final state of one (push, target), as the `status` column stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// FCM accepted the message for the target.
    Sent,
    /// FCM refused the message for good (its own error, not the deployment's).
    Failed,
    /// FCM said the token is dead (`UNREGISTERED`, `SENDER_ID_MISMATCH`; see `fcm::classify`);
    /// the device is invalidated.
    InvalidToken,
    /// A user id with no live device (`target` is `user:<id>`).
    NoDevices,
    /// A dry run that FCM validated (`validate_only`): nothing was delivered.
    DryRun,
    /// Not sent: another push with the same idempotency key owns this target (it claimed the
    /// (key, target) first). `error_code` is `IDEMPOTENCY_KEY_REUSED` when that push's payload
    /// differed.
    Duplicate,
    /// Not final: claimed by a consumer that is sending it; its final row replaces this one.
    /// A claim lapses at `claimed_until` (the claiming batch's deadline), when another consumer
    /// may take it over.
    Sending,
    /// Not final: the send failed transiently and the message was handed back for redelivery.
    /// The final row replaces it.
    Retrying,
    /// Not sent: the push's `expiresAt`, or its age limit (`PUSHQ_MAX_PUSH_AGE_SECONDS`), had
    /// passed when a consumer took it.
    Expired,
    /// Not sent: the push was cancelled (`cancelPush`) before a consumer took it.
    Cancelled,
    /// Not sent: a recipient rule refused it (`error_code` `NO_CONSENT`, `OPTED_OUT`,
    /// `FREQUENCY_CAPPED`).
    Suppressed,
    /// Not final: a recipient rule deferred it (`error_code` `NIGHT_TIME` or `QUIET_HOURS`) and
    /// it was enqueued again for the window's end, when its final row replaces this one.
    Deferred,
}

impl DeliveryStatus {
    /// The value of the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::InvalidToken => "invalid_token",
            DeliveryStatus::NoDevices => "no_devices",
            DeliveryStatus::DryRun => "dry_run",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Duplicate => "duplicate",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Expired => "expired",
            DeliveryStatus::Cancelled => "cancelled",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Deferred => "deferred",
        }
    }
}

/// Values one delivery row binds in the statement that writes the log.
pub const DELIVERY_COLUMNS: usize = 15;
/// Values one row binds in the statement that claims a batch's targets.
pub const CLAIM_COLUMNS: usize = 14;

/// The most rows of `columns` values one statement carries in `dialect`: a batch with more is
/// written in more statements (one bind is kept for the statement's own parameter).
pub fn rows_per_statement(dialect: super::Dialect, columns: usize) -> usize {
    dialect.max_binds() / columns - 1
}

/// The most rows of the log one claim or log write carries on PostgreSQL. It takes them as one
/// array per column (`UNNEST`), which no bind limit splits and which is cheaper for it to parse
/// and plan than a VALUES list of as many binds (section 6 of docs/benchmarks.md); the split is
/// there to keep each statement short.
pub const PG_ROWS_PER_STATEMENT: usize = 5_000;

/// The most log rows of `columns` values one claim or log write carries in `dialect`.
pub fn log_rows_per_statement(dialect: super::Dialect, columns: usize) -> usize {
    match dialect {
        super::Dialect::Postgres => PG_ROWS_PER_STATEMENT,
        _ => rows_per_statement(dialect, columns),
    }
}

/// The columns of a log row that the claim and the log write both bind, in the order
/// [`push_row_arrays`] and [`push_row_values`] bind them.
pub(super) const ROW_COLUMNS: &str =
    "push_id, app, target, user_id, category, advertising, idempotency_key, enqueued_at, part, parts";

/// `rows`' [`ROW_COLUMNS`] as PostgreSQL arrays, the start of an `UNNEST(…)` that the caller
/// ends (after the arrays of its own columns, if any: [`push_array`]).
pub(super) fn push_row_arrays<'a>(q: &mut QueryBuilder<'a, sqlx::Postgres>, rows: &[&'a Delivery]) {
    q.push("UNNEST(");
    push_array(q, rows, |r| r.push_id.as_str(), "text");
    push_array(q, rows, |r| r.app.as_str(), "text");
    push_array(q, rows, |r| r.target.as_str(), "text");
    push_array(q, rows, |r| r.user_id.as_deref(), "text");
    push_array(q, rows, |r| r.category.as_deref(), "text");
    push_array(q, rows, |r| r.advertising, "boolean");
    push_array(q, rows, |r| r.idempotency_key.as_deref(), "text");
    push_array(q, rows, |r| r.enqueued_at, "timestamptz");
    push_array(q, rows, |r| r.part.map(|(i, _)| i as i32), "integer");
    push_array(q, rows, |r| r.part.map(|(_, n)| n as i32), "integer");
}

/// One array of an `UNNEST(…)`: `column` of each row, bound as a PostgreSQL `sql_type[]` (after
/// a comma, unless it is the first).
pub(super) fn push_array<'a, V>(
    q: &mut QueryBuilder<'a, sqlx::Postgres>,
    rows: &[&'a Delivery],
    column: impl Fn(&'a Delivery) -> V,
    sql_type: &str,
) where
    Vec<V>: 'a + sqlx::Encode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    if !q.sql().ends_with('(') {
        q.push(", ");
    }
    q.push_bind(rows.iter().map(|r| column(r)).collect::<Vec<V>>());
    q.push(format!("::{sql_type}[]"));
}

/// One row's [`ROW_COLUMNS`] in a VALUES list (SQLite, MySQL).
pub(super) fn push_row_values<'a, DB: sqlx::Database>(
    b: &mut sqlx::query_builder::Separated<'_, 'a, DB, &'static str>,
    r: &'a Delivery,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    b.push_bind(r.push_id.as_str())
        .push_bind(r.app.as_str())
        .push_bind(r.target.as_str())
        .push_bind(r.user_id.as_deref())
        .push_bind(r.category.as_deref())
        .push_bind(r.advertising)
        .push_bind(r.idempotency_key.as_deref())
        .push_bind(r.enqueued_at)
        .push_bind(r.part.map(|(i, _)| i as i32))
        .push_bind(r.part.map(|(_, n)| n as i32));
}

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The push id.
    pub push_id: String,
    /// The push's app.
    pub app: String,
    /// The token, `fid:<id>`, `topic:<name>`, `condition:<expr>` or `user:<id>`.
    pub target: String,
    /// The user the target belongs to, when the push named users.
    pub user_id: Option<String>,
    /// What became of the target.
    pub status: DeliveryStatus,
    /// FCM's message name, when sent.
    pub fcm_message_id: Option<String>,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made for this target.
    pub attempts: u32,
    /// The push's category.
    pub category: Option<String>,
    /// Whether the push is advertising (frequency caps count these as their own category).
    pub advertising: bool,
    /// The push's idempotency key.
    pub idempotency_key: Option<String>,
    /// When the push was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When FCM accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The part of a split push this row came from, and how many parts it has.
    pub part: Option<(u32, u32)>,
}

impl Store {
    /// The rows of these pushes for these users that are not final yet (`retrying`,
    /// `deferred`, or `sending` under a claim that lapsed before `now`): what an earlier attempt
    /// left open, as (push id, target, user id). Only the users a copy names are read (the
    /// deferred copy of one audience page must not read every open row of the audience): one
    /// statement per chunk of user ids.
    pub async fn open_user_rows(
        &self,
        push_ids: &[String],
        user_ids: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, String, String)>> {
        let d = self.dialect;
        let mut out = Vec::new();
        if push_ids.is_empty() || user_ids.is_empty() {
            return Ok(out);
        }
        let room = d.max_binds().saturating_sub(push_ids.len() + 1).max(1);
        for chunk in user_ids.chunks(room) {
            self.count();
            let got: Vec<(String, String, String)> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {}, {}, {} FROM pushq_deliveries WHERE user_id IS NOT NULL \
                     AND (status IN ('{}', '{}') OR (status = '{}' AND claimed_until < ",
                    d.text("push_id"),
                    d.text("target"),
                    d.text("user_id"),
                    DeliveryStatus::Retrying.as_str(),
                    DeliveryStatus::Deferred.as_str(),
                    DeliveryStatus::Sending.as_str(),
                ));
                q.push_bind(now.timestamp_millis());
                q.push(")) AND push_id IN (");
                super::push_values_list(&mut q, push_ids.iter().map(String::as_str));
                q.push(") AND user_id IN (");
                super::push_values_list(&mut q, chunk.iter().map(String::as_str));
                q.push(")");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            out.extend(got);
        }
        Ok(out)
    }

    /// Deletes these `user:<id>` rows while they are `retrying`: the trace a push handed back
    /// before its users were resolved (an app without a key) leaves, once the user's devices
    /// have rows of their own. Returns how many it deleted.
    pub async fn delete_superseded(&self, rows: &[(String, String)]) -> StoreResult<u64> {
        let mut deleted = 0;
        for chunk in rows.chunks(self.dialect.max_binds() / 2 - 1) {
            self.count();
            deleted += with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "DELETE FROM pushq_deliveries WHERE status = '{}' AND (push_id, target) IN (",
                    DeliveryStatus::Retrying.as_str()
                ));
                super::push_pairs(&mut q, chunk.iter().map(|(p, t)| (p.as_str(), t.as_str())));
                q.push(")");
                q.build()
                    .persistent(false)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(deleted)
    }

    /// Writes a batch's delivery rows, one statement per chunk of rows. A row already present
    /// (same push and target) is replaced when it is `retrying`, or `sending` under this batch's
    /// claim or a lapsed one; its attempts are added to the new row's. Any other row stays as it
    /// is: the first final row is the one kept. The same (push, target) twice in `rows` is
    /// written once, the first. Each statement is given at most `per_statement`
    /// ([`super::StoreError::TimedOut`] past it); a write cut short may be repeated whole, as
    /// what one statement wrote stays as it is.
    pub async fn record_deliveries(
        &self,
        rows: &[Delivery],
        claim: &Claim,
        per_statement: std::time::Duration,
    ) -> StoreResult<()> {
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&Delivery> = rows
            .iter()
            .filter(|d| seen.insert((d.push_id.as_str(), d.target.as_str())))
            .collect();
        let now = claim.now.max(Utc::now()).timestamp_millis();
        for chunk in rows.chunks(log_rows_per_statement(self.dialect, DELIVERY_COLUMNS)) {
            self.write_deliveries(chunk, &claim.id, now, per_statement)
                .await?;
        }
        Ok(())
    }

    /// One statement of [`Store::record_deliveries`], given at most `per_statement`.
    async fn write_deliveries(
        &self,
        chunk: &[&Delivery],
        claim_id: &str,
        now: i64,
        per_statement: std::time::Duration,
    ) -> StoreResult<()> {
        self.count();
        let d = self.dialect;
        let insert = format!(
            "INSERT INTO pushq_deliveries ({ROW_COLUMNS}, status, fcm_message_id, error_code, attempts, sent_at) "
        );
        let write = async {
            with_pool!(self, pool, postgres => {
                let mut q = QueryBuilder::<sqlx::Postgres>::new(insert);
                push_outcome_arrays(&mut q, chunk);
                push_delivery_conflict(&mut q, d, claim_id.to_owned(), now);
                q.build().persistent(false).execute(pool).await.map(drop)
            }, {
                let mut q = QueryBuilder::<DB>::new(insert);
                push_outcome_values(&mut q, chunk);
                push_delivery_conflict(&mut q, d, claim_id.to_owned(), now);
                q.build().persistent(false).execute(pool).await.map(drop)
            })
        };
        tokio::time::timeout(per_statement, write)
            .await
            .map_err(|_| super::StoreError::TimedOut {
                what: "writing the delivery log",
                limit_ms: per_statement.as_millis() as u64,
            })??;
        Ok(())
    }
}

/// The log write's rows as PostgreSQL arrays: [`ROW_COLUMNS`], then the outcome.
fn push_outcome_arrays<'a>(q: &mut QueryBuilder<'a, sqlx::Postgres>, chunk: &[&'a Delivery]) {
    q.push("SELECT * FROM ");
    push_row_arrays(q, chunk);
    push_array(q, chunk, |r| r.status.as_str(), "text");
    push_array(q, chunk, |r| r.fcm_message_id.as_deref(), "text");
    push_array(q, chunk, |r| r.error_code.as_deref(), "text");
    push_array(q, chunk, |r| r.attempts as i32, "integer");
    push_array(q, chunk, |r| r.sent_at, "timestamptz");
    q.push(")");
}

/// The log write's rows as a VALUES list (SQLite, MySQL): [`ROW_COLUMNS`], then the outcome.
fn push_outcome_values<'a, DB: sqlx::Database>(q: &mut QueryBuilder<'a, DB>, chunk: &[&'a Delivery])
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<DateTime<Utc>>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push_values(chunk.iter().copied(), |mut b, r| {
        push_row_values(&mut b, r);
        b.push_bind(r.status.as_str())
            .push_bind(r.fcm_message_id.as_deref())
            .push_bind(r.error_code.as_deref())
            .push_bind(r.attempts as i32)
            .push_bind(r.sent_at);
    });
}

/// What the log write does with a row the log has already: replaces it when it is `retrying`,
/// or `sending` under this batch's claim (`claim_id`) or one lapsed before `now`, adding its
/// attempts; else leaves it.
fn push_delivery_conflict<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    d: Dialect,
    claim_id: String,
    now: i64,
) where
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let (retrying, sending) = (
        DeliveryStatus::Retrying.as_str(),
        DeliveryStatus::Sending.as_str(),
    );
    // Which existing rows this batch may replace.
    let replaceable = |q: &mut QueryBuilder<'a, DB>, table: &str| {
        q.push(format!(
            "({table}status = '{retrying}' OR ({table}status = '{sending}' AND ({table}claim_id = "
        ));
        q.push_bind(claim_id.clone());
        q.push(format!(" OR {table}claimed_until < "));
        q.push_bind(now);
        q.push(")))");
    };
    match d {
        // Assignments run in order and see the values already set: status, which the
        // condition reads, goes last. (The claim columns are left as they are: they mean
        // something only while a row is `sending`.)
        Dialect::MySql => {
            q.push(" ON DUPLICATE KEY UPDATE ");
            for (column, value) in [
                ("fcm_message_id", "VALUES(fcm_message_id)"),
                ("error_code", "VALUES(error_code)"),
                ("attempts", "attempts + VALUES(attempts)"),
                ("sent_at", "VALUES(sent_at)"),
                ("status", "VALUES(status)"),
            ] {
                q.push(format!("{column} = IF("));
                replaceable(q, "");
                q.push(format!(", {value}, {column})"));
                if column != "status" {
                    q.push(", ");
                }
            }
        }
        Dialect::Sqlite | Dialect::Postgres => {
            q.push(
                " ON CONFLICT (push_id, target) DO UPDATE SET \
                 status = excluded.status, fcm_message_id = excluded.fcm_message_id, \
                 error_code = excluded.error_code, \
                 attempts = pushq_deliveries.attempts + excluded.attempts, \
                 sent_at = excluded.sent_at WHERE ",
            );
            replaceable(q, "pushq_deliveries.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations guide quotes where the log's statements split: the figures the code uses.
    #[test]
    fn the_operations_guide_quotes_the_split_the_code_makes() {
        let guide = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/operations.md"
        ))
        .unwrap()
        .replace('\n', " ");
        let figure = |n: usize| {
            let s = n.to_string();
            match s.len() {
                4 => format!("{},{}", &s[..1], &s[1..]),
                _ => s,
            }
        };
        for expected in [
            format!(
                "each is split above {} rows",
                figure(log_rows_per_statement(Dialect::Postgres, DELIVERY_COLUMNS))
            ),
            format!(
                "above {} delivery rows in one batch on MySQL",
                figure(log_rows_per_statement(Dialect::MySql, DELIVERY_COLUMNS))
            ),
            format!("/ {DELIVERY_COLUMNS} values a row"),
            format!(
                "{} on SQLite (32,766 / {DELIVERY_COLUMNS}",
                figure(log_rows_per_statement(Dialect::Sqlite, DELIVERY_COLUMNS))
            ),
            format!("the claim carries {CLAIM_COLUMNS} values a row"),
            format!(
                "splits above {} rows ({} on SQLite)",
                figure(log_rows_per_statement(Dialect::MySql, CLAIM_COLUMNS)),
                figure(log_rows_per_statement(Dialect::Sqlite, CLAIM_COLUMNS))
            ),
        ] {
            assert!(
                guide.contains(&expected),
                "docs/operations.md should say {expected:?}"
            );
        }
        assert_eq!(Dialect::Postgres.max_binds(), 65_535);
        assert_eq!(Dialect::Sqlite.max_binds(), 32_766);
    }
}
