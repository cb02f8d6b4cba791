//! Backend host names resolved, and CA files read, before a command reaches the registry, so
//! that applying a command is pure: no DNS or file I/O on the registry's runtime, the same
//! answer for the same input.

use crate::command::Command;
use crate::model::{check_address_shape, resolve_address, BackendRecord};
use crate::upstream::{load_ca_file, Roots};
use std::collections::HashMap;
use std::net::SocketAddr;

/// What each host-name address of a command resolved to (IP literals need no entry), and what
/// each CA file it names holds.
#[derive(Clone, Debug, Default)]
pub struct Resolutions(
    HashMap<String, Result<SocketAddr, String>>,
    HashMap<String, Result<Roots, String>>,
);

impl Resolutions {
    /// Resolves every host-name address `cmd` names and reads every CA file, off the caller's
    /// runtime (tokio runs the system resolver and the reads on its blocking pool).
    pub async fn of(cmd: &Command) -> Self {
        let mut out = HashMap::new();
        for address in addresses(cmd) {
            if needs_dns(address) {
                out.insert(address.to_string(), lookup(address).await);
            }
        }
        let mut cas = HashMap::new();
        for path in ca_files(cmd) {
            cas.insert(path.to_string(), read_ca(path).await);
        }
        Self(out, cas)
    }

    /// Resolves the addresses and reads the CA files of backend records another instance
    /// wrote (a shared store), as [`Resolutions::of`] does for a command.
    pub async fn of_records<'a>(records: impl IntoIterator<Item = &'a BackendRecord>) -> Self {
        let mut out = HashMap::new();
        let mut cas = HashMap::new();
        for b in records {
            if needs_dns(&b.address) && !out.contains_key(&b.address) {
                out.insert(b.address.clone(), lookup(&b.address).await);
            }
            if let Some(path) = &b.transport.tls_ca_file {
                cas.insert(path.clone(), read_ca(path).await);
            }
        }
        Self(out, cas)
    }

    /// The certificates of a CA file the command named.
    pub fn ca_file(&self, path: &str) -> Result<Roots, String> {
        self.1
            .get(path)
            .cloned()
            .unwrap_or_else(|| Err(format!("tls_ca_file '{path}' was not read")))
    }

    /// The socket address for `address`: parsed when it is an IP literal, else as resolved.
    pub fn get(&self, address: &str) -> Result<SocketAddr, String> {
        check_address_shape(address)?;
        if let Ok(addr) = address.parse::<SocketAddr>() {
            return Ok(addr);
        }
        self.0
            .get(address)
            .cloned()
            .unwrap_or_else(|| Err(format!("address '{address}' was not resolved")))
    }
}

fn addresses(cmd: &Command) -> Vec<&str> {
    match cmd {
        Command::AddBackend(new) => vec![new.address.as_str()],
        Command::UpdateBackend(_, patch) => patch.address.as_deref().into_iter().collect(),
        _ => Vec::new(),
    }
}

fn ca_files(cmd: &Command) -> Vec<&str> {
    match cmd {
        Command::AddBackend(new) => new.tls_ca_file.as_deref().into_iter().collect(),
        Command::UpdateBackend(_, patch) => patch
            .tls_ca_file
            .as_ref()
            .and_then(|f| f.as_deref())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn needs_dns(address: &str) -> bool {
    check_address_shape(address).is_ok() && address.parse::<SocketAddr>().is_err()
}

/// Reads a CA file on the blocking pool.
async fn read_ca(path: &str) -> Result<Roots, String> {
    let owned = path.to_string();
    tokio::task::spawn_blocking(move || load_ca_file(&owned))
        .await
        .unwrap_or_else(|e| Err(format!("tls_ca_file '{path}' could not be read: {e}")))
}

async fn lookup(address: &str) -> Result<SocketAddr, String> {
    let owned = address.to_string();
    match tokio::task::spawn_blocking(move || resolve_address(&owned)).await {
        Ok(r) => r,
        Err(e) => Err(format!("address '{address}' could not be resolved: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewBackend;

    fn add(address: &str) -> Command {
        Command::AddBackend(NewBackend {
            id: "b".into(),
            address: address.into(),
            tags: vec!["a".into()],
            ..NewBackend::default()
        })
    }

    #[tokio::test]
    async fn literals_need_no_lookup_and_names_are_resolved_up_front() {
        let r = Resolutions::of(&add("127.0.0.1:80")).await;
        assert!(r.0.is_empty());
        assert_eq!(r.get("127.0.0.1:80").unwrap().port(), 80);
        let r = Resolutions::of(&add("localhost:81")).await;
        assert_eq!(r.get("localhost:81").unwrap().port(), 81);
        let err = Resolutions::default().get("localhost:81").unwrap_err();
        assert!(err.contains("not resolved"), "{err}");
        assert!(Resolutions::default().get("nohost").is_err());
    }
}
