//! Delivery-side configuration (Lambda, `pushq worker`, local mode): documented defaults,
//! overridden by the environment. Read once, at start; nothing reads the environment later.

use std::time::Duration;

use chrono_tz::Tz;

/// A setting that cannot be used; names the variable, never its value when that may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// `PUSHQ_DB_STATEMENT_TIMEOUT_MS` when not set: the Lambda keeps 3 s of each invocation for
/// writing the log and answering, and a batch's writes are one or two statements.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 2000;

/// `PUSHQ_STALE_DEVICE_DAYS` when not set: the age at which FCM expires an inactive Android
/// token (https://firebase.google.com/docs/cloud-messaging/manage-tokens).
pub const DEFAULT_STALE_DEVICE_DAYS: u64 = 270;

/// The FCM endpoint when `PUSHQ_FCM_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://fcm.googleapis.com";

/// Namespace of the EMF metrics when `PUSHQ_METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "pushq";

/// The concurrent streams FCM allows on one HTTP/2 connection (its SETTINGS_MAX_CONCURRENT_STREAMS).
pub const FCM_STREAMS_PER_CONNECTION: usize = 100;

/// How many connections `in_flight` concurrent sends need when one connection carries at most
/// `streams_per_connection` of them: `in_flight / streams_per_connection`, rounded up, at least 1.
pub fn connections_for(in_flight: usize, streams_per_connection: usize) -> usize {
    in_flight.div_ceil(streams_per_connection.max(1)).max(1)
}

/// Devices per audience page when `PUSHQ_AUDIENCE_PAGE_SIZE` is unset: a batch of 10 pages is
/// 5,000 sends, about 2.5 s at 100 sends in flight and 50 ms per FCM request, well inside a
/// batch's time, and its rows are written in a few statements.
pub const DEFAULT_AUDIENCE_PAGE_SIZE: u32 = 500;
/// Largest `PUSHQ_AUDIENCE_PAGE_SIZE`.
pub const MAX_AUDIENCE_PAGE_SIZE: u64 = 5_000;

/// `PUSHQ_AUDIENCE_PAGE_SIZE` as set (unset: [`DEFAULT_AUDIENCE_PAGE_SIZE`]): a whole number
/// from 1 to [`MAX_AUDIENCE_PAGE_SIZE`].
fn page_size(value: Option<String>) -> Result<u32, ConfigError> {
    let Some(v) = value else {
        return Ok(DEFAULT_AUDIENCE_PAGE_SIZE);
    };
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_AUDIENCE_PAGE_SIZE).contains(&u64::from(*n)))
        .ok_or_else(|| {
            ConfigError(format!(
                "PUSHQ_AUDIENCE_PAGE_SIZE: must be a whole number from 1 to {MAX_AUDIENCE_PAGE_SIZE} (got {v:?})"
            ))
        })
}

/// Which devices and pushes are too old to send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPolicy {
    /// A device not seen (registered) for this long is not resolved
    /// (`PUSHQ_STALE_DEVICE_DAYS`, default 270 days: when FCM expires inactive Android tokens).
    pub stale_device_after: Duration,
    /// A push enqueued longer ago than this is recorded `expired`, not sent
    /// (`PUSHQ_MAX_PUSH_AGE_SECONDS`; off by default).
    pub max_push_age: Option<Duration>,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            stale_device_after: Duration::from_secs(DEFAULT_STALE_DEVICE_DAYS * 86_400),
            max_push_age: None,
        }
    }
}

