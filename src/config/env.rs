//! The process environment the configuration reads, handed in by the caller so that parsing
//! stays a pure function of the file text and these values.

/// Overrides `[proxy] admin_token`, so the token need not be written into the file.
pub const ADMIN_TOKEN_VAR: &str = "PINGORA_VHOST_ADMIN_TOKEN";

/// The password of `[state.etcd] username`, kept out of the file.
pub const ETCD_PASSWORD_VAR: &str = "PINGORA_VHOST_ETCD_PASSWORD";

/// The environment variables the configuration knows, as the caller read them.
#[derive(Clone, Debug, Default)]
pub struct Env {
    admin_token: Option<String>,
    etcd_password: Option<String>,
}

impl Env {
    /// Looks every known variable up in `source` (the binary passes `std::env::var`; tests a map).
    pub fn from_source(source: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            admin_token: source(ADMIN_TOKEN_VAR),
            etcd_password: source(ETCD_PASSWORD_VAR),
        }
    }

    /// The admin token from the environment; an empty value counts as unset.
    pub(super) fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|t| !t.is_empty())
    }

    /// The etcd password from the environment.
    pub(super) fn etcd_password(&self) -> Option<&str> {
        self.etcd_password.as_deref()
    }
}
