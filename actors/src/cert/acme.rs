//! ACME (RFC 8555) over HTTP-01 with instant-acme: the settings, the shared [`AcmeIssuer`] that
//! holds the account and runs orders, the order counters, and ARI renewal windows.

mod account;
mod error;
mod settings;
mod shared;

use error::failure_detail;
pub use error::AcmeError;
pub use settings::{AcmeCounters, AcmeSettings, RenewalWindow};
pub(crate) use shared::{blocking as shared_blocking, shared_cert, store_shared_cert};
pub use shared::{AcmeShare, SharedItem, ORDER_LOCK_PATIENCE};

use super::cache::write_private_file;
use super::challenges::{AcmeChallenges, PublishedTokens};
use super::material::CertMaterial;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, CertificateIdentifier,
    ChallengeType, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

type AcmeHttp = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    BodyWrapper<bytes::Bytes>,
>;

const ARI_UNKNOWN: u8 = 0;
const ARI_YES: u8 = 1;
const ARI_NO: u8 = 2;

/// What every cert actor shares: settings, the account (created once, cached on disk), the
/// published challenge tokens and the order counters.
pub struct AcmeIssuer {
    settings: AcmeSettings,
    challenges: AcmeChallenges,
    counters: Arc<AcmeCounters>,
    http: Option<AcmeHttp>,
    account: tokio::sync::Mutex<Option<Account>>,
    ari: AtomicU8,
    /// The other instances' shared store, when ACME is shared.
    share: std::sync::OnceLock<Arc<dyn AcmeShare>>,
}

impl std::fmt::Debug for AcmeIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeIssuer")
            .field("directory_url", &self.settings.directory_url)
            .field("cache_dir", &self.settings.cache_dir)
            .finish_non_exhaustive()
    }
}

impl AcmeIssuer {
    /// Checks the settings (the extra root must be PEM certificates) and installs the crypto
    /// provider; contacts nobody yet.
    pub fn new(settings: AcmeSettings, challenges: AcmeChallenges) -> Result<Arc<Self>, AcmeError> {
        super::install_crypto_provider();
        let http = settings
            .ca_root_pem
            .as_deref()
            .map(http_client_with_root)
            .transpose()?;
        Ok(Arc::new(Self {
            settings,
            challenges,
            counters: Arc::default(),
            http,
            account: tokio::sync::Mutex::new(None),
            ari: AtomicU8::new(ARI_UNKNOWN),
            share: std::sync::OnceLock::new(),
        }))
    }

    /// The settings.
    pub fn settings(&self) -> &AcmeSettings {
        &self.settings
    }

    /// The tokens the plain-HTTP listener answers.
    pub fn challenges(&self) -> &AcmeChallenges {
        &self.challenges
    }

    /// Order counters (for `pingora_vhost_acme_orders_total`).
    pub fn counters(&self) -> &Arc<AcmeCounters> {
        &self.counters
    }

    /// Runs one order for `domain` over HTTP-01 and returns the new chain and key. `replacing`
    /// is the certificate it renews (sent as ARI `replaces` when the directory supports it).
    /// Counts the outcome in [`AcmeCounters`].
    pub async fn issue(
        &self,
        domain: &str,
        replacing: Option<&CertMaterial>,
    ) -> Result<CertMaterial, AcmeError> {
        let started = Instant::now();
        let limit = self.settings.order_timeout;
        let result = match tokio::time::timeout(limit, self.order(domain, replacing)).await {
            Ok(r) => r,
            Err(_) => Err(AcmeError::Timeout {
                domain: domain.to_owned(),
                after: limit,
            }),
        };
        match &result {
            Ok(m) => {
                self.counters.success.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    domain,
                    serial = m.serial(),
                    not_after = m.not_after(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "ACME certificate issued"
                );
            }
            Err(e) => {
                self.counters.failure.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(domain, error = %e, took_ms = started.elapsed().as_millis() as u64,
                    "ACME order failed");
            }
        }
        result
    }

