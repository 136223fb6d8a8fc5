//! `DeviceRegistry` and `DeliveryLog`: the pushq database from Node, so `userId` targeting works
//! out of the box and local mode's results can be read back. Thin: the SQL lives in pushq-delivery.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::store::{DeviceKind, NewDevice, PushLogState, Store, StoreError};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::error::{self, BindingError};
use crate::settle;

/// A database failure inside a query (the URL's source is named at connect time).
fn db(e: StoreError) -> BindingError {
    BindingError::Database(e.to_string())
}

/// Options of {@link DeviceRegistry} and {@link DeliveryLog}. An unknown option is a
/// `PUSHQ_CONFIG` error, as for {@link PushClient}.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct DatabaseOptions {
    /// Database URL (`sqlite:`, `postgres:` or `mysql:`). Falls back to `DATABASE_URL`.
    /// @default 'sqlite://pushq-dev.db'
    pub database_url: Option<String>,
    /// Apply pushq's schema on first use. Off by default: a server never runs DDL unless asked;
    /// without it, a database whose schema is missing or older than this pushq needs is a
    /// `PUSHQ_DATABASE` error that says to run `pushq migrate`.
    /// @default false
    pub migrate: Option<bool>,
    /// {@link DeviceRegistry} only: the app (Firebase project) whose devices `register` and
    /// `unregister` handle when the call names none. Falls back to `PUSHQ_APP`. (A
    /// {@link DeliveryLog} takes it per call: `forUser(userId, { app })`.)
    /// @default 'default'
    pub app: Option<String>,
}

/// A device to register: a registration token or a Firebase Installation ID (exactly one). A
/// missing or wrong field is a `PUSHQ_INVALID_DEVICE` error whose `field` names it.
#[napi(object, object_from_js = false)]
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
pub struct AppOptions {
    /// Only this app's devices. `unregister` defaults to the registry's `app`; `devices` lists
    /// every app's when not given.
    pub app: Option<String>,
}

/// Options of {@link DeliveryLog.forUser}.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct ForUserOptions {
    /// Only pushes enqueued at or after this time (a `Date` or an ISO-8601 string).
    #[napi(ts_type = "Date | string")]
    pub since: Option<String>,
    /// Only this app's pushes (every app's when not given).
    pub app: Option<String>,
    /// Most rows returned, oldest first (1 to 10000).
    /// @default 1000
    pub limit: Option<u32>,
}

/// One row of a user's delivery log.
#[napi(object)]
pub struct UserDeliveryRecord {
    /// The push.
    pub push_id: String,
    /// The push's app.
    pub app: String,
    /// The device (its token, or `fid:<id>`), or `user:<id>` for `no_devices`.
    pub target: String,
    /// As in {@link DeliveryRecord.status}.
    #[napi(
        ts_type = "'sent' | 'failed' | 'invalid_token' | 'no_devices' | 'expired' | 'dry_run' | 'duplicate' | 'cancelled' | 'retrying' | 'sending'"
    )]
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// The push's category.
    pub category: Option<String>,
    /// When the push was enqueued (ISO-8601).
    pub enqueued_at: String,
    /// When FCM accepted it (ISO-8601).
    pub sent_at: Option<String>,
    /// FCM's name for the message it accepted (`projects/<id>/messages/<n>`), when `sent`: what
    /// firebase-admin's `send()` resolved with.
    pub fcm_message_id: Option<String>,
}

/// One row of the delivery log.
#[napi(object)]
pub struct DeliveryRecord {
    /// The push's app.
    pub app: String,
    /// The device token, `fid:<id>`, `topic:<name>`, `condition:<expr>`, or `user:<id>` for
    /// `no_devices`.
    pub target: String,
    /// The user, when the push named users.
    pub user_id: Option<String>,
    /// Final: `sent`, `failed`, `invalid_token`, `no_devices`, `expired` (the push's
    /// `expiresAt`, or the deployment's `PUSHQ_MAX_PUSH_AGE_SECONDS`, had passed: not sent),
    /// `dry_run` (FCM validated a dry run and delivered nothing), `duplicate` (another push
    /// with the same idempotency key owns this target; `errorCode` is `IDEMPOTENCY_KEY_REUSED`
    /// when its payload differed) or `cancelled` (`cancelPush` came first: not sent).
    /// Not final: `retrying` (the send failed transiently and the message was handed back for
    /// redelivery) or `sending` (a consumer has claimed it and is sending it).
    #[napi(
        ts_type = "'sent' | 'failed' | 'invalid_token' | 'no_devices' | 'expired' | 'dry_run' | 'duplicate' | 'cancelled' | 'retrying' | 'sending'"
    )]
    pub status: String,
    /// FCM's error code, when not sent.
    pub error_code: Option<String>,
    /// FCM requests made for this target.
    pub attempts: u32,
    /// FCM's name for the message it accepted (`projects/<id>/messages/<n>`), when `sent`: what
    /// firebase-admin's `send()` resolved with, and `sendEach()`'s `responses[i].messageId`.
    pub fcm_message_id: Option<String>,
}