/// Delivery-side settings, from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// `DATABASE_URL` (required by the worker and the Lambda; local mode defaults it).
    pub database_url: Option<String>,
    /// `PUSHQ_DB_POOL_SIZE`, default 2: connections per process.
    pub pool_size: u32,
    /// `PUSHQ_MIGRATE=1`: apply the schema when the engine connects. Off by default: servers
    /// and functions do not run DDL unless asked (`pushq migrate` is the usual way).
    pub migrate: bool,
    /// `PUSHQ_FCM_CREDENTIALS` (path or inline JSON), else `GOOGLE_APPLICATION_CREDENTIALS`.
    pub credentials: Option<CredentialsSetting>,
    /// `PUSHQ_FCM_ENDPOINT`, default `https://fcm.googleapis.com`.
    pub fcm_endpoint: String,
    /// `PUSHQ_FCM_DRY_RUN=1`: send with `validate_only`.
    pub dry_run: bool,
    /// `PUSHQ_FCM_CA_FILE`: a PEM file of CA certificates to trust for FCM and its OAuth
    /// endpoint besides the built-in web roots (an FCM stand-in, a TLS-inspecting proxy).
    pub fcm_ca_file: Option<std::path::PathBuf>,
    /// `PUSHQ_FCM_STREAMS_PER_CONNECTION`, default 100 (FCM's limit): concurrent sends one
    /// HTTP/2 connection to FCM carries; see [`DeliveryConfig::fcm_connections`].
    pub fcm_streams_per_connection: usize,
    /// `PUSHQ_SEND_CONCURRENCY`, default 64: FCM requests in flight per batch.
    pub send_concurrency: usize,
    /// Batches the process runs at once, sharing its FCM connections: 1 (the Lambda, local
    /// mode); `pushq worker --concurrency`. Set by the program, not the environment.
    pub batches_at_once: usize,
    /// `PUSHQ_DB_STATEMENT_TIMEOUT_MS`, default 2000: the longest one database statement of a
    /// batch may take (lookups before the sends are also cut at the batch's deadline). Past it
    /// the batch fails like on any database error, and every message is redelivered.
    pub statement_timeout: std::time::Duration,
    /// `PUSHQ_METRICS_NAMESPACE`, default `pushq`: the CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// Whether an FCM attempt still in flight at the batch's deadline is cut short (the Lambda,
    /// whose invocation ends there; the default) or may finish (`pushq worker`, which extends
    /// visibility). Set by the program, not the environment.
    pub cut_sends_at_deadline: bool,
    /// `PUSHQ_STALE_DEVICE_DAYS` (default 270) and `PUSHQ_MAX_PUSH_AGE_SECONDS` (off): which
    /// devices and pushes are too old to send to.
    pub policy: PushPolicy,
    /// `PUSHQ_TIME_ZONE`, `PUSHQ_FREQUENCY_CAPS`, `PUSHQ_CRITICAL_CATEGORIES`: the recipient
    /// rules.
    pub rules: RecipientRules,
    /// Where the Lambda and `pushq worker` put what the recipient rules defer: a producer on
    /// `PUSHQ_QUEUE_URL` (`pushq worker` falls back to its `--queue-url`), with the scheduled
    /// pushes' settings (`PUSHQ_SCHEDULER_ROLE_ARN`, `PUSHQ_SCHEDULE_GROUP`). Unset: deferred
    /// targets come back for redelivery (`NO_DEFER_QUEUE`).
    pub defer: Option<pushq_producer::ProducerConfig>,
    /// `PUSHQ_AUDIENCE_PAGE_SIZE`, default 500 (1 to 5,000): devices per page of an audience
    /// push.
    pub audience_page_size: u32,
}

/// The FCM service-account setting as given: the value (the key's JSON, or the path of a file
/// holding it) and the variable it came from, which errors about it name instead of the value.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialsSetting {
    /// `PUSHQ_FCM_CREDENTIALS`, `GOOGLE_APPLICATION_CREDENTIALS`, or in the Lambda
    /// `PUSHQ_FCM_CREDENTIALS_SECRET_ARN`.
    pub variable: &'static str,
    /// The value, as given. Never printed: it may be the key itself.
    pub value: String,
}

