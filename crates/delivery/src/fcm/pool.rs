//! The HTTP/2 connections to FCM: a small pool of clients, each holding one connection, so that
//! more sends can be in flight than one connection's stream limit allows; and the roots of trust.
//!
//! One reqwest client keeps one HTTP/2 connection per host and never opens a second when that
//! connection's streams run out: sends beyond FCM's 100 concurrent streams queue behind it. So
//! the pool holds `connections` clients and gives each send the one with the fewest in flight.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{FcmConfig, FcmSetupError, SendError};

/// Clients to FCM's host, each with its own connection, chosen by the fewest sends in flight.
pub(super) struct Pool {
    lanes: Vec<Lane>,
    /// Where the search for the least busy lane starts, turning, so ties are spread.
    next: AtomicUsize,
}

struct Lane {
    http: reqwest::Client,
    in_flight: AtomicUsize,
}

/// A send's use of one lane of the pool, counted in flight until dropped.
pub(super) struct Borrowed<'a> {
    lane: &'a Lane,
}

impl Borrowed<'_> {
    /// The client to send with.
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.lane.http
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        self.lane.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// `config.connections` clients (at least one), each trusting the built-in web roots and
    /// the certificates of `config.ca_file`.
    pub(super) fn new(config: &FcmConfig) -> Result<Pool, FcmSetupError> {
        let extra_roots = match &config.ca_file {
            Some(path) => extra_roots(path)?,
            None => Vec::new(),
        };
        let lanes = (0..config.connections.max(1))
            .map(|_| {
                let mut builder = reqwest::Client::builder()
                    .timeout(config.request_timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .pool_max_idle_per_host(64);
                for root in &extra_roots {
                    builder = builder.add_root_certificate(root.clone());
                }
                let http = builder.build().map_err(|e| {
                    FcmSetupError::Client(format!("cannot build the HTTP client: {e}"))
                })?;
                Ok(Lane {
                    http,
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect::<Result<Vec<_>, FcmSetupError>>()?;
        Ok(Pool {
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    /// The first client, for requests that are not sends (the OAuth token's).
    pub(super) fn first(&self) -> &reqwest::Client {
        &self.lanes[0].http
    }

    /// The lane with the fewest sends in flight, counted in flight until the value is dropped.
    pub(super) fn borrow(&self) -> Borrowed<'_> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.lanes.len();
        let lane = (0..n)
            .map(|i| &self.lanes[(start + i) % n])
            .min_by_key(|lane| lane.in_flight.load(Ordering::Acquire))
            .expect("a pool has at least one lane");
        lane.in_flight.fetch_add(1, Ordering::AcqRel);
        Borrowed { lane }
    }
}

/// The certificates of a PEM file to trust besides the built-in roots (`PUSHQ_FCM_CA_FILE`):
/// an error names the variable and the file, and a file without a certificate is one.
fn extra_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, FcmSetupError> {
    let refuse = |why: String| {
        FcmSetupError::Client(format!("PUSHQ_FCM_CA_FILE: {}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| refuse(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| refuse(format!("not a PEM certificate bundle ({e})")))?;
    if roots.is_empty() {
        return Err(refuse("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

/// Sends a request and reads FCM's answer: its status, `Retry-After` and body. A request that
/// fails on the way (or whose answer breaks off) is a transient `NETWORK` error.
pub(super) async fn read_answer(
    request: reqwest::RequestBuilder,
) -> Result<(u16, Option<Duration>, String), SendError> {
    let network = |e: reqwest::Error| SendError::Transient {
        code: "NETWORK".into(),
        detail: super::auth::without_url(&e),
        retry_after: None,
    };
    let response = request.send().await.map_err(network)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.map_err(network)?;
    Ok((status, retry_after, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_go_to_the_least_busy_connection() {
        let pool = Pool::new(&FcmConfig {
            connections: 3,
            ..FcmConfig::default()
        })
        .unwrap();
        let held: Vec<_> = (0..6).map(|_| pool.borrow()).collect();
        let per_lane: Vec<usize> = pool
            .lanes
            .iter()
            .map(|l| l.in_flight.load(Ordering::Acquire))
            .collect();
        assert_eq!(per_lane, [2, 2, 2]);
        drop(held);
        assert!(pool
            .lanes
            .iter()
            .all(|l| l.in_flight.load(Ordering::Acquire) == 0));
    }
}
