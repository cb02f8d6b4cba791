//! Why an ACME order, or a step of it, failed.

use super::super::material::CertError;
use instant_acme::{ChallengeType, Order};
use std::time::Duration;
/// Why an order (or a step of it) failed. The text is what `last_error` shows.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The HTTP client for the directory could not be set up.
    #[error("ACME client setup: {0}")]
    Client(String),
    /// The account could not be loaded, created or stored.
    #[error("ACME account: {0}")]
    Account(String),
    /// The directory refused the new order.
    #[error("new order for {domain}: {error}")]
    NewOrder {
        /// The domain.
        domain: String,
        /// What the directory said.
        error: instant_acme::Error,
    },
    /// An authorization could not be read or is in a state that cannot be completed.
    #[error("authorization for {domain}: {detail}")]
    Authorization {
        /// The domain.
        domain: String,
        /// What went wrong.
        detail: String,
    },
    /// The directory offered no HTTP-01 challenge.
    #[error("no http-01 challenge offered for {0}")]
    NoHttp01(String),
    /// The challenge failed: the directory could not validate the domain.
    #[error("challenge for {domain} failed: {detail}")]
    Challenge {
        /// The domain.
        domain: String,
        /// The directory's problem documents.
        detail: String,
    },
    /// Key or CSR generation failed.
    #[error("key or CSR generation for {domain}: {detail}")]
    Csr {
        /// The domain.
        domain: String,
        /// What rcgen said.
        detail: String,
    },
    /// Finalizing the order failed.
    #[error("finalize order for {domain}: {error}")]
    Finalize {
        /// The domain.
        domain: String,
        /// What the directory said.
        error: instant_acme::Error,
    },
    /// Downloading the certificate failed.
    #[error("certificate download for {domain}: {error}")]
    Download {
        /// The domain.
        domain: String,
        /// What the directory said.
        error: instant_acme::Error,
    },
    /// The issued chain is unusable.
    #[error("issued certificate: {0}")]
    Material(#[from] CertError),
    /// Wildcards need DNS-01, which is not supported.
    #[error("{0}: a wildcard needs DNS-01 validation; HTTP-01 cannot obtain it (give it as a [[certificates]] entry)")]
    Wildcard(String),
    /// The order took longer than `order_timeout`.
    #[error("order for {domain} took longer than {after:?}")]
    Timeout {
        /// The domain.
        domain: String,
        /// The limit.
        after: Duration,
    },
    /// The ARI renewal window could not be read.
    #[error("renewal info: {0}")]
    RenewalInfo(String),
    /// The shared store (several instances) could not be used.
    #[error("the shared ACME store failed: {0}")]
    Shared(String),
}

/// What the CA said about each failed challenge of an invalid order.
pub(super) async fn failure_detail(order: &mut Order) -> String {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = match authz {
            Ok(a) => a,
            Err(e) => {
                details.push(format!("cannot read an authorization: {e}"));
                continue;
            }
        };
        let state = match authz.refresh().await {
            Ok(s) => s,
            Err(e) => {
                details.push(format!("cannot read an authorization: {e}"));
                continue;
            }
        };
        let id = state.identifier().to_string();
        for c in &state.challenges {
            if let Some(problem) = &c.error {
                details.push(format!("{id}: {} {problem}", challenge_name(&c.r#type)));
            }
        }
    }
    if details.is_empty() {
        "the order became invalid".into()
    } else {
        details.join("; ")
    }
}

fn challenge_name(t: &ChallengeType) -> &'static str {
    match t {
        ChallengeType::Http01 => "http-01",
        ChallengeType::Dns01 => "dns-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        _ => "challenge",
    }
}
