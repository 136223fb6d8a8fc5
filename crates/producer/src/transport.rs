//! Where a producer's batches go. The producer coalesces messages into batches and hands each
//! batch to a [`Transport`]: SQS ([`crate::sqs::SqsTransport`]) or whatever the caller plugs in.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit};

use crate::error::{Error, Result};

/// A future a transport returns, boxed so that transports can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a queue message is between the caller and the queue. Shared by the message and its
/// push's ticket, so that exactly one of them decides: the dispatcher takes it into a batch, or
/// the ticket gives up on it at the push's deadline.
#[derive(Debug, Default)]
pub(crate) struct Fate(AtomicU8);

const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl Fate {
    /// The dispatcher takes the message into a batch; false if the ticket already gave up.
    pub(crate) fn take(&self) -> bool {
        self.0
            .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The ticket gives up on the message; false if it is already in a batch.
    pub(crate) fn abandon(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A count of work under way, and a way to wait until there is none.
#[derive(Debug, Default)]
pub struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

/// One piece of work under way; dropping it ends it.
#[derive(Debug)]
pub struct PendingGuard(Arc<Pending>);

impl Pending {
    /// Starts one piece of work.
    pub fn enter(self: &Arc<Self>) -> PendingGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        PendingGuard(self.clone())
    }

    /// How many pieces of work are under way.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no work is under way (at once if none is).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

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
    /// The push's deadline: a transport sends nothing after it, and a request it makes for the
    /// message ends by it (answered or given up), so the caller hears back in time.
    pub deadline: Instant,
    /// Least time before the deadline worth starting a request in: one started closer would
    /// likely end unanswered, leaving the caller not knowing whether the push got in.
    pub min_time_to_send: Duration,
    pub(crate) fate: Arc<Fate>,
    /// The message's share of the client's backlog, given back once it is answered.
    pub(crate) _backlog: OwnedSemaphorePermit,
    /// Counts the message as unanswered until it is dropped (see `Producer::flush`).
    pub(crate) _unanswered: PendingGuard,
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
/// message in it, each exactly once, by the earliest deadline among them.
pub trait Transport: Send + Sync + 'static {
    /// Sends one batch; resolves when every message of it has been answered.
    fn send(&self, batch: Vec<Outgoing>) -> BoxFuture<'_, ()>;
}
