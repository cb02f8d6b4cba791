//! The CertStore: domain -> certificate the TLS handshake serves, plus what the API shows about
//! it. Readers load an `Arc` snapshot of the whole map (no lock, no I/O); writers, rare, copy
//! the map and swap it in.

use super::material::CertMaterial;
use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Where a certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CertSource {
    /// Obtained over ACME.
    Acme,
    /// A `[[certificates]]` entry.
    Manual,
    /// Generated at start.
    SelfSigned,
}

impl CertSource {
    /// The name the API uses: `acme`, `manual` or `self-signed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acme => "acme",
            Self::Manual => "manual",
            Self::SelfSigned => "self-signed",
        }
    }
}

/// Where a domain's certificate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    /// No certificate yet; the first order is under way.
    Pending,
    /// A valid certificate is served.
    Valid,
    /// A valid certificate is served and its renewal is under way.
    Renewing,
    /// The last order failed; a retry is scheduled (`last_error` says why).
    Failed,
    /// The served certificate has expired.
    Expired,
}

impl CertStatus {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Renewing => "renewing",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// What the API shows about one domain's certificate: the `Certificate` JSON object
/// (`not_after` as RFC 3339, `null` while there is no certificate; `serial` is an extension).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Certificate)]
pub struct CertInfo {
    /// The domain (may be a wildcard).
    pub domain: String,
    /// Where the certificate comes from.
    pub source: CertSource,
    /// End of validity, unix seconds; `None` while there is no certificate.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub not_after: Option<i64>,
    /// Serial of the served leaf, lower-case hex.
    #[schema(required = true)]
    pub serial: Option<String>,
    /// Where it stands.
    pub status: CertStatus,
    /// The last failure, until the next success.
    #[schema(required = true)]
    pub last_error: Option<String>,
}

fn rfc3339<S: Serializer>(secs: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match secs.and_then(|t| u64::try_from(t).ok()) {
        Some(t) => s.collect_str(&humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_secs(t),
        )),
        None => s.serialize_none(),
    }
}

struct Entry {
    key: Option<Arc<CertifiedKey>>,
    info: CertInfo,
}

type Map = HashMap<String, Arc<Entry>>;

/// Shared map domain -> certificate. Cheap to clone (all clones see the same map).
#[derive(Clone)]
pub struct CertStore {
    map: Arc<ArcSwap<Map>>,
}

impl Default for CertStore {
    fn default() -> Self {
        Self {
            map: Arc::new(ArcSwap::from_pointee(Map::new())),
        }
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("domains", &self.map.load().len())
            .finish()
    }
}

impl CertStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The certificate for a TLS server name: the exact domain, else the wildcard one label up
    /// (`*.example.com` for `x.example.com`). Case and a trailing dot are ignored. No I/O.
    pub fn resolve(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.strip_suffix('.').unwrap_or(server_name);
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let map = self.map.load();
        if let Some(key) = map.get(name).and_then(|e| e.key.clone()) {
            return Some(key);
        }
        let (_, parent) = name.split_once('.')?;
        map.get(format!("*.{parent}").as_str())
            .and_then(|e| e.key.clone())
    }

    /// Serves `material` for `domain` from now on: status `valid` (`expired` if it is), no error.
    pub fn install(&self, domain: &str, material: &CertMaterial, source: CertSource) {
        let status = if material.expired_at(super::unix_now()) {
            CertStatus::Expired
        } else {
            CertStatus::Valid
        };
        let entry = Arc::new(Entry {
            key: Some(Arc::clone(material.certified_key())),
            info: CertInfo {
                domain: domain.to_owned(),
                source,
                not_after: Some(material.not_after()),
                serial: Some(material.serial().to_owned()),
                status,
                last_error: None,
            },
        });
        self.map.rcu(|map| {
            let mut next = Map::clone(map);
            next.insert(domain.to_owned(), Arc::clone(&entry));
            next
        });
    }

    /// Sets the status and last error of `domain`, keeping the certificate it serves (a new entry
    /// without certificate when there is none).
    pub fn set_status(
        &self,
        domain: &str,
        source: CertSource,
        status: CertStatus,
        last_error: Option<String>,
    ) {
        self.map.rcu(|map| {
            let mut next = Map::clone(map);
            let (key, not_after, serial) = match map.get(domain) {
                Some(e) => (e.key.clone(), e.info.not_after, e.info.serial.clone()),
                None => (None, None, None),
            };
            let info = CertInfo {
                domain: domain.to_owned(),
                source,
                not_after,
                serial,
                status,
                last_error: last_error.clone(),
            };
            next.insert(domain.to_owned(), Arc::new(Entry { key, info }));
            next
        });
    }

    /// Stops serving `domain`; true when it was there.
    pub fn remove(&self, domain: &str) -> bool {
        let mut removed = false;
        self.map.rcu(|map| {
            let mut next = Map::clone(map);
            removed = next.remove(domain).is_some();
            next
        });
        removed
    }

    /// What the API shows about `domain`.
    pub fn info(&self, domain: &str) -> Option<CertInfo> {
        self.map.load().get(domain).map(|e| e.info.clone())
    }

    /// Every domain's certificate info, sorted by domain.
    pub fn list(&self) -> Vec<CertInfo> {
        let mut all: Vec<CertInfo> = self.map.load().values().map(|e| e.info.clone()).collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all
    }

    /// Whether `domain` has an entry (with or without certificate).
    pub fn contains(&self, domain: &str) -> bool {
        self.map.load().contains_key(domain)
    }

    /// Number of domains.
    pub fn len(&self) -> usize {
        self.map.load().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.load().is_empty()
    }
}
