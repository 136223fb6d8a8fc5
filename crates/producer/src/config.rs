//! Producer configuration: documented defaults, overridden by the environment, then by options.
//! Parsed once when a client is built; a bad setting is a [`Error::Config`], never a fallback.

use std::time::Duration;

use crate::error::{Error, Result};

/// Default bound of a client's backlog, in envelope bytes: 16 MiB, about 16,000 typical pushes
/// (a push with a notification and a few data keys is well under 1 KiB as an envelope).
pub const DEFAULT_MAX_BACKLOG_BYTES: usize = 16 * 1024 * 1024;
/// Smallest backlog a client may be given: one envelope of the largest size pushq writes.
pub const MIN_BACKLOG_BYTES: usize = pushq_model::envelope::MAX_ENVELOPE_BYTES;
/// Largest backlog a client may be given: 1 GiB.
pub const MAX_BACKLOG_BYTES: usize = 1 << 30;
/// Default time a push may spend in the client before SQS has it: 30 s.
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where pushes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Onto the SQS queue at `queue_url` (the default).
    Sqs,
    /// To a transport the caller supplies instead of SQS (the Node binding's local mode delivers
    /// in-process); no queue URL is needed.
    Local,
}

/// Settings a caller may pass explicitly; `None` means "take it from the environment".
#[derive(Debug, Clone, Default)]
pub struct ProducerOptions {
    /// SQS queue URL [`PUSHQ_QUEUE_URL`].
    pub queue_url: Option<String>,
    /// AWS region [`AWS_REGION`, the AWS profile, then the queue URL's host].
    pub region: Option<String>,
    /// SQS endpoint override [`AWS_ENDPOINT_URL_SQS`, then `AWS_ENDPOINT_URL`, then the queue
    /// URL's own origin when its host is not an AWS one (LocalStack, moto, ElasticMQ)].
    pub endpoint_url: Option<String>,
    /// `"sqs"` or `"local"` [`PUSHQ_MODE`, default `"sqs"`].
    pub mode: Option<String>,
    /// The app of pushes that name none [`PUSHQ_APP`, default `default`].
    pub app: Option<String>,
    /// Most envelope bytes waiting in the client [default [`DEFAULT_MAX_BACKLOG_BYTES`]].
    pub max_backlog_bytes: Option<u64>,
    /// Most time, in milliseconds, a push may spend in the client before SQS has it
    /// [default 30,000].
    pub push_timeout_ms: Option<u64>,
    /// EventBridge Scheduler group of scheduled pushes (`scheduleGroup`); else
    /// `PUSHQ_SCHEDULE_GROUP`, else [`DEFAULT_SCHEDULE_GROUP`].
    pub schedule_group: Option<String>,
    /// The role EventBridge Scheduler sends to the queue with (`schedulerRoleArn`); else
    /// `PUSHQ_SCHEDULER_ROLE_ARN`. Needed only for pushes scheduled beyond SQS's delay.
    pub scheduler_role_arn: Option<String>,
}

/// The EventBridge Scheduler group of scheduled pushes when neither the option nor
/// `PUSHQ_SCHEDULE_GROUP` names one (the SAM template creates it).
pub const DEFAULT_SCHEDULE_GROUP: &str = "pushq";

/// The resolved producer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Where pushes go.
    pub mode: Mode,
    /// The queue (sqs mode); always set in sqs mode.
    pub queue_url: Option<String>,
    /// Explicit region, if any (else the AWS chain, then the queue URL).
    pub region: Option<String>,
    /// The endpoint: the option, else `AWS_ENDPOINT_URL_SQS`, else `AWS_ENDPOINT_URL`, else the
    /// queue URL's origin when its host is not an AWS one; `None`: the region's AWS endpoint.
    pub endpoint_url: Option<String>,
    /// Most envelope bytes waiting in the client; a push past it is refused at once.
    pub max_backlog_bytes: usize,
    /// Most time a push spends in the client; past it the push is refused and never sent.
    pub push_timeout: Duration,
    /// EventBridge Scheduler group of scheduled pushes.
    pub schedule_group: String,
    /// The role EventBridge Scheduler sends to the queue with, when configured.
    pub scheduler_role_arn: Option<String>,
    /// EventBridge Scheduler endpoint: `AWS_ENDPOINT_URL_SCHEDULER`, else `AWS_ENDPOINT_URL`,
    /// else the queue URL's origin when it is not on AWS (a local stand-in serving both).
    pub scheduler_endpoint_url: Option<String>,
    /// `PUSHQ_PRODUCER_METRICS=emf`: the CloudWatch namespace (`PUSHQ_METRICS_NAMESPACE`, else
    /// `pushq`) of the EMF lines the producer prints on stdout for the schedules it creates and
    /// deletes; `None` (the default): it prints none.
    pub metrics_namespace: Option<String>,
    /// The app (Firebase project) of pushes that name none.
    pub app: String,
    /// `PUSHQ_AD_PREFIX`, else `(광고)`: what every title of an advertising push starts with.
    pub ad_prefix: String,
}

