//! `[state] backend` and `[state.etcd]`.

use super::*;

fn with_state(state: &str) -> String {
    format!("{MINIMAL}\n{state}")
}

#[test]
fn etcd_settings_are_read_with_the_password_from_the_environment() {
    let text = with_state(
        "[state]\nbackend = \"etcd\"\n\n[state.etcd]\nendpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\nusername = \"vhost\"\n",
    );
    let env = Env::from_source(|name| (name == ETCD_PASSWORD_VAR).then(|| "s3cret".to_string()));
    let c = check(&text, &env).unwrap();
    let etcd = c.etcd.expect("etcd settings");
    assert_eq!(etcd.endpoints.len(), 2);
    assert_eq!(etcd.prefix, "/pingora-vhost/");
    assert_eq!(etcd.user, Some(("vhost".into(), "s3cret".into())));
    assert!(etcd.tls.is_none());
    assert!(
        parse(MINIMAL).unwrap().etcd.is_none(),
        "the file is the default"
    );
}

#[test]
fn every_etcd_problem_is_listed() {
    let errs = parse(&with_state(
        "[state]\nbackend = \"etcd\"\n\n[state.etcd]\nendpoints = [\"ftp://x:2379\", \"http://y:2379\", \"https://x:2379\"]\nprefix = \"\"\nusername = \"\"\ncert_file = \"/nonexistent/c.pem\"\nca_file = \"/nonexistent/ca.pem\"\n",
    ))
    .unwrap_err();
    let all = errs.join("\n");
    for expected in [
        "state.etcd.endpoints[0]: 'ftp://x:2379' is not an http:// or https:// URL",
        "state.etcd.endpoints: mixes http:// and https:// members",
        "state.etcd.prefix: must not be empty",
        "state.etcd.key_file: is needed with cert_file",
        "state.etcd.ca_file: cannot read '/nonexistent/ca.pem'",
        "state.etcd.username: must not be empty",
    ] {
        assert!(all.contains(expected), "missing '{expected}' in:\n{all}");
    }
    assert_eq!(errs.len(), 6, "{all}");
}

/// The `[state]` block of the interface's own example, word for word.
const CONTRACT_EXAMPLE: &str = include_str!("../../../tests/fixtures/interface-etcd-state.toml");

#[test]
fn the_interface_example_passes_check() {
    // Without the password in the environment: the file is valid, `run` refuses to start.
    let c = parse(&with_state(CONTRACT_EXAMPLE)).unwrap();
    let etcd = c.etcd.expect("etcd settings");
    assert_eq!(etcd.endpoints, ["http://127.0.0.1:2379"]);
    assert_eq!(etcd.user, None);
    assert!(
        etcd.tls.is_none(),
        "the TLS files apply to https:// members"
    );
    let notes = c.warnings.join("\n");
    assert!(notes.contains("ca_file unused"), "{notes}");
    assert!(notes.contains(ETCD_PASSWORD_VAR), "{notes}");
    assert_eq!(c.refused_at_start.len(), 1, "{:?}", c.refused_at_start);
    assert!(
        c.refused_at_start[0].contains("state.etcd.username")
            && c.refused_at_start[0].contains(ETCD_PASSWORD_VAR),
        "{:?}",
        c.refused_at_start
    );

    // With it, the user is set and nothing is refused.
    let env = Env::from_source(|name| (name == ETCD_PASSWORD_VAR).then(|| "pw".to_string()));
    let c = check(&with_state(CONTRACT_EXAMPLE), &env).unwrap();
    assert_eq!(c.etcd.unwrap().user, Some(("vhost".into(), "pw".into())));
    assert!(c.refused_at_start.is_empty());
}

#[test]
fn https_members_without_a_ca_file_use_the_system_roots() {
    let c = parse(&with_state(
        "[state]\nbackend = \"etcd\"\n\n[state.etcd]\nendpoints = [\"https://etcd.example.net:2379\"]\n",
    ))
    .unwrap();
    let tls = c.etcd.unwrap().tls.expect("TLS to https:// members");
    assert_eq!(tls.ca_file, None);
    assert_eq!(tls.client, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn bare_host_port_endpoints_are_plain_http() {
    let c = parse(&with_state(
        "[state]\nbackend = \"etcd\"\n\n[state.etcd]\nendpoints = [\"127.0.0.1:2379\", \"etcd-2.internal:2379\"]\n",
    ))
    .unwrap();
    assert_eq!(
        c.etcd.unwrap().endpoints,
        ["http://127.0.0.1:2379", "http://etcd-2.internal:2379"]
    );
}

#[test]
fn etcd_without_its_section_or_an_unknown_backend_is_refused() {
    let errs = parse(&with_state("[state]\nbackend = \"etcd\"\n")).unwrap_err();
    assert!(errs[0].contains("needs a [state.etcd] section"), "{errs:?}");
    let errs = parse(&with_state("[state]\nbackend = \"consul\"\n")).unwrap_err();
    assert!(
        errs[0].contains("unknown value `consul`, expected `file` or `etcd`"),
        "{errs:?}"
    );
    let c = parse(&with_state(
        "[state]\n\n[state.etcd]\nendpoints = [\"http://10.0.0.1:2379\"]\n",
    ))
    .unwrap();
    assert!(c.etcd.is_none());
    assert!(
        c.warnings[0].contains("[state.etcd] is ignored"),
        "{:?}",
        c.warnings
    );
}
