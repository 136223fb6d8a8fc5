//! Several apps, one deployment: a [`FcmClient`] per app (Firebase project), each with its own
//! key, OAuth token, quota throttle and connections. A push goes through its app's client. The
//! engine hands a push for an app without a key back before planning it ([`Sink::has_app`]);
//! should one reach a send anyway, it is not sent and comes back ([`SendError::UnknownApp`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{FcmClient, FcmConfig, FcmSetupError, SendError, ServiceAccount};
use crate::sink::{Attempted, Sink, TopicAttempted, TopicCall};

/// The FCM clients of a deployment's apps, by app name.
pub struct FcmApps {
    clients: BTreeMap<String, FcmClient>,
}

impl FcmApps {
    /// A client per app, each for its own key's project, all with the same settings.
    pub fn new(
        keys: BTreeMap<String, ServiceAccount>,
        config: &FcmConfig,
    ) -> Result<FcmApps, FcmSetupError> {
        let clients = keys
            .into_iter()
            .map(|(app, key)| Ok((app, FcmClient::new(key, config)?)))
            .collect::<Result<_, FcmSetupError>>()?;
        Ok(FcmApps { clients })
    }

    /// The apps there are keys for.
    pub fn apps(&self) -> impl Iterator<Item = &str> {
        self.clients.keys().map(String::as_str)
    }
}

impl Sink for FcmApps {
    fn send<'a>(
        &'a self,
        app: &'a str,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'a, Attempted> {
        match self.clients.get(app) {
            Some(client) => client.send(app, body, deadline),
            None => Box::pin(std::future::ready(Attempted {
                result: Err(SendError::UnknownApp {
                    app: app.to_owned(),
                }),
                attempts: 0,
            })),
        }
    }

    /// When every app's project is throttled, until the first throttle ends: a poller waits
    /// only when nothing it takes could be sent.
    fn throttled_until(&self) -> Option<Instant> {
        self.clients
            .values()
            .map(FcmClient::throttled_until)
            .try_fold(None::<Instant>, |first, until| {
                let until = until?;
                Some(Some(first.map_or(until, |f| f.min(until))))
            })
            .flatten()
    }

    fn has_app(&self, app: &str) -> bool {
        self.clients.contains_key(app)
    }

    fn validate_only(&self) -> bool {
        self.clients.values().any(FcmClient::dry_run)
    }

    fn manage_topic<'a>(
        &'a self,
        app: &'a str,
        call: TopicCall<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, TopicAttempted> {
        match self.clients.get(app) {
            Some(client) => Box::pin(client.manage_topic(call, deadline)),
            None => Box::pin(std::future::ready(TopicAttempted::unknown_app(app))),
        }
    }

    fn overrun(&self) -> Duration {
        self.clients
            .values()
            .map(Sink::overrun)
            .max()
            .unwrap_or_default()
    }
}