impl std::fmt::Debug for CredentialsSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsSetting")
            .field("variable", &self.variable)
            .field("value", &"<set>")
            .finish()
    }
}

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password and the credentials may be an inline key: neither is printed.
        f.debug_struct("DeliveryConfig")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("migrate", &self.migrate)
            .field("credentials", &self.credentials)
            .field("fcm_endpoint", &self.fcm_endpoint)
            .field("dry_run", &self.dry_run)
            .field("fcm_ca_file", &self.fcm_ca_file)
            .field(
                "fcm_streams_per_connection",
                &self.fcm_streams_per_connection,
            )
            .field("send_concurrency", &self.send_concurrency)
            .field("batches_at_once", &self.batches_at_once)
            .field("statement_timeout", &self.statement_timeout)
            .field("metrics_namespace", &self.metrics_namespace)
            .field("cut_sends_at_deadline", &self.cut_sends_at_deadline)
            .field("policy", &self.policy)
            .field("rules", &self.rules)
            .field("audience_page_size", &self.audience_page_size)
            .field(
                "defer",
                &self.defer.as_ref().and_then(|p| p.queue_url.as_deref()),
            )
            .finish()
    }
}

impl DeliveryConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<DeliveryConfig, ConfigError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// Reads an environment given as a lookup function.
    pub fn from_env_with(
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DeliveryConfig, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let number = |name: &str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match env(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n >= min).ok_or_else(|| {
                    ConfigError(format!(
                        "{name}: must be a whole number >= {min} (got {v:?})"
                    ))
                }),
            }
        };
        let flag = |name: &str| flag(name, env(name).as_deref());
        Ok(DeliveryConfig {
            rules: RecipientRules::from_env(env).map_err(ConfigError)?,
            defer: env("PUSHQ_QUEUE_URL")
                .map(|url| defer_through_with(url, env))
                .transpose()?,
            database_url: env("DATABASE_URL"),
            audience_page_size: page_size(env("PUSHQ_AUDIENCE_PAGE_SIZE"))?,
            pool_size: number("PUSHQ_DB_POOL_SIZE", 2, 1)? as u32,
            migrate: flag("PUSHQ_MIGRATE")?,
            credentials: ["PUSHQ_FCM_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS"]
                .into_iter()
                .find_map(|variable| {
                    env(variable).map(|value| CredentialsSetting { variable, value })
                }),
            fcm_endpoint: env("PUSHQ_FCM_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            dry_run: flag("PUSHQ_FCM_DRY_RUN")?,
            fcm_ca_file: env("PUSHQ_FCM_CA_FILE").map(Into::into),
            fcm_streams_per_connection: number(
                "PUSHQ_FCM_STREAMS_PER_CONNECTION",
                FCM_STREAMS_PER_CONNECTION as u64,
                1,
            )? as usize,
            send_concurrency: number("PUSHQ_SEND_CONCURRENCY", 64, 1)? as usize,
            batches_at_once: 1,
            statement_timeout: std::time::Duration::from_millis(number(
                "PUSHQ_DB_STATEMENT_TIMEOUT_MS",
                DEFAULT_STATEMENT_TIMEOUT_MS,
                1,
            )?),
            metrics_namespace: env("PUSHQ_METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            cut_sends_at_deadline: true,
            policy: PushPolicy {
                stale_device_after: std::time::Duration::from_secs(
                    number("PUSHQ_STALE_DEVICE_DAYS", DEFAULT_STALE_DEVICE_DAYS, 1)?
                        .saturating_mul(86_400),
                ),
                max_push_age: env("PUSHQ_MAX_PUSH_AGE_SECONDS")
                    .map(|_| number("PUSHQ_MAX_PUSH_AGE_SECONDS", 0, 1))
                    .transpose()?
                    .map(std::time::Duration::from_secs),
            },
        })
    }

    /// The consumer's deferrals go onto `queue_url` (the settings of its producer from the
    /// process environment).
    pub fn defer_through(&mut self, queue_url: String) -> Result<(), ConfigError> {
        self.defer = Some(defer_through_with(queue_url, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })?);
        Ok(())
    }

    /// The HTTP/2 connections the process keeps to FCM: enough for every send it may have in
    /// flight (`send_concurrency` × `batches_at_once`) at `fcm_streams_per_connection` each,
    /// i.e. that product divided by the streams per connection, rounded up. One reqwest client
    /// never opens a second connection when the first one's streams run out.
    pub fn fcm_connections(&self) -> usize {
        connections_for(
            self.send_concurrency
                .saturating_mul(self.batches_at_once.max(1)),
            self.fcm_streams_per_connection,
        )
    }
}

#[cfg(test)]
mod tests;

