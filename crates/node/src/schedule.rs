//! Scheduled pushes from Node: where a client writes them down (the deployment's database, for
//! `DeliveryLog` and `cancelPush`), and `cancelPush` itself.

use std::sync::Arc;

use pushq_delivery::store::{PushLogState, Store};
use pushq_producer::{Booking, BoxFuture, Error, ScheduleBook};

use crate::database::LazyStore;
use crate::error::BindingError;

/// Writes a client's scheduled pushes down in its database (`pushq_scheduled`).
pub(crate) struct StoreBook(pub LazyStore);

impl ScheduleBook for StoreBook {
    fn book<'a>(&'a self, b: &'a Booking) -> BoxFuture<'a, pushq_producer::Result<()>> {
        Box::pin(async move {
            let store = self.0.get().await.map_err(into_producer)?;
            let send_at = chrono::DateTime::from_timestamp_millis(b.send_at_ms).unwrap_or_default();
            store
                .record_scheduled(&b.push_id, &b.app, &b.target, send_at)
                .await
                .map_err(|e| into_producer(self.0.database(e)))
        })
    }

    fn unbook<'a>(&'a self, push_id: &'a str) -> BoxFuture<'a, pushq_producer::Result<()>> {
        Box::pin(async move {
            let store = self.0.get().await.map_err(into_producer)?;
            store
                .forget_scheduled(push_id)
                .await
                .map_err(|e| into_producer(self.0.database(e)))
        })
    }
}

fn into_producer(e: BindingError) -> Error {
    match e {
        BindingError::Producer(e) => e,
        BindingError::Database { message, cause } => Error::database(
            format!(
                "the scheduled push could not be written down, so it was not scheduled: {message}"
            ),
            cause.map(|c| c as Arc<dyn std::error::Error + Send + Sync>),
        ),
        other => Error::database(format!("{other:?}"), None),
    }
}

/// What `cancelPush` did.
#[napi_derive::napi(object)]
pub struct Cancelled {
    /// The push id asked about.
    pub id: String,
    /// True when the push was cancelled: its schedule deleted if it had not fired, and the
    /// cancellation recorded, so that a copy on the queue is recorded `cancelled` per target
    /// instead of being sent. False when every target of the push was already final.
    pub cancelled: bool,
}

/// Cancels a push: `deleted` says whether its schedule was deleted (it had not fired). Unless
/// every target is final already, the cancellation is recorded in `store`.
pub(crate) async fn cancel(
    store: &Store,
    id: String,
    deleted: bool,
) -> Result<Cancelled, pushq_delivery::store::StoreError> {
    if !deleted {
        let log = store.push_log(&id).await?;
        if matches!(log.state, PushLogState::Final) {
            return Ok(Cancelled {
                id,
                cancelled: false,
            });
        }
    }
    store.record_cancelled(&id).await?;
    Ok(Cancelled {
        id,
        cancelled: true,
    })
}
