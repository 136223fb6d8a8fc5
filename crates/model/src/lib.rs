//! pushq-model: what travels through pushq. The Push (firebase-admin's `Message` plus pushq's
//! fields), its validation and FCM request body, and the queue envelope that carries it.
//!
//! Both sides depend on this crate and on nothing of each other: the producer writes envelopes,
//! the delivery engine reads them.

pub mod envelope;
pub mod error;
pub mod push;
pub mod topics;

pub use envelope::{read_body, Envelope, Page, QueueBody};
pub use error::{EnvelopeError, InvalidPush, TooLarge};
pub use push::{
    check_app, check_fcm_shape, Audience, Push, Recipient, ShapeViolation, Target, Violation,
    DEFAULT_APP,
};