/// A `1`/`0` setting (`true`/`false` too); unset is off.
fn flag(name: &str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(ConfigError(format!(
            "{name}: must be 1 or 0 (got {other:?})"
        ))),
    }
}

/// The producer the consumer defers through, onto `queue_url`, its other settings from `env`.
fn defer_through_with(
    queue_url: String,
    env: impl Fn(&str) -> Option<String>,
) -> Result<pushq_producer::ProducerConfig, ConfigError> {
    pushq_producer::ProducerConfig::resolve_with(
        pushq_producer::ProducerOptions {
            queue_url: Some(queue_url),
            // The queue, whatever PUSHQ_MODE says (local mode defers into its own queue).
            mode: Some("sqs".into()),
            ..Default::default()
        },
        env,
    )
    .map_err(|e| ConfigError(format!("PUSHQ_QUEUE_URL (where deferred pushes go): {e}")))
}

// The recipient rules' settings (rules.rs judges by them).

/// The time zone of users who set none, when `PUSHQ_TIME_ZONE` is unset.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Seoul;
/// The category frequency caps count advertising pushes under (whatever their own category).
pub const ADVERTISING: &str = "advertising";

/// One frequency cap: at most `limit` pushes of a category per `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequencyCap {
    /// The category, or `None` for advertising pushes (`advertising=…`).
    pub category: Option<String>,
    /// Most pushes within the window.
    pub limit: u64,
    /// The window: the last hour, day or week.
    pub window: Duration,
}

/// The deployment's recipient rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRules {
    /// `PUSHQ_TIME_ZONE`: users without a time zone of their own.
    pub time_zone: Tz,
    /// `PUSHQ_FREQUENCY_CAPS`.
    pub caps: Vec<FrequencyCap>,
    /// `PUSHQ_CRITICAL_CATEGORIES`.
    pub critical: Vec<String>,
}

impl Default for RecipientRules {
    fn default() -> Self {
        RecipientRules {
            time_zone: DEFAULT_TIME_ZONE,
            caps: Vec::new(),
            critical: Vec::new(),
        }
    }
}

impl RecipientRules {
    /// From `PUSHQ_TIME_ZONE`, `PUSHQ_FREQUENCY_CAPS` and `PUSHQ_CRITICAL_CATEGORIES`, looked
    /// up with `env`; a value that cannot be read is an error naming the variable.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<RecipientRules, String> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let time_zone = match env("PUSHQ_TIME_ZONE") {
            Some(name) => parse_time_zone(&name).map_err(|e| format!("PUSHQ_TIME_ZONE: {e}"))?,
            None => DEFAULT_TIME_ZONE,
        };
        let caps = match env("PUSHQ_FREQUENCY_CAPS") {
            Some(text) => parse_caps(&text).map_err(|e| format!("PUSHQ_FREQUENCY_CAPS: {e}"))?,
            None => Vec::new(),
        };
        let critical = env("PUSHQ_CRITICAL_CATEGORIES")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(RecipientRules {
            time_zone,
            caps,
            critical,
        })
    }
}

/// An IANA time zone name (`Asia/Seoul`), or why not.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone name (e.g. Asia/Seoul)"))
}

/// `advertising=1/day,marketing=3/week`: per category, a count per hour, day or week.
pub fn parse_caps(text: &str) -> Result<Vec<FrequencyCap>, String> {
    let mut caps = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || format!("{entry:?} is not <category>=<count>/<hour|day|week>");
        let (category, rule) = entry.split_once('=').ok_or_else(bad)?;
        let (count, unit) = rule.trim().split_once('/').ok_or_else(bad)?;
        let limit: u64 = count.trim().parse().map_err(|_| bad())?;
        let window = match unit.trim() {
            "hour" => Duration::from_secs(3600),
            "day" => Duration::from_secs(86_400),
            "week" => Duration::from_secs(7 * 86_400),
            _ => return Err(bad()),
        };
        let category = category.trim();
        if category.is_empty() {
            return Err(bad());
        }
        caps.push(FrequencyCap {
            category: (category != ADVERTISING).then(|| category.to_owned()),
            limit,
            window,
        });
    }
    Ok(caps)
}
