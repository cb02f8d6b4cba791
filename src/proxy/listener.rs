//! What a listener does with each accepted connection: HTTP/2 (by ALPN, or by prior knowledge
//! where h2c is on) goes to Pingora as it is; an HTTP/1 connection waits for its first byte
//! without an HTTP session (an idle connection costs little), then runs Pingora's keep-alive
//! loop over a [`ClientStream`] that keeps the head deadline, the head size limit and the send
//! timeout.

use super::client_stream::{ClientLimits, ClientStream};
use super::VhostProxy;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use tokio::time::Instant;

/// The Pingora application behind a listener: the proxy, with client connections guarded.
pub struct GuardedProxy {
    proxy: Arc<HttpProxy<VhostProxy>>,
    limits: ClientLimits,
}

impl GuardedProxy {
    /// Guards `proxy`'s client connections with `limits`.
    pub fn new(proxy: HttpProxy<VhostProxy>, limits: ClientLimits) -> Self {
        Self {
            proxy: Arc::new(proxy),
            limits,
        }
    }
}

#[async_trait]
impl ServerApp for GuardedProxy {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let accepted = Instant::now();
        if !first_byte(&mut stream, &self.limits, shutdown).await {
            return None;
        }
        if self.h2c() && h2c_preface(&mut stream).await {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let stream: Stream = Box::new(ClientStream::new(stream, self.limits, accepted));
        let mut session = ServerSession::new_http1(stream);
        // The client stream keeps the waits between requests; Pingora's own per-read keep-alive
        // timeout would only restart with every byte.
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(0) });
        // Only bytes past a body of unknown length can reach Pingora early; it then serves them
        // in order instead of dropping the connection.
        session.set_pipelining_enabled(true);
        let mut reused = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            reused = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await
    }
}

impl GuardedProxy {
    fn h2c(&self) -> bool {
        self.proxy.server_options.as_ref().is_some_and(|o| o.h2c)
    }
}

/// The HTTP/2 connection preface a client speaking HTTP/2 by prior knowledge starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection starts with the HTTP/2 preface (looked at, not consumed). Pingora's
/// peek waits for the whole preface, so only a first `P` (`PRI`, or `POST`, `PUT`, `PATCH`)
/// makes it wait: any HTTP/1.1 request is longer than the preface (it has a `Host` header).
async fn h2c_preface(stream: &mut Stream) -> bool {
    let mut first = [0u8; 1];
    if !matches!(stream.try_peek(&mut first).await, Ok(true)) || first[0] != H2_PREFACE[0] {
        return false;
    }
    let mut buf = [0u8; H2_PREFACE.len()];
    matches!(stream.try_peek(&mut buf).await, Ok(true)) && buf == H2_PREFACE
}

/// Waits for a first byte (or for a stream that cannot tell); `false` when the client closed,
/// stayed silent past the idle or head deadline, or the server is stopping.
async fn first_byte(stream: &mut Stream, limits: &ClientLimits, shutdown: &ShutdownWatch) -> bool {
    let wait = limits.idle_timeout.min(limits.header_timeout);
    let mut shutdown = shutdown.clone();
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(wait, stream.try_peek(&mut byte)) => {
            matches!(peeked, Ok(Ok(_)))
        }
        _ = async {
            if shutdown.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
        } => false,
    }
}
