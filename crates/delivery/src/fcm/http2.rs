//! A lane's HTTP/2 connection to an `https://` endpoint, driven with the h2 crate directly.
//!
//! hyper's client around h2 hands each request to its connection task through a channel and
//! spawns a task per request to await the answer, and hyper_util's pool looks the connection up
//! for each send: together about 8 % of the Lambda's CPU per push in the delivery
//! benchmark's call-graph profile (`docs/benchmarks.md`, section 5). Here a send takes the
//! lane's open connection, opens a stream on it and reads its answer in its own task.
//!
//! Same connections as before: one per lane, TLS with ALPN `h2` and `http/1.1`, opened at the
//! first send and again once the server closed it (a send that finds it closed before its
//! request went out is sent on the new one), and once it sat unused for [`IDLE`]. An endpoint
//! that chooses HTTP/1.1 by ALPN (a proxy) is left to the lane's HTTP/1.1 client for the life of
//! the process.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::pool::{answer, network, Answer, CONNECT_TIMEOUT};
use super::SendError;

/// How long a connection may sit unused and still carry the next send. Past it the next send
/// opens a new one: meanwhile the server may have closed it while Lambda froze the process, or
/// a NAT gateway may have forgotten it (350 s), and a send on it would fail and wait for its
/// retry (or for the request timeout, where a middlebox drops packets without a reset).
/// hyper_util's pool, which carried the sends before, closed connections idle for 90 s. Counted
/// on the wall clock: a monotonic clock need not count the time an environment spent frozen.
const IDLE: Duration = Duration::from_secs(90);

/// What a lane knows of its connection.
enum State {
    /// None open yet.
    Closed,
    /// Open: its number (a send that found it closed asks for a newer one), its sender, and when
    /// a send last took it.
    Open(u64, h2::client::SendRequest<Bytes>, SystemTime),
    /// The endpoint chose HTTP/1.1.
    Http1,
}

/// The HTTP/2 connection of one lane.
pub(super) struct Http2 {
    tls: tokio_rustls::TlsConnector,
    state: tokio::sync::Mutex<State>,
    /// [`IDLE`], but in a test.
    idle: Duration,
}

impl Http2 {
    /// Connections made with `tls` (its roots), offering `h2` and `http/1.1`.
    pub(super) fn new(tls: rustls::ClientConfig) -> Http2 {
        Http2::idle_after(tls, IDLE)
    }

    fn idle_after(mut tls: rustls::ClientConfig, idle: Duration) -> Http2 {
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Http2 {
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls)),
            state: tokio::sync::Mutex::new(State::Closed),
            idle,
        }
    }

    /// POSTs `body` to `uri` over HTTP/2; `None` when the endpoint speaks HTTP/1.1 only (the
    /// caller sends with its HTTP/1.1 client then).
    pub(super) async fn send(
        &self,
        uri: &hyper::Uri,
        authorization: &HeaderValue,
        body: Bytes,
    ) -> Result<Option<Answer>, SendError> {
        let mut closed = None;
        loop {
            let (number, sender) = match self.connection(uri, closed).await? {
                Some(open) => open,
                None => return Ok(None),
            };
            let answered = match sender.ready().await {
                Ok(mut sender) => exchange(&mut sender, uri, authorization, body.clone()).await,
                // Closed before this request was made.
                Err(e) => Err((e, Taken::No)),
            };
            match answered {
                Ok(answer) => return Ok(Some(answer)),
                // The server did not take the request: once more, on a new connection.
                Err((_, Taken::No)) if closed.is_none() => closed = Some(number),
                Err((e, _)) => return Err(network(&e)),
            }
        }
    }

    /// The open connection, or a new one if there is none, it is number `closed` or it sat unused
    /// for longer than `idle`; `None` for an HTTP/1.1 endpoint. Sends wait here while a
    /// connection is being opened.
    async fn connection(
        &self,
        uri: &hyper::Uri,
        closed: Option<u64>,
    ) -> Result<Option<(u64, h2::client::SendRequest<Bytes>)>, SendError> {
        let mut state = self.state.lock().await;
        let now = SystemTime::now();
        let number = match &mut *state {
            State::Open(n, sender, used)
                // A clock set back since counts as no time.
                if Some(*n) != closed && now.duration_since(*used).unwrap_or_default() < self.idle =>
            {
                *used = now;
                return Ok(Some((*n, sender.clone())));
            }
            // Once a new one is open, the old sender is dropped with the state: that connection
            // ends when its sends in flight are answered.
            State::Open(n, _, _) => *n + 1,
            State::Http1 => return Ok(None),
            State::Closed => 0,
        };
        match self.connect(uri).await? {
            Some(sender) => {
                *state = State::Open(number, sender.clone(), SystemTime::now());
                Ok(Some((number, sender)))
            }
            None => {
                *state = State::Http1;
                Ok(None)
            }
        }
    }

    /// A new connection to `uri`'s host: TCP, TLS, then HTTP/2 if ALPN chose it (`None` if not),
    /// its task spawned.
    async fn connect(
        &self,
        uri: &hyper::Uri,
    ) -> Result<Option<h2::client::SendRequest<Bytes>>, SendError> {
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(443);
        let timed_out = || SendError::Transient {
            code: "NETWORK".into(),
            detail: format!(
                "no connection to {host}:{port} within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
            retry_after: None,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|e| network(&e))?;
        let opened = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| network(&e))?;
            tcp.set_nodelay(true).map_err(|e| network(&e))?;
            self.tls.connect(name, tcp).await.map_err(|e| network(&e))
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, opened)
            .await
            .map_err(|_| timed_out())??;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Ok(None);
        }
        let (sender, connection) = h2::client::Builder::new()
            .enable_push(false)
            .handshake(tls)
            .await
            .map_err(|e| network(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an HTTP/2 connection to FCM ended");
            }
        });
        Ok(Some(sender))
    }
}

