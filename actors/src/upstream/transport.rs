//! A backend's connection settings made ready once, when the registry publishes the backend:
//! its protocol, the TLS name and trust roots (system roots plus its own CA file) loaded and
//! checked, the probe's TLS client configuration, and the proxy's own peer template.

use crate::model::{BackendProtocol, HealthCheck, TransportSettings};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Trust roots: DER certificates.
pub type Roots = Arc<[CertificateDer<'static>]>;

/// What the proxy builds for a backend from its [`Transport`] (a Pingora peer), carried here
/// without this crate knowing its type.
pub type PeerTemplate = Arc<dyn Any + Send + Sync>;

/// Builds the proxy's [`PeerTemplate`] for a backend; the registry calls it whenever it makes a
/// backend's live state, so that no request builds one.
pub trait PeerPreparer: Send + Sync + fmt::Debug {
    /// The template for a backend at `addr` reached with `transport`.
    fn prepare(&self, addr: SocketAddr, transport: &Transport) -> Result<PeerTemplate, String>;
}

/// The preparer of a registry without a proxy (tests, tools): an empty template.
#[derive(Debug)]
pub struct NoPeer;

impl PeerPreparer for NoPeer {
    fn prepare(&self, _addr: SocketAddr, _transport: &Transport) -> Result<PeerTemplate, String> {
        Ok(Arc::new(()))
    }
}

// === impl Transport ===

/// How to reach one backend, checked and loaded.
#[derive(Debug, Default)]
pub struct Transport {
    /// The protocol spoken.
    pub protocol: BackendProtocol,
    /// How the probe asks.
    pub health_check: HealthCheck,
    /// TLS, for `https` backends.
    pub tls: Option<TlsTarget>,
}

/// The TLS side of an `https` backend.
pub struct TlsTarget {
    /// SNI and the name the certificate must carry (DNS name or IP address).
    pub server_name: String,
    /// Whether the chain and name are checked.
    pub verify: bool,
    /// System roots plus the backend's CA file; `None` when it has no CA file (the system
    /// roots alone, which the proxy's connector already holds).
    pub roots: Option<Roots>,
    /// The certificates of the CA file alone, as read (kept for updates that keep the file).
    pub ca: Option<Roots>,
    /// The probe's TLS client: same name, trust and verification, ALPN h2 then http/1.1.
    pub probe_config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .field("verify", &self.verify)
            .field("roots", &self.roots.as_ref().map(|r| r.len()))
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Plain HTTP/1.1 with an HTTP probe.
    pub fn http1() -> Arc<Self> {
        static PLAIN: OnceLock<Arc<Transport>> = OnceLock::new();
        Arc::clone(PLAIN.get_or_init(|| Arc::new(Transport::default())))
    }

    /// Builds the transport of a backend at `address` from its settings; `ca` is the content
    /// of its `tls_ca_file`, already read.
    pub fn build(
        settings: &TransportSettings,
        address: &str,
        ca: Option<&Roots>,
    ) -> Result<Self, String> {
        settings.check()?;
        let tls = match settings.protocol {
            BackendProtocol::Https => Some(TlsTarget::build(settings, address, ca)?),
            BackendProtocol::Http1 | BackendProtocol::H2c => None,
        };
        Ok(Self {
            protocol: settings.protocol,
            health_check: settings.health_check,
            tls,
        })
    }
}

impl TlsTarget {
    fn build(
        settings: &TransportSettings,
        address: &str,
        ca: Option<&Roots>,
    ) -> Result<Self, String> {
        let server_name = settings.server_name(address);
        ServerName::try_from(server_name.clone())
            .map_err(|_| format!("'{server_name}' cannot be a TLS server name"))?;
        let roots: Option<Roots> = ca.map(|ca| {
            system_roots()
                .iter()
                .chain(ca.iter())
                .cloned()
                .collect::<Vec<_>>()
                .into()
        });
        let trusted: &[CertificateDer<'static>] = roots.as_deref().unwrap_or(system_roots());
        let probe_config = probe_config(trusted, settings.tls_verify)?;
        Ok(Self {
            server_name,
            verify: settings.tls_verify,
            roots,
            ca: ca.cloned(),
            probe_config,
        })
    }
}

// === trust roots ===

/// The system's trust roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), read once.
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system trust root could not be read");
        }
        found.certs
    })
}

/// Reads a PEM CA file: at least one certificate, each one parseable.
pub fn load_ca_file(path: &str) -> Result<Roots, String> {
    let pem = std::fs::read(Path::new(path))
        .map_err(|e| format!("tls_ca_file '{path}' cannot be read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_ca_file '{path}' is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls_ca_file '{path}' holds no PEM certificate"));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|e| {
            format!("tls_ca_file '{path}' holds a certificate that does not parse: {e}")
        })?;
    }
    Ok(certs.into())
}

/// The probe's TLS client configuration.
fn probe_config(
    trusted: &[CertificateDer<'static>],
    verify: bool,
) -> Result<Arc<ClientConfig>, String> {
    crate::cert::install_crypto_provider();
    let mut config = if verify {
        let mut store = RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(trusted.iter().cloned());
        if ignored > 0 {
            tracing::debug!(ignored, "trust roots that rustls cannot use were left out");
        }
        let verifier = WebPkiServerVerifier::builder(Arc::new(store))
            .build()
            .map_err(|e| format!("no usable trust root to verify the backend with: {e}"))?;
        ClientConfig::builder()
            .with_webpki_verifier(verifier)
            .with_no_client_auth()
    } else {
        ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified::new()))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate: only for a backend configured with `tls_verify = false`. The
/// handshake signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl Unverified {
    fn new() -> Self {
        Self(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
