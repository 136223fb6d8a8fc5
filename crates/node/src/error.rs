//! The binding's one error type and the one place that decides which JS `code` each error gets.
//! Errors are real `Error` objects with a string `code` (and `field` where a field is at fault).

use napi::bindgen_prelude::*;
use std::sync::Arc;

use pushq_delivery::store::StoreError;
use pushq_producer::Error as ProducerError;

/// Everything the binding can reject with: producer errors, and the database side's.
#[derive(Debug, Clone)]
pub enum BindingError {
    /// From the producer: invalid push, too large, configuration, queue, closed.
    Producer(ProducerError),
    /// The database could not be reached or used (its message never holds the password).
    Database(Arc<StoreError>),
    /// A device does not fit the schema: the field and what is wrong.
    InvalidDevice {
        /// The device field (`userId`, `token`, `platform`).
        field: String,
        /// The whole message.
        message: String,
    },
}

impl From<ProducerError> for BindingError {
    fn from(e: ProducerError) -> Self {
        BindingError::Producer(e)
    }
}

impl From<pushq_model::InvalidPush> for BindingError {
    fn from(e: pushq_model::InvalidPush) -> Self {
        BindingError::Producer(e.into())
    }
}

impl BindingError {
    /// The JS `code`.
    pub fn code(&self) -> &'static str {
        match self {
            BindingError::Producer(e) => match e {
                ProducerError::InvalidPush(_) => "PUSHQ_INVALID_PUSH",
                ProducerError::TooLarge(_) => "PUSHQ_TOO_LARGE",
                ProducerError::Config(_) => "PUSHQ_CONFIG",
                ProducerError::Closed => "PUSHQ_CLOSED",
                _ => "PUSHQ_QUEUE",
            },
            BindingError::Database(_) => "PUSHQ_DATABASE",
            BindingError::InvalidDevice { .. } => "PUSHQ_INVALID_DEVICE",
        }
    }

    /// The field at fault, as the caller names it.
    fn field(&self) -> Option<String> {
        match self {
            BindingError::Producer(ProducerError::InvalidPush(invalid)) => Some(invalid.path()),
            BindingError::InvalidDevice { field, .. } => Some(field.clone()),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            BindingError::Producer(e) => e.to_string(),
            BindingError::Database(e) => e.to_string(),
            BindingError::InvalidDevice { message, .. } => message.clone(),
        }
    }
}

/// Builds the JS error, as a napi error that throws or rejects with that object.
pub fn to_js(env: &Env, error: &BindingError) -> napi::Error {
    let build = || -> Result<napi::Error> {
        let mut object =
            env.create_error(napi::Error::new(Status::GenericFailure, error.message()))?;
        object.set_named_property("code", error.code())?;
        if let Some(field) = error.field() {
            object.set_named_property("field", field)?;
        }
        Ok(napi::Error::from(object.to_unknown()))
    };
    build().unwrap_or_else(|e| e)
}
