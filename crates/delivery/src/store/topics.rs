//! Topic subscriptions (`pushq_topic_subscriptions`): a user's (every device the user has in the
//! app, now and later) or one token's. Servers write them ([`Store::subscribe`],
//! [`Store::unsubscribe`]) and enqueue a topic change; the consumer asks, in one query per batch,
//! which of its (app, topic, token)s the database wants subscribed ([`Store::wanted_memberships`])
//! and makes FCM agree. A device that was invalidated keeps no subscription: its token's rows are
//! not reported, and its user's no longer reach it.

use std::collections::HashSet;

use pushq_model::topics::Subscriber;
use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult};

/// One (app, topic, token): a device's membership of a topic.
pub type Membership = (String, String, String);

impl Store {
    /// Stores a subscription; true when it is new.
    pub async fn subscribe(&self, app: &str, topic: &str, who: &Subscriber) -> StoreResult<bool> {
        let (user_id, token) = columns(who);
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

    /// Removes a subscription; true when it was stored.
    pub async fn unsubscribe(&self, app: &str, topic: &str, who: &Subscriber) -> StoreResult<bool> {
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q =
                QueryBuilder::<DB>::new("DELETE FROM pushq_topic_subscriptions WHERE app = ");
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

    /// Removes every subscription of one token (its device was unregistered); the topics it had.
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
        let d = self.dialect;
        self.count();
        let rows: Vec<(String,)> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {} AS topic FROM pushq_topic_subscriptions s WHERE s.app = ",
                d.text("s.topic")
            ));
            q.push_bind(app);
            push_subscriber(&mut q, "s.", who);
            if let Subscriber::Token(token) = who {
                q.push(" AND NOT EXISTS (SELECT 1 FROM pushq_devices x WHERE x.app = s.app AND x.token = s.token AND x.invalidated_at IS NOT NULL)");
                q.push(format!(" UNION SELECT {} AS topic FROM pushq_devices d JOIN pushq_topic_subscriptions s ON s.app = d.app AND s.user_id = d.user_id WHERE d.invalidated_at IS NULL AND d.kind = 'token' AND d.app = ", d.text("s.topic")));
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
                    "SELECT {} AS app, {} AS topic, {} AS token FROM pushq_topic_subscriptions s WHERE s.token IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pushq_devices x WHERE x.app = s.app AND x.token = s.token AND x.invalidated_at IS NOT NULL)",
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
