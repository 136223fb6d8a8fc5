//! One page of an audience push: the consumer that expands an audience push writes one queue
//! message per page, the push's envelope plus `"page":{"n":3,"after":1500,"through":2034}`: the
//! page's number and the range of device row ids it covers (`after` < id ≤ `through`, keyset
//! order). Whoever takes a page reads its devices then, so a device invalidated meanwhile is
//! not sent to.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::EnvelopeError;

/// Which devices of an audience a page message covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Page {
    /// The page's number, from 0, in keyset order.
    pub n: u32,
    /// The device row id the page starts after.
    pub after: i64,
    /// The last device row id the page covers.
    pub through: i64,
}

/// The envelope's `page`, if it has one.
pub(super) fn page_of(map: &Map<String, Value>) -> Result<Option<Page>, EnvelopeError> {
    let bad = || {
        EnvelopeError::Field {
        field: "page",
        problem: "must be {\"n\": <page number>, \"after\": <id>, \"through\": <id>} with after < through".into(),
    }
    };
    let page = match map.get("page") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(page)) => page,
        Some(_) => return Err(bad()),
    };
    let number = |field: &str| page.get(field).and_then(Value::as_i64);
    match (number("n"), number("after"), number("through")) {
        (Some(n), Some(after), Some(through))
            if (0..=i64::from(u32::MAX)).contains(&n) && after < through && page.len() == 3 =>
        {
            Ok(Some(Page {
                n: n as u32,
                after,
                through,
            }))
        }
        _ => Err(bad()),
    }
}