    async fn order(
        &self,
        domain: &str,
        replacing: Option<&CertMaterial>,
    ) -> Result<CertMaterial, AcmeError> {
        if domain.starts_with("*.") {
            return Err(AcmeError::Wildcard(domain.to_owned()));
        }
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(domain.to_owned())];
        let replaces = replacing
            .filter(|_| self.ari.load(Ordering::Relaxed) == ARI_YES)
            .and_then(|m| CertificateIdentifier::try_from(m.leaf_der()).ok());
        let placed = match replaces {
            Some(id) => {
                match account
                    .new_order(&NewOrder::new(&identifiers).replaces(id))
                    .await
                {
                    Ok(order) => Ok(order),
                    // The directory may refuse the replacement (e.g. already replaced): a plain
                    // order still renews.
                    Err(_) => account.new_order(&NewOrder::new(&identifiers)).await,
                }
            }
            None => account.new_order(&NewOrder::new(&identifiers)).await,
        };
        let mut order = match placed {
            Ok(order) => order,
            Err(error) => {
                if matches!(&error, instant_acme::Error::Api(p)
                    if p.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST))
                {
                    self.forget_account().await;
                }
                return Err(AcmeError::NewOrder {
                    domain: domain.to_owned(),
                    error,
                });
            }
        };
        let order = &mut order;

        let tokens = self.answer_challenges(domain, order).await?;
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(self.settings.order_timeout);
        let status = order
            .poll_ready(&policy)
            .await
            .map_err(|e| AcmeError::Challenge {
                domain: domain.to_owned(),
                detail: e.to_string(),
            })?;
        if status != OrderStatus::Ready {
            return Err(AcmeError::Challenge {
                domain: domain.to_owned(),
                detail: failure_detail(order).await,
            });
        }
        drop(tokens);

        let csr_err = |e: rcgen::Error| AcmeError::Csr {
            domain: domain.to_owned(),
            detail: e.to_string(),
        };
        let key = rcgen::KeyPair::generate().map_err(csr_err)?;
        let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(csr_err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(csr_err)?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|error| AcmeError::Finalize {
                domain: domain.to_owned(),
                error,
            })?;
        let chain = order
            .poll_certificate(&policy)
            .await
            .map_err(|error| AcmeError::Download {
                domain: domain.to_owned(),
                error,
            })?;
        Ok(CertMaterial::from_pem(
            chain,
            key.serialize_pem(),
            &format!("certificate issued for {domain}"),
        )?)
    }

    /// Publishes the HTTP-01 answer of every pending authorization and tells the directory it
    /// is ready. The answers stay published until the returned guard is dropped.
    async fn answer_challenges(
        &self,
        domain: &str,
        order: &mut Order,
    ) -> Result<PublishedTokens, AcmeError> {
        let mut tokens = PublishedTokens::new(&self.challenges, self.share.get().cloned());
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| AcmeError::Authorization {
                domain: domain.to_owned(),
                detail: e.to_string(),
            })?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Authorization {
                        domain: domain.to_owned(),
                        detail: format!("status is {other:?}"),
                    })
                }
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::NoHttp01(domain.to_owned()))?;
            tokens
                .publish(
                    challenge.token.clone(),
                    challenge.key_authorization().as_str().to_owned(),
                )
                .await
                .map_err(|detail| AcmeError::Challenge {
                    domain: domain.to_owned(),
                    detail,
                })?;
            challenge
                .set_ready()
                .await
                .map_err(|e| AcmeError::Challenge {
                    domain: domain.to_owned(),
                    detail: e.to_string(),
                })?;
        }
        Ok(tokens)
    }

    /// The directory's suggested renewal window for `cert` (ARI); `Ok(None)` when the directory
    /// does not offer ARI or the certificate cannot be identified (no AKI).
    pub async fn renewal_window(
        &self,
        cert: &CertMaterial,
    ) -> Result<Option<RenewalWindow>, AcmeError> {
        if self.ari.load(Ordering::Relaxed) == ARI_NO {
            return Ok(None);
        }
        let Ok(id) = CertificateIdentifier::try_from(cert.leaf_der()) else {
            return Ok(None);
        };
        let account = self.account().await?;
        match account.renewal_info(&id).await {
            Ok((info, recheck_after)) => {
                self.ari.store(ARI_YES, Ordering::Relaxed);
                Ok(Some(RenewalWindow {
                    start: info.suggested_window.start.into(),
                    end: info.suggested_window.end.into(),
                    recheck_after,
                }))
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.ari.store(ARI_NO, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(AcmeError::RenewalInfo(e.to_string())),
        }
    }
}

/// Why an order became invalid: the problems of its failed challenges.
/// An HTTPS client trusting the platform's roots plus the PEM certificates in `pem`.
fn http_client_with_root(pem: &[u8]) -> Result<AcmeHttp, AcmeError> {
    let extra = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::Client(format!("ca_root: invalid PEM: {e}")))?;
    if extra.is_empty() {
        return Err(AcmeError::Client(
            "ca_root: no PEM certificate found".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for cert in extra {
        roots
            .add(cert)
            .map_err(|e| AcmeError::Client(format!("ca_root: {e}")))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AcmeError::Client(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}
