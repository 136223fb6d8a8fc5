//! The delivery log: a batch's claims on its (push, target)s and (idempotency key, target)s, the
//! one-statement write of its rows, and the rows of one push read back.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

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
        }
    }
}

/// Values one delivery row binds in the statement that writes the log.
pub const DELIVERY_COLUMNS: usize = 14;
/// Values one row binds in the statement that claims a batch's targets.
pub const CLAIM_COLUMNS: usize = 13;

/// The most rows of `columns` values one statement carries in `dialect`: a batch with more is
/// written in more statements (one bind is kept for the statement's own parameter).
pub fn rows_per_statement(dialect: super::Dialect, columns: usize) -> usize {
    dialect.max_binds() / columns - 1
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
    /// The push's idempotency key.
    pub idempotency_key: Option<String>,
    /// When the push was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When FCM accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// The part of a split push this row came from, and how many parts it has.
    pub part: Option<(u32, u32)>,
}

/// (push id, target, status, claim id, error code) of a claimed row, as read back.
type ClaimRow = (String, String, String, Option<String>, Option<String>);

/// (app, target, user_id, status, error_code, attempts, part, parts, fcm_message_id) as
/// selected.
type DeliveryRow = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i32,
    Option<i32>,
    Option<i32>,
    Option<String>,
);

