//! Topic subscriptions on the queue. A server that subscribes a user (or one token) to a topic
//! stores the subscription and enqueues a [`TopicChange`]: the consumer then makes FCM's calls
//! with the app's key, so no server holds one.
//!
//! A change names what to bring in line with the database, not what to do: (app, topic, a user
//! or a token). The consumer reads the stored subscriptions when it takes the change and
//! subscribes or unsubscribes each device accordingly (and reads again once FCM answered, handing
//! the change back if the database changed meanwhile), so changes that arrive out of order (a
//! standard queue) or twice (a redelivery) end in the state the database holds.
//!
//! The body is `{"v":2,"id":"<uuid>","enqueuedAt":<ms>,"topics":{"app":"member","topic":"news",
//! "userId":"u1"}}` (or `"token":"…"` for one device). Version 2, so that a consumer older than
//! topic subscriptions hands the message back (to wait for an upgraded one) rather than rejects it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::error::{EnvelopeError, InvalidPush};
use crate::push::{check_app, describe, stored_string};
use crate::push::{MAX_TOKEN_CHARS, MAX_TOPIC_OR_CONDITION_CHARS, MAX_USER_ID_CHARS};

/// The envelope version topic changes are written with.
pub const TOPICS_ENVELOPE_VERSION: u64 = 2;

/// Whose subscription a change is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subscriber {
    /// Every device the user has in the app, now and later.
    User(String),
    /// One registration token.
    Token(String),
}

/// A topic subscription to bring in line with the database, for one user or token of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicChange {
    /// The change's id (a UUIDv7), for logs.
    pub id: String,
    /// When it was enqueued, in milliseconds since the Unix epoch.
    pub enqueued_at: i64,
    /// The app (Firebase project) whose key makes the calls.
    pub app: String,
    /// The topic, without `/topics/`.
    pub topic: String,
    /// The user or token.
    pub subscriber: Subscriber,
}

/// A topic name as firebase-admin's `subscribeToTopic` accepts it: optionally `/topics/`, then
/// optionally `private/`, then letters, digits and `-_.~%`. Returns it without `/topics/`; the
/// error names `field`.
pub fn check_topic(value: &Value, field: &str) -> Result<String, InvalidPush> {
    let raw = stored_string(value, field, MAX_TOPIC_OR_CONDITION_CHARS)?;
    let name = raw.strip_prefix("/topics/").unwrap_or(&raw);
    let body = name.strip_prefix("private/").unwrap_or(name);
    let legal = |c: char| c.is_ascii_alphanumeric() || "-_.~%".contains(c);
    if body.is_empty() || !body.chars().all(legal) {
        return Err(InvalidPush::new(
            field,
            format!(
                "must be a topic name: optionally /topics/, optionally private/, then letters, digits and -_.~% (got {})",
                describe(value)
            ),
        ));
    }
    Ok(name.to_owned())
}

impl TopicChange {
    /// A new change, stamped now, after checking each part (errors name `app`, `topic`,
    /// `userId` or `token`).
    pub fn new(
        app: &str,
        topic: &Value,
        subscriber: Subscriber,
    ) -> Result<TopicChange, InvalidPush> {
        check_app(app)?;
        let topic = check_topic(topic, "topic")?;
        let subscriber = check_subscriber(subscriber)?;
        let enqueued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(TopicChange {
            id: uuid::Uuid::now_v7().to_string(),
            enqueued_at,
            app: app.to_owned(),
            topic,
            subscriber,
        })
    }

    /// The change as a queue message body.
    pub fn to_json(&self) -> String {
        let mut topics = json!({"app": self.app, "topic": self.topic});
        let (field, value) = match &self.subscriber {
            Subscriber::User(u) => ("userId", u),
            Subscriber::Token(t) => ("token", t),
        };
        topics[field] = Value::String(value.clone());
        json!({
            "v": TOPICS_ENVELOPE_VERSION,
            "id": self.id,
            "enqueuedAt": self.enqueued_at,
            "topics": topics,
        })
        .to_string()
    }

