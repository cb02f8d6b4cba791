//! Parsing and validation of config text, without files or the process environment.

use super::*;
use std::path::PathBuf;
use std::time::Duration;

/// Checks `text` with nothing set in the environment; problems as `key: message`.
fn parse(text: &str) -> Result<Config, Vec<String>> {
    check(text, &Env::default()).map_err(|ps| ps.iter().map(Problem::to_string).collect())
}

const MINIMAL: &str = r#"
[proxy]
listen_addr_http = "127.0.0.1:8000"
management_api_addr = "127.0.0.1:8081"

[[virtual_hosts]]
domain = "App.Localhost."
enabled_backends_tag = "a"

[[backends]]
id = "demo-a"
address = "127.0.0.1:3001"
tags = ["a"]
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.threads, 2);
    assert_eq!(c.grace_period, Duration::from_secs(10));
    assert_eq!(c.state_path, PathBuf::from("data/state.json"));
    assert_eq!(c.seed.domains[0].domain.as_str(), "app.localhost");
    assert_eq!(
        c.limits.upstream_connect_timeout,
        Duration::from_millis(2000)
    );
    assert_eq!(c.seed.backends[0].weight, 1);
}

#[test]
fn unknown_keys_are_errors() {
    let errs = parse(&format!("{MINIMAL}\n[proxy2]\nx = 1\n")).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("unknown field"), "{errs:?}");
    let errs = parse(&MINIMAL.replace("threads", "x").replace("tags =", "tagz =")).unwrap_err();
    assert!(errs[0].contains("tagz"), "{errs:?}");
}

#[test]
fn every_problem_is_listed() {
    let text = r#"
[proxy]
listen_addr_http = "nope"
management_api_addr = "0.0.0.0:8081"
threads = 0
grace_period_secs = 0

[health_check]
interval_secs = 0

[[virtual_hosts]]
domain = "bad domain"
enabled_backends_tag = "missing"
lb_policy = "header_hash"

[[virtual_hosts]]
domain = "ok.example.com"
enabled_backends_tag = "missing"

[[backends]]
id = "x"
address = "127.0.0.1"
tags = []
weight = 0

[[backends]]
id = "x"
address = "localhost:80"
tags = ["a"]
"#;
    let errs = parse(text).unwrap_err();
    for needle in [
        "proxy.listen_addr_http",
        "proxy.management_api_addr",
        "proxy.threads",
        "proxy.grace_period_secs",
        "health_check.interval_secs",
        "virtual_hosts[0].domain",
        "virtual_hosts[0]: lb_policy 'header_hash' needs lb_hash_header",
        "virtual_hosts[1].enabled_backends_tag",
        "backends[0].address",
        "backends[0].tags",
        "backends[0].weight",
        "backends[1].id",
    ] {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "missing {needle} in {errs:#?}"
        );
    }
}

#[test]
fn later_sections_parse_and_validate() {
    let text = format!(
        "{MINIMAL}\n[lets_encrypt]\nemail = \"nope\"\ncache_dir = \"/tmp/x\"\n\n[limits]\nmax_request_body_bytes = 0\n"
    );
    let errs = parse(&text).unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("lets_encrypt.email")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("limits.max_request_body_bytes")),
        "{errs:?}"
    );
    let ok = format!(
        "{MINIMAL}\n[lets_encrypt]\nemail = \"a@b.c\"\ncache_dir = \"/tmp/x\"\n\n[metrics]\nlisten_addr = \"127.0.0.1:9090\"\n"
    );
    let c = parse(&ok).unwrap();
    assert_eq!(c.warnings.len(), 1, "no HTTPS listener: {:?}", c.warnings);
    assert_eq!(
        c.acme.as_ref().unwrap().directory_url,
        vhost_actors::cert::LETS_ENCRYPT_PRODUCTION
    );
    assert_eq!(c.metrics_addr, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(parse(MINIMAL).unwrap().metrics_addr, None);
}

#[test]
fn https_only_is_valid_but_acme_needs_the_plain_listener() {
    let https_only = MINIMAL.replace(
        "listen_addr_http = \"127.0.0.1:8000\"",
        "listen_addr = \"127.0.0.1:8443\"",
    );
    let c = parse(&https_only).unwrap();
    assert_eq!(c.listen_https, Some("127.0.0.1:8443".parse().unwrap()));
    assert_eq!(c.listen_http, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let errs = parse(&format!(
        "{https_only}\n[lets_encrypt]\nemail = \"a@b.c\"\ncache_dir = \"/tmp/x\"\n"
    ))
    .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("listen_addr_http"), "{errs:?}");
}

