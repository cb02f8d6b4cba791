//! HTTP-01 tokens published by the cert actors, answered by the plain-HTTP listener at
//! `/.well-known/acme-challenge/<token>`.

use dashmap::DashMap;
use std::sync::Arc;

/// Path prefix of HTTP-01 challenge requests.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Shared map token -> key authorization. Cheap to clone (all clones see the same map).
#[derive(Clone, Debug, Default)]
pub struct AcmeChallenges {
    tokens: Arc<DashMap<String, String>>,
}

impl AcmeChallenges {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `token` with `key_authorization` until withdrawn.
    pub fn publish(&self, token: impl Into<String>, key_authorization: impl Into<String>) {
        self.tokens.insert(token.into(), key_authorization.into());
    }

    /// Stops answering `token`.
    pub fn withdraw(&self, token: &str) {
        self.tokens.remove(token);
    }

    /// The key authorization for `token`, if published.
    pub fn key_authorization(&self, token: &str) -> Option<String> {
        self.tokens.get(token).map(|v| v.value().clone())
    }

    /// The body to answer a request for `path` with, when `path` is a published challenge
    /// (`/.well-known/acme-challenge/<token>`, no query).
    pub fn respond(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(ACME_CHALLENGE_PREFIX)?;
        if token.is_empty() || token.contains('/') {
            return None;
        }
        self.key_authorization(token)
    }

    /// Whether `path` is an ACME challenge path (published or not): such requests are never
    /// redirected to HTTPS.
    pub fn is_challenge_path(path: &str) -> bool {
        path.starts_with(ACME_CHALLENGE_PREFIX)
    }

    /// Number of published tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token is published.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Tokens published for one order; withdrawn when dropped, so an order that fails, times out or
/// is aborted leaves nothing behind.
pub(crate) struct PublishedTokens {
    challenges: AcmeChallenges,
    tokens: Vec<String>,
}

impl PublishedTokens {
    pub(crate) fn new(challenges: &AcmeChallenges) -> Self {
        Self {
            challenges: challenges.clone(),
            tokens: Vec::new(),
        }
    }

    pub(crate) fn publish(&mut self, token: String, key_authorization: String) {
        self.challenges.publish(token.clone(), key_authorization);
        self.tokens.push(token);
    }
}

impl Drop for PublishedTokens {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.withdraw(token);
        }
    }
}