/// A delivery-log row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The push's app.
    pub app: String,
    /// The token, `fid:<id>`, `topic:<name>`, `condition:<expr>` or `user:<id>`.
    pub target: String,
    /// The user, when the push named users.
    pub user_id: Option<String>,
    /// A [`DeliveryStatus`] as its column holds it (`sent`, `failed`, `retrying`, …).
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made.
    pub attempts: u32,
    /// The part of a split push the row came from, and how many parts the push has.
    pub part: Option<(u32, u32)>,
    /// FCM's name for the message it accepted (`projects/<id>/messages/<n>`), when `sent`.
    pub fcm_message_id: Option<String>,
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
        let now = Utc::now();
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
    ) -> StoreResult<std::collections::HashMap<(String, String), Claimed>> {
        const COLUMNS: usize = CLAIM_COLUMNS;
        let mut rows: Vec<&Delivery> = rows.iter().collect();
        rows.sort_by(|a, b| (&a.push_id, &a.target).cmp(&(&b.push_id, &b.target)));
        rows.dedup_by(|a, b| a.push_id == b.push_id && a.target == b.target);
        let until = claim.until.timestamp_millis();
        let now = claim.now.timestamp_millis();
        let (retrying, sending) = (
            DeliveryStatus::Retrying.as_str(),
            DeliveryStatus::Sending.as_str(),
        );
        let mut states: Vec<ClaimRow> = Vec::new();
        for chunk in rows.chunks(rows_per_statement(self.dialect, COLUMNS)) {
            self.count();
            let d = self.dialect;
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO pushq_deliveries (push_id, app, target, user_id, status, attempts, category, idempotency_key, enqueued_at, part, parts, claim_id, claimed_until) ",
                );
                q.push_values(chunk, |mut b, r| {
                    b.push_bind(r.push_id.as_str())
                        .push_bind(r.app.as_str())
                        .push_bind(r.target.as_str())
                        .push_bind(r.user_id.as_deref())
                        .push_bind(sending)
                        .push_bind(0i32)
                        .push_bind(r.category.as_deref())
                        .push_bind(r.idempotency_key.as_deref())
                        .push_bind(r.enqueued_at)
                        .push_bind(r.part.map(|(i, _)| i as i32))
                        .push_bind(r.part.map(|(_, n)| n as i32))
                        .push_bind(claim.id.as_str())
                        .push_bind(until);
                });
                match d {
                    // Assignments run in order and see the values already set: the claim id
                    // decides first, the others follow it.
                    Dialect::MySql => {
                        q.push(format!(
                            " ON DUPLICATE KEY UPDATE claim_id = IF(status = '{retrying}' OR (status = '{sending}' AND claimed_until < "
                        ));
                        q.push_bind(now);
                        q.push(format!(
                            "), VALUES(claim_id), claim_id), \
                             error_code = IF(claim_id = VALUES(claim_id) AND status = '{sending}', '{TAKEN_OVER}', error_code), \
                             claimed_until = IF(claim_id = VALUES(claim_id), VALUES(claimed_until), claimed_until), \
                             status = IF(claim_id = VALUES(claim_id), '{sending}', status)"
                        ));
                        q.build().persistent(false).execute(pool).await?;
                    }
                    Dialect::Sqlite | Dialect::Postgres => {
                        let lapsed = |q: &mut QueryBuilder<DB>| {
                            q.push(format!(
                                "(pushq_deliveries.status = '{retrying}' OR (pushq_deliveries.status = '{sending}' AND pushq_deliveries.claimed_until < "
                            ));
                            q.push_bind(now);
                            q.push("))");
                        };
                        q.push(
                            " ON CONFLICT (push_id, target) DO UPDATE SET claim_id = CASE WHEN ",
                        );
                        lapsed(&mut q);
                        q.push(" THEN excluded.claim_id ELSE pushq_deliveries.claim_id END, claimed_until = CASE WHEN ");
                        lapsed(&mut q);
                        q.push(format!(
                            " THEN excluded.claimed_until ELSE pushq_deliveries.claimed_until END, \
                             error_code = CASE WHEN pushq_deliveries.status = '{sending}' AND pushq_deliveries.claimed_until < "
                        ));
                        q.push_bind(now);
                        q.push(format!(
                            " THEN '{TAKEN_OVER}' ELSE pushq_deliveries.error_code END, status = CASE WHEN "
                        ));
                        lapsed(&mut q);
                        q.push(format!(
                            " THEN '{sending}' ELSE pushq_deliveries.status END \
                             RETURNING push_id, target, status, claim_id, error_code"
                        ));
                        let got: Vec<ClaimRow> =
                            q.build_query_as().persistent(false).fetch_all(pool).await?;
                        states.extend(got);
                    }
                }
            });
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
            .filter(|(p, t, ..)| wanted.contains(&(p.as_str(), t.as_str())))
            .map(|(push_id, target, status, claim_id, error_code)| {
                let state = if claim_id.as_deref() == Some(claim.id.as_str()) && status == sending {
                    Claimed::Won {
                        taken_over: error_code.as_deref() == Some(TAKEN_OVER),
                    }
                } else if status == sending || status == retrying {
                    Claimed::Busy
                } else {
                    Claimed::Final
                };
                ((push_id, target), state)
            })
            .collect())
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

    /// The rows of these pushes that name a user and are not final yet (`retrying`, or
    /// `sending` under a claim that lapsed before `now`): what an earlier attempt left open, as
    /// (push id, target, user id). One statement per chunk of push ids.
    pub async fn open_user_rows(
        &self,
        push_ids: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, String, String)>> {
        let d = self.dialect;
        let mut out = Vec::new();
        for chunk in push_ids.chunks(d.max_binds() - 1) {
            self.count();
            let got: Vec<(String, String, String)> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {}, {}, {} FROM pushq_deliveries WHERE user_id IS NOT NULL \
                     AND (status = '{}' OR (status = '{}' AND claimed_until < ",
                    d.text("push_id"),
                    d.text("target"),
                    d.text("user_id"),
                    DeliveryStatus::Retrying.as_str(),
                    DeliveryStatus::Sending.as_str(),
                ));
                q.push_bind(now.timestamp_millis());
                q.push(")) AND push_id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
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

    /// (push id, target, status, claim id, error code) of the log's rows for these pushes.
    async fn claims_of(&self, rows: &[&Delivery]) -> StoreResult<Vec<ClaimRow>> {
        let push_ids: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.push_id.as_str()).collect();
        self.count();
        let d = self.dialect;
        Ok(with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {} FROM pushq_deliveries WHERE push_id IN (",
                d.text("push_id"),
                d.text("target"),
                d.text("status"),
                d.text("claim_id"),
                d.text("error_code"),
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
        let mut owners: Vec<(String, String, String, String, Option<String>)> = Vec::new();
        for chunk in claims.chunks(self.dialect.max_binds() / COLUMNS) {
            self.count();
            let d = self.dialect;
            with_pool!(self, pool, {
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
                    }
                    // A no-op update, so that RETURNING gives the owner of every pair.
                    Dialect::Sqlite | Dialect::Postgres => {
                        q.push(
                             " ON CONFLICT (app, idempotency_key, target) DO UPDATE SET push_id = pushq_key_claims.push_id \
                             RETURNING app, idempotency_key, target, push_id, payload_hash",
                        );
                        let got: Vec<(String, String, String, String, Option<String>)> =
                            q.build_query_as().persistent(false).fetch_all(pool).await?;
                        owners.extend(got);
                    }
                }
            });
        }
        if self.dialect == Dialect::MySql && !claims.is_empty() {
            let keys: std::collections::BTreeSet<&str> =
                claims.iter().map(|c| c.key.as_str()).collect();
            self.count();
            let d = self.dialect;
            owners = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {}, {}, {}, {}, {} FROM pushq_key_claims WHERE idempotency_key IN (",
                    d.text("app"),
                    d.text("idempotency_key"),
                    d.text("target"),
                    d.text("push_id"),
                    d.text("payload_hash"),
                ));
                let mut list = q.separated(", ");
                for key in keys {
                    list.push_bind(key);
                }
                q.push(")");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
        }
        Ok(owners
            .into_iter()
            .map(|(app, key, target, push_id, payload_hash)| {
                (
                    (app, key, target),
                    KeyOwner {
                        push_id,
                        payload_hash,
                    },
                )
            })
            .collect())
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
        const COLUMNS: usize = DELIVERY_COLUMNS;
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&Delivery> = rows
            .iter()
            .filter(|d| seen.insert((d.push_id.as_str(), d.target.as_str())))
            .collect();
        let (retrying, sending) = (
            DeliveryStatus::Retrying.as_str(),
            DeliveryStatus::Sending.as_str(),
        );
        let now = claim.now.max(Utc::now()).timestamp_millis();
        for chunk in rows.chunks(rows_per_statement(self.dialect, COLUMNS)) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO pushq_deliveries (push_id, app, target, user_id, status, fcm_message_id, error_code, attempts, category, idempotency_key, enqueued_at, sent_at, part, parts) ",
                );
                q.push_values(chunk, |mut b, d| {
                    b.push_bind(d.push_id.as_str())
                        .push_bind(d.app.as_str())
                        .push_bind(d.target.as_str())
                        .push_bind(d.user_id.as_deref())
                        .push_bind(d.status.as_str())
                        .push_bind(d.fcm_message_id.as_deref())
                        .push_bind(d.error_code.as_deref())
                        .push_bind(d.attempts as i32)
                        .push_bind(d.category.as_deref())
                        .push_bind(d.idempotency_key.as_deref())
                        .push_bind(d.enqueued_at)
                        .push_bind(d.sent_at)
                        .push_bind(d.part.map(|(i, _)| i as i32))
                        .push_bind(d.part.map(|(_, n)| n as i32));
                });
                // Which existing rows this batch may replace.
                let replaceable = |q: &mut QueryBuilder<DB>, table: &str| {
                    q.push(format!(
                        "({table}status = '{retrying}' OR ({table}status = '{sending}' AND ({table}claim_id = "
                    ));
                    q.push_bind(claim.id.clone());
                    q.push(format!(" OR {table}claimed_until < "));
                    q.push_bind(now);
                    q.push(")))");
                };
                match self.dialect {
                    // Assignments run in order and see the values already set: status, which
                    // the condition reads, goes last. (The claim columns are left as they are:
                    // they mean something only while a row is `sending`.)
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
                            replaceable(&mut q, "");
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
                        replaceable(&mut q, "pushq_deliveries.");
                    }
                }
                let write = q.build().persistent(false).execute(pool);
                tokio::time::timeout(per_statement, write)
                    .await
                    .map_err(|_| super::StoreError::TimedOut {
                        what: "writing the delivery log",
                        limit_ms: per_statement.as_millis() as u64,
                    })??;
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
                "SELECT {}, {}, {}, {}, {}, attempts, part, parts, {} FROM pushq_deliveries WHERE push_id = ",
                d.text("app"),
                d.text("target"),
                d.text("user_id"),
                d.text("status"),
                d.text("error_code"),
                d.text("fcm_message_id"),
            ));
            q.push_bind(push_id).push(" ORDER BY target");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(
                    app,
                    target,
                    user_id,
                    status,
                    error_code,
                    attempts,
                    part,
                    parts,
                    fcm_message_id,
                )| {
                    DeliveryRecord {
                        fcm_message_id,
                        app,
                        target,
                        user_id,
                        status,
                        error_code,
                        attempts: attempts.max(0) as u32,
                        part: part
                            .zip(parts)
                            .map(|(i, n)| (i.max(0) as u32, n.max(0) as u32)),
                    }
                },
            )
            .collect())
    }

    /// What the log knows of one push: its rows, and whether every target is final (no row is
    /// `retrying`, and every part of a split push has its rows), or why its message was
    /// rejected.
    pub async fn push_log(&self, push_id: &str) -> StoreResult<PushLog> {
        let deliveries = self.deliveries_for_push(push_id).await?;
        let scheduled = self.scheduled_push(push_id).await?;
        let cancelled = scheduled.as_ref().is_some_and(|s| s.cancelled_at.is_some());
        if deliveries.is_empty() {
            let state = match self.rejected_reason(push_id).await? {
                Some(reason) => PushLogState::Rejected(reason),
                None if cancelled => PushLogState::Cancelled,
                None => match scheduled.and_then(|s| s.send_at) {
                    Some(send_at) if send_at > Utc::now() => PushLogState::Scheduled(send_at),
                    _ => PushLogState::NothingRecorded,
                },
            };
            return Ok(PushLog { state, deliveries });
        }
        let retrying = deliveries.iter().any(|d| {
            d.status == DeliveryStatus::Retrying.as_str()
                || d.status == DeliveryStatus::Sending.as_str()
        });
        let parts = deliveries
            .iter()
            .filter_map(|d| d.part)
            .map(|(_, n)| n)
            .max();
        let seen: std::collections::HashSet<u32> = deliveries
            .iter()
            .filter_map(|d| d.part)
            .map(|(i, _)| i)
            .collect();
        let all_parts = parts.is_none_or(|n| seen.len() as u32 >= n);
        let state = if retrying || !all_parts {
            PushLogState::InProgress
        } else if cancelled {
            PushLogState::Cancelled
        } else {
            PushLogState::Final
        };
        Ok(PushLog { state, deliveries })
    }
}

