//! The SQS event the Lambda receives and the batch response it answers, as far as pushq reads
//! them. `aws_lambda_events`' full `SqsEvent` parsed every field of every record into maps (every
//! attribute, every message attribute's lists): a twentieth of the function's CPU per push in the
//! delivery benchmark's profile. Here the fields pushq does not read are skipped unparsed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// An SQS event: its records, in the order SQS gave them.
#[derive(Debug, Deserialize)]
pub struct SqsEvent {
    /// The records.
    #[serde(rename = "Records")]
    pub records: Vec<SqsRecord>,
}

/// One SQS message of an event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    /// SQS's message id: what a batch item failure names.
    pub message_id: Option<String>,
    /// The message body.
    pub body: Option<String>,
    /// The system attributes pushq reads.
    #[serde(default, deserialize_with = "or_default")]
    pub attributes: Attributes,
    /// The message attributes, of which only string values are read.
    #[serde(default, deserialize_with = "or_default")]
    pub message_attributes: HashMap<String, MessageAttribute>,
    /// The queue's ARN (a FIFO queue's ends in `.fifo`).
    #[serde(rename = "eventSourceARN")]
    pub event_source_arn: Option<String>,
}

/// The system attributes of a record that pushq reads.
#[derive(Debug, Default, Deserialize)]
pub struct Attributes {
    /// When SQS received the message (epoch milliseconds, as text).
    #[serde(rename = "SentTimestamp")]
    pub sent_timestamp: Option<String>,
    /// How many times SQS has handed the message out (as text).
    #[serde(rename = "ApproximateReceiveCount")]
    pub approximate_receive_count: Option<String>,
    /// A FIFO queue's message group.
    #[serde(rename = "MessageGroupId")]
    pub message_group_id: Option<String>,
}

/// A message attribute: its string value, if it has one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAttribute {
    /// The value of a `String` (or `Number`) attribute.
    pub string_value: Option<String>,
}

/// `null` read as the type's default (an event with `"attributes": null`).
fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The answer to an SQS event with `ReportBatchItemFailures`: the messages to hand back.
#[derive(Debug, Default, Serialize)]
pub struct SqsBatchResponse {
    /// One per message to hand back.
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// A message to hand back, by its message id.
#[derive(Debug, Serialize)]
pub struct BatchItemFailure {
    /// The message id.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_event_as_lambda_sends_it_reads_what_pushq_uses() {
        // A record as Lambda's SQS event source mapping delivers it (a FIFO queue's).
        let event: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [{
            "messageId": "m-1",
            "receiptHandle": "AQEB…",
            "body": "{\"v\":1}",
            "attributes": {
                "ApproximateReceiveCount": "2",
                "SentTimestamp": "1765000000000",
                "SequenceNumber": "18849496460467696128",
                "MessageGroupId": "user-7",
                "SenderId": "AIDAIO23YVJENQZJOL4VO",
                "MessageDeduplicationId": "d-1",
                "ApproximateFirstReceiveTimestamp": "1765000000001"
            },
            "messageAttributes": {
                "pushq-first-message-id": {"stringValue": "m-0", "stringListValues": [],
                    "binaryListValues": [], "dataType": "String"},
                "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [],
                    "dataType": "Binary"}
            },
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:pushq.fifo",
            "awsRegion": "us-east-2"
        }, {"messageId": "m-2", "body": "x", "attributes": null, "messageAttributes": null}]}))
        .unwrap();
        let [first, second] = &event.records[..] else {
            panic!("{event:?}")
        };
        assert_eq!(first.message_id.as_deref(), Some("m-1"));
        assert_eq!(first.body.as_deref(), Some("{\"v\":1}"));
        assert_eq!(
            first.attributes.approximate_receive_count.as_deref(),
            Some("2")
        );
        assert_eq!(
            first.attributes.sent_timestamp.as_deref(),
            Some("1765000000000")
        );
        assert_eq!(first.attributes.message_group_id.as_deref(), Some("user-7"));
        let first_id = &first.message_attributes["pushq-first-message-id"];
        assert_eq!(first_id.string_value.as_deref(), Some("m-0"));
        assert_eq!(first.message_attributes["blob"].string_value, None);
        assert!(first
            .event_source_arn
            .as_deref()
            .unwrap()
            .ends_with(".fifo"));
        assert!(second.attributes.sent_timestamp.is_none());
        assert!(second.message_attributes.is_empty());
    }

    #[test]
    fn the_response_names_each_message_to_hand_back_as_lambda_expects() {
        let response = SqsBatchResponse {
            batch_item_failures: vec![BatchItemFailure {
                item_identifier: "m-2".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
        );
    }
}
