//! pushq-core: the domain of pushq, shared by the Node binding, the Lambda and the CLI.
//! Push model and validation, the queue envelope, configuration, the SQS producer, the FCM
//! client, the store and the batch delivery engine.

pub mod config;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod fcm;
pub mod local;
pub mod metrics;
pub mod push;
pub mod queue;
pub mod store;

pub use config::{Mode, ProducerConfig, ProducerOptions};
pub use envelope::Envelope;
pub use error::{Error, InvalidPush, Result};
pub use push::{Push, Target};
pub use queue::{Enqueued, Producer, Ticket};
