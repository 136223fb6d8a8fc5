//! pushq-delivery: everything below the queue. The FCM HTTP v1 client, the store (SQLite,
//! PostgreSQL, MySQL/MariaDB), and the batch engine that the Lambda, `pushq worker` and local
//! mode share, with its configuration, outcome and metrics.

pub mod config;
pub mod engine;
pub mod fcm;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod request;
pub mod rules;
pub mod setting;
pub mod sink;
pub mod store;

pub use config::DeliveryConfig;
pub use engine::{
    Engine, PushPolicy, QueueMessage, SetupError, WithoutCredentials, FIRST_MESSAGE_ID,
};
pub use outcome::{AppCounts, BatchCounts, BatchOutcome};
