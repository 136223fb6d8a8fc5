//! `DeviceRegistry.subscribe`, `unsubscribe` and `topics`: topic subscriptions stored in the
//! database and made at FCM by the consumer (no server holds an FCM key). Each change is stored,
//! then enqueued as a topic change through the default client (configured from the environment,
//! as module-level `enqueuePush` is); the consumer subscribes or unsubscribes each device as the
//! database then says. Thin: the SQL lives in pushq-delivery, the change in pushq-model.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use pushq_delivery::store::Store;
use pushq_model::topics::{Subscriber, TopicChange};

use crate::database::{app_value, options_json, LazyStore};
use crate::error::BindingError;
use crate::options::read;
use crate::registry::DeviceRegistry;
use crate::{settle, BindingResult};

/// A subscription: a topic and whose it is, a user's (every device the user has in the app,
/// now and later) or one registration token's.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    /// The topic, as firebase-admin's `subscribeToTopic` takes it (`news`, `/topics/news`,
    /// `private/staff`).
    pub topic: String,
    /// The user (exactly one of `userId` and `token`).
    pub user_id: Option<String>,
    /// One registration token.
    pub token: Option<String>,
    /// The app; the registry's when not given.
    pub app: Option<String>,
}

/// Whose topics {@link DeviceRegistry.topics} lists.
#[napi(object, object_from_js = false, object_to_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriberOptions {
    /// The user (exactly one of `userId` and `token`).
    pub user_id: Option<String>,
    /// One registration token: its own topics and its user's.
    pub token: Option<String>,
    /// The app; the registry's when not given.
    pub app: Option<String>,
}

/// What `subscribe` and `unsubscribe` resolve to.
#[napi(object)]
pub struct TopicChanged {
    /// The change's id (a UUIDv7), as the consumer's logs name it.
    pub id: String,
    /// False when the database had it so already (the change is enqueued all the same, so
    /// that FCM ends as the database says).
    pub changed: bool,
}

#[napi]
impl DeviceRegistry {
    /// Subscribes a user's devices (now and later) or one token to a topic: stored, then
    /// enqueued for the consumer, which makes FCM's calls. Resolves once the queue has the
    /// change. Rejects with `PUSHQ_INVALID_ARGUMENT` naming the field (`topic`, `userId`,
    /// `token`, `app`), `PUSHQ_DATABASE`, `PUSHQ_CONFIG` (no queue: `PUSHQ_QUEUE_URL` or
    /// `PUSHQ_MODE=local`), `PUSHQ_QUEUE` or `PUSHQ_QUEUE_UNKNOWN` (its `pushId` is the change's
    /// id). The subscription stays stored when the queue refuses: call again to enqueue it.
    #[napi(
        ts_args_type = "subscription: Subscription",
        ts_return_type = "Promise<TopicChanged>"
    )]
    pub fn subscribe<'env>(
        &self,
        env: &'env Env,
        subscription: Unknown,
    ) -> napi::Result<PromiseRaw<'env, TopicChanged>> {
        self.change(env, subscription, true)
    }

    /// Ends a subscription (as {@link DeviceRegistry.subscribe}); a device subscribed also by
    /// another subscription (its user's, or its token's) stays subscribed.
    #[napi(
        ts_args_type = "subscription: Subscription",
        ts_return_type = "Promise<TopicChanged>"
    )]
    pub fn unsubscribe<'env>(
        &self,
        env: &'env Env,
        subscription: Unknown,
    ) -> napi::Result<PromiseRaw<'env, TopicChanged>> {
        self.change(env, subscription, false)
    }

    /// The topics of a user, or of a token (its own and its user's), sorted. FCM has no call
    /// that lists them: this is what pushq stored.
    #[napi(
        ts_args_type = "subscriber: SubscriberOptions",
        ts_return_type = "Promise<Array<string>>"
    )]
    pub fn topics<'env>(
        &self,
        env: &'env Env,
        subscriber: Unknown,
    ) -> napi::Result<PromiseRaw<'env, Vec<String>>> {
        let json = options_json(env, Some(subscriber))?;
        let read: std::result::Result<SubscriberOptions, _> = read(json.as_deref(), "field");
        let parsed = read
            .map_err(|e| invalid(&e.field, &e.message("subscriber")))
            .and_then(|s| Ok((self.app_of(s.app)?, subscriber_of(s.user_id, s.token)?)));
        self.store().call(
            env,
            move |s| async move {
                let (app, who) = parsed?;
                s.topics_of(&app, &who).await.map_err(crate::database::db)
            },
            |topics| topics,
        )
    }

    fn change<'env>(
        &self,
        env: &'env Env,
        subscription: Unknown,
        subscribe: bool,
    ) -> napi::Result<PromiseRaw<'env, TopicChanged>> {
        let json = options_json(env, Some(subscription))?;
        let change = self.read_change(json.as_deref());
        let store = self.store().clone();
        settle(
            env,
            async move { stored_and_enqueued(&store, change?, subscribe).await },
            |c| c,
        )
    }

    fn read_change(&self, json: Option<&str>) -> BindingResult<TopicChange> {
        let s: Subscription = match json {
            Some(json) if json.trim_start().starts_with('{') => read(Some(json), "field"),
            _ => {
                return Err(invalid(
                    "subscription",
                    "subscription: must be an object { topic, userId | token, app? }",
                ))
            }
        }
        .map_err(|e| invalid(&e.field, &e.message("subscription")))?;
        let app = self.app_of(s.app)?;
        let who = subscriber_of(s.user_id, s.token)?;
        TopicChange::new(&app, &serde_json::Value::String(s.topic), who).map_err(|e| {
            invalid(
                &e.field,
                &format!("subscription.{}: {}", e.field, e.problem),
            )
        })
    }

    fn app_of(&self, app: Option<String>) -> BindingResult<String> {
        match app {
            Some(app) => app_value(app),
            None => Ok(self.store().app.clone()),
        }
    }
}

