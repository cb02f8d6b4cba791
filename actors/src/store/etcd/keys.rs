//! Where each record lives under the prefix, and how changes become one guarded transaction.

use super::Held;
use crate::model::{BackendId, DomainName};
use crate::store::{PersistedState, Record, StateChange, StoreError};
use etcd_client::{Compare, TxnOp};

/// The key layout: `<prefix>registry/{domains,backends,history}/<name>`, one JSON record each.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    registry: String,
    acme: String,
}

const DOMAINS: &str = "domains/";
const BACKENDS: &str = "backends/";
const HISTORY: &str = "history/";

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        let mut registry = prefix.to_string();
        if !registry.ends_with('/') {
            registry.push('/');
        }
        let acme = format!("{registry}acme/");
        registry.push_str("registry/");
        Self { registry, acme }
    }

    /// `<prefix>acme/<rest>`: the ACME account, certificates, tokens and locks.
    pub(super) fn acme(&self, rest: &str) -> String {
        format!("{}{rest}", self.acme)
    }

    /// The prefix of every registry key.
    pub(super) fn registry(&self) -> String {
        self.registry.clone()
    }

    fn domain(&self, name: &DomainName) -> String {
        format!("{}{DOMAINS}{name}", self.registry)
    }

    fn backend(&self, id: &BackendId) -> String {
        format!("{}{BACKENDS}{id}", self.registry)
    }

    fn history(&self, name: &DomainName) -> String {
        format!("{}{HISTORY}{name}", self.registry)
    }

    /// "domain 'app.example.com'", for conflict messages.
    pub(super) fn describe(&self, key: &str) -> String {
        let rest = key.strip_prefix(&self.registry).unwrap_or(key);
        if let Some(n) = rest.strip_prefix(DOMAINS) {
            format!("domain '{n}'")
        } else if let Some(n) = rest.strip_prefix(BACKENDS) {
            format!("backend '{n}'")
        } else if let Some(n) = rest.strip_prefix(HISTORY) {
            format!("the history of domain '{n}'")
        } else {
            format!("key '{key}'")
        }
    }

    /// The record at `key`; `value` is `None` for a deletion.
    pub(super) fn decode(&self, key: &str, value: Option<&[u8]>) -> Result<Record, StoreError> {
        let corrupt = |reason: String| StoreError::CorruptRecord {
            key: key.to_string(),
            reason,
        };
        let rest = key
            .strip_prefix(&self.registry)
            .ok_or_else(|| corrupt("outside the registry prefix".into()))?;
        fn parse<T: serde::de::DeserializeOwned>(v: Option<&[u8]>) -> Result<Option<T>, String> {
            v.map(serde_json::from_slice)
                .transpose()
                .map_err(|e| e.to_string())
        }
        if let Some(n) = rest.strip_prefix(DOMAINS) {
            let name = DomainName::parse(n).map_err(corrupt)?;
            Ok(Record::Domain(name, parse(value).map_err(corrupt)?))
        } else if let Some(n) = rest.strip_prefix(BACKENDS) {
            let id = BackendId::parse(n).map_err(corrupt)?;
            Ok(Record::Backend(id, parse(value).map_err(corrupt)?))
        } else if let Some(n) = rest.strip_prefix(HISTORY) {
            let name = DomainName::parse(n).map_err(corrupt)?;
            Ok(Record::History(
                name,
                parse(value).map_err(corrupt)?.unwrap_or_default(),
            ))
        } else {
            Err(corrupt("not a domain, backend or history key".into()))
        }
    }

    /// The guards, operations and touched keys (with whether each exists after) of one
    /// commit: every key guarded by the revision the registry holds of it.
    pub(super) fn transaction(
        &self,
        changes: &[StateChange],
        full: Option<&PersistedState>,
        held: &Held,
    ) -> (Vec<Compare>, Vec<TxnOp>, Vec<(String, bool)>) {
        let mut out = Tx::default();
        for c in changes {
            match c {
                StateChange::PutDomain(d) => out.put(self.domain(&d.domain), json(d), held),
                StateChange::DeleteDomain(n) => {
                    out.delete(self.domain(n), held);
                    out.delete(self.history(n), held);
                }
                StateChange::PutBackend(b) => out.put(self.backend(&b.id), json(b), held),
                StateChange::DeleteBackend(id) => out.delete(self.backend(id), held),
                StateChange::AppendHistory { domain, change } => {
                    let whole = full
                        .and_then(|s| s.history.get(domain))
                        .cloned()
                        .unwrap_or_else(|| vec![change.clone()]);
                    out.put(self.history(domain), json(&whole), held);
                }
            }
        }
        (out.guards, out.ops, out.touched)
    }
}

#[derive(Default)]
struct Tx {
    guards: Vec<Compare>,
    ops: Vec<TxnOp>,
    touched: Vec<(String, bool)>,
}

impl Tx {
    fn put(&mut self, key: String, value: Vec<u8>, held: &Held) {
        if self.touch(&key, true, held) {
            self.ops.push(TxnOp::put(key, value, None));
        }
    }

    fn delete(&mut self, key: String, held: &Held) {
        if self.touch(&key, false, held) {
            self.ops.push(TxnOp::delete(key, None));
        }
    }

    /// Guards `key` once; a later change of the same key in one commit replaces the earlier.
    fn touch(&mut self, key: &str, exists: bool, held: &Held) -> bool {
        if let Some(i) = self.touched.iter().position(|(k, _)| k == key) {
            self.touched.remove(i);
            self.ops.remove(i);
            self.guards.remove(i);
        }
        self.guards.push(held.guard(key));
        self.touched.push((key.to_string(), exists));
        true
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}
