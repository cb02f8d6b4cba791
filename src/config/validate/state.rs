//! `[state]`: the file path, and the etcd cluster when the registry is shared.

use super::super::problem::{KeyPath, Problems};
use super::super::schema::{EtcdSection, StateBackend, StateSection};
use super::super::{Env, ETCD_PASSWORD_VAR};
use vhost_actors::store::{EtcdSettings, EtcdTls};

/// Checks `[state]`; the etcd settings when `backend = "etcd"`.
pub(super) fn state(
    s: &StateSection,
    env: &Env,
    errs: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<EtcdSettings> {
    let at = KeyPath::section("state");
    if s.path.as_os_str().is_empty() {
        errs.push(at.key("path"), "must not be empty");
    }
    match (s.backend, &s.etcd) {
        (StateBackend::File, None) => None,
        (StateBackend::File, Some(_)) => {
            warnings.push(
                "[state.etcd] is ignored: [state] backend is \"file\" (set backend = \"etcd\" to use it)"
                    .into(),
            );
            None
        }
        (StateBackend::Etcd, None) => {
            errs.push(
                at.key("backend"),
                "\"etcd\" needs a [state.etcd] section with the cluster's endpoints",
            );
            None
        }
        (StateBackend::Etcd, Some(e)) => {
            if !cfg!(feature = "etcd") {
                errs.push(
                    at.key("backend"),
                    "this build has no etcd support (it was built without the `etcd` feature)",
                );
            }
            etcd(e, env, &at.key("etcd"), errs)
        }
    }
}

fn etcd(e: &EtcdSection, env: &Env, at: &KeyPath, errs: &mut Problems) -> Option<EtcdSettings> {
    let before = errs.len();
    if e.endpoints.is_empty() {
        errs.push(
            at.key("endpoints"),
            "must list at least one member (\"http://127.0.0.1:2379\")",
        );
    }
    let mut https = 0;
    for (i, ep) in e.endpoints.iter().enumerate() {
        let scheme_ok = ep.starts_with("http://") || ep.starts_with("https://");
        let uri_ok = ep.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
        if !scheme_ok || !uri_ok {
            errs.push(
                at.key("endpoints").index(i),
                format!("'{ep}' is not an http:// or https:// URL of an etcd member"),
            );
        }
        https += usize::from(ep.starts_with("https://"));
    }
    if https != 0 && https != e.endpoints.len() {
        errs.push(at.key("endpoints"), "mixes http:// and https:// members");
    }
    if e.prefix.trim().is_empty() {
        errs.push(at.key("prefix"), "must not be empty");
    }
    let readable = |key: &str, path: &std::path::Path, errs: &mut Problems| {
        if let Err(err) = std::fs::metadata(path) {
            errs.push(
                at.key(key),
                format!("cannot read '{}': {err}", path.display()),
            );
        }
    };
    let tls = match (&e.ca_file, &e.cert_file, &e.key_file) {
        (None, None, None) => {
            if https > 0 {
                errs.push(
                    at.key("ca_file"),
                    "https:// members need the CA that signed them",
                );
            }
            None
        }
        (Some(ca), cert, key) => {
            readable("ca_file", ca, errs);
            if https == 0 && !e.endpoints.is_empty() {
                errs.push(at.key("ca_file"), "TLS files need https:// members");
            }
            let client = match (cert, key) {
                (Some(c), Some(k)) => {
                    readable("cert_file", c, errs);
                    readable("key_file", k, errs);
                    Some((c.clone(), k.clone()))
                }
                (None, None) => None,
                (Some(_), None) => {
                    errs.push(at.key("key_file"), "is needed with cert_file");
                    None
                }
                (None, Some(_)) => {
                    errs.push(at.key("cert_file"), "is needed with key_file");
                    None
                }
            };
            Some(EtcdTls {
                ca_file: ca.clone(),
                client,
            })
        }
        (None, _, _) => {
            errs.push(at.key("ca_file"), "is needed with cert_file and key_file");
            None
        }
    };
    let user = match (&e.username, env.etcd_password()) {
        (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p.to_string())),
        (Some(_), None) => {
            errs.push(
                at.key("username"),
                format!("needs the password in the environment variable {ETCD_PASSWORD_VAR}"),
            );
            None
        }
        (Some(_), Some(_)) => {
            errs.push(at.key("username"), "must not be empty");
            None
        }
        (None, _) => None,
    };
    (errs.len() == before).then(|| EtcdSettings {
        endpoints: e.endpoints.clone(),
        prefix: e.prefix.clone(),
        user,
        tls,
    })
}
