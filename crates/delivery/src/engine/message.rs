//! A queue message as the engine takes it: what SQS (or local mode) says of it.

/// One message of a batch, as SQS delivered it.
#[derive(Debug, Clone, Default)]
pub struct QueueMessage {
    /// The SQS message id (what a batch item failure names).
    pub message_id: String,
    /// The body: an envelope, or something to reject.
    pub body: String,
    /// SQS `SentTimestamp`, milliseconds since the epoch.
    pub sent_at_ms: i64,
    /// How often the queue has delivered this message (SQS's `ApproximateReceiveCount`); 0 or 1
    /// the first time.
    pub receive_count: u32,
    /// The id of the message this one was moved from by `pushq dlq redrive` (its
    /// [`FIRST_MESSAGE_ID`] attribute): a foreign envelope without `id` keeps that id as its
    /// push id across redrives.
    pub first_message_id: Option<String>,
    /// Its FIFO message group (FIFO queues only): the engine keeps the order of a group's
    /// messages ([`super::Engine::deliver`]).
    pub group: Option<String>,
}

/// The message attribute `pushq dlq redrive` gives each message it moves: the id of the message
/// as first enqueued (carried along by later redrives).
pub const FIRST_MESSAGE_ID: &str = "pushq-first-message-id";

impl QueueMessage {
    /// A message as SQS reports it (the Lambda's event record, the worker's receive): its id,
    /// body and `SentTimestamp` attribute, each of which SQS may leave out.
    pub fn from_sqs(
        message_id: Option<&str>,
        body: Option<&str>,
        sent_timestamp: Option<&str>,
    ) -> QueueMessage {
        QueueMessage {
            message_id: message_id.unwrap_or_default().to_owned(),
            body: body.unwrap_or_default().to_owned(),
            sent_at_ms: sent_timestamp.and_then(|v| v.parse().ok()).unwrap_or(0),
            ..QueueMessage::default()
        }
    }

    /// The same message, with what SQS says of its earlier deliveries: its
    /// `ApproximateReceiveCount` and its [`FIRST_MESSAGE_ID`] attribute.
    pub fn delivered_before(
        self,
        receive_count: Option<&str>,
        first_message_id: Option<&str>,
    ) -> QueueMessage {
        QueueMessage {
            receive_count: receive_count.and_then(|v| v.parse().ok()).unwrap_or(0),
            first_message_id: first_message_id
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            ..self
        }
    }

    /// The same message, in FIFO message group `group` (`None` on a standard queue).
    pub fn in_group(self, group: Option<&str>) -> QueueMessage {
        QueueMessage {
            group: group.map(str::to_owned),
            ..self
        }
    }

    /// The id that stands in for a foreign envelope's missing `id`: the first message's.
    pub fn original_id(&self) -> &str {
        self.first_message_id.as_deref().unwrap_or(&self.message_id)
    }

    /// Whether the queue may have delivered this push before (a receive after the first, or a
    /// message moved back from the DLQ): then rows of an earlier attempt may be left to close.
    pub fn maybe_seen_before(&self) -> bool {
        self.receive_count > 1 || self.first_message_id.is_some()
    }
}
