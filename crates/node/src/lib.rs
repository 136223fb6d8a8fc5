//! pushq for Node.js: `PushClient` and `enqueuePush`, a thin napi layer over pushq-producer
//! (with pushq-local as the transport of local mode).
//! Pushes cross into Rust as `JSON.stringify` text, which is also what the queue envelope carries.

pub mod database;
pub mod delivery_log;
mod error;
pub mod options;
pub mod preferences;
pub mod push_types;
pub mod registry;
pub mod schedule;
pub mod topics;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_local::LocalDelivery;
use pushq_model::InvalidPush;
use pushq_producer::sqs::SqsTransport;
use pushq_producer::{Mode, Pending, PendingGuard, Producer, ProducerConfig, Ticket, Transport};

use crate::error::BindingError;
pub use error::is_pushq_error;
pub use options::PushClientOptions;

type BindingResult<T> = std::result::Result<T, BindingError>;

/// What `enqueuePush` resolves to once SQS has accepted the push.
#[napi(object)]
pub struct Enqueued {
    /// The push id (a UUIDv7): the same id the delivery log records for every device.
    pub id: String,
}

/// A client that puts pushes on the queue. Create one per process and share it.
#[napi]
pub struct PushClient {
    client: Arc<Client>,
}

/// What `PushClient` and the module-level functions share: the producer, local mode's
/// in-process delivery, and the promises not yet settled in JS.
pub(crate) struct Client {
    pub(crate) producer: Producer,
    /// Local mode's delivery, whose work goes on after a push's promise resolved.
    local: Option<Arc<LocalDelivery>>,
    /// `sqs` mode: the database named by `databaseUrl` or `DATABASE_URL`, if any (scheduled
    /// pushes and cancellations are written there).
    store: Option<database::LazyStore>,
    /// Whether a keep-alive promise is out (local mode).
    keeping_alive: Arc<AtomicBool>,
    /// The client's promises not yet settled in JS (one guard each, dropped on the JS thread
    /// once its promise is settled). `close()` resolves only after all of them, so that code
    /// after `await client.close()` sees every earlier push settled.
    pub(crate) in_flight: Arc<Pending>,
}

impl Client {
    /// Waits until every push handed over so far has been answered (and, in local mode,
    /// delivered or given up), then reports what local mode failed to deliver meanwhile.
    async fn flushed(&self) -> BindingResult<()> {
        self.producer.flush().await;
        self.settled().await
    }

    async fn closed(&self) -> BindingResult<()> {
        self.producer.close().await;
        self.settled().await
    }

    async fn settled(&self) -> BindingResult<()> {
        if let Some(local) = &self.local {
            local.idle().await;
            // What is stored and not final, also from an earlier process, is tried again.
            local.deliver_stored().await;
        }
        self.in_flight.idle().await;
        match self.local.as_ref().and_then(|l| l.take_failures()) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// In local mode, keeps Node alive until the deliveries under way are done, as a pending
    /// `fetch` would: a promise that settles then, which no one awaits. One such promise at a
    /// time; idle, nothing is held.
    /// `cancelPush`: deletes the push's schedule if it has not fired, and records the
    /// cancellation unless every target is final already.
    async fn cancel(&self, id: String) -> BindingResult<schedule::Cancelled> {
        if !delivery_log::could_be_push_id(&id) {
            return Err(BindingError::InvalidArgument(format!(
                "pushId: {id:?} cannot be a push id (enqueuePush resolves with {{ id }}, a UUID)"
            )));
        }
        if let Some(local) = &self.local {
            let store = local.store().await?;
            return schedule::cancel(store, id, false)
                .await
                .map_err(database::db);
        }
        let Some(lazy) = &self.store else {
            return Err(pushq_producer::Error::Config(
                "databaseUrl: not set (option databaseUrl or DATABASE_URL): cancelPush records the cancellation in the deployment's database, where consumers look for it".into(),
            )
            .into());
        };
        let store = lazy.get().await?;
        let deleted = self.producer.cancel_schedule(&id).await?;
        schedule::cancel(&store, id, deleted)
            .await
            .map_err(|e| lazy.database(e))
    }

    fn keep_alive_while_delivering(&self, env: &Env) {
        let Some(local) = &self.local else { return };
        if self.keeping_alive.swap(true, Ordering::SeqCst) {
            return;
        }
        let (local, keeping_alive) = (local.clone(), self.keeping_alive.clone());
        let unanswered = self.producer.unanswered();
        let _ = env.spawn_future(async move {
            loop {
                // The producer's unanswered messages, then the deliveries they became: local
                // mode counts a delivery before it answers the producer, so no push slips between.
                unanswered.idle().await;
                local.idle().await;
                keeping_alive.store(false, Ordering::SeqCst);
                // A push handed over just now saw the flag still set and started no waiter of
                // its own: it is counted already, so look again before letting go.
                if unanswered.count() == 0 && !local.is_busy() {
                    return Ok(());
                }
                if keeping_alive.swap(true, Ordering::SeqCst) {
                    return Ok(());
                }
            }
        });
    }
}

#[napi]
impl PushClient {
    /// Creates a client. Options fall back to environment variables (see {@link PushClientOptions}).
    /// Throws an `Error` with `code` `PUSHQ_CONFIG` when the configuration is unusable,
    /// e.g. no queue URL in `sqs` mode.
    #[napi(constructor, ts_args_type = "options?: PushClientOptions")]
    pub fn new(env: Env, options: Option<Unknown>) -> Result<Self> {
        let options = options.map(|o| stringify(&env, o)).transpose()?.flatten();
        start_client(options.as_deref())
            .map(|client| PushClient { client })
            .map_err(|e| error::to_js(&env, &e))
    }

