//! The delivery log read back: one push's rows and how far it has got, and one user's rows.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::deliveries::DeliveryStatus;
use super::{Pool, Store, StoreResult};

/// A delivery-log row as selected.
#[derive(sqlx::FromRow)]
struct DeliveryRow {
    app: String,
    target: String,
    user_id: Option<String>,
    status: String,
    error_code: Option<String>,
    attempts: i32,
    part: Option<i32>,
    parts: Option<i32>,
    fcm_message_id: Option<String>,
}

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

impl Store {
    /// The delivery log of one push, by target.
    pub async fn deliveries_for_push(&self, push_id: &str) -> StoreResult<Vec<DeliveryRecord>> {
        self.count();
        let d = self.dialect;
        let rows: Vec<DeliveryRow> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {}, attempts, part, parts, {} FROM pushq_deliveries WHERE push_id = ",
                d.column("app"),
                d.column("target"),
                d.column("user_id"),
                d.column("status"),
                d.column("error_code"),
                d.column("fcm_message_id"),
            ));
            q.push_bind(push_id).push(" ORDER BY target");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| DeliveryRecord {
                app: r.app,
                target: r.target,
                user_id: r.user_id,
                status: r.status,
                error_code: r.error_code,
                attempts: r.attempts.max(0) as u32,
                part: r
                    .part
                    .zip(r.parts)
                    .map(|(i, n)| (i.max(0) as u32, n.max(0) as u32)),
                fcm_message_id: r.fcm_message_id,
            })
            .collect())
    }

    /// What the log knows of one push: its rows, and whether every target is final (no row is
    /// `retrying`, and every part of a split push has its rows), or why its message was
    /// rejected.
    pub async fn push_log(&self, push_id: &str) -> StoreResult<PushLog> {
        let scheduled = self.scheduled_push(push_id).await?;
        let cancelled = scheduled.as_ref().is_some_and(|s| s.cancelled_at.is_some());
        if let Some(progress) = self.audience_progress(push_id).await? {
            return Ok(audience_log(progress, cancelled));
        }
        let deliveries = self.deliveries_for_push(push_id).await?;
        if deliveries.is_empty() {
            let state = match self.rejected_reason(push_id).await? {
                Some(reason) => PushLogState::Rejected(reason),
                None if cancelled => PushLogState::Cancelled,
                None => match scheduled.and_then(|s| s.send_at) {
                    Some(send_at) if send_at > Utc::now() => PushLogState::Scheduled(send_at),
                    _ => PushLogState::NothingRecorded,
                },
            };
            return Ok(PushLog {
                state,
                deliveries,
                audience: None,
            });
        }
        // Not final: handed back, claimed, or deferred by a recipient rule.
        let retrying = deliveries.iter().any(|d| {
            d.status == DeliveryStatus::Retrying.as_str()
                || d.status == DeliveryStatus::Sending.as_str()
                || d.status == DeliveryStatus::Deferred.as_str()
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
        Ok(PushLog {
            state,
            deliveries,
            audience: None,
        })
    }
}

/// What the log says of an audience push: its counts and expansion, never its rows. Final once
/// the expansion is over and every page it wrote is done, with no row left `retrying`,
/// `sending` or `deferred`.
fn audience_log(progress: super::AudienceProgress, cancelled: bool) -> PushLog {
    use super::AudienceState;
    let open = [
        DeliveryStatus::Retrying,
        DeliveryStatus::Sending,
        DeliveryStatus::Deferred,
    ]
    .iter()
    .any(|s| progress.counts.get(s.as_str()).is_some_and(|n| *n > 0));
    let e = &progress.expansion;
    let pages_over = match e.state {
        AudienceState::Expanding => false,
        AudienceState::Expanded => progress.pages_done >= e.pages,
        // Stopped: the pages written before the cancel are taken by consumers (their targets
        // `cancelled`), each done once taken.
        AudienceState::Cancelled => progress.pages_done >= e.pages,
        // A segment that could not be read: the pages written before (if any) still count.
        AudienceState::Failed => progress.pages_done >= e.pages,
    };
    let state = if open || !pages_over {
        PushLogState::InProgress
    } else if cancelled || e.state == AudienceState::Cancelled {
        PushLogState::Cancelled
    } else {
        PushLogState::Final
    };
    PushLog {
        state,
        deliveries: Vec::new(),
        audience: Some(progress),
    }
}

/// One row of a user's delivery log ([`Store::deliveries_for_user`]), as selected.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
        let rows: Vec<UserDelivery> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {}, {}, enqueued_at, sent_at, {} FROM pushq_deliveries WHERE user_id = ",
                d.column("push_id"),
                d.column("app"),
                d.column("target"),
                d.column("status"),
                d.column("error_code"),
                d.column("category"),
                d.column("fcm_message_id"),
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
        Ok(rows)
    }
}

/// What the log knows of one push ([`Store::push_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushLog {
    /// How far the push has got.
    pub state: PushLogState,
    /// Its rows, by target (none for an audience push: see `audience`).
    pub deliveries: Vec<DeliveryRecord>,
    /// For an audience push: its expansion and its rows counted by status.
    pub audience: Option<super::AudienceProgress>,
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