/// What the delivery log knows of one push.
#[napi(object)]
pub struct PushDeliveries {
    /// The push id asked about.
    pub id: String,
    /// `delivered`: every target of the push has its final row (`deliveries`).
    /// `rejected`: its queue message was not a valid envelope (`rejectedReason` says why); it
    /// will not be delivered. `pending`: not every target is final: some are `retrying`, or a
    /// part of a split push is not recorded yet, or nothing is (the push is still on the queue,
    /// being retried, or in the dead-letter queue; the log cannot tell those apart, nor from a
    /// push that was never enqueued). `unknown`: no push can have this id (empty, over 64
    /// characters, or a pushq UUIDv7 from the future).
    /// `scheduled`: a push with `sendAt` that has not fired yet (`sendAt` says when it is due).
    /// `cancelled`: `cancelPush` cancelled it; the targets it had reached keep their rows, the
    /// others are `cancelled` once a consumer takes its copy (or have none, when none did).
    #[napi(
        ts_type = "'delivered' | 'rejected' | 'pending' | 'scheduled' | 'cancelled' | 'unknown'"
    )]
    pub state: String,
    /// The rows recorded so far, by target: one answer per target, as firebase-admin's
    /// `sendEach()` gives one response per message.
    pub deliveries: Vec<DeliveryRecord>,
    /// Targets FCM accepted (`sent`), as `sendEach()`'s `successCount`.
    pub success_count: u32,
    /// Targets that failed for good (`failed`, `invalid_token`), as `sendEach()`'s
    /// `failureCount`; targets still `retrying` are neither.
    pub failure_count: u32,
    /// Why the push's queue message was rejected, when `rejected`.
    pub rejected_reason: Option<String>,
    /// When the push is due (ISO-8601), when `scheduled`.
    pub send_at: Option<String>,
}

/// Options of {@link DeliveryLog.waitFor}. An unknown option is `PUSHQ_INVALID_ARGUMENT`.
#[napi(object, object_from_js = false, object_to_js = false)]
pub struct WaitForOptions {
    /// Longest wait, in milliseconds (1 to 3,600,000); then the promise rejects with
    /// `PUSHQ_TIMEOUT`.
    /// @default 30000
    pub timeout_ms: Option<u32>,
}

/// How long connecting to the database may take before `PUSHQ_DATABASE` says it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The option names of {@link DatabaseOptions}.
const KNOWN: [&str; 3] = ["databaseUrl", "migrate", "app"];

/// A lazily connected store (connecting is I/O: it happens on first use, off the event loop).
/// A failed connection is not kept: the next call tries again.
#[derive(Clone)]
pub(crate) struct LazyStore {
    url: String,
    /// Where the URL came from, as errors name it: `databaseUrl`, `DATABASE_URL` or the default.
    source: &'static str,
    migrate: bool,
    /// The `app` option, else `PUSHQ_APP`, else `default`.
    app: String,
    store: Arc<OnceCell<Store>>,
}

