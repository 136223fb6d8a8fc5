//! `pushq dlq redrive --from URL --to URL`: moves messages back from a dead-letter queue.
//! Receive → send → delete, ten at a time: a message leaves the DLQ only after the target queue
//! accepted it, so nothing is lost; a crash between send and delete can leave a copy in both,
//! and the delivery engine's log (one row per push and target) skips targets already recorded
//! (delivery stays at least once: see docs/operations.md).

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use indicatif::{ProgressBar, ProgressStyle};

/// Moves every message from `from` to `to`; returns how many moved.
pub async fn redrive(from: &str, to: &str) -> Result<u64, String> {
    // Both queues are reached where the source queue's URL says (redrive stays on one SQS).
    let sqs = crate::sqs_client(from).await?;
    let bar = ProgressBar::new(depth(&sqs, from).await?);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} moved ({elapsed})").expect("template"),
    );
    let to_fifo = to.ends_with(".fifo");
    let mut moved = 0u64;
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 {
        let received = receive(&sqs, from).await?;
        if received.is_empty() {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        let sent = send(&sqs, to, &received, to_fifo).await?;
        for failed in sent.failed() {
            say(
                &bar,
                format!(
                    "not moved ({}): {}",
                    failed.code(),
                    failed.message().unwrap_or("")
                ),
            );
        }
        // Only what the target accepted leaves the DLQ; the rest comes back after the visibility timeout.
        let accepted = accepted(&sent, &received);
        if !accepted.is_empty() {
            // Moved means deleted from the DLQ: an entry whose delete failed is in both queues
            // (the delivery log makes the second copy harmless) and is not counted.
            let deleted = delete(&sqs, from, &accepted).await?;
            for (code, why) in deleted.failed {
                say(
                    &bar,
                    format!("copied but not deleted from the DLQ ({code}): {why}"),
                );
            }
            moved += deleted.succeeded;
            show_progress(&bar, moved);
        }
    }
    bar.finish();
    Ok(moved)
}

/// The DLQ's approximate depth, the progress bar's first length (0 when SQS does not say).
async fn depth(sqs: &Client, from: &str) -> Result<u64, String> {
    let depth = sqs
        .get_queue_attributes()
        .queue_url(from)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(failed("reading the DLQ's depth"))?
        .attributes
        .and_then(|a| {
            a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0u64);
    Ok(depth)
}

/// Up to ten messages from the DLQ with all their attributes, hidden from other readers for a
/// minute while they move; empty after a one-second wait when the DLQ has none.
async fn receive(sqs: &Client, from: &str) -> Result<Vec<Message>, String> {
    let received = sqs
        .receive_message()
        .queue_url(from)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(60)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(failed("receiving from the DLQ"))?
        .messages
        .unwrap_or_default();
    Ok(received)
}

/// Sends the received messages to the target queue in one batch; entry ids are their indices
/// in `received`.
async fn send(
    sqs: &Client,
    to: &str,
    received: &[Message],
    to_fifo: bool,
) -> Result<SendMessageBatchOutput, String> {
    let entries = received
        .iter()
        .enumerate()
        .map(|(i, m)| send_entry(i, m, to_fifo))
        .collect();
    sqs.send_message_batch()
        .queue_url(to)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(failed("sending to the target queue"))
}

/// A moved message's attributes: its own, and [`pushq_delivery::FIRST_MESSAGE_ID`], the id of
/// the message as first enqueued (its own id the first time it is moved), so that a foreign
/// envelope without `id` keeps one push id, and the consumer knows the push may have rows to
/// close. SQS allows ten attributes: a message that has ten already keeps just its own.
fn with_first_message_id(m: &Message) -> std::collections::HashMap<String, MessageAttributeValue> {
    let mut attributes = m.message_attributes.clone().unwrap_or_default();
    let first = attributes
        .get(pushq_delivery::FIRST_MESSAGE_ID)
        .and_then(|a| a.string_value().map(str::to_owned))
        .or_else(|| m.message_id.clone());
    if let Some(first) = first {
        if attributes.len() < 10 || attributes.contains_key(pushq_delivery::FIRST_MESSAGE_ID) {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(first)
                .build()
                .expect("data type set");
            attributes.insert(pushq_delivery::FIRST_MESSAGE_ID.to_owned(), value);
        }
    }
    attributes
}

/// A received message as entry `i` of a send batch: the same body and message attributes; into
/// a FIFO queue, its message group (`pushq` if it had none) and its message id for deduplication.
fn send_entry(i: usize, m: &Message, to_fifo: bool) -> SendMessageBatchRequestEntry {
    let group = m
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned();
    SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(m.body().unwrap_or_default())
        .set_message_attributes(Some(with_first_message_id(m)))
        .set_message_group_id(if to_fifo {
            Some(group.unwrap_or_else(|| "pushq".into()))
        } else {
            None
        })
        .set_message_deduplication_id(if to_fifo { m.message_id.clone() } else { None })
        .build()
        .expect("id and body")
}

/// The received messages the target queue accepted, found by their entry ids.
fn accepted<'a>(sent: &SendMessageBatchOutput, received: &'a [Message]) -> Vec<&'a Message> {
    sent.successful()
        .iter()
        .filter_map(|ok| ok.id().parse::<usize>().ok().and_then(|i| received.get(i)))
        .collect()
}

/// What a delete batch did: how many left the DLQ, and why the others did not.
struct Deleted {
    succeeded: u64,
    failed: Vec<(String, String)>,
}

/// Deletes `messages` from the DLQ in one batch.
async fn delete(sqs: &Client, from: &str, messages: &[&Message]) -> Result<Deleted, String> {
    let entries = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .expect("id and handle")
        })
        .collect();
    let out = sqs
        .delete_message_batch()
        .queue_url(from)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(failed("deleting from the DLQ"))?;
    Ok(Deleted {
        succeeded: out.successful().len() as u64,
        failed: out
            .failed()
            .iter()
            .map(|f| (f.code().to_owned(), f.message().unwrap_or("").to_owned()))
            .collect(),
    })
}

/// Prints a line on stderr above the bar; also when stderr is not a terminal, where the bar is
/// hidden and its own `println` prints nothing.
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

/// Shows `moved` on the bar, stretching it when more moved than the DLQ's first depth said.
fn show_progress(bar: &ProgressBar, moved: u64) {
    bar.set_length(bar.length().unwrap_or(0).max(moved));
    bar.set_position(moved);
}

/// Turns an SQS call's error into what redrive was doing, with the SDK's whole error chain.
fn failed<E: std::error::Error>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {}", DisplayErrorContext(&e))
}
