//! Who a push goes to: the target fields (exactly one per push) parsed into a [`Target`], and
//! the [`Recipient`] of one FCM send.

use serde_json::{Map, Value};

use super::audience::{parse_audience, Audience};
use super::fields::stored_string;
use super::{
    describe, MAX_LIST_TARGETS, MAX_TOKEN_CHARS, MAX_TOPIC_OR_CONDITION_CHARS, MAX_USER_ID_CHARS,
};
use crate::error::InvalidPush;

/// Who a push goes to. Exactly one per push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One FCM registration token.
    Token(String),
    /// One Firebase installation ID (firebase-admin's `FidMessage.fid`).
    Fid(String),
    /// An FCM topic name, without the `/topics/` prefix.
    Topic(String),
    /// An FCM condition expression.
    Condition(String),
    /// Several registration tokens (firebase-admin's `MulticastMessage.tokens`).
    Tokens(Vec<String>),
    /// Several Firebase installation IDs (firebase-admin's `FidMulticastMessage.fids`).
    Fids(Vec<String>),
    /// One user, resolved to their live devices (tokens or FIDs) of the push's app at delivery.
    User(String),
    /// Several users, each resolved to their live devices (tokens or FIDs) at delivery.
    Users(Vec<String>),
    /// A mass send: every live device of the push's app, or of a segment's users, in pages.
    Audience(Audience),
}

impl Target {
    /// The field of the push that carries this target.
    pub fn field(&self) -> &'static str {
        match self {
            Target::Token(_) => "token",
            Target::Fid(_) => "fid",
            Target::Topic(_) => "topic",
            Target::Condition(_) => "condition",
            Target::Tokens(_) => "tokens",
            Target::Fids(_) => "fids",
            Target::User(_) => "userId",
            Target::Users(_) => "userIds",
            Target::Audience(_) => "audience",
        }
    }

    /// The target in one line, as the delivery log names targets (a token, `fid:<id>`,
    /// `topic:<name>`, `condition:<expr>`, `user:<id>`); a list of more than one by its field
    /// and length (`userIds[3]`). What a scheduled push is written down with.
    pub fn summary(&self) -> String {
        match self {
            Target::Token(t) => t.clone(),
            Target::Fid(f) => format!("fid:{f}"),
            Target::Topic(t) => format!("topic:{t}"),
            Target::Condition(c) => format!("condition:{c}"),
            Target::User(u) => format!("user:{u}"),
            Target::Audience(a) => format!("audience:{}", a.summary()),
            Target::Users(l) if l.len() == 1 => format!("user:{}", l[0]),
            Target::Tokens(l) if l.len() == 1 => l[0].clone(),
            Target::Fids(l) if l.len() == 1 => format!("fid:{}", l[0]),
            Target::Tokens(l) | Target::Fids(l) | Target::Users(l) => {
                format!("{}[{}]", self.field(), l.len())
            }
        }
    }

    /// True for targets that fan out to one FCM send per device (`tokens`, `fids`, `userId`,
    /// `userIds`, `audience`).
    pub fn fans_out(&self) -> bool {
        matches!(
            self,
            Target::Tokens(_)
                | Target::Fids(_)
                | Target::User(_)
                | Target::Users(_)
                | Target::Audience(_)
        )
    }
}

/// One device an FCM send goes to: a registration token or a Firebase installation ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// An FCM registration token (the request's `message.token`).
    Token(&'a str),
    /// A Firebase installation ID (the request's `message.fid`).
    Fid(&'a str),
}

/// The fields that name a target.
pub(super) const TARGET_FIELDS: [&str; 9] = [
    "token",
    "fid",
    "topic",
    "condition",
    "tokens",
    "fids",
    "userId",
    "userIds",
    "audience",
];

/// Whether `name` is one of the fields that name a push's target.
pub fn is_target_field(name: &str) -> bool {
    TARGET_FIELDS.contains(&name)
}

/// The push's one target, from whichever of the target fields is set (null counts as unset).
pub(super) fn parse_target(raw: &Map<String, Value>) -> Result<Target, InvalidPush> {
    let present: Vec<&str> = TARGET_FIELDS
        .iter()
        .copied()
        .filter(|f| raw.get(*f).is_some_and(|v| !v.is_null()))
        .collect();
    let [field] = present[..] else {
        let got = if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        };
        return Err(InvalidPush::new(
            "target",
            format!(
                "exactly one of {} must be set (got {got})",
                TARGET_FIELDS.join(", ")
            ),
        ));
    };
    let value = &raw[field];
    Ok(match field {
        "token" => Target::Token(stored_string(value, "token", MAX_TOKEN_CHARS)?),
        "fid" => Target::Fid(stored_string(value, "fid", MAX_TOKEN_CHARS)?),
        "condition" => Target::Condition(stored_string(
            value,
            "condition",
            MAX_TOPIC_OR_CONDITION_CHARS,
        )?),
        "topic" => {
            let topic = stored_string(value, "topic", MAX_TOPIC_OR_CONDITION_CHARS)?;
            let name = topic.strip_prefix("/topics/").unwrap_or(&topic);
            let legal = |c: char| c.is_ascii_alphanumeric() || "-_.~%".contains(c);
            if name.is_empty() || !name.chars().all(legal) {
                return Err(InvalidPush::new(
                    "topic",
                    format!(
                        "must be a topic name of letters, digits and -_.~% (optionally prefixed /topics/) (got {})",
                        describe(value)
                    ),
                ));
            }
            Target::Topic(name.to_owned())
        }
        "tokens" => Target::Tokens(string_list(value, "tokens", MAX_TOKEN_CHARS)?),
        "fids" => Target::Fids(string_list(value, "fids", MAX_TOKEN_CHARS)?),
        "userId" => Target::User(user_id(value, "userId")?),
        "userIds" => Target::Users(string_list(value, "userIds", MAX_USER_ID_CHARS)?),
        "audience" => Target::Audience(parse_audience(value)?),
        _ => unreachable!("TARGET_FIELDS and this match list the same fields"),
    })
}