/// The app of pushes (and devices) that name none: the `app` option, else `PUSHQ_APP` (looked up
/// with `env`), else `default`, checked as a push's `app` is. The one reader of `PUSHQ_APP`: the
/// client's and `DeviceRegistry`'s default app are resolved alike.
pub fn default_app(option: Option<String>, env: impl Fn(&str) -> Option<String>) -> Result<String> {
    let app = option
        .filter(|v| !v.is_empty())
        .or_else(|| env("PUSHQ_APP").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| pushq_model::DEFAULT_APP.to_owned());
    pushq_model::check_app(&app)
        .map_err(|e| Error::Config(format!("app (option app or PUSHQ_APP): {}", e.problem)))?;
    Ok(app)
}

impl ProducerConfig {
    /// Resolves options against the process environment.
    pub fn resolve(options: ProducerOptions) -> Result<ProducerConfig> {
        Self::resolve_with(options, |name| std::env::var(name).ok())
    }

    /// Resolves options against an environment given as a lookup function (for tests).
    pub fn resolve_with(
        options: ProducerOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ProducerConfig> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let pick = |explicit: Option<String>, var: &str| {
            explicit.filter(|v| !v.is_empty()).or_else(|| env(var))
        };

        let mode = mode(pick(options.mode, "PUSHQ_MODE").as_deref())?;
        let queue_url = pick(options.queue_url, "PUSHQ_QUEUE_URL");
        if mode == Mode::Sqs {
            check_queue_url(queue_url.as_deref())?;
        }
        let endpoint_url = match options.endpoint_url.filter(|v| !v.is_empty()) {
            Some(url) => {
                check_url(&url, "endpointUrl")?;
                Some(url)
            }
            None => default_endpoint(queue_url.as_deref(), env),
        };
        let max_backlog_bytes = max_backlog_bytes(options.max_backlog_bytes)?;
        let push_timeout = push_timeout(options.push_timeout_ms)?;
        let app = default_app(options.app, env)?;
        let schedule_group = pick(options.schedule_group, "PUSHQ_SCHEDULE_GROUP")
            .unwrap_or_else(|| DEFAULT_SCHEDULE_GROUP.to_owned());
        check_schedule_group(&schedule_group)?;
        let scheduler_role_arn = pick(options.scheduler_role_arn, "PUSHQ_SCHEDULER_ROLE_ARN");
        if let Some(arn) = &scheduler_role_arn {
            check_scheduler_role_arn(arn)?;
        }
        let scheduler_endpoint_url = env("AWS_ENDPOINT_URL_SCHEDULER")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| queue_url.as_deref().and_then(non_aws_origin));
        let metrics_namespace = metrics_namespace(env)?;
        let ad_prefix = env("PUSHQ_AD_PREFIX")
            .unwrap_or_else(|| pushq_model::push::DEFAULT_AD_PREFIX.to_owned());
        Ok(ProducerConfig {
            ad_prefix,
            metrics_namespace,
            schedule_group,
            scheduler_role_arn,
            scheduler_endpoint_url,
            app,
            mode,
            queue_url,
            region: pick(options.region, "AWS_REGION"),
            endpoint_url,
            max_backlog_bytes,
            push_timeout,
        })
    }

    /// True for a FIFO queue (its URL ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.queue_url
            .as_deref()
            .is_some_and(|u| u.ends_with(".fifo"))
    }
}

