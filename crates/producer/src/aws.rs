//! The one place an AWS client is built (timeouts, retries, region, endpoint, credentials
//! checked once): SQS's for the producer, `pushq worker` and `pushq dlq redrive`, and EventBridge
//! Scheduler's for scheduled pushes.

use std::time::Duration;

use crate::config::region_from_queue_url;
use crate::error::{Error, Result};

/// How an SQS client is built: where it sends and how long it waits.
#[derive(Debug, Clone)]
pub struct SqsSettings {
    /// Explicit region; else the AWS chain (`AWS_REGION`, profile), then the queue URL's host.
    pub region: Option<String>,
    /// Explicit endpoint; else the SDK's (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, the region's).
    pub endpoint_url: Option<String>,
    /// A queue URL to take the region from when nothing else names one.
    pub queue_url: Option<String>,
    /// Longest wait for one HTTP attempt; must exceed a long poll's wait time.
    pub attempt_timeout: Duration,
    /// Longest wait for one operation, its retries included.
    pub operation_timeout: Duration,
    /// Attempts per operation (the SDK's standard retry mode).
    pub max_attempts: u32,
}

impl Default for SqsSettings {
    /// The producer's: 10 s an attempt, 30 s an operation, 3 attempts.
    fn default() -> Self {
        SqsSettings {
            region: None,
            endpoint_url: None,
            queue_url: None,
            attempt_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

/// Builds an SQS client from `settings`. Fails with [`Error::Config`] when no region can be
/// found or the AWS credential chain yields no credentials.
pub async fn client(settings: &SqsSettings) -> Result<aws_sdk_sqs::Client> {
    Ok(client_and_endpoint(settings).await?.0)
}

/// [`client`], and the endpoint it sends to, for error messages.
pub async fn client_and_endpoint(settings: &SqsSettings) -> Result<(aws_sdk_sqs::Client, String)> {
    let shared = shared_config(settings, "SQS").await?;
    let endpoint = match shared.endpoint_url() {
        Some(url) => url.to_owned(),
        None => format!(
            "https://sqs.{}.amazonaws.com",
            shared.region().map_or("?", |r| r.as_ref())
        ),
    };
    Ok((aws_sdk_sqs::Client::new(&shared), endpoint))
}

/// The AWS settings `settings` describe (region, endpoint, timeouts, retries), with the
/// credentials checked once: `service` names what they are for in errors. Shared by the SQS
/// client and the EventBridge Scheduler client.
pub(crate) async fn shared_config(
    settings: &SqsSettings,
    service: &str,
) -> Result<aws_config::SdkConfig> {
    use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region};
    use aws_sdk_sqs::config::ProvideCredentials;

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(settings.attempt_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        );
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let mut shared = loader.load().await;
    if shared.region().is_none() {
        let Some(region) = settings
            .queue_url
            .as_deref()
            .and_then(region_from_queue_url)
        else {
            return Err(Error::Config(
                "region: not set (pass options.region, set AWS_REGION, or use an amazonaws.com queue URL)".into(),
            ));
        };
        shared = shared.into_builder().region(Region::new(region)).build();
    }
    // Credentials are checked here, once, so that a machine without any is told so as a
    // configuration error rather than as a failed request to the queue.
    if let Some(credentials) = shared.credentials_provider() {
        use aws_credential_types::provider::error::CredentialsError;
        credentials.provide_credentials().await.map_err(|e| match e {
            // Nothing configured, or configured wrongly: the deployment must change.
            CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_) => {
                Error::Config(format!(
                    "AWS credentials: none usable for {service} (the standard chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, a container or instance role): {}",
                    root_cause(&e)
                ))
            }
            // A provider that timed out or failed may answer next time.
            e => Error::queue(format!(
                "AWS credentials could not be loaded for {service} just now: {}",
                root_cause(&e)
            )),
        })?;
    }
    Ok(shared)
}

/// The innermost error of a chain, on one line: what actually went wrong.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string().replace(['\n', '\r'], " ")
}
