//! Validated names: domains (exact or `*.` wildcard), tags and backend ids.

use serde::{Deserialize, Serialize};
use std::fmt;

/// String conversions shared by the validated name types: serde goes through `parse`.
macro_rules! validated_name {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

// === impl DomainName ===

/// A virtual host name: lower-case DNS name without trailing dot, optionally `*.` wildcard.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(
    value_type = String,
    example = "app.example.com",
    pattern = "^(\\*\\.)?[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)]
pub struct DomainName(String);

impl DomainName {
    /// Normalises (case-fold, trailing dot removed) and validates a domain name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err("domain must not be empty".into());
        }
        if name.len() > 253 {
            return Err(format!("domain '{raw}' is longer than 253 characters"));
        }
        let body = name.strip_prefix("*.").unwrap_or(&name);
        if body.is_empty() {
            return Err(format!("domain '{raw}' has no name after the wildcard"));
        }
        for label in body.split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !valid {
                return Err(format!(
                    "domain '{raw}' is not a valid DNS name (label '{label}')"
                ));
            }
        }
        Ok(Self(name))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For `*.example.com`, the suffix `example.com` that a host's parent must equal.
    pub fn wildcard_suffix(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }
}

validated_name!(DomainName);

// === impl Tag ===

/// A backend label that virtual hosts select pools by (`a`, `b`, `stable`, ...).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "a", pattern = "^[A-Za-z0-9._-]{1,64}$")]
pub struct Tag(String);

impl Tag {
    /// Validates a tag: 1..=64 characters of `[A-Za-z0-9._-]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        check_label(raw, 64, "tag").map(Self)
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_name!(Tag);

// === impl BackendId ===

/// A backend's unique id (also its metrics label).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "web-v1", pattern = "^[A-Za-z0-9._-]{1,128}$")]
pub struct BackendId(String);

impl BackendId {
    /// Validates an id: 1..=128 characters of `[A-Za-z0-9._-]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        check_label(raw, 128, "backend id").map(Self)
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_name!(BackendId);

/// A tag or id: 1..=`max` characters of `[A-Za-z0-9._-]`.
fn check_label(raw: &str, max: usize, what: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= max
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(format!(
            "{what} '{raw}' is invalid (use 1-{max} characters of letters, digits, '-', '_', '.')"
        ))
    }
}