/// The mode `PUSHQ_MODE` or the option names: `sqs` when neither does.
fn mode(value: Option<&str>) -> Result<Mode> {
    match value {
        None | Some("sqs") => Ok(Mode::Sqs),
        Some("local") => Ok(Mode::Local),
        Some(other) => Err(Error::Config(format!(
            "mode: must be 'sqs' or 'local' (got {other:?})"
        ))),
    }
}

/// Checks the queue URL of sqs mode: it must be set, and be an http(s) URL.
fn check_queue_url(queue_url: Option<&str>) -> Result<()> {
    let Some(url) = queue_url else {
        return Err(Error::Config(
            "queueUrl: not set (pass options.queueUrl or set PUSHQ_QUEUE_URL; use mode 'local' to run without SQS)"
                .to_owned(),
        ));
    };
    check_url(url, "queueUrl")
}

/// The backlog bound the option asks for, checked against [`MIN_BACKLOG_BYTES`] and
/// [`MAX_BACKLOG_BYTES`]; [`DEFAULT_MAX_BACKLOG_BYTES`] when it asks for none.
fn max_backlog_bytes(option: Option<u64>) -> Result<usize> {
    match option {
        None => Ok(DEFAULT_MAX_BACKLOG_BYTES),
        Some(n) if (MIN_BACKLOG_BYTES as u64..=MAX_BACKLOG_BYTES as u64).contains(&n) => {
            Ok(n as usize)
        }
        Some(n) => Err(Error::Config(format!(
            "maxBacklogBytes: must be {MIN_BACKLOG_BYTES} (one queue message) to {MAX_BACKLOG_BYTES} (got {n})"
        ))),
    }
}

/// The push timeout the option asks for, 1 ms to one hour; [`DEFAULT_PUSH_TIMEOUT`] when it
/// asks for none.
fn push_timeout(option_ms: Option<u64>) -> Result<Duration> {
    match option_ms {
        None => Ok(DEFAULT_PUSH_TIMEOUT),
        Some(ms) if (1..=3_600_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(Error::Config(format!(
            "pushTimeoutMs: must be 1 to 3600000 (got {ms})"
        ))),
    }
}

/// Checks a schedule group name as EventBridge Scheduler takes it: 1-64 characters of
/// A-Z a-z 0-9 - _ .
fn check_schedule_group(schedule_group: &str) -> Result<()> {
    if !(1..=64).contains(&schedule_group.len())
        || !schedule_group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::Config(format!(
            "scheduleGroup (option scheduleGroup or PUSHQ_SCHEDULE_GROUP): must be 1-64 characters of A-Z a-z 0-9 - _ . (got {schedule_group:?})"
        )));
    }
    Ok(())
}

/// Checks that the scheduler role looks like an IAM role ARN
/// (`arn:aws:iam::<account>:role/<name>`).
fn check_scheduler_role_arn(arn: &str) -> Result<()> {
    if !arn.starts_with("arn:") || !arn.contains(":iam::") {
        return Err(Error::Config(format!(
            "schedulerRoleArn (option schedulerRoleArn or PUSHQ_SCHEDULER_ROLE_ARN): must be an IAM role ARN, arn:aws:iam::<account>:role/<name> (got {arn:?})"
        )));
    }
    Ok(())
}

/// The namespace of the producer's EMF lines: `PUSHQ_PRODUCER_METRICS=emf` turns them on
/// (in `PUSHQ_METRICS_NAMESPACE`, else `pushq`); unset or `off`, there are none.
fn metrics_namespace(env: impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    match env("PUSHQ_PRODUCER_METRICS").as_deref() {
        None | Some("off") => Ok(None),
        Some("emf") => Ok(Some(
            env("PUSHQ_METRICS_NAMESPACE").unwrap_or_else(|| "pushq".to_owned()),
        )),
        Some(other) => Err(Error::Config(format!(
            "PUSHQ_PRODUCER_METRICS: must be 'emf' or 'off' (got {other:?})"
        ))),
    }
}

fn check_url(value: &str, field: &str) -> Result<()> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        _ => Err(Error::Config(format!(
            "{field}: must be an http(s) URL (got {value:?})"
        ))),
    }
}

