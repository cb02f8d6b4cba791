//! Validation of `[lets_encrypt]` and `[[certificates]]`: where TLS certificates come from.

use crate::config::problem::{KeyPath, Problems};
use crate::config::schema::{CertificateSection, LetsEncryptSection, ProxySection};
use crate::config::ManualCertificate;
use std::time::Duration;
use vhost_actors::cert::{
    AcmeSettings, CertMaterial, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
};
use vhost_actors::model::DomainName;

/// Checks `[lets_encrypt]` and makes the ACME settings of it.
pub(super) fn lets_encrypt(
    le: &LetsEncryptSection,
    p: &ProxySection,
    errs: &mut Problems,
    warnings: &mut Vec<String>,
) -> AcmeSettings {
    let at = KeyPath::section("lets_encrypt");
    if !le.email.contains('@') {
        errs.push(
            at.key("email"),
            format!("'{}' is not an e-mail address", le.email),
        );
    }
    if le.cache_dir.as_os_str().is_empty() {
        errs.push(at.key("cache_dir"), "must not be empty");
    }
    if let Some(u) = &le.directory_url {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            errs.push(
                at.key("directory_url"),
                format!("'{u}' is not an http(s) URL"),
            );
        }
    }
    if le.renew_before_days == 0 {
        errs.push(at.key("renew_before_days"), "must be > 0");
    }
    let ca_root_pem = le.ca_root.as_ref().and_then(|path| {
        std::fs::read(path)
            .map_err(|e| {
                errs.push(
                    at.key("ca_root"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
            .ok()
    });
    if p.listen_addr.is_none() {
        warnings.push(
            "lets_encrypt: no HTTPS listener (proxy.listen_addr), so no certificates are ordered"
                .into(),
        );
    } else if p.listen_addr_http.is_none() {
        errs.push(
            at.clone(),
            "HTTP-01 challenges are answered on the plain-HTTP listener: set \
             proxy.listen_addr_http (port 80 for Let's Encrypt)",
        );
    }
    let directory_url = le.directory_url.clone().unwrap_or_else(|| {
        if le.staging {
            LETS_ENCRYPT_STAGING.to_string()
        } else {
            LETS_ENCRYPT_PRODUCTION.to_string()
        }
    });
    let mut settings = AcmeSettings::new(le.email.clone(), directory_url, le.cache_dir.clone());
    settings.ca_root_pem = ca_root_pem;
    settings.renew_before = Duration::from_secs(le.renew_before_days.saturating_mul(86_400));
    settings
}

/// Checks `[[certificates]]`: each readable, valid, and covering its domain.
pub(super) fn certificates(
    list: &[CertificateSection],
    p: &ProxySection,
    errs: &mut Problems,
    warnings: &mut Vec<String>,
) -> Vec<ManualCertificate> {
    let mut certificates = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let at = KeyPath::section("certificates").index(i);
        let domain = DomainName::parse(&c.domain)
            .map_err(|e| errs.push(at.key("domain"), e))
            .ok();
        match CertMaterial::from_files(&c.cert_path, &c.key_path) {
            Ok(m) => {
                if let Some(d) = &domain {
                    if !m.covers(d.as_str()) {
                        errs.push(
                            at.clone(),
                            format!("{} does not cover domain '{d}'", c.cert_path.display()),
                        );
                    }
                }
            }
            Err(e) => errs.push(at.clone(), e),
        }
        if let Some(domain) = domain {
            certificates.push(ManualCertificate {
                domain,
                cert_path: c.cert_path.clone(),
                key_path: c.key_path.clone(),
            });
        }
    }
    if !list.is_empty() && p.listen_addr.is_none() {
        warnings.push(
            "certificates: no HTTPS listener (proxy.listen_addr), so they are not served".into(),
        );
    }
    certificates
}
