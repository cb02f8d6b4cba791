//! Zero-error A/B switching: keep-alive clients send requests without pause while the tag is
//! switched back and forth; every answer must be a 200 from a backend of tag a or b.

mod support;

use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use support::*;

const CLIENTS: usize = 8;
const SWITCHES: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_under_load_loses_no_request() {
    let origins = [
        Origin::start("a1").await,
        Origin::start("a2").await,
        Origin::start("b1").await,
        Origin::start("b2").await,
    ];
    let mut extra = String::new();
    for o in &origins {
        extra += &backend_toml(&o.name, o.addr, &[&o.name[..1]]);
    }
    extra += &vhost_toml("app.example.test", "a");
    let p = Proxy::start(&extra).await;

    let load = Load::start(
        p.url("/"),
        "app.example.test",
        CLIENTS,
        Duration::ZERO,
        |body| {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["backend"].as_str().unwrap().to_string()
        },
    );

    let admin = client();
    for i in 0..SWITCHES {
        let target = if i % 2 == 0 { "b" } else { "a" };
        let r = admin
            .post(p.api("/domains/app.example.test/switch"))
            .json(&json!({ "new_tag": target }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Once the API has answered, new requests see the new pool.
        let now = p.backend_for("app.example.test").await;
        assert!(
            now.starts_with(target),
            "after switching to {target} got {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let LoadResult {
        seen: total,
        errors,
    } = load.finish().await;
    let sent: u64 = total.values().sum::<u64>() + errors.len() as u64;
    println!(
        "switch under load: {sent} requests, {SWITCHES} switches, {} errors, per backend {total:?}",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(
        total.keys().cloned().collect::<Vec<_>>(),
        ["a1", "a2", "b1", "b2"]
    );
    assert!(sent > 1000, "load too light to prove anything: {sent}");
    let (_, d) = call(Method::GET, &p.api("/domains/app.example.test"), None).await;
    assert_eq!(d["enabled_backends_tag"], "a");
}