/// Stores the change, then hands it to the queue (the consumer reads the database when it
/// takes the change, so the write goes first).
async fn stored_and_enqueued(
    lazy: &LazyStore,
    change: TopicChange,
    subscribe: bool,
) -> BindingResult<TopicChanged> {
    let client = crate::the_default_client()?;
    let store: Store = lazy.get().await?;
    let (app, topic, who) = (&change.app, &change.topic, &change.subscriber);
    let changed = match subscribe {
        true => store.subscribe(app, topic, who).await,
        false => store.unsubscribe(app, topic, who).await,
    }
    .map_err(|e| lazy.database(e))?;
    let _settling = client.in_flight.enter();
    client
        .producer
        .enqueue_topic_change(&change)?
        .accepted()
        .await?;
    Ok(TopicChanged {
        id: change.id,
        changed,
    })
}

/// Enqueues a token's topics (a device registered or unregistered): the consumer subscribes or
/// unsubscribes it as the database says. Nothing, without topics (and then no queue is needed).
pub(crate) async fn enqueue_token_topics(
    app: &str,
    token: &str,
    topics: Vec<String>,
) -> BindingResult<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let client = crate::the_default_client()?;
    let _settling = client.in_flight.enter();
    let mut tickets = Vec::new();
    for topic in topics {
        let change = TopicChange::new(
            app,
            &serde_json::Value::String(topic),
            Subscriber::Token(token.to_owned()),
        )?;
        tickets.push(client.producer.enqueue_topic_change(&change)?);
    }
    crate::accept_all(tickets).await.map(|_| ())
}

fn subscriber_of(user_id: Option<String>, token: Option<String>) -> BindingResult<Subscriber> {
    match (user_id, token) {
        (Some(user), None) => Ok(Subscriber::User(user)),
        (None, Some(token)) => Ok(Subscriber::Token(token)),
        (Some(_), Some(_)) => Err(invalid(
            "token",
            "token: give a userId or a token, not both",
        )),
        (None, None) => Err(invalid(
            "userId",
            "userId: missing (a userId, or a token, is required)",
        )),
    }
}

fn invalid(field: &str, message: &str) -> BindingError {
    BindingError::InvalidField {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}