fn user_id(value: &Value, field: &str) -> Result<String, InvalidPush> {
    stored_string(value, field, MAX_USER_ID_CHARS)
}

fn string_list(value: &Value, field: &str, max_chars: usize) -> Result<Vec<String>, InvalidPush> {
    let Value::Array(items) = value else {
        return Err(InvalidPush::new(
            field,
            format!("must be an array of strings (got {})", describe(value)),
        ));
    };
    if items.is_empty() || items.len() > MAX_LIST_TARGETS {
        return Err(InvalidPush::new(
            field,
            format!(
                "must have 1 to {MAX_LIST_TARGETS} entries (got {})",
                items.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let entry = stored_string(item, &format!("{field}[{i}]"), max_chars)?;
        // A device or user named twice gets the push once; the first place counts.
        if seen.insert(entry.clone()) {
            list.push(entry);
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Push;
    use serde_json::json;

    fn field_of(v: Value) -> String {
        Push::from_value(v).unwrap_err().field
    }

    #[test]
    fn exactly_one_target() {
        assert_eq!(field_of(json!({"notification": {}})), "target");
        assert_eq!(field_of(json!({"token": "a", "userId": "u"})), "target");
        // null counts as absent, as in firebase-admin.
        let push = Push::from_value(json!({"token": "a", "topic": null})).unwrap();
        assert_eq!(push.target(), &Target::Token("a".into()));
        assert!(!push.fcm_request(false).unwrap()["message"]
            .as_object()
            .unwrap()
            .contains_key("topic"));
    }

    #[test]
    fn lists_are_bounded_and_entries_named() {
        assert_eq!(field_of(json!({"tokens": ["a", ""]})), "tokens[1]");
        let many: Vec<String> = (0..=MAX_LIST_TARGETS).map(|i| i.to_string()).collect();
        assert_eq!(field_of(json!({ "userIds": many })), "userIds");
        assert_eq!(
            field_of(json!({"userIds": ["a", "x".repeat(256)]})),
            "userIds[1]"
        );
    }

    #[test]
    fn a_list_names_each_entry_once() {
        let push = Push::from_value(json!({"tokens": ["b", "a", "b", "c", "a"]})).unwrap();
        assert_eq!(
            push.target(),
            &Target::Tokens(vec!["b".into(), "a".into(), "c".into()])
        );
        // What travels in the envelope is the list without repeats too.
        assert_eq!(push.raw()["tokens"], json!(["b", "a", "c"]));
        let push = Push::from_value(json!({"userIds": ["u", "u"]})).unwrap();
        assert_eq!(push.target(), &Target::Users(vec!["u".into()]));
        assert_eq!(push.raw()["userIds"], json!(["u"]));
    }

    #[test]
    fn fids_are_targets_like_tokens() {
        let push = Push::from_value(json!({"fid": "f-1"})).unwrap();
        assert_eq!(push.target(), &Target::Fid("f-1".into()));
        assert!(!push.target().fans_out());
        let push = Push::from_value(json!({"fids": ["f-2", "f-1", "f-2"]})).unwrap();
        assert_eq!(
            push.target(),
            &Target::Fids(vec!["f-2".into(), "f-1".into()])
        );
        assert!(push.target().fans_out());
        assert_eq!(push.raw()["fids"], json!(["f-2", "f-1"]));

        assert_eq!(field_of(json!({"fid": ""})), "fid");
        assert_eq!(field_of(json!({"fid": 7})), "fid");
        assert_eq!(
            field_of(json!({"fid": "x".repeat(MAX_TOKEN_CHARS + 1)})),
            "fid"
        );
        assert_eq!(field_of(json!({"fids": []})), "fids");
        assert_eq!(field_of(json!({"fids": "f-1"})), "fids");
        assert_eq!(field_of(json!({"fids": ["f-1", ""]})), "fids[1]");
        let many: Vec<String> = (0..=MAX_LIST_TARGETS).map(|i| i.to_string()).collect();
        assert_eq!(field_of(json!({ "fids": many })), "fids");
        // One target in total: a fid counts like any other.
        let err = Push::from_value(json!({"fid": "f-1", "token": "t"})).unwrap_err();
        assert_eq!(err.field, "target");
        assert!(err.problem.contains("(got token, fid)"), "{err}");
        assert!(
            err.problem
                .contains("token, fid, topic, condition, tokens, fids, userId, userIds"),
            "{err}"
        );
        assert_eq!(field_of(json!({"fids": ["f"], "tokens": ["t"]})), "target");
        assert_eq!(field_of(json!({"fids": ["f"], "userId": "u"})), "target");
    }
}
