//! ACME state shared by several instances through a shared store (etcd): one account per
//! deployment, one order at a time per domain (a lock), the issued certificate for the others
//! to load, and HTTP-01 tokens that every instance answers.

use super::{AcmeError, AcmeIssuer};
use crate::cert::{AcmeChallenges, CertMaterial};
use instant_acme::{Account, AccountCredentials};
use std::sync::Arc;
use std::time::Duration;

/// How long an instance waits for another instance's order of the same domain.
pub const ORDER_LOCK_PATIENCE: Duration = Duration::from_secs(300);

/// A shared item's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedItem<'a> {
    /// The account credentials for a directory (its stem, as in the cache file's name).
    Account(&'a str),
    /// A domain's certificate: `{"chain": PEM, "key": PEM}`.
    Cert(&'a str),
    /// An HTTP-01 token's key authorization.
    Token(&'a str),
}

/// What a shared store offers ACME. Every method may block (network): call it off the async
/// runtime (`spawn_blocking`).
pub trait AcmeShare: Send + Sync + 'static {
    /// The stored bytes of `item`.
    fn load(&self, item: SharedItem<'_>) -> Result<Option<Vec<u8>>, String>;
    /// Stores `item`.
    fn save(&self, item: SharedItem<'_>, bytes: &[u8]) -> Result<(), String>;
    /// Removes `item`.
    fn remove(&self, item: SharedItem<'_>) -> Result<(), String>;
    /// Waits at most `patience` until this instance holds the lock `name` among all
    /// instances; released when the guard is dropped (or, if this instance dies, when its
    /// lease runs out).
    fn lock(&self, name: &str, patience: Duration) -> Result<Box<dyn Send>, String>;
    /// Keeps `challenges` equal to the tokens published by every instance.
    fn mirror_tokens(&self, challenges: AcmeChallenges);
}

/// Runs a blocking share call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    share: &Arc<dyn AcmeShare>,
    f: impl FnOnce(&dyn AcmeShare) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let share = Arc::clone(share);
    tokio::task::spawn_blocking(move || f(share.as_ref()))
        .await
        .unwrap_or_else(|e| Err(format!("the shared store call failed: {e}")))
}

impl AcmeIssuer {
    /// Shares the account, orders and tokens with the other instances through `share`; tokens
    /// they publish are answered here from now on.
    pub fn share_with(&self, share: Arc<dyn AcmeShare>) {
        share.mirror_tokens(self.challenges.clone());
        let _ = self.share.set(share);
    }

    /// The shared store, when several instances share ACME.
    pub fn share(&self) -> Option<&Arc<dyn AcmeShare>> {
        self.share.get()
    }

    /// The account from the shared store, created there (under a lock, so once per
    /// deployment) when there is none yet.
    pub(super) async fn shared_account(
        &self,
        share: &Arc<dyn AcmeShare>,
    ) -> Result<Account, AcmeError> {
        let stem = self.account_stem();
        let name = format!("account/{stem}");
        let fail = |e: String| AcmeError::Account(format!("shared store: {e}"));
        let _guard = blocking(share, move |s| s.lock(&name, ORDER_LOCK_PATIENCE))
            .await
            .map_err(fail)?;
        let key = stem.clone();
        let stored = blocking(share, move |s| s.load(SharedItem::Account(&key)))
            .await
            .map_err(fail)?;
        if let Some(bytes) = stored {
            let creds: AccountCredentials = serde_json::from_slice(&bytes)
                .map_err(|e| AcmeError::Account(format!("shared account is not valid: {e}")))?;
            return self
                .builder()?
                .from_credentials(creds)
                .await
                .map_err(|e| AcmeError::Account(e.to_string()));
        }
        let (account, json) = self.new_account().await?;
        blocking(share, move |s| s.save(SharedItem::Account(&stem), &json))
            .await
            .map_err(fail)?;
        Ok(account)
    }
}

/// The certificate another instance stored for `domain`, when it is usable here.
pub(crate) async fn shared_cert(share: &Arc<dyn AcmeShare>, domain: &str) -> Option<CertMaterial> {
    let key = domain.to_string();
    let bytes = match blocking(share, move |s| s.load(SharedItem::Cert(&key))).await {
        Ok(Some(b)) => b,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(domain, error = %e, "cannot read the shared certificate");
            return None;
        }
    };
    let pem: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let m = CertMaterial::from_pem(
        pem["chain"].as_str()?.to_string(),
        pem["key"].as_str()?.to_string(),
        &format!("shared certificate of {domain}"),
    )
    .ok()?;
    (m.covers(domain) && !m.expired_at(crate::cert::unix_now())).then_some(m)
}

/// Stores `m` as `domain`'s certificate for the other instances.
pub(crate) async fn store_shared_cert(share: &Arc<dyn AcmeShare>, domain: &str, m: &CertMaterial) {
    let json = serde_json::json!({"chain": m.chain_pem(), "key": m.key_pem()}).to_string();
    let key = domain.to_string();
    if let Err(e) = blocking(share, move |s| {
        s.save(SharedItem::Cert(&key), json.as_bytes())
    })
    .await
    {
        tracing::warn!(domain, error = %e, "certificate issued but not shared with the other instances");
    }
}
