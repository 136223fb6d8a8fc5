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
    /// The database could not be reached or used (its message never holds the password), and
    /// the store's error underneath.
    Database {
        /// What failed, naming where the database's URL came from.
        message: String,
        /// The store's error, for `err.cause`.
        cause: Option<Arc<StoreError>>,
    },
    /// An argument that is not what the function takes (not a push: those are `InvalidPush`).
    InvalidArgument(String),
    /// A wait ran out of time.
    Timeout(String),
    /// An argument's field that is not what the function takes (`PUSHQ_INVALID_ARGUMENT`,
    /// with `field`): a subscription's topic, say.
    InvalidField {
        /// The field, as the caller names it.
        field: String,
        /// The whole message.
        message: String,
    },
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
                ProducerError::Database { .. } => "PUSHQ_DATABASE",
                ProducerError::Delivery(_) => "PUSHQ_DELIVERY",
                ProducerError::QueueUnknown { .. } => "PUSHQ_QUEUE_UNKNOWN",
                _ => "PUSHQ_QUEUE",
            },
            BindingError::Database { .. } => "PUSHQ_DATABASE",
            BindingError::InvalidArgument(_) | BindingError::InvalidField { .. } => {
                "PUSHQ_INVALID_ARGUMENT"
            }
            BindingError::Timeout(_) => "PUSHQ_TIMEOUT",
            BindingError::InvalidDevice { .. } => "PUSHQ_INVALID_DEVICE",
        }
    }

    /// The field at fault, as the caller names it.
    fn field(&self) -> Option<String> {
        match self {
            BindingError::Producer(ProducerError::InvalidPush(invalid)) => Some(invalid.path()),
            BindingError::InvalidDevice { field, .. }
            | BindingError::InvalidField { field, .. } => Some(field.clone()),
            BindingError::Producer(ProducerError::TooLarge(too_large)) => {
                too_large.largest_field.clone()
            }
            _ => None,
        }
    }

    /// SQS's error code, when SQS answered with one.
    fn aws_code(&self) -> Option<&str> {
        match self {
            BindingError::Producer(ProducerError::Queue { aws_code, .. }) => aws_code.as_deref(),
            _ => None,
        }
    }

    /// The full detail of the error underneath, for `err.cause`: the AWS SDK's, or the store's
    /// (its message: the store never puts a URL or a password in one).
    fn cause(&self) -> Option<String> {
        match self {
            BindingError::Producer(ProducerError::Queue {
                cause: Some(cause), ..
            }) => Some(format!("{cause:?}")),
            BindingError::Producer(ProducerError::Database {
                cause: Some(cause), ..
            }) => Some(cause.to_string()),
            BindingError::Database {
                cause: Some(cause), ..
            } => Some(cause.to_string()),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            BindingError::Producer(e) => e.to_string(),
            BindingError::Database { message, .. }
            | BindingError::InvalidArgument(message)
            | BindingError::Timeout(message) => message.clone(),
            BindingError::InvalidDevice { message, .. }
            | BindingError::InvalidField { message, .. } => message.clone(),
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
        if let BindingError::Producer(ProducerError::QueueUnknown {
            push_id: Some(id), ..
        }) = error
        {
            object.set_named_property("pushId", id.as_str())?;
        }
        if let Some(code) = error.aws_code() {
            object.set_named_property("awsCode", code)?;
        }
        if let Some(detail) = error.cause() {
            let cause = env.create_error(napi::Error::new(Status::GenericFailure, detail))?;
            object.set_named_property("cause", cause)?;
        }
        Ok(napi::Error::from(object.to_unknown()))
    };
    build().unwrap_or_else(|e| e)
}

/// True when `value` is an error pushq raised: an `Error` whose `code` starts with `PUSHQ_`.
/// In TypeScript it narrows a caught `unknown` to {@link PushqError}.
#[napi_derive::napi(
    ts_args_type = "value: unknown",
    ts_return_type = "value is PushqError"
)]
pub fn is_pushq_error(value: Unknown) -> Result<bool> {
    if value.get_type()? != ValueType::Object || !value.is_error()? {
        return Ok(false);
    }
    let object = Object::from_unknown(value)?;
    let code: Unknown = object.get_named_property("code")?;
    if code.get_type()? != ValueType::String {
        return Ok(false);
    }
    Ok(String::from_unknown(code)?.starts_with("PUSHQ_"))
}
