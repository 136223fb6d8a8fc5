//! Local mode's queue: the envelopes a local-mode client accepted and has not delivered yet, kept
//! in the database until each is final, so that a process that exits (or is killed) right after
//! `enqueuePush` resolved loses nothing: the next local-mode process delivers what it finds.
//! Development only: the table is created on first use by local mode, not by `pushq migrate`.

use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult};

/// One stored envelope.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LocalMessage {
    /// Its queue message id (what the engine hands back by).
    pub message_id: String,
    /// The envelope.
    pub body: String,
    /// When local mode took it, in epoch milliseconds (its SQS `SentTimestamp`).
    pub sent_at_ms: i64,
    /// Why its last attempt did not make it final, if one was made.
    pub last_error: Option<String>,
}

impl Store {
    /// Creates local mode's table if it is not there.
    pub async fn ensure_local_queue(&self) -> StoreResult<()> {
        let ddl = match self.dialect {
            Dialect::Sqlite => "CREATE TABLE IF NOT EXISTS pushq_local_queue (message_id TEXT PRIMARY KEY, body TEXT NOT NULL, sent_at_ms INTEGER NOT NULL, last_error TEXT NULL)",
            Dialect::Postgres => "CREATE TABLE IF NOT EXISTS pushq_local_queue (message_id TEXT PRIMARY KEY, body TEXT NOT NULL, sent_at_ms BIGINT NOT NULL, last_error TEXT NULL)",
            Dialect::MySql => "CREATE TABLE IF NOT EXISTS pushq_local_queue (message_id VARCHAR(64) PRIMARY KEY, body LONGTEXT NOT NULL, sent_at_ms BIGINT NOT NULL, last_error TEXT NULL)",
        };
        self.count();
        with_pool!(self, pool, {
            sqlx::query(ddl).persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Stores envelopes before local mode says they are accepted; one statement.
    pub async fn store_local(&self, messages: &[LocalMessage]) -> StoreResult<()> {
        for chunk in messages.chunks(self.dialect.max_binds() / 3) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(
                    "INSERT INTO pushq_local_queue (message_id, body, sent_at_ms) ",
                );
                q.push_values(chunk, |mut b, m| {
                    b.push_bind(m.message_id.as_str())
                        .push_bind(m.body.as_str())
                        .push_bind(m.sent_at_ms);
                });
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Every stored envelope, oldest first.
    pub async fn local_messages(&self) -> StoreResult<Vec<LocalMessage>> {
        self.count();
        let d = self.dialect;
        let rows: Vec<LocalMessage> = with_pool!(self, pool, {
            let q = format!(
                "SELECT {}, {}, sent_at_ms, {} FROM pushq_local_queue ORDER BY sent_at_ms, message_id",
                d.column("message_id"),
                d.column("body"),
                d.column("last_error"),
            );
            sqlx::query_as(&q).persistent(false).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Forgets envelopes that are final (delivered, rejected, or recorded otherwise for good).
    pub async fn forget_local(&self, message_ids: &[String]) -> StoreResult<()> {
        for chunk in message_ids.chunks(self.dialect.max_binds()) {
            self.count();
            with_pool!(self, pool, {
                let mut q =
                    QueryBuilder::<DB>::new("DELETE FROM pushq_local_queue WHERE message_id IN (");
                super::push_values_list(&mut q, chunk.iter().map(String::as_str));
                q.push(")");
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Notes why envelopes are still waiting.
    pub async fn note_local_error(&self, message_ids: &[String], error: &str) -> StoreResult<()> {
        for chunk in message_ids.chunks(self.dialect.max_binds() - 1) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new("UPDATE pushq_local_queue SET last_error = ");
                q.push_bind(error);
                q.push(" WHERE message_id IN (");
                super::push_values_list(&mut q, chunk.iter().map(String::as_str));
                q.push(")");
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }
}