/// One row of a user's delivery log ([`Store::deliveries_for_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDelivery {
    /// The push.
    pub push_id: String,
    /// The push's app.
    pub app: String,
    /// The device (token or `fid:<id>`), or `user:<id>` for a `no_devices` row.
    pub target: String,
    /// A [`DeliveryStatus`] as its column holds it.
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// The push's category.
    pub category: Option<String>,
    /// When the push was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When FCM accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// FCM's name for the message it accepted, when `sent`.
    pub fcm_message_id: Option<String>,
}

/// (push_id, app, target, status, error_code, category, enqueued_at, sent_at, fcm_message_id)
/// as selected.
type UserDeliveryRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
);

impl Store {
    /// What happened to a user's pushes: their rows enqueued since `since` (all when `None`), in
    /// `app` or every app, oldest first, at most `limit`. What support staff ask ("did U get
    /// it?"); served by the (user_id, enqueued_at) index.
    pub async fn deliveries_for_user(
        &self,
        user_id: &str,
        since: Option<DateTime<Utc>>,
        app: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<UserDelivery>> {
        self.count();
        let d = self.dialect;
        let rows: Vec<UserDeliveryRow> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {}, {}, enqueued_at, sent_at, {} FROM pushq_deliveries WHERE user_id = ",
                d.text("push_id"),
                d.text("app"),
                d.text("target"),
                d.text("status"),
                d.text("error_code"),
                d.text("category"),
                d.text("fcm_message_id"),
            ));
            q.push_bind(user_id);
            if let Some(since) = since {
                q.push(" AND enqueued_at >= ").push_bind(since);
            }
            if let Some(app) = app {
                q.push(" AND app = ").push_bind(app);
            }
            q.push(" ORDER BY enqueued_at, push_id, target LIMIT ")
                .push_bind(i64::from(limit));
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(
                    push_id,
                    app,
                    target,
                    status,
                    error_code,
                    category,
                    enqueued_at,
                    sent_at,
                    fcm_message_id,
                )| {
                    UserDelivery {
                        push_id,
                        app,
                        target,
                        status,
                        error_code,
                        category,
                        enqueued_at,
                        sent_at,
                        fcm_message_id,
                    }
                },
            )
            .collect())
    }
}

/// What the log knows of one push ([`Store::push_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushLog {
    /// How far the push has got.
    pub state: PushLogState,
    /// Its rows, by target.
    pub deliveries: Vec<DeliveryRecord>,
}

/// How far a push has got, as the log can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushLogState {
    /// Every target has its final row.
    Final,
    /// Some targets are recorded; others are `retrying` or `sending`, or a part of a split push
    /// is missing.
    InProgress,
    /// Its queue message was not a valid envelope (the reason); it will not be delivered.
    Rejected(String),
    /// Nothing recorded: on the queue, retrying as a whole, in the DLQ, or never enqueued.
    NothingRecorded,
    /// Scheduled, due at this time, and not fired yet.
    Scheduled(DateTime<Utc>),
    /// Cancelled (`cancelPush`), and every target it reached is final (`cancelled` where it
    /// was not sent before the cancel).
    Cancelled,
}
