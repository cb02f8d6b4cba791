//! One certificate chain with its private key: read from PEM, checked (the key must belong to
//! the leaf), parsed (validity, serial, names) and turned into a rustls `CertifiedKey`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

/// Validity of a self-signed certificate; long enough for a development process.
const SELF_SIGNED_DAYS: i64 = 365;

/// Why certificate material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {error}")]
    Read {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The certificate PEM holds no certificate.
    #[error("{origin}: no PEM certificate found")]
    NoCertificate {
        /// Where the material came from.
        origin: String,
    },
    /// The key PEM holds no private key, or one that cannot be decoded.
    #[error("{origin}: no usable PEM private key found: {detail}")]
    NoKey {
        /// Where the material came from.
        origin: String,
        /// What the PEM reader said.
        detail: String,
    },
    /// A PEM block could not be decoded.
    #[error("{origin}: invalid PEM: {detail}")]
    Pem {
        /// Where the material came from.
        origin: String,
        /// What the PEM reader said.
        detail: String,
    },
    /// The key's algorithm is not supported.
    #[error("{origin}: unsupported private key: {detail}")]
    UnsupportedKey {
        /// Where the material came from.
        origin: String,
        /// What rustls said.
        detail: String,
    },
    /// The key is not the key of the leaf certificate.
    #[error("{origin}: the private key does not match the certificate (their public keys differ)")]
    KeyMismatch {
        /// Where the material came from.
        origin: String,
    },
    /// The leaf certificate is not valid X.509.
    #[error("{origin}: cannot parse the certificate: {detail}")]
    Parse {
        /// Where the material came from.
        origin: String,
        /// What the parser said.
        detail: String,
    },
    /// rcgen failed to generate a key or a certificate.
    #[error("cannot generate a certificate for {domain}: {detail}")]
    Generate {
        /// The domain.
        domain: String,
        /// What rcgen said.
        detail: String,
    },
}

/// A checked chain and key, ready for rustls. Cheap to clone; `Debug` never shows the key.
#[derive(Clone)]
pub struct CertMaterial {
    chain_pem: String,
    key_pem: String,
    certified: Arc<CertifiedKey>,
    not_before: i64,
    not_after: i64,
    serial: String,
    names: Vec<String>,
}

impl fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertMaterial")
            .field("names", &self.names)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertMaterial {
    /// Checks and parses a PEM chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or
    /// SEC1). `origin` names the material in error messages.
    pub fn from_pem(
        chain_pem: impl Into<String>,
        key_pem: impl Into<String>,
        origin: &str,
    ) -> Result<Self, CertError> {
        let chain_pem = chain_pem.into();
        let key_pem = key_pem.into();
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::Pem {
                origin: origin.into(),
                detail: e.to_string(),
            })?;
        let leaf = chain.first().ok_or_else(|| CertError::NoCertificate {
            origin: origin.into(),
        })?;
        let parsed = parse_leaf(leaf, origin)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CertError::NoKey {
                origin: origin.into(),
                detail: e.to_string(),
            })?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
            CertError::UnsupportedKey {
                origin: origin.into(),
                detail: e.to_string(),
            }
        })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            // `Unknown`: the key cannot tell its public key; nothing to compare.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                return Err(CertError::KeyMismatch {
                    origin: origin.into(),
                })
            }
        }
        Ok(Self {
            chain_pem,
            key_pem,
            certified: Arc::new(certified),
            not_before: parsed.not_before,
            not_after: parsed.not_after,
            serial: parsed.serial,
            names: parsed.names,
        })
    }

    /// Reads a manual certificate (`[[certificates]]`): chain and key from PEM files.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|error| CertError::Read {
                what,
                path: path.to_path_buf(),
                error,
            })
        };
        let chain = read("certificate", cert_path)?;
        let key = read("private key", key_path)?;
        let origin = format!(
            "certificate {} with key {}",
            cert_path.display(),
            key_path.display()
        );
        Self::from_pem(chain, key, &origin)
    }

    /// Generates a self-signed certificate for `domain` (a wildcard works too), valid from a day
    /// ago for a year, with a fresh ECDSA P-256 key.
    pub fn self_signed(domain: &str) -> Result<Self, CertError> {
        let gen_err = |e: rcgen::Error| CertError::Generate {
            domain: domain.into(),
            detail: e.to_string(),
        };
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(gen_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, domain);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "pingora-vhost self-signed");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Self::from_pem(
            cert.pem(),
            key.serialize_pem(),
            &format!("self-signed certificate for {domain}"),
        )
    }

    /// What rustls serves.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }

    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key as PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The leaf certificate, DER.
    pub fn leaf_der(&self) -> &CertificateDer<'static> {
        // `from_pem` refuses an empty chain.
        &self.certified.cert[0]
    }

    /// Start of validity, unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// End of validity, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Serial number of the leaf, lower-case hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// DNS names of the leaf (subject alternative names, else the common name).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the leaf is valid for `domain`: an exact name, or a `*.parent` name covering
    /// exactly one more label.
    pub fn covers(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| {
            n == &domain
                || n.strip_prefix("*.").is_some_and(|parent| {
                    domain
                        .split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == parent)
                })
        })
    }

    /// Whether the leaf has expired at `now` (unix seconds).
    pub fn expired_at(&self, now: i64) -> bool {
        now >= self.not_after
    }
}

struct ParsedLeaf {
    not_before: i64,
    not_after: i64,
    serial: String,
    names: Vec<String>,
}

fn parse_leaf(der: &CertificateDer<'_>, origin: &str) -> Result<ParsedLeaf, CertError> {
    let parse_err = |detail: String| CertError::Parse {
        origin: origin.into(),
        detail,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| parse_err(e.to_string()))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(parse_err(format!("subject alternative names: {e}"))),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ParsedLeaf {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial,
        names,
    })
}
