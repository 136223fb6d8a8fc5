//! The delivery log: what the log already holds for a batch, the one-statement write of a
//! batch's rows, and the rows of one push read back.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Pool, Store, StoreResult};

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
            if let Some(key) = key.filter(|_| status == DeliveryStatus::Sent.as_str()) {
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
                        .push_bind(d.status.as_str())
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
}
