//! Devices: what `userId` pushes resolve to. Registration, removal, the one-statement lookup
//! of a batch's users, and invalidation of dead tokens.

use std::collections::HashMap;

use chrono::Utc;
use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult};

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The user the device belongs to.
    pub user_id: String,
    /// The FCM registration token.
    pub token: String,
    /// `android`, `ios`, `web` or what the registering app said.
    pub platform: String,
    /// False once FCM reported the token dead.
    pub live: bool,
}

/// A device field that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidDevice {
    /// `userId`, `token` or `platform`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl Store {
    /// Registers a device for a user, or moves an existing token to this user and revives it.
    pub async fn register_device(
        &self,
        user_id: &str,
        token: &str,
        platform: &str,
    ) -> StoreResult<()> {
        let now = Utc::now();
        let upsert = match self.dialect {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), platform = VALUES(platform), updated_at = VALUES(updated_at), invalidated_at = NULL",
            _ => "ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id, platform = excluded.platform, updated_at = excluded.updated_at, invalidated_at = NULL",
        };
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO pushq_devices (user_id, token, platform, created_at, updated_at) VALUES (");
            q.push_bind(user_id)
                .push(", ")
                .push_bind(token)
                .push(", ")
                .push_bind(platform);
            q.push(", ")
                .push_bind(now)
                .push(", ")
                .push_bind(now)
                .push(") ")
                .push(upsert);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Removes a device; true if it was registered.
    pub async fn unregister_device(&self, token: &str) -> StoreResult<bool> {
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM pushq_devices WHERE token = ");
            q.push_bind(token);
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// A user's devices, live and invalidated, oldest first.
    pub async fn devices(&self, user_id: &str) -> StoreResult<Vec<Device>> {
        self.count();
        let rows: Vec<(String, String, String, String)> = with_pool!(self, pool, {
            let d = self.dialect;
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {} FROM pushq_devices WHERE user_id = ",
                d.text("user_id"),
                d.text("token"),
                d.text("platform"),
                d.text("CASE WHEN invalidated_at IS NULL THEN 'live' ELSE 'dead' END"),
            ));
            q.push_bind(user_id).push(" ORDER BY id");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(user_id, token, platform, state)| Device {
                user_id,
                token,
                platform,
                live: state == "live",
            })
            .collect())
    }

    /// Live tokens of every user in `user_ids`, in one query.
    pub async fn live_tokens(
        &self,
        user_ids: &[String],
    ) -> StoreResult<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in user_ids.chunks(self.dialect.max_binds()) {
            self.count();
            let rows: Vec<(String, String)> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                    "SELECT {}, {} FROM pushq_devices WHERE invalidated_at IS NULL AND user_id IN (",
                    self.dialect.text("user_id"),
                    self.dialect.text("token"),
                ));
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.as_str());
                }
                q.push(") ORDER BY id");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            for (user, token) in rows {
                out.entry(user).or_default().push(token);
            }
        }
        Ok(out)
    }

    /// Marks tokens dead (FCM said `UNREGISTERED` or similar), in one statement.
    pub async fn invalidate_tokens(&self, tokens: &[String]) -> StoreResult<()> {
        let now = Utc::now();
        for chunk in tokens.chunks(self.dialect.max_binds() - 1) {
            self.count();
            with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new("UPDATE pushq_devices SET invalidated_at = ");
                q.push_bind(now).push(", updated_at = ").push_bind(now);
                q.push(" WHERE invalidated_at IS NULL AND token IN (");
                let mut list = q.separated(", ");
                for t in chunk {
                    list.push_bind(t.as_str());
                }
                q.push(")");
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Checks a device before registering it: the fields must fit the schema.
    pub fn check_device(user_id: &str, token: &str, platform: &str) -> Result<(), InvalidDevice> {
        for (field, value, max) in [
            ("userId", user_id, 255),
            ("token", token, 512),
            ("platform", platform, 32),
        ] {
            let n = value.chars().count();
            if n == 0 || n > max {
                return Err(InvalidDevice {
                    field,
                    problem: format!("must be 1 to {max} characters (got {n})"),
                });
            }
            if value.contains('\0') {
                return Err(InvalidDevice {
                    field,
                    problem: "must not contain the NUL character (U+0000)".to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn devices_are_checked_against_their_columns() {
        assert!(Store::check_device("u", "t", "ios").is_ok());
        let err = Store::check_device("u\0", "t", "ios")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("userId: must not contain the NUL"), "{err}");
        let err = Store::check_device("u", &"t".repeat(513), "ios")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("token: must be 1 to 512"), "{err}");
    }
}
