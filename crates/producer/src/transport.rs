//! Where a producer's batches go. The producer coalesces messages into batches and hands each
//! batch to a [`Transport`]: SQS ([`crate::sqs::SqsTransport`]) or whatever the caller plugs in.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// A future a transport returns, boxed so that transports can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One queue message on its way out. Answering it (accept or refuse) settles its push's part.
pub struct Outgoing {
    /// The envelope, as the queue message body.
    pub body: String,
    /// FIFO message group, on FIFO queues.
    pub group_id: Option<String>,
    /// FIFO deduplication id, on FIFO queues.
    pub dedup_id: Option<String>,
    /// SQS `DelaySeconds`, when the push asked for one.
    pub delay_seconds: Option<i32>,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

impl Outgoing {
    /// The queue has the message.
    pub fn accept(self) {
        let _ = self.reply.send(Ok(()));
    }

    /// The queue refused the message, or could not be reached: the push was not enqueued.
    pub fn refuse(self, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

/// Takes a batch of messages (at most 10, at most [`crate::MAX_BATCH_BYTES`]) and answers every
/// message in it, each exactly once.
pub trait Transport: Send + Sync + 'static {
    /// Sends one batch; resolves when every message of it has been answered.
    fn send(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, ()>;
}
