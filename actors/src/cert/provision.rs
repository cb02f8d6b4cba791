//! Which certificate a TLS domain gets, in this order: a `[[certificates]]` file,
//! else ACME (one CertActor per domain), else a self-signed certificate made at once.

use super::{AcmeIssuer, CertMaterial, CertSource, CertStore};
use crate::model::DomainName;
use std::collections::HashSet;
use std::sync::Arc;

/// The certificate policy the RegistryActor applies as domains come and go.
#[derive(Clone)]
pub struct CertProvisioning {
    /// What the SNI resolver serves.
    pub store: CertStore,
    /// ACME, when `[lets_encrypt]` is set.
    pub issuer: Option<Arc<AcmeIssuer>>,
    /// Domains (exact or `*.` wildcard) whose certificate came from a file.
    pub manual: HashSet<String>,
}

/// What to do for one domain.
#[derive(Debug, PartialEq, Eq)]
pub enum Provision {
    /// A file certificate covers it: nothing to do.
    Manual,
    /// Run a CertActor for it.
    Acme,
    /// A self-signed certificate was installed.
    SelfSigned,
}

impl CertProvisioning {
    /// Decides (and for self-signed, installs) the certificate of `domain`.
    pub fn provision(&self, domain: &DomainName) -> Provision {
        if self.covered_by_file(domain) {
            return Provision::Manual;
        }
        if self.issuer.is_some() && domain.wildcard_suffix().is_none() {
            return Provision::Acme;
        }
        if self.issuer.is_some() {
            tracing::warn!(domain = %domain,
                "wildcard certificates need DNS-01, which this build does not do; serving a self-signed certificate");
        }
        match CertMaterial::self_signed(domain.as_str()) {
            Ok(m) => self
                .store
                .install(domain.as_str(), &m, CertSource::SelfSigned),
            Err(e) => {
                tracing::error!(domain = %domain, error = %e, "cannot make a self-signed certificate")
            }
        }
        Provision::SelfSigned
    }

    /// Forgets the certificate of a deleted domain (file certificates stay).
    pub fn release(&self, domain: &DomainName) {
        if !self.manual.contains(domain.as_str()) {
            self.store.remove(domain.as_str());
        }
    }

    fn covered_by_file(&self, domain: &DomainName) -> bool {
        let name = domain.as_str();
        self.manual.contains(name)
            || name
                .split_once('.')
                .is_some_and(|(_, parent)| self.manual.contains(&format!("*.{parent}")))
    }
}
