//! Claims: a batch claims each (push, target) in the delivery log before it sends, and each
//! (app, idempotency key, target) of a keyed push, so that no two consumers send one target.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::deliveries::{
    log_rows_per_statement, push_row_arrays, push_row_values, Delivery, DeliveryStatus,
    CLAIM_COLUMNS, ROW_COLUMNS,
};
use super::{Dialect, Pool, Store, StoreResult};

/// A claimed row, as read back.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    push_id: String,
    target: String,
    status: String,
    claim_id: Option<String>,
    error_code: Option<String>,
}

impl ClaimRow {
    /// What `claim` got for this row.
    fn claimed(&self, claim: &Claim) -> Claimed {
        let (retrying, sending) = (
            DeliveryStatus::Retrying.as_str(),
            DeliveryStatus::Sending.as_str(),
        );
        if self.claim_id.as_deref() == Some(claim.id.as_str()) && self.status == sending {
            Claimed::Won {
                taken_over: self.error_code.as_deref() == Some(TAKEN_OVER),
            }
        } else if self.status == sending || self.status == retrying {
            Claimed::Busy
        } else {
            Claimed::Final
        }
    }
}

/// What the claiming insert does with a row the log has already: takes it when it is
/// `retrying` or `deferred`, or `sending` under a claim that lapsed before `now` (marking a `sending` one
/// [`TAKEN_OVER`]); else leaves it. Returns the claimed rows, but on MySQL.
fn push_claim_conflict<'a, DB: sqlx::Database>(q: &mut QueryBuilder<'a, DB>, d: Dialect, now: i64)
where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let (retrying, sending, deferred) = (
        DeliveryStatus::Retrying.as_str(),
        DeliveryStatus::Sending.as_str(),
        DeliveryStatus::Deferred.as_str(),
    );
    if d == Dialect::MySql {
        // Assignments run in order and see the values already set: the claim id decides
        // first, the others follow it.
        q.push(format!(
            " ON DUPLICATE KEY UPDATE claim_id = IF(status IN ('{retrying}', '{deferred}') OR (status = '{sending}' AND claimed_until < "
        ));
        q.push_bind(now);
        q.push(format!(
            "), VALUES(claim_id), claim_id), \
             error_code = IF(claim_id = VALUES(claim_id) AND status = '{sending}', '{TAKEN_OVER}', error_code), \
             claimed_until = IF(claim_id = VALUES(claim_id), VALUES(claimed_until), claimed_until), \
             status = IF(claim_id = VALUES(claim_id), '{sending}', status)"
        ));
        return;
    }
    let lapsed = |q: &mut QueryBuilder<'a, DB>| {
        q.push(format!(
            "(pushq_deliveries.status IN ('{retrying}', '{deferred}') OR (pushq_deliveries.status = '{sending}' AND pushq_deliveries.claimed_until < "
        ));
        q.push_bind(now);
        q.push("))");
    };
    q.push(" ON CONFLICT (push_id, target) DO UPDATE SET claim_id = CASE WHEN ");
    lapsed(q);
    q.push(
        " THEN excluded.claim_id ELSE pushq_deliveries.claim_id END, claimed_until = CASE WHEN ",
    );
    lapsed(q);
    q.push(format!(
        " THEN excluded.claimed_until ELSE pushq_deliveries.claimed_until END, \
         error_code = CASE WHEN pushq_deliveries.status = '{sending}' AND pushq_deliveries.claimed_until < "
    ));
    q.push_bind(now);
    q.push(format!(
        " THEN '{TAKEN_OVER}' ELSE pushq_deliveries.error_code END, status = CASE WHEN "
    ));
    lapsed(q);
    q.push(format!(
        " THEN '{sending}' ELSE pushq_deliveries.status END \
         RETURNING push_id, target, status, claim_id, error_code"
    ));
}