#[test]
fn the_admin_token_comes_from_the_environment_before_the_file() {
    let text = MINIMAL.replace("[proxy]", "[proxy]\nadmin_token = \"from-file\"");
    let env_with = |value: &str| {
        let value = value.to_string();
        Env::from_source(move |name| (name == ADMIN_TOKEN_VAR).then(|| value.clone()))
    };
    let c = check(&text, &env_with("from-env")).unwrap();
    assert_eq!(c.admin_token.as_deref(), Some("from-env"));
    let c = check(&text, &env_with("")).unwrap();
    assert_eq!(
        c.admin_token.as_deref(),
        Some("from-file"),
        "empty is unset"
    );
    assert_eq!(parse(MINIMAL).unwrap().admin_token, None);
    let public = MINIMAL.replace("127.0.0.1:8081", "0.0.0.0:8081");
    assert!(parse(&public).is_err());
    assert!(check(&public, &env_with("t0ken")).is_ok());
}

/// `check` on `text`, each problem as `LINE:COLUMN: key: message`.
fn located(text: &str) -> Vec<String> {
    check(text, &Env::default())
        .unwrap_err()
        .iter()
        .map(|p| {
            let at = p.place.expect("every problem here has a place");
            format!("{}:{}: {p}", at.line, at.column)
        })
        .collect()
}

#[test]
fn entries_of_the_wrong_type_are_left_out_and_the_rest_still_validated() {
    let text = r#"
[proxy]
listen_addr_http = "127.0.0.1:8000"

[[backends]]
id = "x"
address = 5
tags = ["a"]

[[backends]]
address = "127.0.0.1:3002"
tags = ["a"]

[[backends]]
id = "z"
address = "127.0.0.1:3003"
tags = ["a", 7]
weight = 0

[[backends]]
id = "w"
address = "127.0.0.1"
tags = ["a"]

[logging]
format = "xml"
"#;
    assert_eq!(
        located(text),
        [
            "7:11: backends[0].address: invalid type: integer `5`, expected a string",
            "10:1: backends[1]: missing field `id`",
            "17:14: backends[2].tags[1]: invalid type: integer `7`, expected a string",
            "26:10: logging.format: unknown value `xml`, expected `text` or `json`",
            // Numbered as written although backends[0] and [1] could not be read.
            "18:10: backends[2].weight: weight 0 is out of range 1..=1000",
            "22:11: backends[3].address: address '127.0.0.1' must be host:port (a port is required)",
        ]
    );
}

#[test]
fn a_syntax_error_is_reported_alone_with_its_place() {
    assert_eq!(
        located("[proxy]\nthreads = 2\n[[backends]\n"),
        ["3:12: unclosed array table, expected `]`"]
    );
}

#[test]
fn health_check_paths_must_go_into_a_request_line_as_written() {
    // Each as a TOML string, escapes included.
    let with_path = |path: &str| format!("{MINIMAL}\n[health_check]\npath = {path}\n");
    for good in [
        r#""/health""#,
        r#""/health?full=1""#,
        r#""/a%20b""#,
        r#""/""#,
    ] {
        assert!(parse(&with_path(good)).is_ok(), "{good}");
    }
    for bad in [
        r#""/h ealth""#,
        r#""/health\u0001""#,
        r#""/health#top""#,
        r#""/tab\there""#,
    ] {
        let errs = parse(&with_path(bad)).unwrap_err();
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(errs[0].starts_with("health_check.path: "), "{errs:?}");
        assert!(errs[0].contains("not an absolute URI path"), "{errs:?}");
    }
}

#[test]
fn metrics_listen_on_loopback_unless_told_otherwise() {
    let c = parse(&format!("{MINIMAL}\n[metrics]\n")).unwrap();
    assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    let c = parse(&format!("{MINIMAL}\n[metrics]\nenabled = false\n")).unwrap();
    assert_eq!(c.metrics_addr, None);
}

mod access;
mod protocols;
mod state;
