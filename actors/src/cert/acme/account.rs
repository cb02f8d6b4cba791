//! The ACME account: in memory, else from its credentials file (or the shared store), else
//! created at the directory; forgotten when the directory no longer knows it.

use super::*;

impl AcmeIssuer {
    /// The account credentials file for this directory.
    pub fn account_path(&self) -> PathBuf {
        self.settings
            .cache_dir
            .join(format!("account-{}.json", self.account_stem()))
    }

    /// The directory URL as a file or key name.
    pub(super) fn account_stem(&self) -> String {
        self.settings
            .directory_url
            .trim_start_matches("https://")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    pub(super) fn builder(&self) -> Result<instant_acme::AccountBuilder, AcmeError> {
        match &self.http {
            Some(http) => Ok(Account::builder_with_http(Box::new(http.clone()))),
            None => Account::builder().map_err(|e| AcmeError::Client(e.to_string())),
        }
    }

    /// The account: in memory, else from the credentials file, else created at the directory
    /// (and its credentials written, mode 0600).
    pub(super) async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        if let Some(share) = self.share.get() {
            let account = self.shared_account(share).await?;
            *slot = Some(account.clone());
            return Ok(account);
        }
        let path = self.account_path();
        let account = match std::fs::read(&path) {
            Ok(bytes) => {
                let creds: AccountCredentials = serde_json::from_slice(&bytes).map_err(|e| {
                    AcmeError::Account(format!("{} is not valid: {e}", path.display()))
                })?;
                self.builder()?
                    .from_credentials(creds)
                    .await
                    .map_err(|e| AcmeError::Account(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.create_account(&path).await?
            }
            Err(e) => {
                return Err(AcmeError::Account(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    pub(super) async fn create_account(&self, path: &Path) -> Result<Account, AcmeError> {
        let (account, json) = self.new_account().await?;
        write_private_file(path, &json)
            .map_err(|e| AcmeError::Account(format!("cannot write {}: {e}", path.display())))?;
        Ok(account)
    }

    /// A new account at the directory, with its credentials as JSON.
    pub(super) async fn new_account(&self) -> Result<(Account, Vec<u8>), AcmeError> {
        let contact = format!("mailto:{}", self.settings.email);
        let contacts = [contact.as_str()];
        let new = NewAccount {
            contact: if self.settings.email.is_empty() {
                &[]
            } else {
                &contacts
            },
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, creds) = self
            .builder()?
            .create(&new, self.settings.directory_url.clone(), None)
            .await
            .map_err(|e| AcmeError::Account(e.to_string()))?;
        let json = serde_json::to_vec_pretty(&creds)
            .map_err(|e| AcmeError::Account(format!("cannot encode credentials: {e}")))?;
        tracing::info!(directory = %self.settings.directory_url, account = %account.id(),
            "ACME account created");
        Ok((account, json))
    }

    /// Drops the account (memory and file), e.g. after the directory forgot it.
    pub(super) async fn forget_account(&self) {
        *self.account.lock().await = None;
        if let Some(share) = self.share.get() {
            let stem = self.account_stem();
            if let Err(e) =
                shared::blocking(share, move |s| s.remove(SharedItem::Account(&stem))).await
            {
                tracing::warn!(error = %e, "cannot remove the stale shared ACME account");
            }
            return;
        }
        let path = self.account_path();
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove stale ACME account");
        }
    }
}
