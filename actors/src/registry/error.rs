//! Why the registry refuses a command: one variant per API status, each with a typed reason.

use crate::model::{BackendId, DomainName, Tag};
use crate::store::StoreError;

/// Why a command was refused; each variant maps to one API status.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Invalid input or unknown tag (400).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such domain or backend (404).
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// The change conflicts with the current state (409).
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The change could not be written to the state store (500).
    #[error("could not persist the change: {0}")]
    Persist(#[source] StoreError),
}

/// Input the registry cannot accept.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A field's value, as its parser explains it.
    #[error("{0}")]
    Value(String),
    /// A tag no backend carries.
    #[error("unknown tag '{0}': no backend carries it")]
    UnknownTag(Tag),
}

/// What was looked for and not found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    /// No such domain.
    #[error("domain '{0}' not found")]
    Domain(String),
    /// No such backend.
    #[error("backend '{0}' not found")]
    Backend(String),
}

/// Why a valid command cannot be applied to the current state.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The domain exists already.
    #[error("domain '{0}' already exists")]
    DomainExists(DomainName),
    /// The backend exists already.
    #[error("backend '{0}' already exists")]
    BackendExists(BackendId),
    /// A switch to a tag none of whose backends may take traffic.
    #[error("tag '{0}' has no healthy backend; switch with \"force\": true to do it anyway")]
    NoRoutableBackend(Tag),
    /// Removing the last backend of a tag a domain is served from.
    #[error(
        "backend '{backend}' is the last backend of tag '{tag}', which domain '{domain}' uses \
         (add ?force=true to remove it anyway)"
    )]
    LastBackend {
        /// The backend.
        backend: BackendId,
        /// Its tag.
        tag: Tag,
        /// A domain on that tag.
        domain: DomainName,
    },
    /// An undo with no change to undo.
    #[error("domain '{0}' has no change to undo")]
    NothingToUndo(DomainName),
    /// A rollback of a domain that has no split (any more).
    #[error("domain '{0}' has no split to roll back")]
    NoSplit(DomainName),
    /// An empty-body switch with nothing to switch back to.
    #[error("domain '{domain}' serves tag '{current}' and has no previous tag; give \"new_tag\"")]
    NoPreviousTag {
        /// The domain.
        domain: DomainName,
        /// Its tag.
        current: Tag,
    },
}

/// Wraps a parser's message as invalid input.
pub(super) fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(Invalid::Value(msg.into()))
}
