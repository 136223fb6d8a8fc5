//! The dispatcher: takes waiting messages in batches of up to [`MAX_BATCH_ENTRIES`] (and
//! [`MAX_BATCH_BYTES`]) and sends each batch in its own task, at most
//! [`MAX_IN_FLIGHT_BATCHES`] at once; while they are out, messages wait and batches fill up.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Semaphore};

use crate::client::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_IN_FLIGHT_BATCHES};
use crate::error::Error;
use crate::transport::{Outgoing, Transport};

/// Takes waiting messages in batches and sends each batch in its own task.
pub(crate) async fn dispatch(
    mut receiver: mpsc::UnboundedReceiver<Outgoing>,
    queue: Arc<dyn Transport>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES));
    let mut carried: Option<Outgoing> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let first = match carried.take() {
            Some(o) => o,
            None => match receiver.recv().await {
                Some(o) => o,
                None => break,
            },
        };
        let Some(first) = admit(first) else { continue };
        let mut bytes = first.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_ENTRIES {
            let Ok(next) = receiver.try_recv() else { break };
            if bytes + next.body.len() > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            let Some(next) = admit(next) else { continue };
            bytes += next.body.len();
            batch.push(next);
        }
        let queue = queue.clone();
        tokio::spawn(async move {
            queue.send(batch).await;
            drop(slot);
        });
    }
    // Wait for the batches still out: every slot back means every request answered.
    let _ = slots.acquire_many(MAX_IN_FLIGHT_BATCHES as u32).await;
}

/// Takes a message into a batch, unless its ticket gave up on it (it is dropped) or its
/// deadline has passed (it is refused): nothing is sent after its push's deadline.
fn admit(o: Outgoing) -> Option<Outgoing> {
    if !o.fate.take() {
        return None;
    }
    if Instant::now() + o.min_time_to_send >= o.deadline {
        o.refuse(Error::queue(
            "not enqueued: the push waited for SQS until too close to its deadline to send; it will not be sent",
        ));
        return None;
    }
    Some(o)
}