impl LazyStore {
    /// From the options as JSON text (`None`: none given). `app` is an option of the
    /// registry only (`with_app`); the log is asked per call (`forUser`'s `app`).
    fn new(json: Option<&str>, with_app: bool) -> std::result::Result<LazyStore, BindingError> {
        let bad = |why: String| BindingError::from(pushq_producer::Error::Config(why));
        let map = match json.map(serde_json::from_str::<Value>) {
            None | Some(Ok(Value::Null)) => Map::new(),
            Some(Ok(Value::Object(map))) => map,
            _ => return Err(bad("options: must be an object".to_owned())),
        };
        let (mut option, mut migrate, mut app) = (None, false, None);
        for (key, value) in map {
            match (key.as_str(), value) {
                (_, Value::Null) => {}
                ("databaseUrl", Value::String(url)) => option = Some(url).filter(|u| !u.is_empty()),
                ("migrate", Value::Bool(b)) => migrate = b,
                ("app", Value::String(name)) if with_app => app = Some(name),
                ("databaseUrl", other) => {
                    return Err(bad(format!(
                        "options.databaseUrl: must be a string (got {other})"
                    )))
                }
                ("migrate", other) => {
                    return Err(bad(format!(
                        "options.migrate: must be a boolean (got {other})"
                    )))
                }
                ("app", other) if with_app => {
                    return Err(bad(format!("options.app: must be a string (got {other})")))
                }
                (key, _) => {
                    let known = KNOWN.iter().filter(|k| with_app || **k != "app");
                    return Err(bad(format!(
                        "options.{key}: unknown option (known: {})",
                        known.copied().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        let from_env = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
        let source = match (&option, &from_env) {
            (Some(_), _) => "options.databaseUrl",
            (None, Some(_)) => "DATABASE_URL",
            (None, None) => "the default database (sqlite://pushq-dev.db)",
        };
        let app = match with_app {
            true => app
                .or_else(|| std::env::var("PUSHQ_APP").ok().filter(|a| !a.is_empty()))
                .unwrap_or_else(|| pushq_model::DEFAULT_APP.to_owned()),
            false => pushq_model::DEFAULT_APP.to_owned(),
        };
        pushq_model::check_app(&app)
            .map_err(|e| bad(format!("options.app (or PUSHQ_APP): {}", e.problem)))?;
        Ok(LazyStore {
            url: pushq_local::database_url(option),
            source,
            migrate,
            app,
            store: Arc::new(OnceCell::new()),
        })
    }

    /// The store of a client in `sqs` mode: only where `databaseUrl` or `DATABASE_URL` names
    /// one (never the development default: a server's scheduled pushes must be written down in
    /// the deployment's database, not in a file next to it).
    pub(crate) fn explicit(option: Option<String>) -> Option<LazyStore> {
        let (url, source) = pushq_local::database_url_and_source(option);
        matches!(source, "options.databaseUrl" | "DATABASE_URL").then(|| LazyStore {
            url,
            source,
            migrate: false,
            app: pushq_model::DEFAULT_APP.to_owned(),
            store: Arc::new(OnceCell::new()),
        })
    }

    pub(crate) async fn get(&self) -> std::result::Result<Store, BindingError> {
        self.store
            .get_or_try_init(|| async {
                let store = Store::connect_within(&self.url, 2, CONNECT_TIMEOUT).await?;
                if self.migrate {
                    store.migrate().await?;
                } else {
                    store.check_schema().await?;
                }
                Ok::<_, StoreError>(store)
            })
            .await
            .cloned()
            .map_err(|e| self.database(e))
    }

    /// A database failure as the binding reports it, naming where the URL came from (the
    /// store's messages never hold a password).
    pub(crate) fn database(&self, e: StoreError) -> BindingError {
        let message = match e {
            StoreError::Url(why) => format!("{}: {why}", self.source),
            e => format!("{e} (database from {})", self.source),
        };
        BindingError::Database(message)
    }

    /// A promise of `query` run on the store (connected first if need be), its result mapped
    /// to JS by `map`.
    fn call<'env, T, V, Fut>(
        &self,
        env: &'env Env,
        query: impl FnOnce(Store) -> Fut + Send + 'static,
        map: impl FnOnce(T) -> V + 'static,
    ) -> napi::Result<PromiseRaw<'env, V>>
    where
        Fut: std::future::Future<Output = std::result::Result<T, BindingError>> + Send,
        T: Send + 'static,
        V: ToNapiValue,
    {
        let lazy = self.clone();
        settle(env, async move { query(lazy.get().await?).await }, map)
    }

    /// What the log knows of one push.
    async fn push_deliveries(
        &self,
        store: &Store,
        id: &str,
    ) -> std::result::Result<PushDeliveries, BindingError> {
        let log = store.push_log(id).await.map_err(|e| self.database(e))?;
        let mut send_at = None;
        let (state, rejected_reason) = match log.state {
            PushLogState::Final => ("delivered", None),
            PushLogState::InProgress => ("pending", None),
            PushLogState::Rejected(reason) => ("rejected", Some(reason)),
            PushLogState::NothingRecorded if could_be_push_id(id) => ("pending", None),
            PushLogState::NothingRecorded => ("unknown", None),
            PushLogState::Scheduled(at) => {
                send_at = Some(iso(at));
                ("scheduled", None)
            }
            PushLogState::Cancelled => ("cancelled", None),
        };
        let count = |statuses: &[&str]| {
            log.deliveries
                .iter()
                .filter(|d| statuses.contains(&d.status.as_str()))
                .count() as u32
        };
        let (success_count, failure_count) =
            (count(&["sent"]), count(&["failed", "invalid_token"]));
        Ok(PushDeliveries {
            id: id.to_owned(),
            state: state.to_owned(),
            deliveries: log.deliveries.into_iter().map(record).collect(),
            success_count,
            failure_count,
            rejected_reason,
            send_at,
        })
    }
}

/// An id some push could have: what an envelope may carry (1 to 64 characters, no NUL; other
/// producers may use any such id, or SQS's message id), except a UUIDv7 from the future, which
/// pushq never gives out.
pub(crate) fn could_be_push_id(id: &str) -> bool {
    if !pushq_model::envelope::is_valid_id(id) {
        return false;
    }
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        return true;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match uuid.get_timestamp().map(|t| t.to_unix().0) {
        Some(seconds) if uuid.get_version_num() == 7 => seconds <= now + 60,
        _ => true,
    }
}

fn record(r: pushq_delivery::store::DeliveryRecord) -> DeliveryRecord {
    DeliveryRecord {
        app: r.app,
        target: r.target,
        user_id: r.user_id,
        status: r.status,
        error_code: r.error_code,
        attempts: r.attempts,
        fcm_message_id: r.fcm_message_id,
    }
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
    let invalid = |field: &str, problem: &str| BindingError::InvalidDevice {
        field: field.to_owned(),
        message: format!("device.{field}: {problem}"),
    };
    let Some(Value::Object(mut map)) = json.and_then(|j| serde_json::from_str(j).ok()) else {
        return Err(BindingError::InvalidDevice {
            field: "device".to_owned(),
            message: "device: must be an object { userId, token | fid, platform, app? }".to_owned(),
        });
    };
    let mut take = |field: &str, required: bool| match map.remove(field) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(invalid(field, "missing (a string is required)")),
        Some(other) => Err(invalid(field, &format!("must be a string (got {other})"))),
    };
    let user_id = take("userId", true)?.unwrap_or_default();
    let token = take("token", false)?;
    let fid = take("fid", false)?;
    let platform = take("platform", true)?.unwrap_or_default();
    let app = take("app", false)?.unwrap_or_else(|| app.to_owned());
    let (kind, token) = match (token, fid) {
        (Some(token), None) => (DeviceKind::Token, token),
        (None, Some(fid)) => (DeviceKind::Fid, fid),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "fid",
                "give a token or a fid, not both (a device is one of the two)",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "token",
                "missing (a registration token, or a fid, is required)",
            ))
        }
    };
    if let Some(key) = map.keys().next() {
        return Err(invalid(
            key,
            "unknown field (known: userId, token, fid, platform, app)",
        ));
    }
    let device = CheckedDevice {
        app,
        user_id,
        token,
        kind,
        platform,
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

/// An `options.app` value: an app name (as a push's `app`), else `PUSHQ_INVALID_ARGUMENT`.
fn app_value(value: Value) -> std::result::Result<String, BindingError> {
    let bad = |why: String| BindingError::InvalidArgument(why);
    let Value::String(name) = value else {
        return Err(bad(format!("options.app: must be a string (got {value})")));
    };
    pushq_model::check_app(&name).map_err(|e| bad(format!("options.app: {}", e.problem)))?;
    Ok(name)
}

/// The `app` of {@link AppOptions}, as `PUSHQ_INVALID_ARGUMENT` when it is not one.
fn app_option(json: Option<&str>) -> std::result::Result<Option<String>, BindingError> {
    let bad = |why: String| BindingError::InvalidArgument(why);
    let map = match json.map(serde_json::from_str::<Value>) {
        None | Some(Ok(Value::Null)) => return Ok(None),
        Some(Ok(Value::Object(map))) => map,
        _ => return Err(bad("options: must be an object { app }".to_owned())),
    };
    let mut app = None;
    for (key, value) in map {
        match (key.as_str(), value) {
            ("app", Value::Null) => {}
            ("app", value) => app = Some(app_value(value)?),
            (key, _) => return Err(bad(format!("options.{key}: unknown option (known: app)"))),
        }
    }
    Ok(app)
}

/// Most rows {@link DeliveryLog.forUser} returns by default, and at most.
const FOR_USER_LIMIT: (u32, u32) = (1000, 10_000);

/// The options of {@link DeliveryLog.forUser}: (since, app, limit); `PUSHQ_INVALID_ARGUMENT`
/// naming a wrong one.
type UserQuery = (Option<chrono::DateTime<chrono::Utc>>, Option<String>, u32);

fn for_user_options(json: Option<&str>) -> std::result::Result<UserQuery, BindingError> {
    let bad = |why: String| BindingError::InvalidArgument(why);
    let map = match json.map(serde_json::from_str::<Value>) {
        None | Some(Ok(Value::Null)) => Map::new(),
        Some(Ok(Value::Object(map))) => map,
        _ => {
            return Err(bad(
                "options: must be an object { since, app, limit }".to_owned()
            ))
        }
    };
    let (mut since, mut app, mut limit) = (None, None, FOR_USER_LIMIT.0);
    for (key, value) in map {
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("since", Value::String(text)) => {
                since = Some(
                    chrono::DateTime::parse_from_rfc3339(&text)
                        .map_err(|_| {
                            bad(format!(
                                "options.since: must be a Date or an ISO-8601 date-time with a time zone (got {text:?})"
                            ))
                        })?
                        .with_timezone(&chrono::Utc),
                )
            }
            ("app", value) => app = Some(app_value(value)?),
            ("limit", v) if v.as_u64().is_some_and(|n| (1..=u64::from(FOR_USER_LIMIT.1)).contains(&n)) => {
                limit = v.as_u64().unwrap_or_default() as u32
            }
            ("since", other) => {
                return Err(bad(format!(
                    "options.since: must be a Date or an ISO-8601 date-time with a time zone (got {other})"
                )))
            }
            ("limit", other) => {
                return Err(bad(format!(
                    "options.limit: must be 1 to {} (got {other})",
                    FOR_USER_LIMIT.1
                )))
            }
            (key, _) => {
                return Err(bad(format!(
                    "options.{key}: unknown option (known: since, app, limit)"
                )))
            }
        }
    }
    Ok((since, app, limit))
}

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `timeoutMs` of {@link WaitForOptions}; an unknown option or a wrong value is
/// `PUSHQ_INVALID_ARGUMENT` naming it.
fn wait_timeout(json: Option<&str>) -> std::result::Result<Duration, BindingError> {
    let bad = |why: String| BindingError::InvalidArgument(why);
    let map = match json.map(serde_json::from_str::<Value>) {
        None | Some(Ok(Value::Null)) => Map::new(),
        Some(Ok(Value::Object(map))) => map,
        _ => return Err(bad("options: must be an object { timeoutMs }".to_owned())),
    };
    let mut ms = 30_000;
    for (key, value) in map {
        match (key.as_str(), &value) {
            ("timeoutMs", Value::Null) => {}
            ("timeoutMs", v) => {
                ms = v
                    .as_u64()
                    .filter(|n| (1..=3_600_000).contains(n))
                    .ok_or_else(|| {
                        bad(format!("options.timeoutMs: must be 1 to 3600000 (got {v})"))
                    })?
            }
            (key, _) => {
                return Err(bad(format!(
                    "options.{key}: unknown option (known: timeoutMs)"
                )))
            }
        }
    }
    Ok(Duration::from_millis(ms))
}

/// Options given from JS, as JSON text.
fn options_json(env: &Env, options: Option<Unknown>) -> napi::Result<Option<String>> {
    options
        .map(|o| crate::stringify(env, o))
        .transpose()
        .map(Option::flatten)
}

/// A string argument (`name` as the method's signature says it); anything else rejects the call's
/// promise with `PUSHQ_INVALID_ARGUMENT` naming the argument, never napi's own conversion error.
fn string_arg(
    value: Unknown,
    name: &str,
) -> napi::Result<std::result::Result<String, BindingError>> {
    let got = match value.get_type()? {
        ValueType::String => return Ok(Ok(String::from_unknown(value)?)),
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::BigInt => "a bigint",
        ValueType::Object => "an object",
        ValueType::Function => "a function",
        ValueType::Symbol => "a symbol",
        _ => "another type",
    };
    Ok(Err(BindingError::InvalidArgument(format!(
        "{name}: must be a string (got {got})"
    ))))
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
                s.register(&device.as_new())
                    .await
                    .map_err(|e| store.database(e))
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
                s.unregister_device_of(&app, &token).await.map_err(db)
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

/// Reads the delivery log: what happened to a push, per device.
#[napi]
pub struct DeliveryLog {
    store: LazyStore,
}

#[napi]
impl DeliveryLog {
    /// Opens the log; the database is connected on first use (see {@link DatabaseOptions}).
    /// A failed connection is tried again on the next call.
    #[napi(constructor, ts_args_type = "options?: DatabaseOptions")]
    pub fn new(env: Env, options: Option<Unknown>) -> napi::Result<Self> {
        let json = options_json(&env, options)?;
        let store = LazyStore::new(json.as_deref(), false).map_err(|e| error::to_js(&env, &e))?;
        Ok(DeliveryLog { store })
    }

    /// What happened to a user's pushes: their rows, oldest first, enqueued since `since` (all
    /// when not given), in `app` (every app when not given), at most `limit` (default 1000).
    /// What support staff ask: "did U get the message we sent on Monday?"
    #[napi(
        ts_args_type = "userId: string, options?: ForUserOptions",
        ts_return_type = "Promise<Array<UserDeliveryRecord>>"
    )]
    pub fn for_user<'env>(
        &self,
        env: &'env Env,
        user_id: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, Vec<UserDeliveryRecord>>> {
        let user_id = string_arg(user_id, "userId")?;
        let json = options_json(env, options)?;
        let query = for_user_options(json.as_deref());
        self.store.call(
            env,
            move |s| async move {
                let user_id = user_id?;
                let (since, app, limit) = query?;
                s.deliveries_for_user(&user_id, since, app.as_deref(), limit)
                    .await
                    .map_err(db)
            },
            |rows| {
                rows.into_iter()
                    .map(|r| UserDeliveryRecord {
                        push_id: r.push_id,
                        app: r.app,
                        target: r.target,
                        status: r.status,
                        error_code: r.error_code,
                        category: r.category,
                        enqueued_at: iso(r.enqueued_at),
                        sent_at: r.sent_at.map(iso),
                        fcm_message_id: r.fcm_message_id,
                    })
                    .collect()
            },
        )
    }

    /// What the log knows of one push (see {@link PushDeliveries}): its rows once delivered,
    /// and otherwise whether it is pending, rejected or not a pushq push id.
    #[napi(
        ts_args_type = "pushId: string",
        ts_return_type = "Promise<PushDeliveries>"
    )]
    pub fn for_push<'env>(
        &self,
        env: &'env Env,
        push_id: Unknown,
    ) -> napi::Result<PromiseRaw<'env, PushDeliveries>> {
        let push_id = string_arg(push_id, "pushId")?;
        let lazy = self.store.clone();
        self.store.call(
            env,
            move |s| async move { lazy.push_deliveries(&s, &push_id?).await },
            |answer| answer,
        )
    }

    /// Waits until every target of the push has its final row, and resolves with them
    /// (`delivered`), or with `rejected` when its message was not a valid envelope.
    /// Rejects with `PUSHQ_TIMEOUT` after `timeoutMs` (default 30,000), and at once with
    /// `PUSHQ_INVALID_ARGUMENT` for an id no push can have (state `unknown`). The log is
    /// read every 20 ms at first, then less often, up to every second.
    #[napi(
        ts_args_type = "pushId: string, options?: WaitForOptions",
        ts_return_type = "Promise<PushDeliveries>"
    )]
    pub fn wait_for<'env>(
        &self,
        env: &'env Env,
        push_id: Unknown,
        options: Option<Unknown>,
    ) -> napi::Result<PromiseRaw<'env, PushDeliveries>> {
        let push_id = string_arg(push_id, "pushId")?;
        let json = options_json(env, options)?;
        // A bad option rejects the promise, as every other failure here does.
        let timeout = wait_timeout(json.as_deref());
        let lazy = self.store.clone();
        self.store.call(
            env,
            move |s| async move {
                let push_id = push_id?;
                let timeout = timeout?;
                let deadline = tokio::time::Instant::now() + timeout;
                let mut pause = Duration::from_millis(20);
                loop {
                    let answer = lazy.push_deliveries(&s, &push_id).await?;
                    match answer.state.as_str() {
                        "delivered" | "rejected" | "cancelled" => return Ok(answer),
                        "unknown" => {
                            return Err(BindingError::InvalidArgument(format!(
                                "pushId: {push_id:?} cannot be a push id (enqueuePush resolves with {{ id }}, a UUIDv7; ids are 1 to 64 characters)"
                            )))
                        }
                        _ => {}
                    }
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(BindingError::Timeout(format!(
                            "push {push_id} has no final delivery after {} ms: it is still on the queue, being retried, or in the dead-letter queue",
                            timeout.as_millis()
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            },
            |answer| answer,
        )
    }
}
