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
        "[state]\nbackend = \"etcd\"\n\n[state.etcd]\nendpoints = [\"127.0.0.1:2379\", \"https://x:2379\"]\nprefix = \"\"\nusername = \"vhost\"\ncert_file = \"/c.pem\"\n",
    ))
    .unwrap_err();
    let all = errs.join("\n");
    for expected in [
        "state.etcd.endpoints[0]: '127.0.0.1:2379' is not an http:// or https:// URL",
        "state.etcd.endpoints: mixes http:// and https:// members",
        "state.etcd.prefix: must not be empty",
        "state.etcd.ca_file: is needed with cert_file and key_file",
        "state.etcd.username: needs the password in the environment variable PINGORA_VHOST_ETCD_PASSWORD",
    ] {
        assert!(all.contains(expected), "missing '{expected}' in:\n{all}");
    }
    assert_eq!(errs.len(), 5, "{all}");
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
