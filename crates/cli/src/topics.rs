//! `pushq topics list|subscribe|unsubscribe`: a user's or one token's topic subscriptions. A
//! change is stored in the database, then enqueued for the consumer, which makes FCM's calls.

use clap::{Args, Subcommand};
use pushq_delivery::store::Store;
use pushq_delivery::DeliveryConfig;
use pushq_model::topics::{Subscriber, TopicChange};
use pushq_model::InvalidPush;
use pushq_producer::sqs::SqsTransport;
use pushq_producer::{Producer, ProducerConfig, ProducerOptions};

use crate::{fail, store_from_env};

/// The actions of `pushq topics`.
#[derive(Subcommand)]
pub enum TopicsAction {
    /// Lists the topics a user, or one token, is subscribed to in an app, one per line (a
    /// token's: its own and those of the user whose live device it is).
    List {
        #[command(flatten)]
        who: Who,
        /// The app (Firebase project).
        #[arg(long, env = "PUSHQ_APP", default_value = pushq_model::DEFAULT_APP)]
        app: String,
    },
    /// Subscribes a user (every device the user has in the app, now and later) or one token to
    /// a topic: stores the subscription, then enqueues the change for the consumer.
    Subscribe(ChangeArgs),
    /// Ends a user's or one token's subscription to a topic: removes it from the database, then
    /// enqueues the change for the consumer.
    Unsubscribe(ChangeArgs),
}

/// Whose subscriptions: a user or one token (exactly one).
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Who {
    /// The user: every device the user has in the app, now and later.
    #[arg(long, visible_alias = "user-id", value_name = "ID")]
    user: Option<String>,
    /// One FCM registration token.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// The flags of `pushq topics subscribe` and `unsubscribe`.
#[derive(Args)]
pub struct ChangeArgs {
    /// The topic: optionally /topics/, optionally private/, then letters, digits and -_.~%.
    #[arg(long, value_name = "NAME")]
    topic: String,
    #[command(flatten)]
    who: Who,
    /// The app (Firebase project).
    #[arg(long, env = "PUSHQ_APP", default_value = pushq_model::DEFAULT_APP)]
    app: String,
    /// The queue the change is enqueued on, for the consumer to make FCM's calls.
    #[arg(long, env = "PUSHQ_QUEUE_URL", value_name = "URL")]
    queue_url: Option<String>,
}

impl Who {
    fn subscriber(self) -> Subscriber {
        match (self.user, self.token) {
            (Some(user), _) => Subscriber::User(user),
            (None, Some(token)) => Subscriber::Token(token),
            (None, None) => fail("--user or --token is required"),
        }
    }
}

/// Runs `pushq topics <action>`.
pub async fn run(action: TopicsAction) {
    match action {
        TopicsAction::List { who, app } => list(&app, &who.subscriber()).await,
        TopicsAction::Subscribe(args) => change(args, Direction::Subscribe).await,
        TopicsAction::Unsubscribe(args) => change(args, Direction::Unsubscribe).await,
    }
}

/// `pushq topics list`: one topic per line, sorted.
async fn list(app: &str, who: &Subscriber) {
    pushq_model::check_app(app).unwrap_or_else(|e| fail(flag_error(&e)));
    let store = connect().await;
    let topics = store.topics_of(app, who).await.unwrap_or_else(|e| fail(e));
    for topic in topics {
        println!("{topic}");
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Subscribe,
    Unsubscribe,
}

/// `pushq topics subscribe|unsubscribe`: checks the change and the queue before it writes the
/// database (nothing is stored that cannot be enqueued), writes it, enqueues the change and
/// waits until SQS has it. The change is enqueued even when the database held the state
/// already: the consumer reads the database, so running the command again is how a change
/// whose enqueue failed is retried.
async fn change(args: ChangeArgs, direction: Direction) {
    let ChangeArgs {
        topic,
        who,
        app,
        queue_url,
    } = args;
    let change = TopicChange::new(&app, &serde_json::Value::String(topic), who.subscriber())
        .unwrap_or_else(|e| fail(flag_error(&e)));
    let config = producer_config(queue_url, &app);
    let store = connect().await;
    let (app, topic, who) = (&change.app, &change.topic, &change.subscriber);
    let stored = match direction {
        Direction::Subscribe => store.subscribe(app, topic, who).await,
        Direction::Unsubscribe => store.unsubscribe(app, topic, who).await,
    }
    .unwrap_or_else(|e| fail(e));
    enqueue(config, &change).await.unwrap_or_else(|e| {
        fail(format!(
            "the database has the change, but it was not enqueued ({e}); run the command again to enqueue it"
        ))
    });
    let done = format!("(change {} enqueued)", change.id);
    let whom = format!("{} of app {app}", describe(who));
    match (direction, stored) {
        (Direction::Subscribe, true) => println!("subscribed {whom} to {topic} {done}"),
        (Direction::Subscribe, false) => {
            println!("{whom} was already subscribed to {topic} {done}")
        }
        (Direction::Unsubscribe, true) => println!("unsubscribed {whom} from {topic} {done}"),
        (Direction::Unsubscribe, false) => println!("{whom} was not subscribed to {topic} {done}"),
    }
    if let (Direction::Unsubscribe, Subscriber::Token(_)) = (direction, who) {
        let topics = store.topics_of(app, who).await.unwrap_or_default();
        if topics.contains(topic) {
            println!("its device's user is subscribed to {topic}: the token stays subscribed through the user");
        }
    }
}

/// The SQS producer's settings for the queue of `--queue-url` (else `PUSHQ_QUEUE_URL`), or a
/// usage error naming both.
fn producer_config(queue_url: Option<String>, app: &str) -> ProducerConfig {
    let Some(queue_url) = queue_url.filter(|url| !url.is_empty()) else {
        fail("--queue-url or PUSHQ_QUEUE_URL: not set (the change is enqueued for the consumer to make FCM's calls); nothing was stored")
    };
    ProducerConfig::resolve(ProducerOptions {
        queue_url: Some(queue_url),
        // The queue, whatever PUSHQ_MODE says: local mode delivers inside a Node process.
        mode: Some("sqs".into()),
        app: Some(app.to_owned()),
        ..Default::default()
    })
    .unwrap_or_else(|e| fail(format!("--queue-url: {e}; nothing was stored")))
}

/// Enqueues `change` and waits until SQS has it.
async fn enqueue(config: ProducerConfig, change: &TopicChange) -> pushq_producer::Result<()> {
    let transport = SqsTransport::new(config.clone());
    let producer = Producer::start(config, transport, &tokio::runtime::Handle::current());
    let accepted = match producer.enqueue_topic_change(change) {
        Ok(ticket) => ticket.accepted().await.map(drop),
        Err(e) => Err(e),
    };
    producer.close().await;
    accepted
}

async fn connect() -> Store {
    let config = DeliveryConfig::from_env().unwrap_or_else(|e| fail(e));
    store_from_env(&config).await
}

/// A check's error, naming the flag the value came from.
fn flag_error(e: &InvalidPush) -> String {
    let flag = match e.field.as_str() {
        "userId" => "user",
        field => field,
    };
    format!("--{flag}: {}", e.problem)
}

fn describe(who: &Subscriber) -> String {
    match who {
        Subscriber::User(user) => format!("user {user}"),
        Subscriber::Token(token) => format!("token {token}"),
    }
}
