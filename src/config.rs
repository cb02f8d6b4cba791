//! The configuration file: [`schema`] is what users write (with its defaults), [`validate`]
//! turns it into the [`Config`] the running system uses, reporting every problem at once.

mod env;
mod problem;
mod runtime;
mod schema;
mod validate;

pub use env::{Env, ADMIN_TOKEN_VAR};
pub use problem::{KeyPath, Problem, Step};
pub use runtime::{Config, Limits, ManualCertificate};
pub use schema::{LogFormat, LogOutput, LoggingConfig};

use schema::ConfigFile;
use std::path::Path;

/// Reads and validates a config file; the error lists every problem, one a line.
pub fn load(path: &Path, env: &Env) -> Result<Config, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read config file {}: {e}", path.display())])?;
    parse(&text, env).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()
    })
}

/// Parses and validates config text.
pub fn parse(text: &str, env: &Env) -> Result<Config, Vec<String>> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        vec![e
            .to_string()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ")]
    })?;
    validate::validate(file, env).map_err(|errs| errs.iter().map(|p| p.to_string()).collect())
}

#[cfg(test)]
mod tests;
