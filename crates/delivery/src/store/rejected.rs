//! Rejected queue messages: bodies that are not envelopes, kept with the reason.

use chrono::Utc;
use sqlx::QueryBuilder;

use super::{Pool, Store, StoreResult};

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

impl Store {
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

    /// Why the envelope of push `push_id` was rejected, if it was (its body is searched for
    /// `"id":"<push_id>"`; an id holding `%`, `_`, a backslash or a quote is not searched for).
    pub async fn rejected_reason(&self, push_id: &str) -> StoreResult<Option<String>> {
        if push_id.contains(['%', '_', '\\', '"']) {
            return Ok(None);
        }
        self.count();
        let reason: Option<(String,)> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {} FROM pushq_rejected WHERE body LIKE ",
                self.dialect.text("reason")
            ));
            q.push_bind(format!("%\"id\":\"{push_id}\"%"));
            q.push(" LIMIT 1");
            q.build_query_as()
                .persistent(false)
                .fetch_optional(pool)
                .await?
        });
        Ok(reason.map(|(r,)| r))
    }
}
