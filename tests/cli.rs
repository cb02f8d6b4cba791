//! The command line: `check` exit codes and messages, start-up failures as clear errors.

mod support;

use std::process::Command;
use support::*;

fn run_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("PINGORA_VHOST_ADMIN_TOKEN")
        .env_remove("PINGORA_VHOST_ETCD_PASSWORD")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn valid_config() -> String {
    let addr = "127.0.0.1:3001".parse().unwrap();
    config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &format!(
            "{}{}",
            backend_toml("a1", addr, &["a"]),
            vhost_toml("app.test", "a")
        ),
    )
}

#[test]
fn check_accepts_a_valid_config_from_the_default_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), valid_config()).unwrap();
    let (code, out, err) = run_in(dir.path(), &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn check_accepts_tls_settings_on_an_h2c_backend() {
    let dir = tempfile::tempdir().unwrap();
    let text = valid_config().replace(
        "tags = [\"a\"]",
        "tags = [\"a\"]\nprotocol = \"h2c\"\ntls_server_name = \"Backend.Internal\"\n\
         tls_verify = false",
    );
    assert!(text.contains("h2c"), "{text}");
    std::fs::write(dir.path().join("c.toml"), &text).unwrap();
    let (code, out, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
    // A gRPC probe still needs HTTP/2.
    let grpc = text.replace("protocol = \"h2c\"", "health_check = \"grpc\"");
    std::fs::write(dir.path().join("c.toml"), grpc).unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs HTTP/2"), "{err}");
}

#[test]
fn check_accepts_the_interface_etcd_example_and_run_names_the_missing_password() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[proxy]
listen_addr_http = "127.0.0.1:1"
management_api_addr = "127.0.0.1:2"

{}
[[virtual_hosts]]
domain = "app.test"
enabled_backends_tag = "a"

[[backends]]
id = "a1"
address = "127.0.0.1:3001"
tags = ["a"]
"#,
        include_str!("fixtures/interface-etcd-state.toml")
    );
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let (code, out, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"), "{out}");
    assert!(err.contains("PINGORA_VHOST_ETCD_PASSWORD"), "{err}");

    // `run` refuses before reaching etcd, in one line naming the variable.
    let (code, _, err) = run_in(dir.path(), &["run", "--config", "c.toml"]);
    assert_ne!(code, 0, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("state.etcd.username")
            && lines[0].contains("PINGORA_VHOST_ETCD_PASSWORD"),
        "{err}"
    );
}

#[test]
fn check_lists_every_problem_one_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[proxy]
listen_addr_http = "not-an-address"
management_api_addr = "127.0.0.1:8081"
threads = 0

[[virtual_hosts]]
domain = "bad domain"
enabled_backends_tag = "nope"

[[backends]]
id = "a1"
address = "127.0.0.1"
tags = []
"#;
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 6, "{err}");
    assert!(lines.iter().all(|l| is_located(l, "c.toml")), "{err}");
    for needle in [
        "listen_addr_http",
        "threads",
        "virtual_hosts[0].domain",
        "enabled_backends_tag",
        "backends[0].address",
        "backends[0].tags",
    ] {
        assert!(err.contains(needle), "missing {needle}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// Whether `line` starts `FILE:LINE:COLUMN: ` with numbers from 1.
fn is_located(line: &str, file: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("{file}:")) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok()).is_some_and(|n| n > 0);
    number(parts.next()) && number(parts.next()) && parts.next().is_some_and(|r| r.starts_with(' '))
}

#[test]
fn check_reports_keys_types_and_values_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[proxy]
listen_addr_http = "127.0.0.1:8000"
management_api_addr = "127.0.0.1:8081"
threads = "two"

[helth_check]
path = "/health"

[health_check]
interval_secs = 0

[[virtual_hosts]]
domain = "bad domain"
enabled_backends_tag = "a"

[[backends]]
id = "a1"
address = "127.0.0.1:3001"
tags = ["a"]
wieght = 2

[[backends]]
id = "b1"
address = "127.0.0.1:3002"
tags = []
"#;
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let (code, out, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = err.lines().collect();
    let expected = [
        ("c.toml:4:11: proxy.threads: ", "expected a whole number"),
        ("c.toml:6:2: ", "unknown field `helth_check`"),
        ("c.toml:20:1: backends[0]: ", "unknown field `wieght`"),
        ("c.toml:10:17: health_check.interval_secs: ", "must be > 0"),
        (
            "c.toml:13:10: virtual_hosts[0].domain: ",
            "not a valid DNS name",
        ),
        ("c.toml:25:8: backends[1].tags: ", "at least one tag"),
    ];
    assert_eq!(lines.len(), expected.len(), "{err}");
    for ((start, words), line) in expected.iter().zip(&lines) {
        assert!(
            line.starts_with(start) && line.contains(words),
            "{line}\n{err}"
        );
    }
    assert!(!err.contains(" | "), "no caret snippets: {err}");
    let (code, _, again) = run_in(dir.path(), &["run", "--config", "c.toml"]);
    assert_eq!(
        (code, again.as_str()),
        (1, err.as_str()),
        "run refuses it alike"
    );
}