    /// Puts one push on the queue. Resolves once SQS has accepted it; rejects with
    /// `PUSHQ_INVALID_PUSH` (the error's `field` names the field), `PUSHQ_TOO_LARGE`, `PUSHQ_CONFIG`,
    /// `PUSHQ_QUEUE` or `PUSHQ_CLOSED` (and, in local mode, `PUSHQ_DATABASE`). A rejected push
    /// was not enqueued.
    ///
    /// `dryRun`, as in firebase-admin's `send(message, dryRun)`: FCM validates the push for each
    /// target (`validate_only`) and delivers it to no one; the log records `dry_run`.
    #[napi(ts_args_type = "push: Push, dryRun?: boolean")]
    pub fn enqueue_push<'env>(
        &self,
        env: &'env Env,
        push: Unknown,
        dry_run: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Enqueued>> {
        enqueue_one(env, &self.client, push, dry_run)
    }

    /// Puts several pushes on the queue. All are validated first: if any is invalid the promise
    /// rejects (`field` is `pushes[i].…`) and none is enqueued. Resolves, in order, once SQS has
    /// accepted every one; on `PUSHQ_QUEUE` the others may have been enqueued.
    ///
    /// `dryRun` applies to every push, as in firebase-admin's `sendEach(messages, dryRun)`.
    #[napi(
        ts_args_type = "pushes: Array<Push>, dryRun?: boolean",
        ts_return_type = "Promise<Array<Enqueued>>"
    )]
    pub fn enqueue_pushes<'env>(
        &self,
        env: &'env Env,
        pushes: Unknown,
        dry_run: Option<Unknown>,
    ) -> Result<PromiseRaw<'env, Vec<Enqueued>>> {
        let client = &self.client;
        let tickets = dry_run_flag(env, dry_run).and_then(|dry_run| {
            let json = stringify(env, pushes)?.ok_or_else(|| error::to_js(env, &not_a_list()))?;
            client
                .producer
                .enqueue_json_many(&json, dry_run)
                .map_err(|e| error::to_js(env, &e.into()))
        });
        let settling = client.in_flight.enter();
        match tickets {
            Ok(tickets) => {
                client.keep_alive_while_delivering(env);
                settle(env, accept_all(tickets), move |ids| {
                    drop(settling);
                    ids.into_iter().map(|id| Enqueued { id }).collect()
                })
            }
            Err(e) => rejected(env, e, Some(settling)),
        }
    }

    /// Cancels a push enqueued with `sendAt` (or any push still on the queue): deletes its
    /// EventBridge Scheduler schedule if it has not fired, and records the cancellation in the
    /// database (`databaseUrl` / `DATABASE_URL`), so that a copy already on the queue is recorded
    /// `cancelled` for each target instead of being sent. What was sent before stays sent.
    /// Resolves `{ id, cancelled: false }` when every target was already final. Rejects with
    /// `PUSHQ_INVALID_ARGUMENT` for an id no push can have, `PUSHQ_CONFIG` without a database,
    /// `PUSHQ_QUEUE` when the scheduler refused, `PUSHQ_DATABASE`.
    #[napi(ts_args_type = "pushId: string", ts_return_type = "Promise<Cancelled>")]
    pub fn cancel_push<'env>(
        &self,
        env: &'env Env,
        push_id: Unknown,
    ) -> Result<PromiseRaw<'env, schedule::Cancelled>> {
        let push_id = database::string_arg(push_id, "pushId")?;
        let client = self.client.clone();
        settle(env, async move { client.cancel(push_id?).await }, |c| c)
    }

    /// Resolves once every push handed over so far has been answered by SQS, without closing
    /// the client. In local mode it also waits for their deliveries, and rejects with
    /// `PUSHQ_DELIVERY` naming the pushes that could not be delivered since the last
    /// `flush()`/`close()`. It waits until the client has nothing unanswered, so pushes handed
    /// over while it waits are waited for too.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let client = self.client.clone();
        settle(env, async move { client.flushed().await }, |()| ())
    }

    /// Stops accepting pushes and resolves once every push already handed over has been
    /// answered by SQS (in local mode: delivered, else the promise rejects with
    /// `PUSHQ_DELIVERY`, as `flush()` does). Later pushes reject with `PUSHQ_CLOSED`. Safe to
    /// call more than once.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        let client = self.client.clone();
        settle(env, async move { client.closed().await }, |()| ())
    }
}

