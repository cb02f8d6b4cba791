//! A domain's load-balancing policy as the request path runs it: which of a pool's picks to use
//! and, for the hashing policies, what to hash. Built when the route is published (the header
//! name parsed once); a pick hashes at most one short key and never allocates.

use super::lease::Lease;
use super::pool::BackendPool;
use crate::model::LbPolicy;
use crate::upstream::UpstreamBackend;
use http::{HeaderMap, HeaderName};
use std::hash::BuildHasher;
use std::net::IpAddr;

#[cfg(test)]
mod tests;

/// Seed of the key hash: fixed, so that every instance of one build sends a key to the same
/// backend.
const KEY_SEED: u64 = 0x6b65_795f_6861_7368;

/// What a hashing policy may key a request on, as the proxy sees the request. The client's
/// address is a function called only by `ip_hash`, so that the other policies never pay for
/// finding it.
#[derive(Clone, Copy, Debug)]
pub struct Affinity<'a, C> {
    /// The client's address (none for a Unix-socket client): what `ip_hash` keys on.
    pub client: C,
    /// The request headers: `header_hash` keys on one of them.
    pub headers: &'a HeaderMap,
}

/// How a route picks a backend within its pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest requests in flight.
    LeastConn,
    /// Consistent hash of the client's address.
    IpHash,
    /// Consistent hash of a header's value; round robin when the request lacks it.
    HeaderHash(HeaderName),
}

impl Policy {
    /// The policy of a domain record. A `header_hash` without a valid header (refused by
    /// validation before it gets here) degrades to round robin rather than failing a publish.
    pub fn new(policy: LbPolicy, hash_header: Option<&str>) -> Self {
        match policy {
            LbPolicy::RoundRobin => Policy::RoundRobin,
            LbPolicy::LeastConn => Policy::LeastConn,
            LbPolicy::IpHash => Policy::IpHash,
            LbPolicy::HeaderHash => hash_header
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .map_or(Policy::RoundRobin, Policy::HeaderHash),
        }
    }

    /// Whether the pool needs its consistent-hash table.
    pub fn hashes(&self) -> bool {
        matches!(self, Policy::IpHash | Policy::HeaderHash(_))
    }

    /// Picks a backend of `pool` for a request, skipping what `skip` rejects (backends this
    /// request already tried), and takes an in-flight slot on it.
    #[inline]
    pub fn pick(
        &self,
        pool: &BackendPool,
        request: &Affinity<'_, impl Fn() -> Option<IpAddr>>,
        skip: impl Fn(&UpstreamBackend) -> bool,
    ) -> Option<Lease> {
        match self {
            Policy::RoundRobin => pool.pick(skip),
            Policy::LeastConn => pool.pick_least_loaded(skip),
            Policy::IpHash => match (request.client)() {
                Some(ip) => pool.pick_hashed(hash_ip(ip), skip),
                None => pool.pick(skip),
            },
            Policy::HeaderHash(name) => match request.headers.get(name) {
                Some(value) => pool.pick_hashed(hash_key(value.as_bytes()), skip),
                None => pool.pick(skip),
            },
        }
    }
}

/// The hash of a header value (its bytes as sent).
#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(KEY_SEED).hash_one(key)
}

/// The hash of a client address; an IPv4 client hashes the same whether it arrives on an IPv4
/// or an IPv4-mapped IPv6 socket.
#[inline]
pub fn hash_ip(ip: IpAddr) -> u64 {
    let state = foldhash::fast::FixedState::with_seed(KEY_SEED);
    match ip.to_canonical() {
        IpAddr::V4(v4) => state.hash_one(u32::from(v4)),
        IpAddr::V6(v6) => state.hash_one(u128::from(v6)),
    }
}
