//! Scheduled pushes and cancellations (`pushq_scheduled`): what a producer scheduled, so that
//! the log can say `scheduled` before the push fires, and what `cancelPush` cancelled, so that
//! a consumer records a cancelled push's targets `cancelled` instead of sending them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult};

/// A scheduled or cancelled push, as written down (and selected).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScheduledPush {
    /// The push's app, when it was scheduled here.
    pub app: Option<String>,
    /// Its target as the log names it (`userIds[3]` for a list), when it was scheduled here.
    pub target: Option<String>,
    /// When it is due, when it was scheduled here.
    pub send_at: Option<DateTime<Utc>>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Writes a scheduled push down; the same push again changes nothing.
    pub async fn record_scheduled(
        &self,
        push_id: &str,
        app: &str,
        target: &str,
        send_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(self.dialect.insert_ignoring_duplicates(
                "pushq_scheduled (push_id, app, target, send_at, created_at)",
            ));
            q.push_values([()], |mut b, ()| {
                b.push_bind(push_id)
                    .push_bind(app)
                    .push_bind(truncate(target, 600))
                    .push_bind(send_at)
                    .push_bind(Utc::now());
            });
            q.push(self.dialect.on_conflict_do_nothing());
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Forgets a scheduled push whose schedule could not be created (unless it was cancelled).
    pub async fn forget_scheduled(&self, push_id: &str) -> StoreResult<()> {
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                "DELETE FROM pushq_scheduled WHERE cancelled_at IS NULL AND push_id = ",
            );
            q.push_bind(push_id);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Records that a push is cancelled (writing its row when it was not scheduled here); a
    /// push cancelled before keeps its first time.
    pub async fn record_cancelled(&self, push_id: &str) -> StoreResult<()> {
        let now = Utc::now();
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO pushq_scheduled (push_id, created_at, cancelled_at) ",
            );
            q.push_values([()], |mut b, ()| {
                b.push_bind(push_id).push_bind(now).push_bind(now);
            });
            q.push(match self.dialect {
                Dialect::MySql => {
                    " ON DUPLICATE KEY UPDATE cancelled_at = COALESCE(cancelled_at, VALUES(cancelled_at))"
                }
                Dialect::Sqlite | Dialect::Postgres => {
                    " ON CONFLICT (push_id) DO UPDATE SET cancelled_at = COALESCE(pushq_scheduled.cancelled_at, excluded.cancelled_at)"
                }
            });
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// What is written down of one push, if anything.
    pub async fn scheduled_push(&self, push_id: &str) -> StoreResult<Option<ScheduledPush>> {
        self.count();
        let d = self.dialect;
        let row: Option<ScheduledPush> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, send_at, cancelled_at FROM pushq_scheduled WHERE push_id = ",
                d.column("app"),
                d.column("target")
            ));
            q.push_bind(push_id);
            q.build_query_as()
                .persistent(false)
                .fetch_optional(pool)
                .await?
        });
        Ok(row)
    }

    /// Which of these pushes are cancelled: one statement per batch that holds scheduled
    /// pushes.
    pub async fn cancelled_among(&self, push_ids: &[String]) -> StoreResult<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in push_ids.chunks(self.dialect.max_binds()) {
            self.count();
            let got: Vec<(String,)> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {} FROM pushq_scheduled WHERE cancelled_at IS NOT NULL AND push_id IN (",
                    self.dialect.text("push_id")
                ));
                super::push_values_list(&mut q, chunk.iter().map(String::as_str));
                q.push(")");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            out.extend(got.into_iter().map(|(id,)| id));
        }
        Ok(out)
    }
}

fn truncate(s: &str, chars: usize) -> &str {
    s.char_indices().nth(chars).map_or(s, |(i, _)| &s[..i])
}