/// Puts one push on the queue with the default client, configured from the environment
/// (`PUSHQ_QUEUE_URL`, `AWS_REGION`, `AWS_ENDPOINT_URL_SQS`, `PUSHQ_MODE`) and created on first
/// use. Same arguments, results and errors as {@link PushClient.enqueuePush}.
#[napi(ts_args_type = "push: Push, dryRun?: boolean")]
pub fn enqueue_push<'env>(
    env: &'env Env,
    push: Unknown,
    dry_run: Option<Unknown>,
) -> Result<PromiseRaw<'env, Enqueued>> {
    match the_default_client() {
        Ok(client) => enqueue_one(env, &client, push, dry_run),
        Err(e) => rejected(env, error::to_js(env, &e), None),
    }
}

/// {@link PushClient.cancelPush} on the default client (configured from the environment).
#[napi(ts_args_type = "pushId: string", ts_return_type = "Promise<Cancelled>")]
pub fn cancel_push<'env>(
    env: &'env Env,
    push_id: Unknown,
) -> Result<PromiseRaw<'env, schedule::Cancelled>> {
    // The argument first: a wrong one is the caller's, whatever the environment.
    let push_id = match database::string_arg(push_id, "pushId")? {
        Ok(id) => id,
        Err(e) => return rejected(env, error::to_js(env, &e), None),
    };
    match the_default_client() {
        Ok(client) => settle(env, async move { client.cancel(push_id).await }, |c| c),
        Err(e) => rejected(env, error::to_js(env, &e), None),
    }
}

/// {@link PushClient.flush} for the default client (resolves at once if it was never used).
/// While a module-level `close()` is under way, it waits for that client.
#[napi(ts_return_type = "Promise<void>")]
pub fn flush(env: &Env) -> Result<PromiseRaw<'_, ()>> {
    let client = default_client(false)
        .map_err(|e| error::to_js(env, &e))?
        .or_else(last_closed);
    settle(
        env,
        async move {
            match client {
                Some(client) => client.flushed().await,
                None => Ok(()),
            }
        },
        |()| (),
    )
}

/// {@link PushClient.close} for the default client. A later module-level `enqueuePush` starts
/// a new default client, so a script may end with `await close()` and a test may run again.
/// Called again before the first has finished, it waits for the same client.
#[napi(ts_return_type = "Promise<void>")]
pub fn close(env: &Env) -> Result<PromiseRaw<'_, ()>> {
    let taken = DEFAULT.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(client) = &taken {
        *LAST_CLOSED.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
    }
    let client = taken.or_else(last_closed);
    settle(
        env,
        async move {
            match client {
                Some(client) => client.closed().await,
                None => Ok(()),
            }
        },
        |()| (),
    )
}

/// The module-level client, created from the environment on first success. A configuration
/// error is reported to that call and not kept: a later call with a fixed environment works.
static DEFAULT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// The default client most recently closed by the module-level `close()`, so that a second
/// `close()` or a `flush()` meanwhile waits for its deliveries too.
static LAST_CLOSED: Mutex<Option<Arc<Client>>> = Mutex::new(None);

