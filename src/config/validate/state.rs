//! `[state]`: the file path, and the etcd cluster when the registry is shared.

use super::super::problem::{KeyPath, Problems};
use super::super::schema::{EtcdSection, StateBackend, StateSection};
use super::super::{Env, ETCD_PASSWORD_VAR};
use vhost_actors::store::{EtcdSettings, EtcdTls};

/// Checks `[state]`; the etcd settings when `backend = "etcd"`. What only the environment
/// `run` starts in can settle (the etcd password) goes to `refused_at_start`.
pub(super) fn state(
    s: &StateSection,
    env: &Env,
    errs: &mut Problems,
    warnings: &mut Vec<String>,
    refused_at_start: &mut Vec<String>,
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
            etcd(e, env, &at.key("etcd"), errs, warnings, refused_at_start)
        }
    }
}

fn etcd(
    e: &EtcdSection,
    env: &Env,
    at: &KeyPath,
    errs: &mut Problems,
    warnings: &mut Vec<String>,
    refused_at_start: &mut Vec<String>,
) -> Option<EtcdSettings> {
    let before = errs.len();
    if e.endpoints.is_empty() {
        errs.push(
            at.key("endpoints"),
            "must list at least one member (\"http://127.0.0.1:2379\")",
        );
    }
    // A bare `host:port` is a plain-HTTP member, as etcdctl takes it.
    let endpoints: Vec<String> = e
        .endpoints
        .iter()
        .map(|ep| {
            if ep.contains("://") {
                ep.clone()
            } else {
                format!("http://{ep}")
            }
        })
        .collect();
    let mut https = 0;
    for (i, (given, ep)) in e.endpoints.iter().zip(&endpoints).enumerate() {
        let scheme_ok = ep.starts_with("http://") || ep.starts_with("https://");
        let uri_ok = ep
            .parse::<http::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !scheme_ok || !uri_ok {
            errs.push(
                at.key("endpoints").index(i),
                format!(
                    "'{given}' is not an http:// or https:// URL (or host:port) of an etcd member"
                ),
            );
        }
        https += usize::from(ep.starts_with("https://"));
    }
    if https != 0 && https != endpoints.len() {
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
    let client = match (&e.cert_file, &e.key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
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
    // The TLS files apply to https:// members; without any, they are unused (and need not
    // exist). https:// members without a ca_file are verified against the system roots.
    let tls = if https > 0 {
        if let Some(ca) = &e.ca_file {
            readable("ca_file", ca, errs);
        }
        if let Some((c, k)) = &client {
            readable("cert_file", c, errs);
            readable("key_file", k, errs);
        }
        Some(EtcdTls {
            ca_file: e.ca_file.clone(),
            client,
        })
    } else {
        let unused: Vec<&str> = [
            ("ca_file", e.ca_file.is_some()),
            ("cert_file", e.cert_file.is_some()),
            ("key_file", e.key_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !unused.is_empty() && !endpoints.is_empty() {
            warnings.push(format!(
                "[state.etcd] {} unused: they apply to https:// endpoints and every endpoint is http://",
                unused.join(", ")
            ));
        }
        None
    };
    let user = match (&e.username, env.etcd_password()) {
        (Some(u), _) if u.is_empty() => {
            errs.push(at.key("username"), "must not be empty");
            None
        }
        (Some(u), Some(p)) => Some((u.clone(), p.to_string())),
        (Some(_), None) => {
            // The file is valid; the password comes with the environment `run` starts in.
            let why = format!(
                "{}: needs the password in the environment variable {ETCD_PASSWORD_VAR}, which is not set",
                at.key("username")
            );
            warnings.push(format!("{why} (`run` refuses to start without it)"));
            refused_at_start.push(why);
            None
        }
        (None, _) => None,
    };
    (errs.len() == before).then(|| EtcdSettings {
        endpoints,
        prefix: e.prefix.clone(),
        user,
        tls,
    })
}
