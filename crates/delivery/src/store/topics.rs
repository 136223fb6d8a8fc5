//! Topic subscriptions (`pushq_topic_subscriptions`): a user's (every device the user has in the
//! app, now and later) or one token's. Servers write them ([`Store::subscribe`],
//! [`Store::unsubscribe`]) and enqueue a topic change; the consumer asks, in one query per batch,
//! which of its (app, topic, token)s the database wants subscribed ([`Store::wanted_memberships`])
//! and makes FCM agree. A device that was invalidated keeps no subscription: its token's rows are
//! not reported, and its user's no longer reach it. A token's subscription that ended (the token
//! was unsubscribed, its device unregistered or moved to another user) stays as a tombstone
//! (`ended_at`): never wanted or listed, but found by [`Store::token_topics_to_sync`], so that a
//! change whose first enqueue failed is enqueued again when the call is repeated.

use std::collections::HashSet;

use pushq_model::topics::Subscriber;
use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult};

/// One (app, topic, token): a device's membership of a topic.
pub type Membership = (String, String, String);

impl Store {
    /// Stores a subscription; true when it is new (or a token's that had ended).
    pub async fn subscribe(&self, app: &str, topic: &str, who: &Subscriber) -> StoreResult<bool> {
        let (user_id, token) = columns(who);
        if let Some(token) = token {
            // A tombstone comes back to life.
            self.count();
            let revived = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(
                    "UPDATE pushq_topic_subscriptions SET ended_at = NULL WHERE ended_at IS NOT NULL AND app = ",
                );
                q.push_bind(app).push(" AND topic = ").push_bind(topic);
                q.push(" AND token = ").push_bind(token);
                q.build()
                    .persistent(false)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            if revived > 0 {
                return Ok(true);
            }
        }
        let (insert, tail) = match self.dialect {
            Dialect::MySql => ("INSERT IGNORE INTO", ""),
            _ => ("INSERT INTO", " ON CONFLICT DO NOTHING"),
        };
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "{insert} pushq_topic_subscriptions (app, topic, user_id, token) VALUES ("
            ));
            q.push_bind(app).push(", ").push_bind(topic).push(", ");
            q.push_bind(user_id).push(", ").push_bind(token).push(")");
            q.push(tail);
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Ends a subscription (a user's is deleted, a token's left as a tombstone); true when it
    /// was stored.
    pub async fn unsubscribe(&self, app: &str, topic: &str, who: &Subscriber) -> StoreResult<bool> {
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = match who {
                Subscriber::User(_) => {
                    QueryBuilder::<DB>::new("DELETE FROM pushq_topic_subscriptions WHERE app = ")
                }
                Subscriber::Token(_) => {
                    let mut q =
                        QueryBuilder::<DB>::new("UPDATE pushq_topic_subscriptions SET ended_at = ");
                    q.push_bind(chrono::Utc::now());
                    q.push(" WHERE ended_at IS NULL AND app = ");
                    q
                }
            };
            q.push_bind(app).push(" AND topic = ").push_bind(topic);
            push_subscriber(&mut q, "", who);
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// Leaves a tombstone for each of `topics` on `token` (its device is being unregistered, or
    /// moved to a user who does not have them): one statement.
    pub async fn end_token_topics(
        &self,
        app: &str,
        token: &str,
        topics: &[String],
    ) -> StoreResult<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let upsert = match self.dialect {
            Dialect::MySql => " ON DUPLICATE KEY UPDATE ended_at = VALUES(ended_at)",
            _ => " ON CONFLICT (app, token, topic) DO UPDATE SET ended_at = excluded.ended_at",
        };
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO pushq_topic_subscriptions (app, topic, token, ended_at) ",
            );
            q.push_values(topics, |mut b, topic| {
                b.push_bind(app)
                    .push_bind(topic.as_str())
                    .push_bind(token)
                    .push_bind(now);
            });
            q.push(upsert);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Deletes every subscription of one token, tombstones too (FCM reported it dead: it needs
    /// no call again).
    pub async fn end_token_subscriptions(&self, app: &str, token: &str) -> StoreResult<u64> {
        self.count();
        Ok(with_pool!(self, pool, {
            let mut q =
                QueryBuilder::<DB>::new("DELETE FROM pushq_topic_subscriptions WHERE app = ");
            q.push_bind(app).push(" AND token = ").push_bind(token);
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// The topics a user is subscribed to in `app`; for a token, its own and those of the user
    /// whose live token device it is (none for an invalidated device; a FID takes no topics).
    /// Sorted, each once.
    pub async fn topics_of(&self, app: &str, who: &Subscriber) -> StoreResult<Vec<String>> {
        self.token_topics(app, who, false).await
    }

    /// A token's topics as [`Store::topics_of`] lists them, and its tombstones: every topic a
    /// change for this token may have to bring in line (`register` and `unregister` enqueue one
    /// for each).
    pub async fn token_topics_to_sync(&self, app: &str, token: &str) -> StoreResult<Vec<String>> {
        self.token_topics(app, &Subscriber::Token(token.to_owned()), true)
            .await
    }

    async fn token_topics(
        &self,
        app: &str,
        who: &Subscriber,
        with_tombstones: bool,
    ) -> StoreResult<Vec<String>> {
        let d = self.dialect;
        self.count();
        let rows: Vec<(String,)> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {} AS topic FROM pushq_topic_subscriptions s WHERE s.app = ",
                d.text("s.topic")
            ));
            q.push_bind(app);
            push_subscriber(&mut q, "s.", who);
            if !with_tombstones {
                q.push(" AND s.ended_at IS NULL");
            }
            if let Subscriber::Token(token) = who {
                q.push(" AND NOT EXISTS (SELECT 1 FROM pushq_devices x WHERE x.app = s.app AND x.token = s.token AND x.invalidated_at IS NOT NULL)");
                // UNION ALL: the rows are deduplicated here, byte for byte, never by a collation.
                q.push(format!(" UNION ALL SELECT {} AS topic FROM pushq_devices d JOIN pushq_topic_subscriptions s ON s.app = d.app AND s.user_id = d.user_id WHERE d.invalidated_at IS NULL AND d.kind = 'token' AND d.app = ", d.text("s.topic")));
                q.push_bind(app)
                    .push(" AND d.token = ")
                    .push_bind(token.as_str());
            }
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        let mut topics: Vec<String> = rows.into_iter().map(|(t,)| t).collect();
        topics.sort_unstable();
        topics.dedup();
        Ok(topics)
    }

    /// Which of `candidates` the database wants subscribed: the token's own subscription, or
    /// its (live) device's user's. One statement (per chunk of tokens too many to bind at once).
    pub async fn wanted_memberships(
        &self,
        candidates: &[Membership],
    ) -> StoreResult<HashSet<Membership>> {
        let asked: HashSet<&Membership> = candidates.iter().collect();
        let sorted = |pick: fn(&Membership) -> &str| {
            let mut v: Vec<&str> = candidates.iter().map(pick).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (apps, topics, tokens) = (sorted(|m| &m.0), sorted(|m| &m.1), sorted(|m| &m.2));
        let per_chunk = (self.dialect.max_binds() - 2 * (apps.len() + topics.len())) / 2;
        let mut wanted = HashSet::new();
        for chunk in tokens.chunks(per_chunk.max(1)) {
            self.count();
            let d = self.dialect;
            let rows: Vec<Membership> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {} AS app, {} AS topic, {} AS token FROM pushq_topic_subscriptions s WHERE s.token IS NOT NULL AND s.ended_at IS NULL AND NOT EXISTS (SELECT 1 FROM pushq_devices x WHERE x.app = s.app AND x.token = s.token AND x.invalidated_at IS NOT NULL)",
                    d.text("s.app"), d.text("s.topic"), d.text("s.token")
                ));
                push_in(&mut q, " AND s.app", &apps);
                push_in(&mut q, " AND s.topic", &topics);
                push_in(&mut q, " AND s.token", chunk);
                q.push(format!(
                    " UNION ALL SELECT {} AS app, {} AS topic, {} AS token FROM pushq_devices d JOIN pushq_topic_subscriptions s ON s.app = d.app AND s.user_id = d.user_id WHERE d.invalidated_at IS NULL AND d.kind = 'token'",
                    d.text("d.app"), d.text("s.topic"), d.text("d.token")
                ));
                push_in(&mut q, " AND d.app", &apps);
                push_in(&mut q, " AND s.topic", &topics);
                push_in(&mut q, " AND d.token", chunk);
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            wanted.extend(rows.into_iter().filter(|m| asked.contains(m)));
        }
        Ok(wanted)
    }
}

/// The (user_id, token) columns of a subscriber: one of them is NULL.
fn columns(who: &Subscriber) -> (Option<&str>, Option<&str>) {
    match who {
        Subscriber::User(u) => (Some(u.as_str()), None),
        Subscriber::Token(t) => (None, Some(t.as_str())),
    }
}

fn push_subscriber<'a, DB: sqlx::Database>(
    q: &mut QueryBuilder<'a, DB>,
    prefix: &str,
    who: &'a Subscriber,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match who {
        Subscriber::User(u) => q
            .push(format!(" AND {prefix}user_id = "))
            .push_bind(u.as_str()),
        Subscriber::Token(t) => q
            .push(format!(" AND {prefix}token = "))
            .push_bind(t.as_str()),
    };
}

fn push_in<'a, DB: sqlx::Database>(q: &mut QueryBuilder<'a, DB>, column: &str, values: &[&'a str])
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(format!("{column} IN ("));
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(*v);
    }
    list.push_unseparated(")");
}
