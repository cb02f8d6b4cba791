//! `--upgrade`: a new process takes the listening sockets over from a running one (SIGQUIT),
//! loads the state it left, and serves without a failed request; the admin API moves over too.

mod support;

use reqwest::Method;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_hands_over_without_failed_requests() {
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let old = Proxy::start(&format!(
        "{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml("app.example.test", "a"),
    ))
    .await;
    let (s, _) = call(
        Method::POST,
        &old.api("/domains/app.example.test/switch"),
        None,
    )
    .await;
    assert_eq!(s, 200);

    let load = Load::start(
        old.url("/"),
        "app.example.test",
        1,
        Duration::from_millis(5),
        |_| "ok".into(),
    );

    // Let the old process age, so that a small uptime identifies the new one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut new = old.command(&["--upgrade"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Command::new("kill")
        .args(["-QUIT", &old.pid().to_string()])
        .status()
        .unwrap();
    // The new process answers the admin API once the old one has let go of the port.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = client().get(old.api("/health")).send().await;
        if let Ok(r) = up {
            let v: serde_json::Value = r.json().await.unwrap();
            if v["uptime_secs"].as_u64().unwrap() < 3 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "new process never took the admin API:\n{}",
            old.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It carries the state: the switch made before the upgrade still holds.
    let (_, d) = call(Method::GET, &old.api("/domains/app.example.test"), None).await;
    assert_eq!(d["enabled_backends_tag"], "b");
    // Stop the old process for good; requests keep working through the new one.
    Command::new("kill")
        .args(["-INT", &old.pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(old.backend_for("app.example.test").await, "b1");
    let got = load.finish().await;
    let (ok, errors) = (got.ok(), got.errors);
    let _ = new.kill();
    let _ = new.wait();
    assert!(
        errors.is_empty(),
        "{} failed of {}: {:?}",
        errors.len(),
        ok + errors.len() as u64,
        errors.first()
    );
    assert!(ok > 50, "{ok}");
}
