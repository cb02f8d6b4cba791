//! The configuration file: [`schema`] is what users write (with its defaults), [`validate`]
//! turns it into the [`Config`] the running system uses, and [`document`] reads the TOML so that
//! unknown keys, wrong types and invalid values are all reported in one run, with their places.

mod document;
mod env;
mod listeners;
mod problem;
mod runtime;
mod schema;
mod validate;

pub use env::{Env, ADMIN_TOKEN_VAR, ETCD_PASSWORD_VAR};
pub use problem::{KeyPath, Place, Problem, Step};
pub use runtime::{Config, Limits, ManualCertificate};
pub use schema::{LogFormat, LogOutput, LoggingConfig};

use document::Document;
use schema::ConfigFile;
use std::path::{Path, PathBuf};

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read and has problems.
    #[error("{} has {} problem(s)", path.display(), problems.len())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, in the order to show them.
        problems: Vec<Problem>,
    },
}

impl LoadError {
    /// One line per problem, as users see them (`PATH:LINE:COLUMN: ...` where the file has it).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Unreadable { .. } => vec![format!("error: {self}")],
            Self::Invalid { path, problems } => problems.iter().map(|p| p.located(path)).collect(),
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path, env: &Env) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    check(&text, env).map_err(|problems| LoadError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Parses and validates config text; the error lists every problem found.
pub fn check(text: &str, env: &Env) -> Result<Config, Vec<Problem>> {
    let document = Document::parse(text).map_err(|p| vec![p])?;
    document.read(|file: ConfigFile| validate::validate(file, env))
}

#[cfg(test)]
mod tests;
