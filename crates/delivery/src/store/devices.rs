//! Devices: what `userId` pushes resolve to. Registration, removal, the one-statement lookup
//! of a batch's users, invalidation of dead tokens, and pruning of dead and stale devices.
//!
//! A device belongs to an app (a Firebase project; `default` unless named) and is a
//! registration token or a Firebase Installation ID ([`DeviceKind`]). A token is unique within
//! its app. `last_seen_at` is when it was last registered: a device not seen for the stale age
//! (`PUSHQ_STALE_DEVICE_DAYS`) is not sent to, and `pushq devices prune` deletes it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::{Dialect, Pool, Store, StoreResult, UserKeys};
use pushq_model::DEFAULT_APP;

/// What a device's id is: an FCM registration token or a Firebase Installation ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceKind {
    /// An FCM registration token (sent as `message.token`).
    Token,
    /// A Firebase Installation ID (sent as `message.fid`).
    Fid,
}

impl DeviceKind {
    /// The value of the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Token => "token",
            DeviceKind::Fid => "fid",
        }
    }

    /// The kind a `kind` column value names (`token`, `fid`).
    pub fn parse(kind: &str) -> Option<DeviceKind> {
        match kind {
            "token" => Some(DeviceKind::Token),
            "fid" => Some(DeviceKind::Fid),
            _ => None,
        }
    }

    /// The delivery log's target for a device of this kind: the token itself, `fid:<id>`.
    pub fn target(self, id: &str) -> String {
        match self {
            DeviceKind::Token => id.to_owned(),
            DeviceKind::Fid => format!("fid:{id}"),
        }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The app (Firebase project) the device belongs to.
    pub app: String,
    /// The user the device belongs to.
    pub user_id: String,
    /// The registration token or the Firebase Installation ID.
    pub token: String,
    /// Which of the two `token` is.
    pub kind: DeviceKind,
    /// `android`, `ios`, `web` or what the registering app said.
    pub platform: String,
    /// False once FCM reported the token dead.
    pub live: bool,
    /// When it was last registered.
    pub last_seen_at: DateTime<Utc>,
}

/// A device to register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDevice<'a> {
    /// The app (Firebase project); [`DEFAULT_APP`] unless the caller names one.
    pub app: &'a str,
    /// The user.
    pub user_id: &'a str,
    /// The registration token or FID.
    pub token: &'a str,
    /// Which of the two it is.
    pub kind: DeviceKind,
    /// `android`, `ios`, `web`, …
    pub platform: &'a str,
}

/// A live device a user id resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The registration token or FID.
    pub token: String,
    /// Which of the two it is.
    pub kind: DeviceKind,
}

/// What a batch's users resolve to ([`Store::resolve_devices`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Each (app, user)'s live devices that were seen recently enough, oldest first.
    pub live: HashMap<(String, String), Vec<Resolved>>,
    /// How many live devices each (app, user) has that were not seen since the stale time.
    pub stale: HashMap<(String, String), usize>,
    /// What each audience page of the batch (push id, page) covers now.
    pub pages: HashMap<(String, pushq_model::Page), super::PageDevices>,
}

/// A device field that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidDevice {
    /// `app`, `userId`, `token` or `platform`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// A live device of the users a batch resolves, as selected.
#[derive(sqlx::FromRow)]
struct ResolvedRow {
    app: String,
    user_id: String,
    token: String,
    kind: String,
    last_seen_at: DateTime<Utc>,
}

/// A device as selected.
#[derive(sqlx::FromRow)]
struct DeviceRow {
    app: String,
    user_id: String,
    token: String,
    kind: String,
    platform: String,
    /// `live`, or `dead` once invalidated.
    state: String,
    last_seen_at: DateTime<Utc>,
}

impl Store {
    /// Registers a device for a user in an app (token kind), refreshing its last-seen time; see
    /// [`Store::register`].
    pub async fn register_device(
        &self,
        user_id: &str,
        token: &str,
        platform: &str,
    ) -> StoreResult<()> {
        self.register(&NewDevice {
            app: DEFAULT_APP,
            user_id,
            token,
            kind: DeviceKind::Token,
            platform,
        })
        .await
    }

