//! Connecting to a server: a probe before the pool is built, so that an unreachable one is named
//! as such, and the pool's options.

use super::{StoreError, StoreResult};

/// How long a server that refuses connections (down, or nothing listening at its port) is tried
/// before the error says so, rather than a pool's "timed out" after its whole acquire timeout.
const PROBE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// One connection to the server before the pool is built, tried again while the network refuses
/// it, for at most [`PROBE_FOR`] (or `timeout`, if shorter): the error then says what happened
/// ("Connection refused", a DNS failure, a refused login) and where, instead of the pool's
/// "pool timed out while waiting for an open connection".
pub(super) async fn probe<C: sqlx::Connection>(
    options: &C::Options,
    what: &str,
    timeout: std::time::Duration,
) -> StoreResult<()> {
    let limit = PROBE_FOR.min(timeout);
    let started = std::time::Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, C::connect_with(options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(sqlx::Error::Io(e)))
                if network_trouble(&e) && started.elapsed() + PROBE_PAUSE < limit =>
            {
                tracing::debug!(error = %e, "{what}: connection failed; trying again");
                tokio::time::sleep(PROBE_PAUSE).await;
            }
            Ok(Err(sqlx::Error::Io(e))) if network_trouble(&e) => {
                return Err(StoreError::Unreachable {
                    what: what.to_owned(),
                    seconds: limit.as_secs(),
                    source: Some(e.into()),
                })
            }
            Ok(Err(e)) => return Err(StoreError::Database(e)),
            Err(_) => {
                return Err(StoreError::Unreachable {
                    what: what.to_owned(),
                    seconds: limit.as_secs(),
                    source: None,
                })
            }
        }
    }
}

const PROBE_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether a connection failed on the network (nothing listening, no route, reset), which may
/// pass; a refused certificate or login is the deployment's and is reported at once.
fn network_trouble(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
    )
}

/// A pooled server connection idle for longer than this is pinged before a statement uses it.
/// sqlx pings every connection it hands out by default: a round trip before each of a batch's
/// statements, a twentieth of the Lambda's CPU per push in the delivery benchmark's profile. A
/// connection back in the pool within this time is used as it is (if the server dropped it that
/// moment, its statement fails the batch, which comes back); one idle longer (a frozen Lambda, a
/// quiet worker, a database that failed over meanwhile) is checked first and replaced if dead.
pub(super) const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Pool options for a server database: at most `pool_size` connections, `timeout` to get one,
/// pinged only after [`PING_AFTER_IDLE`].
pub(super) fn server_pool_options<DB: sqlx::Database>(
    pool_size: u32,
    timeout: std::time::Duration,
) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(pool_size)
        .acquire_timeout(timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}
