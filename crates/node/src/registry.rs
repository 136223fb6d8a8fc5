//! `DeviceRegistry` and `DeliveryLog`: the pushq database from Node, so `userId` targeting works
//! out of the box and local mode's results can be read back. Thin: the SQL lives in pushq-delivery.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::store::Store;
use tokio::sync::OnceCell;

use crate::error::BindingError;
use crate::settle;

/// Options of {@link DeviceRegistry} and {@link DeliveryLog}.
#[napi(object)]
pub struct DatabaseOptions {
    /// Database URL (`sqlite:`, `postgres:` or `mysql:`). Falls back to `DATABASE_URL`.
    /// @default 'sqlite://pushq-dev.db'
    pub database_url: Option<String>,
    /// Apply pushq's schema on first use. Off by default: a server never runs DDL unless asked;
    /// without it, a database whose schema is missing or older than this pushq needs is a
    /// `PUSHQ_DATABASE` error that says to run `pushq migrate`.
    /// @default false
    pub migrate: Option<bool>,
}

/// A device to register.
#[napi(object)]
pub struct Device {
    /// The user the device belongs to (at most 255 characters).
    pub user_id: String,
    /// The FCM registration token (at most 512 characters).
    pub token: String,
    /// `android`, `ios`, `web`, … (at most 32 characters).
    pub platform: String,
}

/// A registered device.
#[napi(object)]
pub struct RegisteredDevice {
    /// The user.
    pub user_id: String,
    /// The FCM registration token.
    pub token: String,
    /// The platform given at registration.
    pub platform: String,
    /// False once FCM reported the token dead; dead tokens get no pushes.
    pub live: bool,
}

/// One row of the delivery log.
#[napi(object)]
pub struct DeliveryRecord {
    /// The device token, `topic:<name>`, `condition:<expr>`, or `user:<id>` for `no_devices`.
    pub target: String,
    /// The user, when the push named users.
    pub user_id: Option<String>,
    /// `sent`, `failed`, `invalid_token` or `no_devices`.
    #[napi(ts_type = "'sent' | 'failed' | 'invalid_token' | 'no_devices'")]
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made for this target.
    pub attempts: u32,
}

/// A lazily connected store (connecting is I/O: it happens on first use, off the event loop).
/// A failed connection is not kept: the next call tries again.
#[derive(Clone)]
struct LazyStore {
    url: String,
    migrate: bool,
    store: Arc<OnceCell<Store>>,
}

impl LazyStore {
    fn new(options: Option<DatabaseOptions>) -> LazyStore {
        let migrate = options.as_ref().and_then(|o| o.migrate).unwrap_or(false);
        let url = pushq_local::database_url(options.and_then(|o| o.database_url));
        LazyStore {
            url,
            migrate,
            store: Arc::new(OnceCell::new()),
        }
    }

    async fn get(&self) -> std::result::Result<Store, BindingError> {
        self.store
            .get_or_try_init(|| async {
                let store = Store::connect(&self.url, 2).await?;
                if self.migrate {
                    store.migrate().await?;
                } else {
                    store.check_schema().await?;
                }
                Ok::<_, pushq_delivery::store::StoreError>(store)
            })
            .await
            .cloned()
            .map_err(database)
    }
}

impl LazyStore {
    /// A promise of `query` run on the store (connected first if need be), its result mapped
    /// to JS by `map`.
    fn call<'env, T, V, Fut>(
        &self,
        env: &'env Env,
        query: impl FnOnce(Store) -> Fut + Send + 'static,
        map: impl FnOnce(T) -> V + 'static,
    ) -> napi::Result<PromiseRaw<'env, V>>
    where
        Fut: std::future::Future<Output = std::result::Result<T, pushq_delivery::store::StoreError>>
            + Send,
        T: Send + 'static,
        V: ToNapiValue,
    {
        let lazy = self.clone();
        settle(
            env,
            async move { query(lazy.get().await?).await.map_err(database) },
            map,
        )
    }
}

/// A database failure as the binding reports it (the store's messages never hold a password).
fn database(e: pushq_delivery::store::StoreError) -> BindingError {
    BindingError::Database(std::sync::Arc::new(e))
}

/// The devices of each user: what `userId` / `userIds` pushes resolve to.
/// Errors: `PUSHQ_INVALID_DEVICE` (names the field), `PUSHQ_DATABASE`.
#[napi]
pub struct DeviceRegistry {
    store: LazyStore,
}

#[napi]
impl DeviceRegistry {
    /// Opens the registry; the database is connected on first use (and its schema applied, with
    /// `migrate: true`). A failed connection is tried again on the next call.
    #[napi(constructor)]
    pub fn new(options: Option<DatabaseOptions>) -> Self {
        DeviceRegistry {
            store: LazyStore::new(options),
        }
    }

    /// Registers a device, or moves an existing token to this user and marks it live again.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn register<'env>(
        &self,
        env: &'env Env,
        device: Device,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let store = self.store.clone();
        settle(
            env,
            async move {
                Store::check_device(&device.user_id, &device.token, &device.platform).map_err(
                    |e| BindingError::InvalidDevice {
                        field: e.field.to_owned(),
                        message: format!("device.{e}"),
                    },
                )?;
                let s = store.get().await?;
                s.register_device(&device.user_id, &device.token, &device.platform)
                    .await
                    .map_err(database)
            },
            |()| (),
        )
    }

    /// Removes a device; resolves `true` if it was registered.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn unregister<'env>(
        &self,
        env: &'env Env,
        token: String,
    ) -> napi::Result<PromiseRaw<'env, bool>> {
        self.store.call(
            env,
            move |s| async move { s.unregister_device(&token).await },
            |removed| removed,
        )
    }

    /// A user's devices, oldest first, live and dead.
    #[napi(ts_return_type = "Promise<Array<RegisteredDevice>>")]
    pub fn devices<'env>(
        &self,
        env: &'env Env,
        user_id: String,
    ) -> napi::Result<PromiseRaw<'env, Vec<RegisteredDevice>>> {
        self.store.call(
            env,
            move |s| async move { s.devices(&user_id).await },
            |devices| {
                devices
                    .into_iter()
                    .map(|d| RegisteredDevice {
                        user_id: d.user_id,
                        token: d.token,
                        platform: d.platform,
                        live: d.live,
                    })
                    .collect()
            },
        )
    }
}

/// Reads the delivery log: what happened to a push, per device.
#[napi]
pub struct DeliveryLog {
    store: LazyStore,
}

#[napi]
impl DeliveryLog {
    /// Opens the log; the database is connected on first use (see {@link DatabaseOptions}).
    /// A failed connection is tried again on the next call.
    #[napi(constructor)]
    pub fn new(options: Option<DatabaseOptions>) -> Self {
        DeliveryLog {
            store: LazyStore::new(options),
        }
    }

    /// The rows recorded for one push id (as `enqueuePush` returned it), by target.
    #[napi(ts_return_type = "Promise<Array<DeliveryRecord>>")]
    pub fn for_push<'env>(
        &self,
        env: &'env Env,
        push_id: String,
    ) -> napi::Result<PromiseRaw<'env, Vec<DeliveryRecord>>> {
        self.store.call(
            env,
            move |s| async move { s.deliveries_for_push(&push_id).await },
            |rows| {
                rows.into_iter()
                    .map(|r| DeliveryRecord {
                        target: r.target,
                        user_id: r.user_id,
                        status: r.status,
                        error_code: r.error_code,
                        attempts: r.attempts,
                    })
                    .collect()
            },
        )
    }
}
