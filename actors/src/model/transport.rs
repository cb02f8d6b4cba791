//! How the proxy speaks to a backend: its protocol (HTTP/1.1, HTTP/2 without TLS, TLS with
//! ALPN), the TLS name and trust it checks, and how its health probe asks.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The protocol spoken to a backend.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BackendProtocol {
    /// Plain HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 without TLS, by prior knowledge (gRPC servers, for instance).
    H2c,
    /// TLS, offering HTTP/2 then HTTP/1.1 by ALPN.
    Https,
}

impl BackendProtocol {
    /// The name as written in config and API.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::H2c => "h2c",
            BackendProtocol::Https => "https",
        }
    }
}

/// How a backend's health probe asks.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// `GET [health_check] path`; any status below 500 is healthy.
    #[default]
    Http,
    /// The standard `grpc.health.v1.Health/Check`; `SERVING` is healthy.
    Grpc,
    /// A connection (with the TLS handshake for `https`) is enough.
    Tcp,
}

impl HealthCheck {
    /// The name as written in config and API.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCheck::Http => "http",
            HealthCheck::Grpc => "grpc",
            HealthCheck::Tcp => "tcp",
        }
    }
}

/// A backend's protocol settings as the registry keeps and persists them. Every field has a
/// default, so state written before they existed still loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransportSettings {
    /// `http1`, `h2c` or `https`.
    #[serde(default)]
    #[schema(required = true)]
    pub protocol: BackendProtocol,
    /// SNI and the name the certificate must carry, used when the protocol is `https` (kept on
    /// any protocol); stored lower-cased. The API shows the default, the host of the address,
    /// when none is set.
    #[serde(default)]
    #[schema(required = true, example = "api.example.net")]
    pub tls_server_name: Option<String>,
    /// Check the certificate chain and name (system roots plus `tls_ca_file`).
    #[serde(default = "verify_by_default")]
    #[schema(required = true)]
    pub tls_verify: bool,
    /// Extra trust roots (PEM) for this backend.
    #[serde(default)]
    #[schema(required = true)]
    pub tls_ca_file: Option<String>,
    /// How the probe asks.
    #[serde(default)]
    #[schema(required = true)]
    pub health_check: HealthCheck,
}

fn verify_by_default() -> bool {
    true
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            protocol: BackendProtocol::default(),
            tls_server_name: None,
            tls_verify: true,
            tls_ca_file: None,
            health_check: HealthCheck::default(),
        }
    }
}

impl TransportSettings {
    /// The TLS server name used for `address`: the configured one, else the address's host,
    /// lower-cased.
    pub fn server_name(&self, address: &str) -> String {
        match &self.tls_server_name {
            Some(name) => name.clone(),
            None => address_host(address).to_ascii_lowercase(),
        }
    }

    /// The settings with the server name lower-cased, as they are stored.
    pub fn normalized(mut self) -> Self {
        if let Some(name) = &mut self.tls_server_name {
            name.make_ascii_lowercase();
        }
        self
    }

    /// Checks the settings together: a valid server name, a gRPC probe only over HTTP/2. The
    /// TLS settings are kept on every protocol and used only with `https`. Whether the CA
    /// file loads is checked where it is read.
    pub fn check(&self) -> Result<(), String> {
        if let Some(name) = &self.tls_server_name {
            check_server_name(name)?;
        }
        if matches!(&self.tls_ca_file, Some(f) if f.trim().is_empty()) {
            return Err("tls_ca_file must not be empty".into());
        }
        if self.health_check == HealthCheck::Grpc && self.protocol == BackendProtocol::Http1 {
            return Err(
                "health_check \"grpc\" needs HTTP/2: use protocol \"h2c\" or \"https\"".into(),
            );
        }
        Ok(())
    }

    /// Whether the proxy connects to this backend over TLS without checking its certificate.
    pub fn unverified_tls(&self) -> bool {
        self.protocol == BackendProtocol::Https && !self.tls_verify
    }
}

/// A TLS server name: a DNS name (no wildcard, any case: [`TransportSettings::normalized`]
/// stores it lower-cased) or an IP address.
pub fn check_server_name(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = super::DomainName::parse(name)
        .is_ok_and(|d| d.wildcard_suffix().is_none() && d.as_str().eq_ignore_ascii_case(name));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tls_server_name '{name}' is not a DNS name or IP address"
        ))
    }
}

/// The host part of a `host:port` address, without the brackets of an IPv6 literal.
pub fn address_host(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_records_load_with_the_defaults() {
        let t: TransportSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(t, TransportSettings::default());
        assert!(t.tls_verify);
        assert_eq!(t.protocol.as_str(), "http1");
        assert_eq!(t.health_check.as_str(), "http");
    }

    #[test]
    fn the_server_name_defaults_to_the_host() {
        let t = TransportSettings::default();
        assert_eq!(t.server_name("api.example.net:443"), "api.example.net");
        assert_eq!(t.server_name("[::1]:8443"), "::1");
        assert_eq!(t.server_name("10.0.0.5:443"), "10.0.0.5");
        let named = TransportSettings {
            tls_server_name: Some("other.example".into()),
            ..t
        };
        assert_eq!(named.server_name("10.0.0.5:443"), "other.example");
    }

    #[test]
    fn tls_settings_are_kept_on_every_protocol_and_grpc_needs_h2() {
        let https = TransportSettings {
            protocol: BackendProtocol::Https,
            tls_server_name: Some("api.example.net".into()),
            tls_verify: false,
            tls_ca_file: Some("/ca.pem".into()),
            health_check: HealthCheck::Grpc,
        };
        assert_eq!(https.check(), Ok(()));
        assert!(https.unverified_tls());
        let h2c = TransportSettings {
            protocol: BackendProtocol::H2c,
            ..https.clone()
        };
        assert_eq!(h2c.check(), Ok(()));
        assert!(!h2c.unverified_tls());
        let plain = TransportSettings {
            protocol: BackendProtocol::Http1,
            health_check: HealthCheck::Http,
            ..https.clone()
        };
        assert_eq!(plain.check(), Ok(()));
        let grpc_h1 = TransportSettings {
            health_check: HealthCheck::Grpc,
            ..TransportSettings::default()
        };
        assert!(grpc_h1.check().unwrap_err().contains("h2c"));
        for bad in ["*.example.com", "a b", "", "api.example.net."] {
            let t = TransportSettings {
                tls_server_name: Some(bad.into()),
                ..https.clone()
            };
            assert!(t.check().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn server_names_are_case_insensitive_and_stored_lower_case() {
        let upper = TransportSettings {
            protocol: BackendProtocol::Https,
            tls_server_name: Some("API.Example.NET".into()),
            ..TransportSettings::default()
        };
        assert_eq!(upper.check(), Ok(()));
        let stored = upper.normalized();
        assert_eq!(stored.tls_server_name.as_deref(), Some("api.example.net"));
        let default = TransportSettings::default();
        assert_eq!(
            default.server_name("API.Example.net:443"),
            "api.example.net"
        );
    }
}
