//! Building an engine from the delivery settings, and why that can fail.

use std::sync::Arc;

use pushq_producer::sqs::SqsTransport;
use pushq_producer::{Producer, Scheduler};

use super::{Deferrer, Engine, WithoutCredentials};
use crate::config::{ConfigError, DeliveryConfig};
use crate::fcm::{FcmApps, FcmConfig, FcmSetupError, ServiceAccount};
use crate::sink::{LogSink, Sink};
use crate::store::{Store, StoreError};

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A setting is missing or wrong (the configuration's own error, one type for both).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The FCM credentials.
    #[error(transparent)]
    Fcm(#[from] FcmSetupError),
}

impl Engine {
    /// Builds the engine from delivery settings: connects the pool, applies the schema when
    /// `config.migrate` (else checks that it is applied: [`StoreError::SchemaOutdated`]), and
    /// sets up FCM (or, without credentials, what `without_credentials`
    /// says).
    pub async fn connect(
        config: &DeliveryConfig,
        without_credentials: WithoutCredentials,
    ) -> Result<Engine, SetupError> {
        let url = config
            .database_url
            .as_deref()
            .ok_or_else(|| SetupError::Config(ConfigError("DATABASE_URL: not set".into())))?;
        // The database's round trips and the FCM set-up's CPU (keys, TLS roots) overlap: the
        // connection is under way while the sink is built.
        let store = async {
            let store = Store::connect(url, config.pool_size).await?;
            if config.migrate {
                store.migrate().await?;
            } else {
                // A database that was never migrated (or is behind this build) fails at start,
                // saying to run `pushq migrate`, instead of failing every batch towards the DLQ.
                store.check_schema().await?;
            }
            Ok::<_, SetupError>(store)
        };
        let sink = async { sink(config, without_credentials) };
        let (store, sink) = tokio::join!(store, sink);
        let (store, sink) = (store?, sink?);
        let deferrer = match without_credentials {
            WithoutCredentials::Refuse => sqs_deferrer(config)?,
            // Local mode defers through its own queue (`pushq-local` sets it).
            WithoutCredentials::LogSink { .. } => None,
        };
        Ok(Engine::new(store, sink, config.send_concurrency)
            .with_statement_timeout(config.statement_timeout)
            .with_policy(config.policy)
            .with_audience_page_size(config.audience_page_size)
            .with_rules(config.rules.clone(), deferrer))
    }
}

/// The Lambda's and `pushq worker`'s way of deferring: a producer on the configured queue (an
/// SQS delay within 900 s, else an EventBridge Scheduler schedule with
/// `PUSHQ_SCHEDULER_ROLE_ARN`).
fn sqs_deferrer(config: &DeliveryConfig) -> Result<Option<Arc<dyn Deferrer>>, SetupError> {
    let Some(producer_config) = config.defer.clone() else {
        return Ok(None);
    };
    if producer_config.scheduler_role_arn.is_none() {
        tracing::warn!(
            "PUSHQ_SCHEDULER_ROLE_ARN is not set: a push the recipient rules defer beyond 900 s (to 08:00, to the end of quiet hours) cannot be scheduled; its targets will come back as retrying DEFER_FAILED until it is set"
        );
    }
    let scheduler = Scheduler::for_deferrals(producer_config.clone());
    let transport = SqsTransport::new(producer_config.clone());
    let producer = Producer::start(
        producer_config,
        transport,
        &tokio::runtime::Handle::current(),
    )
    .with_scheduler(scheduler);
    Ok(Some(Arc::new(producer)))
}

/// The sink the engine sends through: FCM with the configured keys, or (without credentials)
/// what `without_credentials` says.
fn sink(
    config: &DeliveryConfig,
    without_credentials: WithoutCredentials,
) -> Result<Arc<dyn Sink>, SetupError> {
    Ok(match (&config.credentials, without_credentials) {
            (Some(credentials), _) => {
                let keys = ServiceAccount::load_apps(credentials)?;
                let apps: Vec<&str> = keys.keys().map(String::as_str).collect();
                tracing::info!(apps = %apps.join(","), "FCM credentials loaded");
                let fcm = FcmConfig {
                    endpoint: config.fcm_endpoint.clone(),
                    dry_run: config.dry_run,
                    cut_at_deadline: config.cut_sends_at_deadline,
                    ca_file: config.fcm_ca_file.clone(),
                    connections: config.fcm_connections(),
                    ..FcmConfig::default()
                };
                Arc::new(FcmApps::new(keys, &fcm)?)
            }
            (None, WithoutCredentials::LogSink { print_requests }) => {
                Arc::new(LogSink { print_requests })
            }
            (None, WithoutCredentials::Refuse) => {
                return Err(SetupError::Config(ConfigError(
                    "FCM credentials: set PUSHQ_FCM_CREDENTIALS (path or JSON) or GOOGLE_APPLICATION_CREDENTIALS".into(),
                )))
            }
        })
}
