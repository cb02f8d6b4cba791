//! A domain's access control on the request path: its allow and deny lists (aggregated at
//! publish time) and its rate limiter per client IP (a keyed GCRA from `governor`: one atomic
//! cell per client in a sharded map, so workers never wait on one lock).

use crate::model::AccessSettings;
use governor::clock::{Clock, QuantaClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

/// What access control decides for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request goes on.
    Pass,
    /// The client's address is denied, or outside the allow list: `403`.
    Forbidden,
    /// The client is over the rate: `429`, and it may try again after this many seconds.
    Limited {
        /// Whole seconds until the next request would pass (at least 1).
        retry_after_secs: u64,
    },
}

/// The keyed rate limiter of one domain: requests per second per client IP, with a burst.
pub struct ClientLimiter {
    rps: u32,
    burst: u32,
    cells: RateLimiter<IpAddr, DashMapStateStore<IpAddr, KeyHasher>, QuantaClock>,
}

type KeyHasher = foldhash::quality::RandomState;

impl std::fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimiter")
            .field("rps", &self.rps)
            .field("burst", &self.burst)
            .field("clients", &self.cells.len())
            .finish()
    }
}

impl ClientLimiter {
    /// A limiter of `rps` requests per second and `burst` at once, per client IP.
    pub fn new(rps: u32, burst: u32) -> Self {
        let one = NonZeroU32::MIN;
        let quota = Quota::per_second(NonZeroU32::new(rps).unwrap_or(one))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(one));
        Self {
            rps,
            burst,
            cells: RateLimiter::dashmap_with_clock_and_hasher(
                quota,
                QuantaClock::default(),
                KeyHasher::default(),
            ),
        }
    }

    /// Takes one request of `client`'s allowance; `Err` with the seconds to wait when none is
    /// left.
    #[inline]
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        self.cells.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.cells.clock().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }

    /// Forgets clients whose allowance is full again (idle long enough that remembering them
    /// changes nothing), and gives the memory back.
    pub fn sweep(&self) {
        self.cells.retain_recent();
        self.cells.shrink_to_fit();
    }

    /// Clients remembered.
    pub fn clients(&self) -> usize {
        self.cells.len()
    }

    fn same_rate(&self, rate: (u32, u32)) -> bool {
        (self.rps, self.burst) == rate
    }
}

/// A domain's access control as the request path applies it.
#[derive(Debug)]
pub struct Access {
    allow: Option<Box<[IpNet]>>,
    deny: Box<[IpNet]>,
    limiter: Option<Arc<ClientLimiter>>,
}

impl Access {
    /// The control `settings` ask for, none when they ask for nothing. The rate limiter of
    /// `previous` (the domain's last published control) is kept when its rate is the same, so a
    /// republish (a switch, a backend change) forgets no client's allowance.
    pub fn new(settings: &AccessSettings, previous: Option<&Access>) -> Option<Self> {
        if settings.is_empty() {
            return None;
        }
        let aggregate = |nets: &Option<Vec<IpNet>>| {
            nets.as_ref()
                .map(|n| IpNet::aggregate(n).into_boxed_slice())
        };
        let limiter = settings.rate_limit().map(|rate| {
            previous
                .and_then(|p| p.limiter.as_ref())
                .filter(|l| l.same_rate(rate))
                .cloned()
                .unwrap_or_else(|| Arc::new(ClientLimiter::new(rate.0, rate.1)))
        });
        Some(Self {
            allow: aggregate(&settings.allow),
            deny: aggregate(&settings.deny).unwrap_or_default(),
            limiter,
        })
    }

    /// What the control decides for a request from `client` (none for a client without an IP
    /// address, such as a Unix socket's: outside every list, never rate limited).
    #[inline]
    pub fn admit(&self, client: Option<IpAddr>) -> Verdict {
        let listed = |nets: &[IpNet]| client.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
        if listed(&self.deny) || self.allow.as_deref().is_some_and(|a| !listed(a)) {
            return Verdict::Forbidden;
        }
        match (&self.limiter, client) {
            (Some(limiter), Some(ip)) => match limiter.check(ip) {
                Ok(()) => Verdict::Pass,
                Err(retry_after_secs) => Verdict::Limited { retry_after_secs },
            },
            _ => Verdict::Pass,
        }
    }

    /// The rate limiter, when there is one.
    pub fn limiter(&self) -> Option<&Arc<ClientLimiter>> {
        self.limiter.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_cidr;

    fn settings(allow: &[&str], deny: &[&str], rate: Option<(u32, u32)>) -> AccessSettings {
        let list = |l: &[&str]| {
            (!l.is_empty()).then(|| l.iter().map(|c| parse_cidr(c).unwrap()).collect())
        };
        AccessSettings {
            allow: list(allow),
            deny: list(deny),
            rate_limit_rps: rate.map(|r| r.0),
            rate_limit_burst: rate.map(|r| r.1),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn deny_wins_over_allow() {
        let a = Access::new(&settings(&["10.0.0.0/8"], &["10.0.0.66"], None), None).unwrap();
        assert_eq!(a.admit(ip("10.1.2.3")), Verdict::Pass);
        assert_eq!(a.admit(ip("10.0.0.66")), Verdict::Forbidden);
        assert_eq!(a.admit(ip("192.168.0.1")), Verdict::Forbidden);
        assert_eq!(a.admit(ip("::1")), Verdict::Forbidden);
        assert_eq!(a.admit(None), Verdict::Forbidden);
        let deny_only = Access::new(&settings(&[], &["2001:db8::/32"], None), None).unwrap();
        assert_eq!(deny_only.admit(ip("2001:db8::5")), Verdict::Forbidden);
        assert_eq!(deny_only.admit(ip("2001:db9::5")), Verdict::Pass);
        assert_eq!(deny_only.admit(None), Verdict::Pass);
        assert!(Access::new(&AccessSettings::default(), None).is_none());
    }

    #[test]
    fn the_burst_then_the_rate_per_client() {
        let a = Access::new(&settings(&[], &[], Some((1, 3))), None).unwrap();
        for _ in 0..3 {
            assert_eq!(a.admit(ip("192.0.2.1")), Verdict::Pass);
        }
        assert_eq!(
            a.admit(ip("192.0.2.1")),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        // Another client has its own allowance.
        assert_eq!(a.admit(ip("192.0.2.2")), Verdict::Pass);
        assert_eq!(a.limiter().unwrap().clients(), 2);
    }

    #[test]
    fn a_republish_keeps_the_allowances_of_the_same_rate() {
        let s = settings(&[], &[], Some((1, 1)));
        let first = Access::new(&s, None).unwrap();
        assert_eq!(first.admit(ip("192.0.2.1")), Verdict::Pass);
        let again = Access::new(&s, Some(&first)).unwrap();
        assert!(matches!(
            again.admit(ip("192.0.2.1")),
            Verdict::Limited { .. }
        ));
        let faster = Access::new(&settings(&[], &[], Some((5, 5))), Some(&again)).unwrap();
        assert_eq!(faster.admit(ip("192.0.2.1")), Verdict::Pass);
    }

    #[test]
    fn idle_clients_are_swept() {
        let a = ClientLimiter::new(1_000_000, 1);
        for i in 0..1000u32 {
            let _ = a.check(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(a.clients(), 1000);
        std::thread::sleep(std::time::Duration::from_millis(5));
        a.sweep();
        assert_eq!(a.clients(), 0);
    }
}
