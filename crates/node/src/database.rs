//! The database from Node: a lazily connected store for `DeviceRegistry`, `DeliveryLog` and a
//! client's scheduled pushes, its options, and the argument helpers they share.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::store::{Store, StoreError};
use tokio::sync::OnceCell;

use crate::error::BindingError;
use crate::options::read;
use crate::settle;

/// A database failure inside a query (the URL's source is named at connect time).
pub(crate) fn db(e: StoreError) -> BindingError {
    BindingError::Database {
        message: e.to_string(),
        cause: Some(Arc::new(e)),
    }
}

/// Options of {@link DeviceRegistry} and {@link DeliveryLog}. An unknown option is a
/// `PUSHQ_CONFIG` error, as for {@link PushClient}.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

/// How long connecting to the database may take before `PUSHQ_DATABASE` says it is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily connected store (connecting is I/O: it happens on first use, off the event loop).
/// A failed connection is not kept: the next call tries again.
#[derive(Clone)]
pub(crate) struct LazyStore {
    url: String,
    /// Where the URL came from, as errors name it: `databaseUrl`, `DATABASE_URL` or the default.
    source: &'static str,
    migrate: bool,
    /// The `app` option, else `PUSHQ_APP`, else `default`.
    pub(crate) app: String,
    store: Arc<OnceCell<Store>>,
}

impl LazyStore {
    /// From the options as JSON text (`None`: none given). `app` is an option of the
    /// registry only (`with_app`); the log is asked per call (`forUser`'s `app`).
    pub(crate) fn new(
        json: Option<&str>,
        with_app: bool,
    ) -> std::result::Result<LazyStore, BindingError> {
        let bad = |why: String| BindingError::from(pushq_producer::Error::Config(why));
        let o: DatabaseOptions = read(json, "option").map_err(|e| bad(e.message("options")))?;
        if o.app.is_some() && !with_app {
            return Err(bad(
                "options.app: unknown option (known: databaseUrl, migrate)".to_owned(),
            ));
        }
        // The database URL is resolved where local mode resolves its own: one reader of
        // `DATABASE_URL` for the binding.
        let (url, source) = pushq_local::database_url_and_source(o.database_url);
        Ok(LazyStore {
            url,
            source,
            migrate: o.migrate.unwrap_or(false),
            app: store_app(o.app, with_app)?,
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
        let message = match &e {
            StoreError::Url(why) => format!("{}: {why}", self.source),
            e => format!("{e} (database from {})", self.source),
        };
        BindingError::Database {
            message,
            cause: Some(Arc::new(e)),
        }
    }

    /// A promise of `query` run on the store (connected first if need be), its result mapped
    /// to JS by `map`.
    pub(crate) fn call<'env, T, V, Fut>(
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
}

/// The registry's app: resolved as the client's is (the `app` option, else `PUSHQ_APP`, else
/// `default`); the log's is always `default` (it is asked per call).
fn store_app(option: Option<String>, with_app: bool) -> std::result::Result<String, BindingError> {
    match with_app {
        true => Ok(pushq_producer::config::default_app(option, |name| {
            std::env::var(name).ok()
        })?),
        false => Ok(pushq_model::DEFAULT_APP.to_owned()),
    }
}

pub(crate) fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Options given from JS, as JSON text.
pub(crate) fn options_json(env: &Env, options: Option<Unknown>) -> napi::Result<Option<String>> {
    options
        .map(|o| crate::stringify(env, o))
        .transpose()
        .map(Option::flatten)
}

/// A string argument (`name` as the method's signature says it); anything else rejects the call's
/// promise with `PUSHQ_INVALID_ARGUMENT` naming the argument, never napi's own conversion error.
pub(crate) fn string_arg(
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

/// An `options.app` value (a string: the options' reader typed it): an app name, checked as a
/// push's `app` is, else `PUSHQ_INVALID_ARGUMENT`.
pub(crate) fn app_value(name: String) -> std::result::Result<String, BindingError> {
    pushq_model::check_app(&name)
        .map_err(|e| BindingError::InvalidArgument(format!("options.app: {}", e.problem)))?;
    Ok(name)
}
