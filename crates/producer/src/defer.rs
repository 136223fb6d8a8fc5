//! The consumer's side of the producer: what the recipient rules defer is enqueued again for
//! the users it concerns, due at the window's end, through the same transport and scheduler as
//! any scheduled push; and what an audience push's expansion writes (its pages, and the push
//! itself again to go on with the expansion), through the same transport.

use pushq_model::{Envelope, Push};

use crate::client::{Producer, Ticket};
use crate::error::Result;

impl Producer {
    /// The consumer's deferral: `envelope`'s push again, for `users` only, due at `until_ms`
    /// (a recipient's night-time or quiet-hours window). The same envelope otherwise (push id,
    /// part, `enqueuedAt`, dry run), so that the delivery log's `deferred` rows become final when
    /// the copy is delivered; not checked again as a client's push is (another producer's push
    /// id need not be a UUID, and the title prefix was the producer's to check). An SQS delay
    /// within 900 s, else a schedule named by [`crate::schedule::deferral_name`] after the push,
    /// its part (an audience page: its page number), the time and the users: deferring the same users to the same time again (a
    /// batch delivered twice) finds that schedule, and makes no second one.
    pub fn defer(&self, envelope: &Envelope, users: &[String], until_ms: i64) -> Result<Ticket> {
        let mut raw = envelope.push.raw().clone();
        // An audience page's deferred users become a userIds push of the same id.
        for field in [
            "userId",
            "userIds",
            "audience",
            "delaySeconds",
            "sendAt",
            "id",
        ] {
            raw.remove(field);
        }
        let list = users
            .iter()
            .cloned()
            .map(serde_json::Value::String)
            .collect();
        raw.insert("userIds".into(), serde_json::Value::Array(list));
        let until = chrono::DateTime::from_timestamp_millis(until_ms).unwrap_or_default();
        raw.insert("sendAt".into(), until.to_rfc3339().into());
        let push = Push::from_value(serde_json::Value::Object(raw))?;
        let (delay_seconds, scheduled_at) = self.when(&push, self.config.is_fifo())?;
        if scheduled_at.is_some() {
            self.scheduler()?;
        }
        let copy = Envelope {
            push,
            page: None,
            ..envelope.clone()
        };
        // A page of an audience push is named by its page: thousands of pages defer users to the
        // same minute, and their names must not meet.
        let part = envelope
            .page
            .map(|p| p.n)
            .or(envelope.part.map(|(i, _)| i))
            .unwrap_or(0);
        let mut prepared =
            self.prepare_envelope(copy, scheduled_at.is_some(), delay_seconds, None)?;
        prepared.schedule_as = Some(crate::schedule::deferral_name(
            &envelope.id,
            part,
            until_ms,
            users,
        ));
        self.submit(prepared)
    }
}

impl Producer {
    /// The consumer's own queue messages, now: `messages` are (body, key) pairs, the key unique
    /// within push `id` (an audience page's number, say). On a FIFO queue each message is its own
    /// group and its deduplication id is derived from (`id`, key), so that writing the same
    /// message again within five minutes (an expansion resumed) is dropped by SQS.
    pub fn enqueue_bodies(&self, id: &str, messages: Vec<(String, String)>) -> Result<Ticket> {
        let fifo = self.config.is_fifo();
        let messages = messages
            .into_iter()
            .map(|(body, key)| {
                let dedup = fifo.then(|| {
                    uuid::Uuid::new_v5(
                        &uuid::Uuid::NAMESPACE_OID,
                        format!("{id}\n{key}").as_bytes(),
                    )
                    .to_string()
                });
                (body, dedup.clone(), dedup)
            })
            .collect();
        self.submit(crate::client::Prepared::raw(id, messages))
    }
}
