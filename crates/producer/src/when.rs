//! When a push may be sent: now, after an SQS delay, or at the time of its schedule.

use pushq_model::push::MAX_DELAY_SECONDS;
use pushq_model::{InvalidPush, Push};

use crate::client::Producer;
use crate::config::Mode;

impl Producer {
    /// When the push may be sent: its SQS delay, or the time of its schedule. Refuses a delay
    /// on a FIFO queue, an `expiresAt` already past (the push would only ever be recorded
    /// `expired`), and a `sendAt` [`Producer::when_due`] refuses.
    pub(crate) fn when(
        &self,
        push: &Push,
        fifo: bool,
    ) -> Result<(Option<i32>, Option<i64>), InvalidPush> {
        if fifo && push.delay_seconds().unwrap_or(0) > 0 {
            return Err(InvalidPush::new(
                "delaySeconds",
                "FIFO queues do not support per-message delays (set the delay on the queue, or use a standard queue)",
            ));
        }
        if let Some(expires_at) = push.expires_at_ms() {
            let now = now_ms();
            if expires_at <= now {
                return Err(InvalidPush::new(
                    "expiresAt",
                    format!(
                        "has already passed ({} ms ago): the push would never be sent",
                        now - expires_at
                    ),
                ));
            }
        }
        let delay_seconds = push.delay_seconds().filter(|d| *d > 0).map(|d| d as i32);
        let Some(send_at) = push.send_at_ms() else {
            return Ok((delay_seconds, None));
        };
        Ok(match self.when_due(send_at, push.expires_at_ms(), fifo)? {
            Due::Delay(seconds) => (seconds, None),
            Due::Schedule => (None, Some(send_at)),
        })
    }

    /// How a push with `sendAt` waits: an SQS delay when it is due within 900 s on a standard
    /// queue, else a schedule; in local mode the in-process delivery holds it (no delay here).
    /// A time already past (by more than a second), more than 365 days ahead, or not before
    /// `expiresAt` is refused, naming `sendAt`.
    fn when_due(
        &self,
        send_at: i64,
        expires_at: Option<i64>,
        fifo: bool,
    ) -> Result<Due, InvalidPush> {
        let now = now_ms();
        if send_at < now - SEND_AT_GRACE_MS {
            return Err(InvalidPush::new(
                "sendAt",
                format!(
                    "has already passed ({} s ago): leave sendAt out to send the push now",
                    (now - send_at) / 1000
                ),
            ));
        }
        let furthest = now + pushq_model::push::MAX_SCHEDULE_DAYS * 86_400_000;
        if send_at > furthest {
            return Err(InvalidPush::new(
                "sendAt",
                format!(
                    "is more than {} days ahead",
                    pushq_model::push::MAX_SCHEDULE_DAYS
                ),
            ));
        }
        if expires_at.is_some_and(|e| e <= send_at) {
            return Err(InvalidPush::new(
                "sendAt",
                "is not before expiresAt: the push would expire before it is due",
            ));
        }
        let wait_ms = (send_at - now).max(0);
        Ok(match self.config.mode {
            Mode::Local => Due::Delay(None),
            Mode::Sqs if !fifo && wait_ms <= i64::from(MAX_DELAY_SECONDS) * 1000 => {
                // Rounded up: SQS delays in whole seconds, and an early copy only waits.
                Due::Delay(Some(((wait_ms + 999) / 1000) as i32).filter(|s| *s > 0))
            }
            Mode::Sqs => Due::Schedule,
        })
    }
}

/// How a push with `sendAt` waits for its time.
enum Due {
    /// On the queue with this SQS delay (none: local mode holds it itself).
    Delay(Option<i32>),
    /// In an EventBridge Scheduler schedule.
    Schedule,
}

/// A `sendAt` this close behind the clock is taken as now (a `new Date()` handed straight over).
const SEND_AT_GRACE_MS: i64 = 1_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
