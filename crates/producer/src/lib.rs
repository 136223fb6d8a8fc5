//! pushq-producer: validates pushes, writes their envelopes and hands them to a queue,
//! coalescing concurrent calls into batches of up to 10. SQS is the transport it ships; a caller
//! may plug in another (the Node binding's local mode does).
//!
//! This crate knows nothing of delivery: it compiles no store and no FCM client.

pub mod aws;
pub mod client;
pub mod config;
mod defer;
mod dispatch;
pub mod error;
pub mod schedule;
pub mod sqs;
pub mod ticket;
pub mod transport;
mod when;

pub use client::{Enqueued, Producer, Ticket, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};
pub use config::{Mode, ProducerConfig, ProducerOptions};
pub use error::{Error, Result};
pub use schedule::{Booking, ScheduleBook, Scheduler};
pub use transport::{BoxFuture, Outgoing, Pending, PendingGuard, Transport};
