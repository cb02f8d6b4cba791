//! What the proxy answers itself instead of proxying: access control (`403`, `429`), ACME
//! HTTP-01 challenges, `http_to_https` redirects, a `Host` that does not match the SNI (`421`,
//! for a configured domain or not), and a pool with no backend to take the request (`503`) or
//! a declared body over the limit (`413`).

use super::responses::{self, respond_static, Refusal};
use super::{admission, Listener, VhostProxy};
use crate::tls::client_sni;
use pingora::prelude::*;
use vhost_actors::cert::AcmeChallenges;
use vhost_actors::routing::{Route, Verdict};

/// Why the domain's access control refuses a request from `client`, if it does.
#[inline]
pub(super) fn access_refusal(route: &Route, client: Option<std::net::IpAddr>) -> Option<Refusal> {
    match route.access.as_ref()?.admit(client) {
        Verdict::Pass => None,
        Verdict::Forbidden => Some(Refusal::Text(403, responses::FORBIDDEN)),
        Verdict::Limited { retry_after_secs } => Some(Refusal::Limited(retry_after_secs)),
    }
}

impl VhostProxy {
    /// Answers an ACME HTTP-01 challenge on the plain listener when ACME is on; `true` when it
    /// did.
    pub(super) async fn answer_challenge(&self, session: &mut Session) -> Result<bool> {
        let Listener::Plain {
            challenges: Some(challenges),
            ..
        } = &self.opts.listener
        else {
            return Ok(false);
        };
        let path = session.req_header().uri.path();
        if !AcmeChallenges::is_challenge_path(path) {
            return Ok(false);
        }
        match challenges.respond(path) {
            Some(key_auth) => responses::respond(session, 200, key_auth.into()).await?,
            None => respond_static(session, 404, responses::UNKNOWN_CHALLENGE).await?,
        }
        Ok(true)
    }

    /// Why this listener answers a request for `host` itself: a redirect to HTTPS, or a `Host`
    /// that does not match the SNI.
    pub(super) fn listener_refusal(
        &self,
        session: &Session,
        host: &str,
        route: &Route,
    ) -> Option<Refusal> {
        match &self.opts.listener {
            // ACME challenges stay on plain HTTP, whoever answers them.
            Listener::Plain {
                https_port: Some(port),
                ..
            } if route.http_to_https
                && !AcmeChallenges::is_challenge_path(session.req_header().uri.path()) =>
            {
                let location = responses::https_location(host, *port, session.req_header());
                return Some(Refusal::Redirect(location));
            }
            Listener::Tls => return self.misdirected(session, host),
            Listener::Plain { .. } => {}
        }
        None
    }

    /// `421` for a request on the HTTPS listener whose `Host` is not the name its client sent
    /// as SNI, whether or not that `Host` is a configured domain. Without SNI (or on the plain
    /// listener) nothing is misdirected.
    #[inline]
    pub(super) fn misdirected(&self, session: &Session, host: &str) -> Option<Refusal> {
        if !matches!(self.opts.listener, Listener::Tls) {
            return None;
        }
        let sni = session
            .digest()
            .and_then(|d| d.ssl_digest.as_deref())
            .and_then(client_sni)?;
        (sni != host).then_some(Refusal::Text(421, responses::MISDIRECTED))
    }

    /// Why a request routed to `route` is not proxied: no backend to take it, or a declared
    /// body over the limit.
    pub(super) fn pool_refusal(&self, session: &Session, route: &Route) -> Option<Refusal> {
        if !route.pool.has_routable(|_| false) {
            return Some(Refusal::Text(503, responses::NO_BACKEND));
        }
        let too_large = admission::content_length(session.req_header())
            .is_some_and(|len| len > self.opts.limits.max_request_body_bytes);
        too_large.then_some(Refusal::Close(413, responses::BODY_TOO_LARGE))
    }
}
