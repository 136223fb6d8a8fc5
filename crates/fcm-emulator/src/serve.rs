//! The emulator's listener: plain HTTP (HTTP/1.1, or HTTP/2 with prior knowledge) or TLS with
//! ALPN `h2`/`http/1.1`, at most `max_streams` concurrent HTTP/2 streams per connection (FCM
//! allows 100). Every connection gets an id; its protocol and requests in flight are recorded.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, Version};
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::EmulatorError;

/// How the emulator serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Serve TLS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate, else plain HTTP/1.1.
    pub tls: Option<TlsFiles>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: HTTP/2 streams a client may have open at once on one
    /// connection. Default [`FCM_MAX_STREAMS`].
    pub max_streams: u32,
    /// How long every answer of FCM's endpoints (token, send and topic calls; not the control
    /// endpoints) waits, like a round trip to Google. Default none.
    pub latency: Duration,
    /// The Firebase projects served, each with a service-account key of its own; the first is
    /// [`Running::credentials`](crate::Running::credentials). Names are 1–64 characters of
    /// `[A-Za-z0-9_.-]`, each given once. Default: [`PROJECT_ID`](crate::PROJECT_ID) alone.
    pub projects: Vec<String>,
}

/// The concurrent streams FCM allows on one HTTP/2 connection.
pub const FCM_MAX_STREAMS: u32 = 100;

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            tls: None,
            max_streams: FCM_MAX_STREAMS,
            latency: Duration::ZERO,
            projects: vec![crate::PROJECT_ID.to_owned()],
        }
    }
}

/// The server's certificate and key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (the server's certificate first); it must name 127.0.0.1.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Which connection a request came on and over which protocol: an extension on every request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestInfo {
    /// The connection's id, counted from 1 in the order connections were accepted.
    pub(crate) connection: u64,
    /// `HTTP/1.1` or `HTTP/2`.
    pub(crate) protocol: &'static str,
}

/// One accepted connection's record.
struct Connection {
    id: u64,
    protocol: OnceLock<&'static str>,
    requests: AtomicU64,
    in_flight: AtomicU32,
    peak_in_flight: AtomicU32,
    /// Whether the connection has ended.
    closed: std::sync::atomic::AtomicBool,
}

/// Every connection accepted since the emulator started.
#[derive(Default)]
pub(crate) struct Connections {
    all: Mutex<Vec<Arc<Connection>>>,
    /// Told to close every open connection (`POST /__close_connections`).
    closing: tokio::sync::Notify,
}

impl Connections {
    /// Closes every open connection gracefully, as a server going away does: HTTP/2 sends
    /// GOAWAY, requests in flight are answered, then the connection closes.
    pub(crate) fn close_all(&self) {
        self.closing.notify_waiters();
    }

    fn open(&self) -> Arc<Connection> {
        let mut all = self.all.lock().expect("emulator connections");
        let connection = Arc::new(Connection {
            id: all.len() as u64 + 1,
            protocol: OnceLock::new(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            peak_in_flight: AtomicU32::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        all.push(connection.clone());
        connection
    }

    /// `[{"id","protocol","requests","peakInFlight","closed"}]` for `/__received`, connections that
    /// carried no request (a TLS handshake a client gave up) included, with `protocol` null.
    pub(crate) fn report(&self) -> Value {
        let all = self.all.lock().expect("emulator connections");
        all.iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "protocol": c.protocol.get(),
                    "requests": c.requests.load(Ordering::Relaxed),
                    "peakInFlight": c.peak_in_flight.load(Ordering::Relaxed),
                    "closed": c.closed.load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

/// How the listener serves: TLS or not, the stream limit, the answers' latency.
pub(crate) struct Listener {
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) max_streams: u32,
    pub(crate) latency: Duration,
}

/// A TLS acceptor for the PEM certificate chain at `cert` and the PEM private key at `key`,
/// offering HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, EmulatorError> {
    let tls = |what: &Path, e: &dyn std::fmt::Display| {
        EmulatorError::Tls(format!("{}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(cert, &e))?;
    if chain.is_empty() {
        return Err(tls(cert, &"no PEM certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls(cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` until the task is dropped, serving `app` on each.
pub(crate) async fn serve(
    listener: TcpListener,
    how: Listener,
    app: Router,
    connections: Arc<Connections>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(how.max_streams);
    let how = Arc::new(how);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, mostly: give the process a moment, as axum::serve does.
                tracing::warn!(error = %e, "emulator: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // As FCM's front ends do: a response's frames go out at once, not after the client's
        // delayed ACK (40 ms on Linux), which would otherwise dominate every HTTP/2 round trip.
        let _ = tcp.set_nodelay(true);
        let connection = connections.open();
        let (builder, how, app) = (builder.clone(), how.clone(), app.clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            let record = connection.clone();
            let latency = how.latency;
            let service = hyper::service::service_fn(move |request| {
                handle(request, app.clone(), connection.clone(), latency)
            });
            let closing = &connections.closing;
            let served = match &how.tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let served = builder.serve_connection(TokioIo::new(stream), service);
                        until_closed(served, closing).await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "emulator: TLS handshake failed");
                        record.closed.store(true, Ordering::Relaxed);
                        return;
                    }
                },
                None => {
                    let served = builder.serve_connection(TokioIo::new(tcp), service);
                    until_closed(served, closing).await
                }
            };
            record.closed.store(true, Ordering::Relaxed);
            if let Err(e) = served {
                tracing::debug!(error = %e, "emulator: connection ended");
            }
        });
    }
}

/// Serves `connection` until it ends, or until every connection is told to close: then it
/// shuts down gracefully and is served until it has.
async fn until_closed<C: GracefulConnection>(
    connection: C,
    closing: &tokio::sync::Notify,
) -> Result<(), C::Error> {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => return served,
        _ = closing.notified() => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

/// One request: tagged with its connection and protocol, counted in flight on its connection,
/// delayed by the latency when it is one of FCM's (not a control endpoint), then routed.
async fn handle(
    mut request: Request<Incoming>,
    app: Router,
    connection: Arc<Connection>,
    latency: Duration,
) -> Result<Response<Body>, Infallible> {
    let protocol = match request.version() {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let _ = connection.protocol.set(protocol);
    connection.requests.fetch_add(1, Ordering::Relaxed);
    request.extensions_mut().insert(RequestInfo {
        connection: connection.id,
        protocol,
    });
    let _in_flight = InFlight::enter(&connection);
    if !latency.is_zero() && !request.uri().path().starts_with("/__") {
        tokio::time::sleep(latency).await;
    }
    TowerToHyperService::new(app).call(request).await
}

/// A request counted in flight on its connection until dropped; raises the connection's peak.
struct InFlight<'a>(&'a Connection);

impl<'a> InFlight<'a> {
    fn enter(connection: &'a Connection) -> InFlight<'a> {
        let now = connection.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        connection.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(connection)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
