//! Delivery-side configuration (Lambda, `pushq worker`, local mode): documented defaults,
//! overridden by the environment. Read once, at start; nothing reads the environment later.

/// A setting that cannot be used; names the variable, never its value when that may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

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
    pub credentials: Option<String>,
    /// `PUSHQ_FCM_ENDPOINT`, default `https://fcm.googleapis.com`.
    pub fcm_endpoint: String,
    /// `PUSHQ_FCM_DRY_RUN=1`: send with `validate_only`.
    pub dry_run: bool,
    /// `PUSHQ_SEND_CONCURRENCY`, default 64: FCM requests in flight per batch.
    pub send_concurrency: usize,
    /// `PUSHQ_METRICS_NAMESPACE`, default `pushq`: the CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// Whether an FCM attempt still in flight at the batch's deadline is cut short (the Lambda,
    /// whose invocation ends there; the default) or may finish (`pushq worker`, which extends
    /// visibility). Set by the program, not the environment.
    pub cut_sends_at_deadline: bool,
}

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password and the credentials may be an inline key: neither is printed.
        f.debug_struct("DeliveryConfig")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("pool_size", &self.pool_size)
            .field("migrate", &self.migrate)
            .field("credentials", &self.credentials.as_ref().map(|_| "<set>"))
            .field("fcm_endpoint", &self.fcm_endpoint)
            .field("dry_run", &self.dry_run)
            .field("send_concurrency", &self.send_concurrency)
            .field("metrics_namespace", &self.metrics_namespace)
            .field("cut_sends_at_deadline", &self.cut_sends_at_deadline)
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
        let flag = |name: &str| match env(name).as_deref() {
            None | Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") => Ok(true),
            Some(other) => Err(ConfigError(format!(
                "{name}: must be 1 or 0 (got {other:?})"
            ))),
        };
        Ok(DeliveryConfig {
            database_url: env("DATABASE_URL"),
            pool_size: number("PUSHQ_DB_POOL_SIZE", 2, 1)? as u32,
            migrate: flag("PUSHQ_MIGRATE")?,
            credentials: env("PUSHQ_FCM_CREDENTIALS")
                .or_else(|| env("GOOGLE_APPLICATION_CREDENTIALS")),
            fcm_endpoint: env("PUSHQ_FCM_ENDPOINT")
                .unwrap_or_else(|| crate::fcm::DEFAULT_ENDPOINT.to_owned()),
            dry_run: flag("PUSHQ_FCM_DRY_RUN")?,
            send_concurrency: number("PUSHQ_SEND_CONCURRENCY", 64, 1)? as usize,
            metrics_namespace: env("PUSHQ_METRICS_NAMESPACE")
                .unwrap_or_else(|| crate::metrics::DEFAULT_NAMESPACE.to_owned()),
            cut_sends_at_deadline: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<DeliveryConfig, ConfigError> {
        DeliveryConfig::from_env_with(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_then_environment() {
        let c = read(&[]).unwrap();
        assert_eq!((c.pool_size, c.migrate, c.send_concurrency), (2, false, 64));
        assert_eq!(c.metrics_namespace, "pushq");
        let c = read(&[
            ("PUSHQ_MIGRATE", "1"),
            ("PUSHQ_METRICS_NAMESPACE", "gym"),
            ("PUSHQ_SEND_CONCURRENCY", "8"),
        ])
        .unwrap();
        assert_eq!((c.migrate, c.send_concurrency), (true, 8));
        assert_eq!(c.metrics_namespace, "gym");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = read(&[("PUSHQ_MIGRATE", "yes")]).unwrap_err();
        assert!(e.to_string().contains("PUSHQ_MIGRATE"), "{e}");
        let e = read(&[("PUSHQ_DB_POOL_SIZE", "0")]).unwrap_err();
        assert!(e.to_string().contains("PUSHQ_DB_POOL_SIZE"), "{e}");
    }
}
