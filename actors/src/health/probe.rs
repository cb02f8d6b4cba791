//! One probe in the backend's own protocol: a connection (TCP, then TLS with the backend's name
//! and trust for `https`), then nothing more (`tcp`), `GET path` over HTTP/1.1 or HTTP/2
//! (`http`), or the standard gRPC health check over HTTP/2 (`grpc`).

use super::grpc;
use super::HealthSettings;
use crate::model::{BackendProtocol, HealthCheck};
use crate::upstream::{TlsTarget, UpstreamBackend};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Body;
use hyper::client::conn::{http1, http2};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::fmt::Display;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Probes `target` once: `Ok` when it is healthy, else why not.
pub async fn probe_once(
    target: &UpstreamBackend,
    host: &str,
    s: &HealthSettings,
) -> Result<(), String> {
    tokio::time::timeout(s.timeout, probe(target, host, s))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", s.timeout)))
}

async fn probe(target: &UpstreamBackend, host: &str, s: &HealthSettings) -> Result<(), String> {
    let transport = &target.transport;
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mode = transport.health_check;
    match (&transport.tls, transport.protocol) {
        (Some(tls), _) => {
            let stream = handshake(tcp, tls).await?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            ask(stream, h2, "https", host, mode, s).await
        }
        (None, BackendProtocol::H2c) => ask(tcp, true, "http", host, mode, s).await,
        (None, _) => ask(tcp, false, "http", host, mode, s).await,
    }
}

/// The TLS handshake with the backend's server name and verification; a certificate that fails
/// verification fails here, with rustls's reason.
async fn handshake(
    tcp: TcpStream,
    tls: &TlsTarget,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("tls: server name '{}': {e}", tls.server_name))?;
    tokio_rustls::TlsConnector::from(tls.probe_config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls handshake with '{}': {e}", tls.server_name))
}

/// Asks over an established connection, in HTTP/2 when `h2`.
async fn ask<S>(
    io: S,
    h2: bool,
    scheme: &str,
    host: &str,
    mode: HealthCheck,
    s: &HealthSettings,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match mode {
        HealthCheck::Tcp => Ok(()),
        HealthCheck::Http => {
            let req = Request::get(format!("{scheme}://{host}{}", s.path))
                .header(hyper::header::USER_AGENT, "pingora-vhost-health")
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("request: {e}"))?;
            let status = send(io, h2, host, req).await?.status().as_u16();
            // Only a server error says the backend cannot serve; a 404 on the probe path does not.
            if status < 500 {
                Ok(())
            } else {
                Err(format!("{} answered {status}", s.path))
            }
        }
        HealthCheck::Grpc => {
            if !h2 {
                return Err("grpc health check: the backend did not offer HTTP/2 (ALPN h2)".into());
            }
            let req = Request::post(format!("{scheme}://{host}{}", grpc::CHECK_PATH))
                .header(hyper::header::CONTENT_TYPE, "application/grpc")
                .header(hyper::header::TE, "trailers")
                .header(hyper::header::USER_AGENT, "pingora-vhost-health")
                .body(Full::new(grpc::check_request()))
                .map_err(|e| format!("request: {e}"))?;
            let resp = send(io, true, host, req).await?;
            let (head, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("grpc health check: reading the answer: {e}"))?;
            let trailers = body.trailers().cloned();
            grpc::verdict(
                head.status,
                &head.headers,
                trailers.as_ref(),
                &body.to_bytes(),
            )
        }
    }
}

/// Sends one request over `io` and returns the answer's head (and body, still to read).
async fn send<S, B>(
    io: S,
    h2: bool,
    host: &str,
    mut req: Request<B>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Display + std::error::Error + Send + Sync,
{
    let io = TokioIo::new(io);
    if h2 {
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("http/2 handshake: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))
    } else {
        // HTTP/1.1 goes in origin form with a Host header.
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .map_err(|e| format!("request: {e}"))?;
        *req.uri_mut() = target;
        let headers = req.headers_mut();
        headers.insert(
            hyper::header::HOST,
            host.parse().map_err(|e| format!("request: host: {e}"))?,
        );
        headers.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        let (mut sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))
    }
}
