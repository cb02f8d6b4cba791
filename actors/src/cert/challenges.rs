//! HTTP-01 tokens published by the cert actors, answered by the plain-HTTP listener at
//! `/.well-known/acme-challenge/<token>`.

use super::acme::{AcmeShare, SharedItem};
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

/// Tokens published for one order (here, and in the shared store for every instance to
/// answer); withdrawn when dropped, so an order that fails, times out or is aborted leaves
/// nothing behind.
pub(crate) struct PublishedTokens {
    challenges: AcmeChallenges,
    share: Option<Arc<dyn AcmeShare>>,
    tokens: Vec<String>,
}

impl PublishedTokens {
    pub(crate) fn new(challenges: &AcmeChallenges, share: Option<Arc<dyn AcmeShare>>) -> Self {
        Self {
            challenges: challenges.clone(),
            share,
            tokens: Vec::new(),
        }
    }

    pub(crate) async fn publish(
        &mut self,
        token: String,
        key_authorization: String,
    ) -> Result<(), String> {
        self.challenges
            .publish(token.clone(), key_authorization.clone());
        self.tokens.push(token.clone());
        if let Some(share) = &self.share {
            super::acme::shared_blocking(share, move |s| {
                s.save(SharedItem::Token(&token), key_authorization.as_bytes())
            })
            .await?;
        }
        Ok(())
    }
}

impl Drop for PublishedTokens {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.withdraw(token);
        }
        if let (Some(share), Ok(rt)) = (&self.share, tokio::runtime::Handle::try_current()) {
            let (share, tokens) = (Arc::clone(share), std::mem::take(&mut self.tokens));
            rt.spawn_blocking(move || {
                for token in tokens {
                    let _ = share.remove(SharedItem::Token(&token));
                }
            });
        }
    }
}