    /// Reads the `topics` object of an envelope whose `id` and `enqueuedAt` are read already.
    pub(crate) fn from_envelope(
        id: String,
        enqueued_at: i64,
        topics: Value,
    ) -> Result<TopicChange, EnvelopeError> {
        let Value::Object(fields) = topics else {
            return Err(EnvelopeError::Field {
                field: "topics",
                problem: "must be an object".into(),
            });
        };
        if let Some(k) = fields.keys().find(|k| !TOPIC_FIELDS.contains(&k.as_str())) {
            return Err(EnvelopeError::Field {
                field: "topics",
                problem: format!("{k}: not a field of a topic change"),
            });
        }
        let app = fields.get("app").and_then(Value::as_str).unwrap_or("");
        let topic = fields.get("topic").cloned().unwrap_or(Value::Null);
        let change = TopicChange::new(app, &topic, subscriber_of(&fields)?).map_err(|e| {
            EnvelopeError::Field {
                field: "topics",
                problem: format!("{}: {}", e.field, e.problem),
            }
        })?;
        Ok(TopicChange {
            id,
            enqueued_at,
            ..change
        })
    }
}

const TOPIC_FIELDS: &[&str] = &["app", "topic", "userId", "token"];

fn subscriber_of(fields: &Map<String, Value>) -> Result<Subscriber, EnvelopeError> {
    let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_owned);
    match (text("userId"), text("token")) {
        (Some(user), None) => Ok(Subscriber::User(user)),
        (None, Some(token)) => Ok(Subscriber::Token(token)),
        _ => Err(EnvelopeError::Field {
            field: "topics",
            problem: "exactly one of userId and token must be a string".into(),
        }),
    }
}

fn check_subscriber(subscriber: Subscriber) -> Result<Subscriber, InvalidPush> {
    Ok(match subscriber {
        Subscriber::User(u) => Subscriber::User(stored_string(
            &Value::String(u),
            "userId",
            MAX_USER_ID_CHARS,
        )?),
        Subscriber::Token(t) => {
            Subscriber::Token(stored_string(&Value::String(t), "token", MAX_TOKEN_CHARS)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_checked_as_firebase_admin_checks_them() {
        let ok = |t: &str| check_topic(&json!(t), "topic");
        assert_eq!(ok("news").unwrap(), "news");
        assert_eq!(ok("/topics/gym-berlin_1.~%").unwrap(), "gym-berlin_1.~%");
        assert_eq!(ok("private/staff").unwrap(), "private/staff");
        assert_eq!(ok("/topics/private/staff").unwrap(), "private/staff");
        for bad in ["", "a b", "news/x", "private/", "/topics/", "ü"] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.field, "topic", "{bad:?}");
        }
        assert_eq!(check_topic(&json!(7), "topic").unwrap_err().field, "topic");
    }

    #[test]
    fn a_change_reads_back_as_written() {
        let change = TopicChange::new(
            "member",
            &json!("/topics/news"),
            Subscriber::User("u1".into()),
        )
        .unwrap();
        let body = change.to_json();
        assert!(body.contains(r#""v":2"#), "{body}");
        let read = crate::envelope::read_body(&body, "m", 0).unwrap();
        assert_eq!(read, crate::envelope::QueueBody::Topics(change));
    }

    #[test]
    fn a_bad_change_names_its_field() {
        let read = |topics: Value| {
            let body = json!({"v": 2, "id": "c", "topics": topics}).to_string();
            crate::envelope::read_body(&body, "m", 0)
                .unwrap_err()
                .to_string()
        };
        assert!(read(json!({"app": "a", "topic": "x y", "token": "t"})).contains("topic"));
        assert!(
            read(json!({"app": "a", "topic": "x", "token": "t", "userId": "u"}))
                .contains("exactly one of userId and token")
        );
        assert!(read(json!({"app": "a b", "topic": "x", "token": "t"})).contains("app"));
        assert!(read(json!({"app": "a", "topic": "x", "token": "t", "more": 1})).contains("more"));
        // Version 1 has no topic changes: such a body is a push without one.
        let v1 = json!({"v": 1, "id": "c", "topics": {"app": "a", "topic": "x", "token": "t"}});
        let err = crate::envelope::read_body(&v1.to_string(), "m", 0).unwrap_err();
        assert!(err.to_string().starts_with("push: missing"), "{err}");
    }
}
