//! `pushq dlq redrive --from URL --to URL`: moves messages back from a dead-letter queue.
//! Receive → send → delete, ten at a time: a message leaves the DLQ only after the target queue
//! accepted it, so nothing is lost; a crash between send and delete can leave a copy in both,
//! and the delivery engine's log (one row per push and target) skips targets already recorded
//! (delivery stays at least once: see docs/operations.md).

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Moves every message from `from` to `to`; returns how many moved.
pub async fn redrive(from: &str, to: &str) -> Result<u64, String> {
    let sqs = crate::sqs_client().await?;
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let depth = sqs
        .get_queue_attributes()
        .queue_url(from)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| {
            err(
                "reading the DLQ's depth",
                &aws_sdk_sqs::error::DisplayErrorContext(&e),
            )
        })?
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0u64);
    let bar = ProgressBar::new(depth);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} moved ({elapsed})").expect("template"),
    );
    let to_fifo = to.ends_with(".fifo");
    let mut moved = 0u64;
    let mut empty_in_a_row = 0;
    while empty_in_a_row < 2 {
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
            .map_err(|e| {
                err(
                    "receiving from the DLQ",
                    &aws_sdk_sqs::error::DisplayErrorContext(&e),
                )
            })?
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        let entries = received
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let group = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned();
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes.clone())
                    .set_message_group_id(if to_fifo {
                        Some(group.unwrap_or_else(|| "pushq".into()))
                    } else {
                        None
                    })
                    .set_message_deduplication_id(if to_fifo { m.message_id.clone() } else { None })
                    .build()
                    .expect("id and body")
            })
            .collect();
        let sent = sqs
            .send_message_batch()
            .queue_url(to)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                err(
                    "sending to the target queue",
                    &aws_sdk_sqs::error::DisplayErrorContext(&e),
                )
            })?;
        // Only what the target accepted leaves the DLQ; the rest comes back after the visibility timeout.
        let deletes: Vec<_> = sent
            .successful()
            .iter()
            .filter_map(|ok| ok.id().parse::<usize>().ok().and_then(|i| received.get(i)))
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("id and handle")
            })
            .collect();
        for failed in sent.failed() {
            bar.println(format!(
                "not moved ({}): {}",
                failed.code(),
                failed.message().unwrap_or("")
            ));
        }
        if !deletes.is_empty() {
            let n = deletes.len() as u64;
            sqs.delete_message_batch()
                .queue_url(from)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| {
                    err(
                        "deleting from the DLQ",
                        &aws_sdk_sqs::error::DisplayErrorContext(&e),
                    )
                })?;
            moved += n;
            bar.set_length(bar.length().unwrap_or(0).max(moved));
            bar.set_position(moved);
        }
    }
    bar.finish();
    Ok(moved)
}