/// The claim's rows as a VALUES list (SQLite, MySQL): [`ROW_COLUMNS`], then `sending` under
/// `claim`.
fn push_claim_values<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    chunk: &[&'a Delivery],
    claim: &'a Claim,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let until = claim.until.timestamp_millis();
    q.push_values(chunk.iter().copied(), |mut b, r| {
        push_row_values(&mut b, r);
        b.push_bind(DeliveryStatus::Sending.as_str())
            .push_bind(0i32)
            .push_bind(claim.id.as_str())
            .push_bind(until);
    });
}

/// One (push, target) of the delivery log: what a row, and the claim on it, are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    /// The push id.
    pub push_id: String,
    /// The token, `fid:<id>`, `topic:<name>`, `condition:<expr>` or `user:<id>`.
    pub target: String,
}

impl TargetKey {
    /// The key of `target` in push `push_id`.
    pub fn new(push_id: impl Into<String>, target: impl Into<String>) -> TargetKey {
        TargetKey {
            push_id: push_id.into(),
            target: target.into(),
        }
    }
}

/// The owner of an (app, idempotency key, target), as read back.
#[derive(sqlx::FromRow)]
struct OwnerRow {
    app: String,
    idempotency_key: String,
    target: String,
    push_id: String,
    payload_hash: Option<String>,
}

/// A batch's claim: its id, when its claims lapse, and the time it claims at (all as the
/// consumer's clock says; the lapse time is compared as epoch milliseconds in every dialect).
#[derive(Debug, Clone)]
pub struct Claim {
    /// A random id of the claiming batch.
    pub id: String,
    /// When the claims lapse: the batch's deadline, with the time its log write may take.
    pub until: DateTime<Utc>,
    /// Now: claims that lapsed before it may be taken over.
    pub now: DateTime<Utc>,
}

impl Claim {
    /// A new claim, lapsing `lasts` from now.
    pub fn new(lasts: std::time::Duration) -> Claim {
        Claim::at(Utc::now(), lasts)
    }

    /// A new claim made at `now` (the engine's clock), lapsing `lasts` after it.
    pub fn at(now: DateTime<Utc>, lasts: std::time::Duration) -> Claim {
        Claim {
            id: uuid::Uuid::now_v7().to_string(),
            until: now + chrono::Duration::from_std(lasts).unwrap_or(chrono::Duration::MAX),
            now,
        }
    }
}

/// What a claim got for one (push, target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This batch holds it and sends it. `taken_over` when it was another consumer's claim that
    /// had lapsed (that consumer died or overran: the target may have been sent already).
    Won {
        /// The previous holder's claim had lapsed.
        taken_over: bool,
    },
    /// It has a final row: nothing to do.
    Final,
    /// Another consumer's claim holds it: not sent, the message comes back later.
    Busy,
}

/// Who owns an (idempotency key, target): the first push that claimed it, and its payload's
/// hash (none for keys used before claims existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The owning push.
    pub push_id: String,
    /// the engine's hash of the owning push's FCM payload.
    pub payload_hash: Option<String>,
}

/// One (app, idempotency key, target) a push claims, with its payload's hash.
#[derive(Debug, Clone)]
pub struct KeyClaim {
    /// The push's app: a key is claimed within its app.
    pub app: String,
    /// The push's idempotency key.
    pub key: String,
    /// The target.
    pub target: String,
    /// The claiming push.
    pub push_id: String,
    /// The hash of the push's FCM payload.
    pub payload_hash: String,
}

/// The error code a `sending` row carries while a consumer holds a claim it took over from one
/// that lapsed.
const TAKEN_OVER: &str = "CLAIM_LAPSED";

