//! The delivery log: what the log already holds for a batch, the one-statement write of a
//! batch's rows, and the rows of one push read back.

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
    /// Not sent: an earlier push with the same idempotency key was already sent to this target.
    Duplicate,
    /// Not final: the send failed transiently and the message was handed back for redelivery.
    /// The final row replaces it.
    Retrying,
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
        }
    }
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

/// (target, user_id, status, error_code, attempts, part, parts) as selected.
type DeliveryRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    i32,
    Option<i32>,
    Option<i32>,
);

/// A delivery-log row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The token, `topic:<name>`, `condition:<expr>` or `user:<id>`.
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
}

/// What was already delivered, as the delivery log knows it.
#[derive(Debug, Clone, Default)]
pub struct AlreadyDone {
    /// (push id, target) pairs with a final row.
    pub by_push: std::collections::HashSet<(String, String)>,
    /// (idempotency key, target) pairs that were sent.
    pub by_key: std::collections::HashSet<(String, String)>,
}

impl Store {
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
            if status == DeliveryStatus::Retrying.as_str() {
                continue;
            }
            if let Some(key) = key.filter(|_| status == DeliveryStatus::Sent.as_str()) {
                done.by_key.insert((key, target.clone()));
            }
            done.by_push.insert((push_id, target));
        }
        Ok(done)
    }

    /// Writes delivery rows. A row already present (same push and target) stays as it is,
    /// unless it is `retrying`: then the new row replaces it, its attempts added to the old.
    /// One statement per chunk of rows, as before (the same (push, target) twice in `rows` is
    /// written once, the first).
    pub async fn record_deliveries(&self, rows: &[Delivery]) -> StoreResult<()> {
        const COLUMNS: usize = 13;
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&Delivery> = rows
            .iter()
            .filter(|d| seen.insert((d.push_id.as_str(), d.target.as_str())))
            .collect();
        let retrying = DeliveryStatus::Retrying.as_str();
        for chunk in rows.chunks(self.dialect.max_binds() / COLUMNS) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO pushq_deliveries (push_id, target, user_id, status, fcm_message_id, error_code, attempts, category, idempotency_key, enqueued_at, sent_at, part, parts) ",
                );
                q.push_values(chunk, |mut b, d| {
                    b.push_bind(d.push_id.as_str())
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
                q.push(match self.dialect {
                    // Assignments run in order and see the updated values: status goes last.
                    Dialect::MySql => format!(
                        " ON DUPLICATE KEY UPDATE \
                         fcm_message_id = IF(status = '{retrying}', VALUES(fcm_message_id), fcm_message_id), \
                         error_code = IF(status = '{retrying}', VALUES(error_code), error_code), \
                         attempts = IF(status = '{retrying}', attempts + VALUES(attempts), attempts), \
                         sent_at = IF(status = '{retrying}', VALUES(sent_at), sent_at), \
                         status = IF(status = '{retrying}', VALUES(status), status)"
                    ),
                    Dialect::Sqlite | Dialect::Postgres => format!(
                        " ON CONFLICT (push_id, target) DO UPDATE SET \
                         status = excluded.status, fcm_message_id = excluded.fcm_message_id, \
                         error_code = excluded.error_code, \
                         attempts = pushq_deliveries.attempts + excluded.attempts, \
                         sent_at = excluded.sent_at \
                         WHERE pushq_deliveries.status = '{retrying}'"
                    ),
                });
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
                "SELECT {}, {}, {}, {}, attempts, part, parts FROM pushq_deliveries WHERE push_id = ",
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
                |(target, user_id, status, error_code, attempts, part, parts)| DeliveryRecord {
                    target,
                    user_id,
                    status,
                    error_code,
                    attempts: attempts.max(0) as u32,
                    part: part
                        .zip(parts)
                        .map(|(i, n)| (i.max(0) as u32, n.max(0) as u32)),
                },
            )
            .collect())
    }

    /// What the log knows of one push: its rows, and whether every target is final (no row is
    /// `retrying`, and every part of a split push has its rows), or why its message was
    /// rejected.
    pub async fn push_log(&self, push_id: &str) -> StoreResult<PushLog> {
        let deliveries = self.deliveries_for_push(push_id).await?;
        if deliveries.is_empty() {
            let state = match self.rejected_reason(push_id).await? {
                Some(reason) => PushLogState::Rejected(reason),
                None => PushLogState::NothingRecorded,
            };
            return Ok(PushLog { state, deliveries });
        }
        let retrying = deliveries
            .iter()
            .any(|d| d.status == DeliveryStatus::Retrying.as_str());
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
        } else {
            PushLogState::Final
        };
        Ok(PushLog { state, deliveries })
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
    /// Some targets are recorded; others are `retrying`, or a part of a split push is missing.
    InProgress,
    /// Its queue message was not a valid envelope (the reason); it will not be delivered.
    Rejected(String),
    /// Nothing recorded: on the queue, retrying as a whole, in the DLQ, or never enqueued.
    NothingRecorded,
}
