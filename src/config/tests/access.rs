//! `[proxy] trusted_proxies` and the virtual hosts' `allow`, `deny` and rate limits.

use super::*;

fn with_access(proxy: &str, vhost: &str) -> String {
    MINIMAL
        .replace("[proxy]", &format!("[proxy]\n{proxy}"))
        .replace(
            "enabled_backends_tag = \"a\"",
            &format!("enabled_backends_tag = \"a\"\n{vhost}"),
        )
}

#[test]
fn access_settings_are_read() {
    let c = parse(&with_access(
        "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
        "allow = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\ndeny = [\"10.0.0.66\"]\nrate_limit_rps = 100\nrate_limit_burst = 200",
    ))
    .unwrap();
    let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(shown, ["10.0.0.0/8", "::1/128"]);
    let access = &c.seed.domains[0].access;
    assert_eq!(access.allow.as_ref().unwrap().len(), 2);
    assert_eq!(access.deny.as_ref().unwrap()[0].to_string(), "10.0.0.66/32");
    assert_eq!(access.rate_limit(), Some((100, 200)));
    let plain = parse(MINIMAL).unwrap();
    assert!(plain.trusted_proxies.is_empty());
    assert!(plain.seed.domains[0].access.is_empty());
}

#[test]
fn every_access_problem_is_listed() {
    let errs = parse(&with_access(
        "trusted_proxies = [\"10.0.0.0/8\", \"nope\"]",
        "allow = [\"10.0.0.0/33\", \"127.0.0.1\"]\ndeny = [\"x\"]\nrate_limit_rps = 0\nrate_limit_burst = 2000000",
    ))
    .unwrap_err();
    let all = errs.join("\n");
    for expected in [
        "proxy.trusted_proxies[1]: 'nope' is not a CIDR",
        "virtual_hosts[0].allow[0]: '10.0.0.0/33' is not a CIDR",
        "virtual_hosts[0].deny[0]: 'x' is not a CIDR",
        "virtual_hosts[0].rate_limit_rps: rate_limit_rps 0 is out of range 1..=1000000",
        "virtual_hosts[0].rate_limit_burst: rate_limit_burst 2000000 is out of range 1..=1000000",
    ] {
        assert!(all.contains(expected), "missing '{expected}' in:\n{all}");
    }
    assert_eq!(errs.len(), 5, "{all}");
    let errs = parse(&with_access("", "allow = []\nrate_limit_burst = 5")).unwrap_err();
    let all = errs.join("\n");
    assert!(
        all.contains("virtual_hosts[0].allow: allow lists no address"),
        "{all}"
    );
    assert!(
        all.contains("virtual_hosts[0].rate_limit_burst: rate_limit_burst needs rate_limit_rps"),
        "{all}"
    );
    // A list whose only entry is not a CIDR is that one problem (not also "lists no address").
    let errs = parse(&with_access("", "allow = [\"10.0.0.0/33\"]")).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
}