fn last_closed() -> Option<Arc<Client>> {
    LAST_CLOSED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// The default client; created if `create` and there is none yet.
pub(crate) fn default_client(create: bool) -> BindingResult<Option<Arc<Client>>> {
    let mut slot = DEFAULT.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() && create {
        *slot = Some(start_client(None)?);
    }
    Ok(slot.clone())
}

/// The default client, created from the environment if there is none yet.
pub(crate) fn the_default_client() -> BindingResult<Arc<Client>> {
    Ok(default_client(true)?.expect("the default client is created when asked"))
}

fn start_client(options_json: Option<&str>) -> BindingResult<Arc<Client>> {
    let options = options::from_json(options_json)?;
    let config = ProducerConfig::resolve(options.producer)?;
    let (transport, local, store): (Arc<dyn Transport>, _, _) = match config.mode {
        Mode::Sqs => (
            SqsTransport::new(config.clone()),
            None,
            database::LazyStore::explicit(options.database_url),
        ),
        Mode::Local => {
            let local = LocalDelivery::new(options.database_url)?;
            (local.clone(), Some(local), None)
        }
    };
    let book = store
        .clone()
        .map(|s| Arc::new(schedule::StoreBook(s)) as Arc<dyn pushq_producer::ScheduleBook>);
    let scheduler = pushq_producer::Scheduler::new(config.clone(), book);
    let runtime =
        within_runtime_if_available(tokio::runtime::Handle::try_current).map_err(|_| {
            pushq_producer::Error::Config(
                "no async runtime is available in this Node environment".into(),
            )
        })?;
    Ok(Arc::new(Client {
        producer: Producer::start(config, transport, &runtime).with_scheduler(scheduler),
        local,
        store,
        keeping_alive: Arc::default(),
        in_flight: Arc::default(),
    }))
}

fn enqueue_one<'env>(
    env: &'env Env,
    client: &Client,
    push: Unknown,
    dry_run: Option<Unknown>,
) -> Result<PromiseRaw<'env, Enqueued>> {
    let settling = client.in_flight.enter();
    let ticket = dry_run_flag(env, dry_run).and_then(|dry_run| {
        let json = stringify(env, push)?.ok_or_else(|| error::to_js(env, &not_an_object()))?;
        client
            .producer
            .enqueue_json(&json, dry_run)
            .map_err(|e| error::to_js(env, &e.into()))
    });
    match ticket {
        Ok(ticket) => {
            client.keep_alive_while_delivering(env);
            settle(
                env,
                async move { Ok(ticket.accepted().await?.id) },
                move |id| {
                    drop(settling);
                    Enqueued { id }
                },
            )
        }
        Err(e) => rejected(env, e, Some(settling)),
    }
}

/// The `dryRun` argument: a boolean, or nothing (a real push).
fn dry_run_flag(env: &Env, value: Option<Unknown>) -> Result<bool> {
    let Some(value) = value else { return Ok(false) };
    match value.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(false),
        ValueType::Boolean => value.coerce_to_bool(),
        other => Err(error::to_js(
            env,
            &InvalidPush::new(
                "dryRun",
                format!("must be a boolean, as in firebase-admin's send(message, dryRun) (got a {other:?})"),
            )
            .into(),
        )),
    }
}

pub(crate) async fn accept_all(tickets: Vec<Ticket>) -> BindingResult<Vec<String>> {
    let mut ids = Vec::with_capacity(tickets.len());
    let mut first_error = None;
    // Await every ticket, so the caller's promise settles only when SQS has answered for all.
    for ticket in tickets {
        match ticket.accepted().await {
            Ok(e) => ids.push(e.id),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(ids), |e| Err(e.into()))
}

/// A promise settled on the JS thread: `Ok` through `map`, an error as a `PUSHQ_*` error.
/// Every promise the binding returns is settled here.
pub(crate) fn settle<'env, T, V>(
    env: &'env Env,
    work: impl Future<Output = BindingResult<T>> + Send + 'static,
    map: impl FnOnce(T) -> V + 'static,
) -> Result<PromiseRaw<'env, V>>
where
    T: Send + 'static,
    V: ToNapiValue,
{
    env.spawn_future_with_callback(
        async move { Ok(work.await) },
        move |env, outcome| match outcome {
            Ok(value) => Ok(map(value)),
            Err(e) => Err(error::to_js(env, &e)),
        },
    )
}

/// An already rejected promise (bad input is reported the same way as a queue failure).
fn rejected<'env, V: ToNapiValue + 'static>(
    env: &'env Env,
    error: napi::Error,
    settling: Option<PendingGuard>,
) -> Result<PromiseRaw<'env, V>> {
    env.spawn_future_with_callback(async move { Ok(error) }, move |_, error| {
        drop(settling);
        Err(error)
    })
}

/// `JSON.stringify(value)`: `None` when JSON has no text for it (`undefined`, a function).
/// A value JSON cannot represent (a `BigInt`, a cycle) is a `PUSHQ_INVALID_PUSH` error.
fn stringify(env: &Env, value: Unknown) -> Result<Option<String>> {
    let json: Object = env.get_global()?.get_named_property("JSON")?;
    let stringify: Function<Unknown, Unknown> = json.get_named_property("stringify")?;
    let text = stringify.call(value).map_err(|e| {
        let invalid = InvalidPush::new("push", format!("cannot be written as JSON ({})", e.reason));
        error::to_js(env, &invalid.into())
    })?;
    match text.get_type()? {
        ValueType::String => Ok(Some(String::from_unknown(text)?)),
        _ => Ok(None),
    }
}

fn not_an_object() -> BindingError {
    InvalidPush::new("push", "must be an object (got undefined)").into()
}

fn not_a_list() -> BindingError {
    InvalidPush::new("push", "pushes must be an array of push objects").into()
}