/// Where SQS is when no endpoint is named explicitly: `AWS_ENDPOINT_URL_SQS`, then
/// `AWS_ENDPOINT_URL` (empty values count as unset), then the origin of `queue_url` when its host
/// is not an AWS one; `None` leaves the region's endpoint. The Node client and `pushq worker` /
/// `pushq dlq redrive` both find SQS this way.
pub fn default_endpoint(
    queue_url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    env("AWS_ENDPOINT_URL_SQS")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| queue_url.and_then(non_aws_origin))
}

/// The origin (`scheme://host:port`) of a queue URL whose host is not an AWS one: a queue on
/// LocalStack, moto or ElasticMQ is reached at its own host, as the AWS SDK for JavaScript does.
fn non_aws_origin(queue_url: &str) -> Option<String> {
    let url = url::Url::parse(queue_url).ok()?;
    let host = url.host_str()?;
    let aws = [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]
        .iter()
        .any(|suffix| host.ends_with(suffix));
    (!aws).then(|| url.origin().ascii_serialization())
}

/// The region in an SQS queue URL's host (`sqs.<region>.amazonaws.com` or
/// `<region>.queue.amazonaws.com`), if it has one.
pub fn region_from_queue_url(queue_url: &str) -> Option<String> {
    let host = url::Url::parse(queue_url).ok()?.host_str()?.to_owned();
    let mut parts = host.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sqs"), Some(region), Some("amazonaws")) => Some(region.to_owned()),
        (Some(region), Some("queue"), Some("amazonaws")) => Some(region.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(options: ProducerOptions, vars: &[(&str, &str)]) -> Result<ProducerConfig> {
        ProducerConfig::resolve_with(options, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn options_win_over_environment() {
        let c = resolve(
            ProducerOptions {
                queue_url: Some("http://a/1/q".into()),
                ..Default::default()
            },
            &[
                ("PUSHQ_QUEUE_URL", "http://b/1/q"),
                ("AWS_REGION", "eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(c.queue_url.as_deref(), Some("http://a/1/q"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn sqs_mode_needs_a_queue_url() {
        let err = resolve(ProducerOptions::default(), &[("PUSHQ_QUEUE_URL", "")]).unwrap_err();
        assert!(err.to_string().contains("queueUrl: not set"), "{err}");
        let local = resolve(ProducerOptions::default(), &[("PUSHQ_MODE", "local")]).unwrap();
        assert_eq!(local.mode, Mode::Local);
        assert!(resolve(
            ProducerOptions {
                mode: Some("kafka".into()),
                ..Default::default()
            },
            &[]
        )
        .is_err());
        assert!(resolve(
            ProducerOptions {
                queue_url: Some("queue".into()),
                ..Default::default()
            },
            &[]
        )
        .is_err());
    }

    #[test]
    fn a_queue_url_off_aws_is_its_own_endpoint() {
        let queue = |url: &str| ProducerOptions {
            queue_url: Some(url.into()),
            ..Default::default()
        };
        let localstack = resolve(queue("http://localhost:4566/000000000000/q"), &[]).unwrap();
        assert_eq!(
            localstack.endpoint_url.as_deref(),
            Some("http://localhost:4566")
        );
        let aws = resolve(queue("https://sqs.eu-west-1.amazonaws.com/1/q"), &[]).unwrap();
        assert_eq!(aws.endpoint_url, None);
        // An endpoint named explicitly wins, as option or variable.
        let env = resolve(
            queue("http://localhost:4566/000000000000/q"),
            &[("AWS_ENDPOINT_URL_SQS", "http://elsewhere:9324")],
        )
        .unwrap();
        assert_eq!(env.endpoint_url.as_deref(), Some("http://elsewhere:9324"));
        let option = resolve(
            ProducerOptions {
                endpoint_url: Some("http://proxy:1".into()),
                ..queue("http://localhost:4566/000000000000/q")
            },
            &[],
        )
        .unwrap();
        assert_eq!(option.endpoint_url.as_deref(), Some("http://proxy:1"));
    }

    #[test]
    fn region_from_url() {
        assert_eq!(
            region_from_queue_url("https://sqs.eu-central-1.amazonaws.com/123/q").as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(
            region_from_queue_url("https://us-east-2.queue.amazonaws.com/123/q").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(region_from_queue_url("http://127.0.0.1:5000/123/q"), None);
    }
}
