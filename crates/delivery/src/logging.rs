//! The log setup of the delivery programs (the Lambda, the `pushq` CLI): JSON lines, filtered by
//! `PUSHQ_LOG` (default `info`). One setup, so both programs log alike.

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Standard output, without timestamps (the Lambda: CloudWatch stamps each line).
    StdoutForLambda,
    /// Standard error (the CLI: its standard output is the command's result).
    Stderr,
}

/// Installs the global JSON subscriber. Call once, first thing in `main`.
pub fn init(target: Target) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PUSHQ_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().json().with_env_filter(filter);
    match target {
        Target::StdoutForLambda => builder.with_current_span(false).without_time().init(),
        Target::Stderr => builder.with_writer(std::io::stderr).init(),
    }
}