/// Whether the server may have taken a failed request: if not, sending it again cannot send
/// the push twice.
enum Taken {
    /// Not taken: the connection was closed before the request was made or written, a GOAWAY
    /// said the server stopped before this stream, or the server refused the stream (RFC 9113,
    /// sections 6.8 and 8.7).
    No,
    /// Perhaps.
    Perhaps,
}

/// One request on `sender`'s connection and its answer.
async fn exchange(
    sender: &mut h2::client::SendRequest<Bytes>,
    uri: &hyper::Uri,
    authorization: &HeaderValue,
    body: Bytes,
) -> Result<Answer, (h2::Error, Taken)> {
    let taken = |e: h2::Error| {
        let not =
            (e.is_go_away() && e.is_remote()) || e.reason() == Some(h2::Reason::REFUSED_STREAM);
        let taken = if not { Taken::No } else { Taken::Perhaps };
        (e, taken)
    };
    let request = hyper::Request::post(uri.clone())
        .header(AUTHORIZATION, authorization.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(CONTENT_LENGTH, body.len())
        .body(())
        .expect("a POST to a parsed URI with valid headers is a request");
    let (response, mut stream) = sender
        .send_request(request, false)
        .map_err(|e| (e, Taken::No))?;
    stream.send_data(body, true).map_err(|e| (e, Taken::No))?;
    let (parts, mut body) = response.await.map_err(taken)?.into_parts();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(taken)?;
        // The window the answer used is given back; a stream already closed needs none.
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    Ok(answer(parts.status, &parts.headers, &text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcm::pool::{extra_roots, tls_config};
    use pushq_test_support::Fcm;
    use std::time::Instant;

    /// Two sends one after the other, through an `Http2` with this idle limit, to an emulator of
    /// their own; both returned, with the requests each connection carried.
    async fn two_sends(idle: Duration) -> (Fcm, Http2, Vec<u64>) {
        let fcm = Fcm::start_tls();
        let ca = &fcm.certs.as_ref().expect("the emulator has TLS").ca;
        let http2 = Http2::idle_after(tls_config(&extra_roots(ca).unwrap()).unwrap(), idle);
        let uri: hyper::Uri = format!("{}/v1/projects/p/messages:send", fcm.endpoint)
            .parse()
            .unwrap();
        let authorization = HeaderValue::from_static("Bearer not-a-token");
        for _ in 0..2 {
            let answer = http2
                .send(&uri, &authorization, Bytes::from_static(b"{}"))
                .await
                .unwrap();
            assert!(answer.is_some(), "the emulator speaks HTTP/2");
        }
        let mut connections = fcm.connections().await;
        // The last is the one that asked for this report.
        connections.pop();
        let requests = connections
            .iter()
            .map(|c| c["requests"].as_u64().unwrap())
            .collect();
        (fcm, http2, requests)
    }

    /// Both sends on one connection while it has not sat unused for the idle limit; each on a
    /// new connection once it has (a limit of zero: always), and the one left behind ends.
    #[tokio::test]
    async fn a_connection_unused_for_the_idle_limit_carries_no_more_sends() {
        let (_, _, within) = two_sends(IDLE).await;
        assert_eq!(within, [2]);

        let (fcm, _http2, past) = two_sends(Duration::ZERO).await;
        assert_eq!(past, [1, 1]);
        // While the lane (holding the second) lives, nothing holds the first open.
        let by = Instant::now() + Duration::from_secs(10);
        while fcm.connections().await[0]["closed"] != true {
            assert!(Instant::now() < by, "the first connection was left open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