    /// Registers a device, or refreshes a known one (same app and token): it is seen now, moves
    /// to this user if another had it, and is revived if it was invalidated.
    pub async fn register(&self, device: &NewDevice<'_>) -> StoreResult<()> {
        let now = Utc::now();
        let upsert = match self.dialect {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), kind = VALUES(kind), platform = VALUES(platform), updated_at = VALUES(updated_at), last_seen_at = VALUES(last_seen_at), invalidated_at = NULL",
            _ => "ON CONFLICT (app, token) DO UPDATE SET user_id = excluded.user_id, kind = excluded.kind, platform = excluded.platform, updated_at = excluded.updated_at, last_seen_at = excluded.last_seen_at, invalidated_at = NULL",
        };
        self.count();
        with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("INSERT INTO pushq_devices (app, user_id, token, kind, platform, created_at, updated_at, last_seen_at) ");
            q.push_values([device], |mut b, d| {
                b.push_bind(d.app)
                    .push_bind(d.user_id)
                    .push_bind(d.token)
                    .push_bind(d.kind.as_str())
                    .push_bind(d.platform)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            q.push(" ").push(upsert);
            q.build().persistent(false).execute(pool).await?;
        });
        Ok(())
    }

    /// Removes an app's device; true if it was registered.
    pub async fn unregister_device_of(&self, app: &str, token: &str) -> StoreResult<bool> {
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM pushq_devices WHERE app = ");
            q.push_bind(app).push(" AND token = ").push_bind(token);
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    /// The apps in which `token` (a registration token or FID) is registered, sorted: what to
    /// tell someone who unregistered it from another app.
    pub async fn apps_of_token(&self, token: &str) -> StoreResult<Vec<String>> {
        self.count();
        let d = self.dialect;
        let apps: Vec<(String,)> = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {} FROM pushq_devices WHERE token = ",
                d.text("app")
            ));
            q.push_bind(token).push(" ORDER BY app");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(apps.into_iter().map(|(a,)| a).collect())
    }

    /// Removes a device of the `default` app; true if it was registered.
    pub async fn unregister_device(&self, token: &str) -> StoreResult<bool> {
        self.unregister_device_of(DEFAULT_APP, token).await
    }

    /// A user's devices in every app, live and invalidated, oldest first.
    pub async fn devices(&self, user_id: &str) -> StoreResult<Vec<Device>> {
        self.devices_of(user_id, None).await
    }

    /// A user's devices, in `app` or (`None`) in every app, live and invalidated, oldest first.
    pub async fn devices_of(&self, user_id: &str, app: Option<&str>) -> StoreResult<Vec<Device>> {
        self.count();
        let rows: Vec<DeviceRow> = with_pool!(self, pool, {
            let d = self.dialect;
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {}, {}, {}, {}, {}, {} AS state, last_seen_at FROM pushq_devices WHERE user_id = ",
                d.column("app"),
                d.column("user_id"),
                d.column("token"),
                d.column("kind"),
                d.column("platform"),
                d.text("CASE WHEN invalidated_at IS NULL THEN 'live' ELSE 'dead' END"),
            ));
            q.push_bind(user_id);
            if let Some(app) = app {
                q.push(" AND app = ").push_bind(app);
            }
            q.push(" ORDER BY id");
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| Device {
                app: r.app,
                user_id: r.user_id,
                token: r.token,
                kind: DeviceKind::parse(&r.kind).unwrap_or(DeviceKind::Token),
                platform: r.platform,
                live: r.state == "live",
                last_seen_at: r.last_seen_at,
            })
            .collect())
    }

    /// The live devices of every (app, user) in `users`, in one query: those seen since
    /// `stale_before` (all, when `None`) to send to, the others counted.
    pub async fn resolve_devices(
        &self,
        users: &[(String, String)],
        stale_before: Option<DateTime<Utc>>,
    ) -> StoreResult<Resolution> {
        let mut out = Resolution::default();
        let UserKeys { wanted, apps, ids } = UserKeys::of(users);
        for chunk in ids.chunks(self.dialect.max_binds() - apps.len()) {
            self.count();
            let d = self.dialect;
            let rows: Vec<ResolvedRow> = with_pool!(self, pool, {
                let mut q = QueryBuilder::<DB>::new(format!(
                        "SELECT {}, {}, {}, {}, last_seen_at FROM pushq_devices WHERE invalidated_at IS NULL AND app IN (",
                        d.column("app"),
                        d.column("user_id"),
                        d.column("token"),
                        d.column("kind"),
                    ));
                let mut list = q.separated(", ");
                for app in &apps {
                    list.push_bind(*app);
                }
                q.push(") AND user_id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(") ORDER BY id");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            for r in rows {
                if !wanted.contains(&(r.app.as_str(), r.user_id.as_str())) {
                    continue;
                }
                if stale_before.is_some_and(|t| r.last_seen_at < t) {
                    *out.stale.entry((r.app, r.user_id)).or_default() += 1;
                    continue;
                }
                let kind = DeviceKind::parse(&r.kind).unwrap_or(DeviceKind::Token);
                out.live
                    .entry((r.app, r.user_id))
                    .or_default()
                    .push(Resolved {
                        token: r.token,
                        kind,
                    });
            }
        }
        Ok(out)
    }

    /// Marks devices dead (FCM said `UNREGISTERED`, or `INVALID_ARGUMENT` naming the token):
    /// `devices` are (app, token or FID) pairs; one statement per app among them.
    pub async fn invalidate_devices(&self, devices: &[(String, String)]) -> StoreResult<()> {
        self.invalidate(devices, false).await
    }

    /// [`Store::invalidate_devices`] for registration tokens only: a FID named by a topic call
    /// (FCM's topic API takes tokens, and refuses a FID) stays live.
    pub async fn invalidate_tokens(&self, tokens: &[(String, String)]) -> StoreResult<()> {
        self.invalidate(tokens, true).await
    }

    async fn invalidate(&self, devices: &[(String, String)], only_tokens: bool) -> StoreResult<()> {
        let now = Utc::now();
        let mut by_app: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (app, token) in devices {
            by_app.entry(app.as_str()).or_default().push(token.as_str());
        }
        for (app, tokens) in by_app {
            for chunk in tokens.chunks(self.dialect.max_binds() - 3) {
                self.count();
                with_pool!(self, pool, {
                    let mut q =
                        QueryBuilder::<DB>::new("UPDATE pushq_devices SET invalidated_at = ");
                    q.push_bind(now).push(", updated_at = ").push_bind(now);
                    q.push(" WHERE invalidated_at IS NULL AND app = ")
                        .push_bind(app);
                    if only_tokens {
                        q.push(" AND kind = 'token'");
                    }
                    q.push(" AND token IN (");
                    let mut list = q.separated(", ");
                    for t in chunk {
                        list.push_bind(*t);
                    }
                    q.push(")");
                    q.build().persistent(false).execute(pool).await?;
                });
            }
        }
        Ok(())
    }

    /// How many devices [`Store::prune_devices`] would delete: the invalidated, and those not
    /// seen since `stale_before`.
    pub async fn count_prunable(&self, stale_before: DateTime<Utc>) -> StoreResult<u64> {
        self.count();
        let (n,): (i64,) = with_pool!(self, pool, {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT COUNT(*) FROM pushq_devices WHERE invalidated_at IS NOT NULL OR last_seen_at < ",
            );
            q.push_bind(stale_before);
            q.build_query_as().persistent(false).fetch_one(pool).await?
        });
        Ok(n.max(0) as u64)
    }

    /// Deletes at most `limit` devices that are invalidated or not seen since `stale_before`,
    /// oldest first; returns how many it deleted (fewer than `limit`: none are left). Bounded so
    /// that a large prune holds no long lock; call it until it returns less than `limit`.
    pub async fn prune_devices(&self, stale_before: DateTime<Utc>, limit: u32) -> StoreResult<u64> {
        const PRUNABLE: &str = "invalidated_at IS NOT NULL OR last_seen_at < ";
        self.count();
        let affected = with_pool!(self, pool, {
            let mut q = match self.dialect {
                // MySQL cannot select from the table it deletes from; it limits a DELETE itself.
                Dialect::MySql => {
                    let mut q = QueryBuilder::<DB>::new(format!(
                        "DELETE FROM pushq_devices WHERE {PRUNABLE}"
                    ));
                    q.push_bind(stale_before)
                        .push(" ORDER BY id LIMIT ")
                        .push_bind(limit as i64);
                    q
                }
                // The predicate stands again outside the subquery: on PostgreSQL a row locked by
                // a registration when the DELETE reaches it is re-checked against the outer
                // WHERE only, once that registration commits; without it, the ids selected
                // before would delete a device seen a moment ago.
                Dialect::Sqlite | Dialect::Postgres => {
                    let mut q = QueryBuilder::<DB>::new(format!(
                        "DELETE FROM pushq_devices WHERE id IN (SELECT id FROM pushq_devices WHERE {PRUNABLE}"
                    ));
                    q.push_bind(stale_before)
                        .push(" ORDER BY id LIMIT ")
                        .push_bind(limit as i64)
                        .push(format!(") AND ({PRUNABLE}"))
                        .push_bind(stale_before)
                        .push(")");
                    q
                }
            };
            q.build()
                .persistent(false)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected)
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

    /// [`Store::check_device`] and the app's name (as a push's `app`).
    pub fn check_new_device(device: &NewDevice<'_>) -> Result<(), InvalidDevice> {
        pushq_model::check_app(device.app).map_err(|e| InvalidDevice {
            field: "app",
            problem: e.problem,
        })?;
        Store::check_device(device.user_id, device.token, device.platform)
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
