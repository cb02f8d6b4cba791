//! TLS certificates: the [`CertStore`] the SNI resolver reads, manual and self-signed
//! certificates, and the [`CertActor`] that obtains and renews certificates over ACME HTTP-01.
//!
//! How the pieces fit:
//! - [`CertStore`] maps a domain to a ready `rustls` [`CertifiedKey`] plus metadata for the API;
//!   readers never lock and never do I/O.
//! - [`CertMaterial`] is one checked chain + key ([`CertMaterial::from_files`] for
//!   `[[certificates]]`, [`CertMaterial::self_signed`] for development).
//! - [`AcmeIssuer`] is shared by all cert actors: settings, the ACME account, the published
//!   HTTP-01 tokens ([`AcmeChallenges`]) and the order counters ([`AcmeCounters`]).
//! - [`CertActor`], one per ACME domain, keeps its domain's certificate valid.
//!
//! [`CertifiedKey`]: rustls::sign::CertifiedKey

mod acme;
mod actor;
mod cache;
mod challenges;
mod material;
mod provision;
mod store;

pub use acme::{
    AcmeCounters, AcmeError, AcmeIssuer, AcmeSettings, AcmeShare, RenewalWindow, SharedItem,
    LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING, ORDER_LOCK_PATIENCE,
};
pub use actor::{CertActor, CertArgs, CertMsg, CycleOutcome};
pub use cache::{write_private_file, CertCache};
pub use challenges::{AcmeChallenges, ACME_CHALLENGE_PREFIX};
pub use material::{CertError, CertMaterial};
pub use provision::{CertProvisioning, Provision};
pub use store::{CertInfo, CertSource, CertStatus, CertStore};

/// Installs ring as the process-wide rustls crypto provider, the one pingora's rustls backend
/// uses, so that exactly one provider serves every handshake. Idempotent: later calls, or a
/// provider already installed, leave things as they are.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Unix time now, in seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