#[test]
fn unknown_keys_and_bad_toml_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        valid_config().replace("threads", "treads"),
    )
    .unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("treads"), "{err}");
    std::fs::write(dir.path().join("c.toml"), "[proxy\nx=").unwrap();
    let (code, _, err) = run_in(dir.path(), &["run", "--config", "c.toml"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "one line per problem: {err}");
    let (code, _, err) = run_in(dir.path(), &["--config", "missing.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn a_port_in_use_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let admin = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = config_text(
        busy_addr,
        admin,
        &format!(
            "{}{}",
            backend_toml("a1", "127.0.0.1:3001".parse().unwrap(), &["a"]),
            vhost_toml("app.test", "a")
        ),
    );
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let (code, _, err) = run_in(dir.path(), &["run", "--config", "c.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn admin_api_on_a_public_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = valid_config().replace("127.0.0.1:2", "0.0.0.0:2");
    std::fs::write(dir.path().join("c.toml"), &text).unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("admin_token"), "{err}");
    std::fs::write(
        dir.path().join("c.toml"),
        text.replace("[proxy]", "[proxy]\nadmin_token = \"t0ken\""),
    )
    .unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn daemon_detaches_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = config_text(
        http,
        admin,
        &format!(
            "[logging]\noutput = \"file\"\nfile_path = \"logs\"\n\n{}{}",
            backend_toml("a1", origin.local_addr().unwrap(), &["a"]),
            vhost_toml("app.test", "a")
        ),
    );
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let started = std::time::Instant::now();
    let (code, _, err) = run_in(dir.path(), &["run", "--config", "c.toml", "--daemon"]);
    assert_eq!(code, 0, "the parent returns at once: {err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let pid_file = dir.path().join("state/state.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let ready = std::net::TcpStream::connect(admin).is_ok();
        if ready && !pid.trim().is_empty() {
            break pid.trim().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "daemon not serving");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let alive = Command::new("kill")
        .args(["-0", &pid])
        .status()
        .unwrap()
        .success();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(alive, "the daemon runs as pid {pid}");
    assert!(
        dir.path().join("logs").is_dir(),
        "logs go to files when detached"
    );
}

/// `check` on `text` as c.toml: the exit code and stderr.
fn check_text(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let (code, _, err) = run_in(dir.path(), &["check", "--config", "c.toml"]);
    (code, err)
}

/// The 1-based line of `text` that holds `needle` first.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn check_refuses_two_listeners_on_one_address() {
    let text = valid_config().replace(
        "management_api_addr = \"127.0.0.1:2\"",
        "management_api_addr = \"127.0.0.1:1\"",
    );
    let (code, err) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    let at = line_of(&text, "management_api_addr");
    assert!(
        err.starts_with(&format!(
            "c.toml:{at}:23: proxy.management_api_addr: 127.0.0.1:1 clashes with \
             proxy.listen_addr_http = 127.0.0.1:1"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // A wildcard listener takes its port on loopback too.
    let text = valid_config().replace("127.0.0.1:1", "0.0.0.0:1")
        + "\n[metrics]\nlisten_addr = \"127.0.0.1:1\"\n";
    let (code, err) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    let at = line_of(&text, "listen_addr = \"127.0.0.1:1\"");
    assert!(
        err.starts_with(&format!(
            "c.toml:{at}:15: metrics.listen_addr: 127.0.0.1:1 clashes with proxy.listen_addr_http"
        )),
        "{err}"
    );
    let (code, err) = check_text(&text.replace("listen_addr = \"127.0.0.1:1\"", "enabled = false"));
    assert_eq!(code, 0, "a disabled metrics listener binds nothing: {err}");
}

#[test]
fn check_refuses_a_grace_period_over_an_hour() {
    let (code, err) =
        check_text(&valid_config().replace("grace_period_secs = 5", "grace_period_secs = 3600"));
    assert_eq!(code, 0, "{err}");
    let text = valid_config().replace("grace_period_secs = 5", "grace_period_secs = 86400000");
    let (code, err) = check_text(&text);
    assert_eq!(code, 1);
    let at = line_of(&text, "grace_period_secs");
    assert!(
        err.starts_with(&format!(
            "c.toml:{at}:21: proxy.grace_period_secs: 86400000 is over 3600"
        )),
        "{err}"
    );
}

#[test]
fn check_refuses_a_health_check_path_that_is_not_a_uri_path() {
    let text = valid_config() + "\n[health_check]\npath = \"/h ealth\"\n";
    let (code, err) = check_text(&text);
    assert_eq!(code, 1);
    let at = line_of(&text, "/h ealth");
    assert!(
        err.starts_with(&format!(
            "c.toml:{at}:8: health_check.path: '/h ealth' is not an absolute URI path"
        )),
        "{err}"
    );
    let (code, err) = check_text(&text.replace("/h ealth", "/h%20ealth?deep=1"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn check_refuses_a_backend_pointed_at_the_proxy_itself() {
    // At the admin API: its clients would reach the API through the public listener.
    let text = valid_config().replace("127.0.0.1:3001", "127.0.0.1:2");
    let (code, err) = check_text(&text);
    assert_eq!(code, 1);
    let at = line_of(&text, "address = ");
    assert!(
        err.starts_with(&format!(
            "c.toml:{at}:11: backends[0].address: '127.0.0.1:2' is this proxy's own \
             proxy.management_api_addr"
        )),
        "{err}"
    );
    // At a wildcard listener, by loopback name: a loop through the proxy.
    let text = valid_config()
        .replace(
            "listen_addr_http = \"127.0.0.1:1\"",
            "listen_addr_http = \"0.0.0.0:1\"",
        )
        .replace("127.0.0.1:3001", "localhost:1");
    let (code, err) = check_text(&text);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "c.toml:{at}:11: backends[0].address: 'localhost:1' is this proxy's own \
             proxy.listen_addr_http = 0.0.0.0:1"
        )),
        "{err}"
    );
    let (code, err) = check_text(&text.replace("localhost:1", "localhost:3"));
    assert_eq!(
        code, 0,
        "another port on this host is a backend like any: {err}"
    );
}
