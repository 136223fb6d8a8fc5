//! The HTTP/2 connections to FCM: a small pool of clients, each holding one connection, so that
//! more sends can be in flight than one connection's stream limit allows; and the roots of trust.
//!
//! One client keeps one HTTP/2 connection per host and never opens a second when that
//! connection's streams run out: sends beyond FCM's 100 concurrent streams queue behind it. So
//! the pool holds `connections` clients and gives each send the one with the fewest in flight.
//!
//! Sends to an `https://` endpoint go over the lane's HTTP/2 connection, driven with h2 directly
//! (`http2.rs`); sends over HTTP/1.1 (an `http://` endpoint, or one that chose HTTP/1.1) through
//! hyper's pooled client over rustls. reqwest's layers around hyper (the URL parsed again, the
//! request cloned for its retry policy, the client cloned, a timer, the answer's charset sniffed)
//! were a tenth of the Lambda's CPU per push in the delivery benchmark's profile. The OAuth token
//! and the topic calls, a few per hour or per change, keep reqwest (each lane's `http`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::http2::Http2;
use super::{FcmConfig, FcmSetupError, SendError};

/// The client sends go through: hyper's, over rustls (HTTP/2 where ALPN offers it).
type Sender =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Clients to FCM's host, each with its own connection, chosen by the fewest sends in flight.
pub(super) struct Pool {
    lanes: Vec<Lane>,
    /// Where the search for the least busy lane starts, turning, so ties are spread.
    next: AtomicUsize,
    /// How long one send may take, answer read.
    request_timeout: Duration,
}

struct Lane {
    /// For the requests that are not sends (the OAuth token's, topic calls).
    http: reqwest::Client,
    /// For sends to an `https://` endpoint: its HTTP/2 connection (opened at the first).
    http2: Http2,
    /// For sends over HTTP/1.1: to an `http://` endpoint, or one that chose HTTP/1.1 by ALPN.
    sends: Sender,
    in_flight: AtomicUsize,
}

/// A send's use of one lane of the pool, counted in flight until dropped.
pub(super) struct Borrowed<'a> {
    lane: &'a Lane,
    request_timeout: Duration,
}

impl Borrowed<'_> {
    /// The client for requests other than sends.
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.lane.http
    }

    /// POSTs a send's JSON `body` to `uri` with `authorization`; FCM's answer: its status,
    /// `Retry-After` and body. A request that fails on the way, whose answer breaks off or that
    /// takes longer than the request timeout is a transient `NETWORK` error.
    pub(super) async fn send(
        &self,
        uri: &hyper::Uri,
        authorization: &HeaderValue,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let exchange = async {
            if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
                let http2 = &self.lane.http2;
                if let Some(answer) = http2.send(uri, authorization, body.clone()).await? {
                    return Ok(answer);
                }
            }
            self.send_http1(uri, authorization, body).await
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Transient {
                    code: "NETWORK".into(),
                    detail: format!(
                        "no answer within the request timeout ({} s)",
                        self.request_timeout.as_secs_f64()
                    ),
                    retry_after: None,
                })
            })
    }

    /// A send over HTTP/1.1, through hyper's pooled client.
    async fn send_http1(
        &self,
        uri: &hyper::Uri,
        authorization: &HeaderValue,
        body: Bytes,
    ) -> Result<Answer, SendError> {
        let request = hyper::Request::post(uri.clone())
            .header(AUTHORIZATION, authorization.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(|e| network(&e))?;
        let response = self
            .lane
            .sends
            .request(request)
            .await
            .map_err(|e| network(&e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| network(&e))?.to_bytes();
        Ok(answer(parts.status, &parts.headers, &body))
    }
}

/// A failed request as a transient `NETWORK` error: the error and its causes (hyper's own
/// text names neither the URL nor a header).
pub(super) fn network(e: &(dyn std::error::Error + 'static)) -> SendError {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    SendError::Transient {
        code: "NETWORK".into(),
        detail,
        retry_after: None,
    }
}

/// FCM's answer to a send or a topic call: status, `Retry-After`, body.
pub(super) type Answer = (u16, Option<Duration>, String);

/// An answer read whole, over HTTP/1.1 or HTTP/2.
pub(super) fn answer(status: hyper::StatusCode, headers: &hyper::HeaderMap, body: &[u8]) -> Answer {
    (
        status.as_u16(),
        retry_after(headers.get(RETRY_AFTER)),
        String::from_utf8_lossy(body).into_owned(),
    )
}

/// `Retry-After` in seconds (FCM's form), if the answer has one.
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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
        let tls = tls_config(&extra_roots)?;
        let lanes = (0..config.connections.max(1))
            .map(|_| {
                let mut builder = reqwest::Client::builder()
                    .timeout(config.request_timeout)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .pool_max_idle_per_host(64);
                for root in &extra_roots {
                    let root = reqwest::Certificate::from_der(root)
                        .map_err(|e| FcmSetupError::Client(format!("PUSHQ_FCM_CA_FILE: {e}")))?;
                    builder = builder.add_root_certificate(root);
                }
                let http = builder.build().map_err(|e| {
                    FcmSetupError::Client(format!("cannot build the HTTP client: {e}"))
                })?;
                Ok(Lane {
                    http,
                    http2: Http2::new(tls.clone()),
                    sends: sender(tls.clone()),
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect::<Result<Vec<_>, FcmSetupError>>()?;
        Ok(Pool {
            lanes,
            next: AtomicUsize::new(0),
            request_timeout: config.request_timeout,
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
        Borrowed {
            lane,
            request_timeout: self.request_timeout,
        }
    }
}

/// How long opening a connection to FCM may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The TLS set-up of the sends: the built-in web roots (Mozilla's, as reqwest's) and `extra`,
/// certificates always verified, aws-lc-rs as the rest of pushq.
pub(super) fn tls_config(
    extra: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, FcmSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra {
        roots.add(root.clone()).map_err(|e| {
            FcmSetupError::Client(format!(
                "PUSHQ_FCM_CA_FILE: not a usable CA certificate ({e})"
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FcmSetupError::Client(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One lane's client for sends: HTTPS offering HTTP/2 and HTTP/1.1 by ALPN, or plain HTTP/1.1
/// to an `http://` endpoint (an emulator); idle connections kept as reqwest kept them.
fn sender(tls: rustls::ClientConfig) -> Sender {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(https)
}

/// The certificates of a PEM file to trust besides the built-in roots (`PUSHQ_FCM_CA_FILE`):
/// an error names the variable and the file, and a file without a certificate is one.
pub(super) fn extra_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, FcmSetupError> {
    let refuse = |why: String| {
        FcmSetupError::Client(format!("PUSHQ_FCM_CA_FILE: {}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| refuse(e.to_string()))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("not a PEM certificate bundle ({e})")))?;
    if roots.is_empty() {
        return Err(refuse("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

/// Sends a request made with reqwest (a topic call) and reads FCM's answer: its status,
/// `Retry-After` and body. A request that fails on the way (or whose answer breaks off) is a
/// transient `NETWORK` error.
pub(super) async fn read_answer(request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
    let network = |e: reqwest::Error| SendError::Transient {
        code: "NETWORK".into(),
        detail: super::auth::without_url(&e),
        retry_after: None,
    };
    let response = request.send().await.map_err(network)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers().get(RETRY_AFTER));
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
