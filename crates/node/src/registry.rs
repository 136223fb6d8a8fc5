//! `DeviceRegistry`: the devices `userId` pushes resolve to, from Node. Thin: the SQL lives in
//! pushq-delivery.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::store::{DeviceKind, NewDevice, Store};
use pushq_model::topics::Subscriber;

use crate::database::{app_value, db, iso, options_json, string_arg, LazyStore};
use crate::error::{self, BindingError};
use crate::options::{read, Misread};
use crate::settle;

/// A device to register: a registration token or a Firebase Installation ID (exactly one). A
/// missing or wrong field is a `PUSHQ_INVALID_DEVICE` error whose `field` names it.
#[napi(object, object_from_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    /// The user the device belongs to (at most 255 characters).
    pub user_id: String,
    /// The FCM registration token (at most 512 characters).
    pub token: Option<String>,
    /// The Firebase Installation ID (at most 512 characters), instead of a token: pushes to the
    /// user reach it as `fid` sends.
    pub fid: Option<String>,
    /// `android`, `ios`, `web`, … (at most 32 characters).
    pub platform: String,
    /// The app (Firebase project) it belongs to; the registry's `app` option when not given.
    pub app: Option<String>,
}

/// A registered device.
#[napi(object)]
pub struct RegisteredDevice {
    /// The app (Firebase project) it belongs to.
    pub app: String,
    /// The user.
    pub user_id: String,
    /// The FCM registration token, or the FID when `kind` is `fid`.
    pub token: String,
    /// What `token` is.
    #[napi(ts_type = "'token' | 'fid'")]
    pub kind: String,
    /// The platform given at registration.
    pub platform: String,
    /// False once FCM reported the token dead; dead tokens get no pushes.
    pub live: bool,
    /// When it was last registered (ISO-8601). A device not seen for `PUSHQ_STALE_DEVICE_DAYS`
    /// (default 270) gets no pushes, and `pushq devices prune` deletes it.
    pub last_seen_at: String,
}

/// Options of {@link DeviceRegistry.unregister} and {@link DeviceRegistry.devices}.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppOptions {
    /// Only this app's devices. `unregister` defaults to the registry's `app`; `devices` lists
    /// every app's when not given.
    pub app: Option<String>,
}

/// A device given from JS, checked: (app, user, token or FID, kind, platform).
struct CheckedDevice {
    app: String,
    user_id: String,
    token: String,
    kind: DeviceKind,
    platform: String,
}

/// Reads a device given from JS, as `PUSHQ_INVALID_DEVICE` naming the field when it is not one;
/// `app` is the registry's, for a device that names none.
fn device_from_json(
    json: Option<&str>,
    app: &str,
) -> std::result::Result<CheckedDevice, BindingError> {
    let device: Device = match json {
        // An object is required: `None` and `null` are not "no device".
        Some(json) if json.trim_start().starts_with('{') => read(Some(json), "field"),
        _ => Err(Misread {
            field: String::new(),
            problem: "must be an object".to_owned(),
        }),
    }
    .map_err(|e| BindingError::InvalidDevice {
        message: match e.field.as_str() {
            "" => "device: must be an object { userId, token | fid, platform, app? }".to_owned(),
            _ => e.message("device"),
        },
        field: Some(e.field)
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "device".to_owned()),
    })?;
    let (kind, token) = device_kind(device.token, device.fid)?;
    let device = CheckedDevice {
        app: device.app.unwrap_or_else(|| app.to_owned()),
        user_id: device.user_id,
        token,
        kind,
        platform: device.platform,
    };
    Store::check_new_device(&device.as_new()).map_err(|e| BindingError::InvalidDevice {
        field: match (e.field, kind) {
            ("token", DeviceKind::Fid) => "fid".to_owned(),
            (field, _) => field.to_owned(),
        },
        message: match (e.field, kind) {
            ("token", DeviceKind::Fid) => format!("device.fid: {}", e.problem),
            _ => format!("device.{e}"),
        },
    })?;
    Ok(device)
}

/// A `PUSHQ_INVALID_DEVICE` error naming `field` of the device.
fn invalid_device(field: &str, problem: &str) -> BindingError {
    BindingError::InvalidDevice {
        field: field.to_owned(),
        message: format!("device.{field}: {problem}"),
    }
}

/// What the device is, a registration token or a FID, and its id: exactly one must be given.
fn device_kind(
    token: Option<String>,
    fid: Option<String>,
) -> std::result::Result<(DeviceKind, String), BindingError> {
    match (token, fid) {
        (Some(token), None) => Ok((DeviceKind::Token, token)),
        (None, Some(fid)) => Ok((DeviceKind::Fid, fid)),
        (Some(_), Some(_)) => Err(invalid_device(
            "fid",
            "give a token or a fid, not both (a device is one of the two)",
        )),
        (None, None) => Err(invalid_device(
            "token",
            "missing (a registration token, or a fid, is required)",
        )),
    }
}

impl CheckedDevice {
    fn as_new(&self) -> NewDevice<'_> {
        NewDevice {
            app: &self.app,
            user_id: &self.user_id,
            token: &self.token,
            kind: self.kind,
            platform: &self.platform,
        }
    }
}