impl Store {
    /// Claims each (push, target) of `rows` for this batch, in one statement (two on MySQL,
    /// which cannot return rows from an insert: a SELECT reads the claims back). A row is
    /// written as `sending` with the claim's id and lapse time when the log has none; an
    /// existing row is taken when it is `retrying`, or `sending` under a lapsed claim; any
    /// other row is left as it is. Rows are claimed in (push, target) order, so that two
    /// batches claiming overlapping targets lock them in the same order.
    pub async fn claim(
        &self,
        rows: &[Delivery],
        claim: &Claim,
    ) -> StoreResult<std::collections::HashMap<TargetKey, Claimed>> {
        let mut rows: Vec<&Delivery> = rows.iter().collect();
        rows.sort_by(|a, b| (&a.push_id, &a.target).cmp(&(&b.push_id, &b.target)));
        rows.dedup_by(|a, b| a.push_id == b.push_id && a.target == b.target);
        let mut states: Vec<ClaimRow> = Vec::new();
        for chunk in rows.chunks(log_rows_per_statement(self.dialect, CLAIM_COLUMNS)) {
            states.extend(self.claim_chunk(chunk, claim).await?);
        }
        if self.dialect == Dialect::MySql && !rows.is_empty() {
            states = self.claims_of(&rows).await?;
        }
        let wanted: std::collections::HashSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.push_id.as_str(), r.target.as_str()))
            .collect();
        Ok(states
            .into_iter()
            .filter(|r| wanted.contains(&(r.push_id.as_str(), r.target.as_str())))
            .map(|r| {
                let state = r.claimed(claim);
                (TargetKey::new(r.push_id, r.target), state)
            })
            .collect())
    }

    /// One statement of [`Store::claim`]: the rows it returns (none on MySQL).
    async fn claim_chunk(&self, chunk: &[&Delivery], claim: &Claim) -> StoreResult<Vec<ClaimRow>> {
        self.count();
        let (until, now) = (claim.until.timestamp_millis(), claim.now.timestamp_millis());
        let sending = DeliveryStatus::Sending.as_str();
        let d = self.dialect;
        let insert = format!(
            "INSERT INTO pushq_deliveries ({ROW_COLUMNS}, status, attempts, claim_id, claimed_until) "
        );
        Ok(match &self.pool {
            Pool::Postgres(pool) => {
                let mut q = QueryBuilder::<sqlx::Postgres>::new(insert);
                q.push("SELECT u.*, ");
                q.push_bind(sending);
                q.push(", 0, ");
                q.push_bind(claim.id.as_str());
                q.push(", ");
                q.push_bind(until);
                q.push(" FROM ");
                push_row_arrays(&mut q, chunk);
                q.push(") AS u");
                push_claim_conflict(&mut q, d, now);
                q.build_query_as().persistent(false).fetch_all(pool).await?
            }
            Pool::Sqlite(pool) => {
                let mut q = QueryBuilder::<sqlx::Sqlite>::new(insert);
                push_claim_values(&mut q, chunk, claim);
                push_claim_conflict(&mut q, d, now);
                q.build_query_as().persistent(false).fetch_all(pool).await?
            }
            Pool::MySql(pool) => {
                let mut q = QueryBuilder::<sqlx::MySql>::new(insert);
                push_claim_values(&mut q, chunk, claim);
                push_claim_conflict(&mut q, d, now);
                q.build().persistent(false).execute(pool).await?;
                Vec::new()
            }
        })
    }

    /// Gives up a batch's claims that are still `sending` (the batch failed before writing
    /// them): they become `retrying`, for the redelivery to take at once instead of waiting for
    /// them to lapse. With `only`, just those (push, target)s are released: the targets FCM did
    /// not accept, when the log write failed after the sends (an accepted target stays claimed
    /// until its claim lapses, so that a redelivery before then does not send it again).
    /// Returns how many it released.
    pub async fn release(&self, claim: &Claim, only: Option<&[(&str, &str)]>) -> StoreResult<u64> {
        let chunks: Vec<Option<&[(&str, &str)]>> = match only {
            None => vec![None],
            Some(targets) => targets
                .chunks(self.dialect.max_binds() / 2 - 1)
                .map(Some)
                .collect(),
        };
        let mut released = 0;
        for chunk in chunks {
            self.count();
            released += with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "UPDATE pushq_deliveries SET status = '{}' WHERE status = '{}' AND claim_id = ",
                    DeliveryStatus::Retrying.as_str(),
                    DeliveryStatus::Sending.as_str()
                ));
                q.push_bind(claim.id.as_str());
                if let Some(targets) = chunk {
                    q.push(" AND (push_id, target) IN (");
                    super::push_pairs(&mut q, targets.iter().copied());
                    q.push(")");
                }
                q.build()
                    .persistent(false)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(released)
    }

    /// (push id, target, status, claim id, error code) of the log's rows for these pushes.
    async fn claims_of(&self, rows: &[&Delivery]) -> StoreResult<Vec<ClaimRow>> {
        let push_ids: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.push_id.as_str()).collect();
        self.count();
        let d = self.dialect;
        Ok(with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {} FROM pushq_deliveries WHERE push_id IN (",
                d.column("push_id"),
                d.column("target"),
                d.column("status"),
                d.column("claim_id"),
                d.column("error_code"),
            ));
            let mut list = q.separated(", ");
            for id in push_ids {
                list.push_bind(id);
            }
            q.push(")");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        }))
    }

    /// Claims (idempotency key, target) pairs for their pushes, in one statement (two on MySQL),
    /// and says who owns each: the push that claimed it first, ever. A pair owned by another push
    /// is that push's to deliver; `claims` must name each pair once.
    pub async fn claim_keys(
        &self,
        claims: &[KeyClaim],
    ) -> StoreResult<std::collections::HashMap<(String, String, String), KeyOwner>> {
        const COLUMNS: usize = 5;
        let mut claims: Vec<&KeyClaim> = claims.iter().collect();
        claims.sort_by(|a, b| (&a.app, &a.key, &a.target).cmp(&(&b.app, &b.key, &b.target)));
        let mut owners: Vec<OwnerRow> = Vec::new();
        for chunk in claims.chunks(self.dialect.max_binds() / COLUMNS) {
            owners.extend(self.claim_keys_chunk(chunk).await?);
        }
        if self.dialect == Dialect::MySql && !claims.is_empty() {
            owners = self.key_owners(&claims).await?;
        }
        Ok(owners
            .into_iter()
            .map(|r| {
                (
                    (r.app, r.idempotency_key, r.target),
                    KeyOwner {
                        push_id: r.push_id,
                        payload_hash: r.payload_hash,
                    },
                )
            })
            .collect())
    }

    /// One statement of [`Store::claim_keys`]: the owners it returns (none on MySQL).
    async fn claim_keys_chunk(&self, chunk: &[&KeyClaim]) -> StoreResult<Vec<OwnerRow>> {
        self.count();
        let d = self.dialect;
        Ok(with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO pushq_key_claims (app, idempotency_key, target, push_id, payload_hash) ",
            );
            q.push_values(chunk, |mut b, c| {
                b.push_bind(c.app.as_str())
                    .push_bind(c.key.as_str())
                    .push_bind(c.target.as_str())
                    .push_bind(c.push_id.as_str())
                    .push_bind(c.payload_hash.as_str());
            });
            match d {
                Dialect::MySql => {
                    q.push(" ON DUPLICATE KEY UPDATE push_id = push_id");
                    q.build().persistent(false).execute(pool).await?;
                    Vec::new()
                }
                // A no-op update, so that RETURNING gives the owner of every pair.
                Dialect::Sqlite | Dialect::Postgres => {
                    q.push(
                         " ON CONFLICT (app, idempotency_key, target) DO UPDATE SET push_id = pushq_key_claims.push_id \
                         RETURNING app, idempotency_key, target, push_id, payload_hash",
                    );
                    q.build_query_as().persistent(false).fetch_all(pool).await?
                }
            }
        }))
    }

    /// The owners of these claims' keys, read back (MySQL, whose insert returns no rows).
    async fn key_owners(&self, claims: &[&KeyClaim]) -> StoreResult<Vec<OwnerRow>> {
        let keys: std::collections::BTreeSet<&str> =
            claims.iter().map(|c| c.key.as_str()).collect();
        self.count();
        let d = self.dialect;
        Ok(with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {} FROM pushq_key_claims WHERE idempotency_key IN (",
                d.column("app"),
                d.column("idempotency_key"),
                d.column("target"),
                d.column("push_id"),
                d.column("payload_hash"),
            ));
            let mut list = q.separated(", ");
            for key in keys {
                list.push_bind(key);
            }
            q.push(")");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        }))
    }
}
