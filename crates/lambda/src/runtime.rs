//! The Lambda Runtime API, spoken directly: one keep-alive HTTP/1.1 connection to
//! `AWS_LAMBDA_RUNTIME_API`, on which the function asks for its next invocation and answers it.
//!
//! `lambda_runtime` did the same through hyper_util's pooled client and a tower stack (a tracing
//! span, a panic layer, `serde_path_to_error`, the invocation's context rebuilt from every
//! header): at batch 10 that was about a tenth of the function's CPU per push in the delivery
//! benchmark's call-graph profile (`docs/benchmarks.md`, section 5). What the function uses of the API is
//! small: `next`, `response` and `error`
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The API's version prefix.
const PREFIX: &str = "/2018-06-01/runtime/invocation";

/// A connection to the Runtime API.
pub struct Runtime {
    /// `host:port` of the API.
    api: String,
    /// The open connection; `None` until the first request, or after the API closed it.
    connection: Option<SendRequest<Full<Bytes>>>,
}

/// One invocation: its request id, deadline and event.
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`: what the answer is posted under.
    pub request_id: String,
    /// `Lambda-Runtime-Deadline-Ms`: when Lambda stops the invocation, in epoch milliseconds.
    pub deadline_ms: u64,
    /// The event, as JSON text.
    pub event: Bytes,
}

/// A failed exchange with the Runtime API. The function cannot go on without it: `main` ends
/// with it, and Lambda starts the function again (the batch comes back after its visibility
/// timeout).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `AWS_LAMBDA_RUNTIME_API` is not set: the binary was not started by Lambda (or by
    /// `cargo lambda watch`, which sets it).
    #[error(
        "AWS_LAMBDA_RUNTIME_API is not set: pushq-lambda runs under Lambda or `cargo lambda watch`"
    )]
    NotUnderLambda,
    /// The connection to the API failed.
    #[error("the Lambda Runtime API at {api}: {detail}")]
    Connection { api: String, detail: String },
    /// The API answered with something other than success.
    #[error("the Lambda Runtime API answered {status} to {what}: {body}")]
    Refused {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
    /// An invocation came without a header the function needs.
    #[error("the Lambda Runtime API gave an invocation without a valid {0} header")]
    MissingHeader(&'static str),
}

impl Runtime {
    /// The API named by `AWS_LAMBDA_RUNTIME_API`; connects at the first request.
    pub fn from_env() -> Result<Runtime, RuntimeError> {
        let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(RuntimeError::NotUnderLambda)?;
        Ok(Runtime {
            api,
            connection: None,
        })
    }

    /// Waits for the next invocation (as long as it takes: between invocations Lambda freezes
    /// the function).
    pub async fn next(&mut self) -> Result<Invocation, RuntimeError> {
        let (headers, event) = self
            .exchange(
                "next invocation",
                Method::GET,
                format!("{PREFIX}/next"),
                None,
            )
            .await?;
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .ok_or(RuntimeError::MissingHeader(name))
        };
        Ok(Invocation {
            request_id: header("lambda-runtime-aws-request-id")?.to_owned(),
            deadline_ms: header("lambda-runtime-deadline-ms")?
                .parse()
                .map_err(|_| RuntimeError::MissingHeader("lambda-runtime-deadline-ms"))?,
            event,
        })
    }

    /// Answers invocation `request_id` with the JSON `body`.
    pub async fn respond(&mut self, request_id: &str, body: Vec<u8>) -> Result<(), RuntimeError> {
        let path = format!("{PREFIX}/{request_id}/response");
        self.exchange("a response", Method::POST, path, Some(body))
            .await
            .map(drop)
    }

    /// Reports invocation `request_id` as failed (`errorType`, `errorMessage`): Lambda counts
    /// it as a function error and the whole batch comes back.
    pub async fn fail(
        &mut self,
        request_id: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), RuntimeError> {
        let path = format!("{PREFIX}/{request_id}/error");
        let body = serde_json::to_vec(&serde_json::json!({
            "errorType": error_type,
            "errorMessage": message,
        }))
        .expect("a JSON value always serializes");
        self.exchange("an error report", Method::POST, path, Some(body))
            .await
            .map(drop)
    }

    /// One request on the connection (opened again if the API closed it); the answer's headers
    /// and body, refused unless 2xx.
    async fn exchange(
        &mut self,
        what: &'static str,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<(hyper::HeaderMap, Bytes), RuntimeError> {
        // A connection the API closed (after an answer with `Connection: close`, or idle) is
        // replaced before the request is written; a request that fails once written is not
        // sent again. Either way the connection is ready for the request.
        let open = match self.connection.as_mut() {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !open {
            self.connection = Some(connect(&self.api).await?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let failed = |e: hyper::Error| RuntimeError::Connection {
            api: self.api.clone(),
            detail: format!("{what}: {e}"),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.api);
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| RuntimeError::Connection {
                api: self.api.clone(),
                detail: format!("{what}: {e}"),
            })?;
        let response = connection.send_request(request).await.map_err(failed)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(failed)?.to_bytes();
        if !parts.status.is_success() {
            return Err(RuntimeError::Refused {
                what,
                status: parts.status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok((parts.headers, body))
    }
}

/// A new HTTP/1.1 connection to the API, its task spawned, ready for a request.
async fn connect(api: &str) -> Result<SendRequest<Full<Bytes>>, RuntimeError> {
    let failed = |detail: String| RuntimeError::Connection {
        api: api.to_owned(),
        detail,
    };
    let stream = tokio::net::TcpStream::connect(api)
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    stream
        .set_nodelay(true)
        .map_err(|e| failed(format!("cannot set TCP_NODELAY: {e}")))?;
    let (mut send, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(format!("cannot start HTTP/1.1: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "the Lambda Runtime API's connection ended");
        }
    });
    send.ready()
        .await
        .map_err(|e| failed(format!("cannot start HTTP/1.1: {e}")))?;
    Ok(send)
}
