//! HTTPS listener TLS: an SNI resolver over the [`CertStore`] (exact name, then wildcard; no I/O
//! in the handshake; a certificate for clients without SNI), the Pingora [`TlsSettings`] that
//! use it with ALPN h2 and http/1.1, and the client's SNI kept on the connection for the
//! Host/SNI (421) check.

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::services::listening::Service;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use std::any::Any;
use std::sync::Arc;
use vhost_actors::cert::{install_crypto_provider, CertError, CertMaterial, CertStore};

/// The name in the fallback certificate: under `.invalid`, so that no client can mistake it for
/// a real host's.
const FALLBACK_NAME: &str = "no-sni.pingora-vhost.invalid";

/// Why the TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Pingora refused the settings.
    #[error("TLS settings: {0}")]
    Settings(String),
}

/// Picks the certificate by SNI from the [`CertStore`]: the exact domain, else the wildcard one
/// label up. A client sending no SNI (e.g. `https://127.0.0.1/`: rustls takes an IP address as
/// none) gets the default domain's certificate when one is set and present, else the fallback
/// certificate when there is one, so that its handshake completes and its requests are routed
/// by `Host`.
#[derive(Clone, Debug)]
pub struct SniResolver {
    store: CertStore,
    default_domain: Option<String>,
    fallback: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// A resolver over `store`, with no certificate for clients without SNI.
    pub fn new(store: CertStore) -> Self {
        Self {
            store,
            default_domain: None,
            fallback: None,
        }
    }

    /// Serves `material` to clients without SNI when no default domain's certificate is there.
    pub fn with_fallback(mut self, material: &CertMaterial) -> Self {
        self.fallback = Some(Arc::clone(material.certified_key()));
        self
    }

    /// Serves `domain`'s certificate to clients that send no SNI.
    pub fn with_default(mut self, domain: impl Into<String>) -> Self {
        self.default_domain = Some(domain.into());
        self
    }

    /// The certificate for a server name (`None`: no SNI).
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        match server_name {
            Some(name) => self.store.resolve(name),
            None => self
                .default_domain
                .as_deref()
                .and_then(|d| self.store.resolve(d))
                .or_else(|| self.fallback.clone()),
        }
    }
}

/// A self-signed certificate, generated at start, for TLS clients that send no SNI while no
/// `default_sni` certificate is there.
pub fn fallback_certificate() -> Result<CertMaterial, CertError> {
    CertMaterial::self_signed(FALLBACK_NAME)
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = self.lookup(hello.server_name());
        if found.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this server name");
        }
        found
    }
}

/// The server name a client sent in its TLS handshake (lower-case), stored in the connection's
/// [`SslDigest`] extension; read it with [`client_sni`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSni(pub String);

/// Keeps the client's SNI on the connection once the handshake is done.
struct SniCapture;

#[async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = tls.server_name()?.to_ascii_lowercase();
        Some(Arc::new(ClientSni(sni)))
    }
}

/// The SNI of a TLS connection, as the proxy sees it in `session.digest()?.ssl_digest`; `None`
/// when the client sent none.
pub fn client_sni(digest: &SslDigest) -> Option<&str> {
    digest.extension.get::<ClientSni>().map(|s| s.0.as_str())
}

/// Pingora TLS settings for an HTTPS listener: certificates from `resolver`, ALPN h2 then
/// http/1.1, TLS 1.2 and 1.3, the process-wide ring provider, and the client's SNI kept on the
/// connection ([`client_sni`]).
pub fn tls_settings(resolver: SniResolver) -> Result<TlsSettings, TlsError> {
    install_crypto_provider();
    // With a resolver set, no certificate path is needed.
    let mut settings = TlsSettings::with_callbacks(Box::new(SniCapture))
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    settings.set_cert_resolver(Arc::new(resolver));
    settings.enable_h2();
    Ok(settings)
}

/// Adds an HTTPS listener on `addr` (e.g. `0.0.0.0:443`) to a Pingora service.
pub fn add_https_listener<A>(
    service: &mut Service<A>,
    addr: &str,
    resolver: SniResolver,
) -> Result<(), TlsError> {
    service.add_tls_with_settings(addr, None, tls_settings(resolver)?);
    Ok(())
}

#[cfg(test)]
mod tests;