/// The `app` of {@link AppOptions}, as `PUSHQ_INVALID_ARGUMENT` when it is not one.
fn app_option(json: Option<&str>) -> std::result::Result<Option<String>, BindingError> {
    let o: AppOptions =
        read(json, "option").map_err(|e| BindingError::InvalidArgument(e.message("options")))?;
    o.app.map(app_value).transpose()
}

/// The devices of each user: what `userId` / `userIds` pushes resolve to.
/// Errors: `PUSHQ_INVALID_DEVICE` (names the field), `PUSHQ_DATABASE`.
#[napi]
pub struct DeviceRegistry {
    store: LazyStore,
}

impl DeviceRegistry {
    /// The registry's database (and app).
    pub(crate) fn store(&self) -> &LazyStore {
        &self.store
    }
}

#[napi]
impl DeviceRegistry {
    /// Opens the registry; the database is connected on first use (and its schema applied, with
    /// `migrate: true`). A failed connection is tried again on the next call.
    #[napi(constructor, ts_args_type = "options?: DatabaseOptions")]
    pub fn new(env: Env, options: Option<Unknown>) -> napi::Result<Self> {
        let json = options_json(&env, options)?;
        let store = LazyStore::new(json.as_deref(), true).map_err(|e| error::to_js(&env, &e))?;
        Ok(DeviceRegistry { store })
    }

    /// Registers a device, or refreshes a known one (same app and token or FID): it is seen
    /// now, moves to this user if another had it, and is live again if FCM had reported it dead.
    /// Call it whenever the app starts with a token, as Firebase's token guide says.
    #[napi(ts_args_type = "device: Device", ts_return_type = "Promise<void>")]
    pub fn register<'env>(
        &self,
        env: &'env Env,
        device: Unknown,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        let json = crate::stringify(env, device)?;
        let device = device_from_json(json.as_deref(), &self.store.app);
        let store = self.store.clone();
        settle(
            env,
            async move {
                let device = device?;
                let s = store.get().await?;
                let database = |e| store.database(e);
                // The token's topics before and after: a device joins its user's topics, and a
                // token that moves to another user leaves the old user's, which stay as its
                // tombstones until then, so that a call repeated after a failed enqueue finds
                // them again (FCM's topic calls take registration tokens only: a FID has none).
                let (app, token) = (&device.app, &device.token);
                let before = match device.kind {
                    DeviceKind::Token => {
                        s.token_topics_to_sync(app, token).await.map_err(database)?
                    }
                    DeviceKind::Fid => Vec::new(),
                };
                s.register(&device.as_new()).await.map_err(database)?;
                if device.kind != DeviceKind::Token {
                    return Ok(());
                }
                let after = s.token_topics_to_sync(app, token).await.map_err(database)?;
                let who = Subscriber::Token(token.clone());
                let kept = s.topics_of(app, &who).await.map_err(database)?;
                let left: Vec<String> = before
                    .iter()
                    .filter(|t| !kept.contains(t))
                    .cloned()
                    .collect();
                s.end_token_topics(app, token, &left)
                    .await
                    .map_err(database)?;
                let mut topics = after;
                topics.extend(before);
                topics.sort_unstable();
                topics.dedup();
                crate::topics::enqueue_token_topics(&device.app, &device.token, topics).await
            },
            |()| (),
        )
    }

    /// Removes a device (its token or FID) of `options.app`, else of the registry's app;
    /// resolves `true` if it was registered.
    #[napi(
        ts_args_type = "token: string, options?: AppOptions",
        ts_return_type = "Promise<boolean>"
    )]
    pub fn unregister<'env>(
        &self,
        env: &'env Env,
        token: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, bool>> {
        let token = string_arg(token, "token")?;
        let json = options_json(env, options)?;
        let app = app_option(json.as_deref());
        let default_app = self.store.app.clone();
        self.store.call(
            env,
            move |s| async move {
                let token = token?;
                let app = app?.unwrap_or(default_app);
                // Its topics, read while the device still names its user, become its tombstones
                // (found again when this call is repeated after a failed enqueue); the consumer
                // then unsubscribes the token from each, the database no longer wanting it there.
                let topics = s.token_topics_to_sync(&app, &token).await.map_err(db)?;
                s.end_token_topics(&app, &token, &topics)
                    .await
                    .map_err(db)?;
                let removed = s.unregister_device_of(&app, &token).await.map_err(db)?;
                crate::topics::enqueue_token_topics(&app, &token, topics).await?;
                Ok(removed)
            },
            |removed| removed,
        )
    }

    /// A user's devices, oldest first, live and dead: of `options.app`, or of every app.
    #[napi(
        ts_args_type = "userId: string, options?: AppOptions",
        ts_return_type = "Promise<Array<RegisteredDevice>>"
    )]
    pub fn devices<'env>(
        &self,
        env: &'env Env,
        user_id: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, Vec<RegisteredDevice>>> {
        let user_id = string_arg(user_id, "userId")?;
        let json = options_json(env, options)?;
        let app = app_option(json.as_deref());
        self.store.call(
            env,
            move |s| async move { s.devices_of(&user_id?, app?.as_deref()).await.map_err(db) },
            |devices| {
                devices
                    .into_iter()
                    .map(|d| RegisteredDevice {
                        app: d.app,
                        user_id: d.user_id,
                        token: d.token,
                        kind: d.kind.as_str().to_owned(),
                        platform: d.platform,
                        live: d.live,
                        last_seen_at: iso(d.last_seen_at),
                    })
                    .collect()
            },
        )
    }
}
