//! The one place that decides which JS `code` each core error gets.
//! Errors are real `Error` objects with a string `code` (and `field` for invalid pushes).

use napi::bindgen_prelude::*;
use pushq_core::Error as CoreError;

/// The JS `code` of a core error.
pub fn code(error: &CoreError) -> &'static str {
    match error {
        CoreError::InvalidPush(_) => "PUSHQ_INVALID_PUSH",
        CoreError::TooLarge { .. } => "PUSHQ_TOO_LARGE",
        CoreError::Config(_) => "PUSHQ_CONFIG",
        CoreError::Closed => "PUSHQ_CLOSED",
        // A producer never parses envelopes; anything else the queue path can raise is a queue error.
        _ => "PUSHQ_QUEUE",
    }
}

/// Builds the JS error for a core error, as a napi error that throws or rejects with that object.
pub fn to_js(env: &Env, error: &CoreError) -> napi::Error {
    let build = || -> Result<napi::Error> {
        let mut object =
            env.create_error(napi::Error::new(Status::GenericFailure, error.to_string()))?;
        object.set_named_property("code", code(error))?;
        if let CoreError::InvalidPush(invalid) = error {
            let field = match invalid.index {
                Some(i) => format!("pushes[{i}].{}", invalid.field),
                None => invalid.field.clone(),
            };
            object.set_named_property("field", field)?;
        }
        Ok(napi::Error::from(object.to_unknown()))
    };
    build().unwrap_or_else(|e| e)
}
