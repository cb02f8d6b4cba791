//! `max_connections` under concurrent load, and in-flight counts that return to zero however a
//! request ends.

use super::harness::*;
use super::support::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_is_never_exceeded_under_concurrent_load() {
    let (c1, c2) = (
        SlowOrigin::start("c1", Duration::from_millis(100)).await,
        SlowOrigin::start("c2", Duration::from_millis(100)).await,
    );
    let p = Proxy::start(&format!(
        "{}{}{}",
        lb_backend("c1", c1.addr, "a", 1, 2),
        lb_backend("c2", c2.addr, "a", 1, 3),
        lb_vhost("cap.test", "a", "round_robin"),
    ))
    .await;
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let (url, http) = (p.url("/"), client());
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0u32, 0u32);
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until {
                    let r = http.get(&url).header("host", "cap.test").send().await;
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) if r.status() == 503 => {
                            let body = r.text().await.unwrap();
                            assert!(body.contains("no backend available"), "{body}");
                            refused += 1;
                        }
                        Ok(r) => panic!("status {}", r.status()),
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for c in clients {
        let (o, r) = c.await.unwrap();
        ok += o;
        refused += r;
    }
    let (m1, m2) = (
        c1.most.load(Ordering::SeqCst),
        c2.most.load(Ordering::SeqCst),
    );
    println!("12 clients, caps 2 and 3: {ok} answered, {refused} refused (503), most at once: c1 {m1}, c2 {m2}");
    assert!(m1 <= 2 && m2 <= 3, "cap exceeded: c1 {m1}, c2 {m2}");
    assert!(
        m1 == 2 && m2 == 3,
        "the load reached the caps: c1 {m1}, c2 {m2}"
    );
    assert!(ok > 0 && refused > 0, "{ok} answered, {refused} refused");
    wait_all_idle(&p, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_capped_at_one_serves_back_to_back_requests_on_new_connections() {
    let a = Origin::start("a1").await;
    let p = Proxy::start(&format!(
        "{}{}",
        lb_backend("a1", a.addr, "a", 1, 1),
        lb_vhost("one.test", "a", "least_conn"),
    ))
    .await;
    // Each answer's slot is free before its last byte reaches the client, so the next request
    // (on another connection, perhaps another worker) never finds the backend still full.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..200 {
        let r = fresh
            .get(p.url("/"))
            .header("host", "one.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        r.text().await.unwrap();
        assert_eq!(in_flight(&p).await["a1"], 0, "after request {i}");
    }
}

// === in-flight counts ===

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_returns_to_zero_after_aborted_and_retried_requests() {
    let slow = SlowOrigin::start("slow", Duration::from_millis(1500)).await;
    let good = Origin::start("good").await;
    let dead = RefusedAddr::new();
    let p = Proxy::start(&format!(
        "{}{}{}{}{}",
        lb_backend("slow", slow.addr, "s", 1, 0),
        lb_backend("dead", dead.addr, "r", 1, 0),
        lb_backend("good", good.addr, "r", 1, 0),
        lb_vhost("slow.test", "s", "least_conn"),
        lb_vhost("retry.test", "r", "round_robin"),
    ))
    .await;

    // Clients that give up after 300 ms, while the origin still works on their requests.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let aborted: Vec<_> = (0..3)
        .map(|_| {
            let req = impatient.get(p.url("/")).header("host", "slow.test");
            tokio::spawn(async move { req.send().await.map(|r| r.status()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(in_flight(&p).await["slow"], 3, "counted while in flight");
    for a in aborted {
        assert!(a.await.unwrap().is_err(), "the client gave up");
    }
    // Given back when the proxy sees the client go, not when the origin finishes.
    wait_all_idle(&p, Duration::from_secs(5)).await;

    // Connect failures retried on the other backend.
    let http = client();
    for _ in 0..10 {
        assert_eq!(served_by(&p, &http, "retry.test", None).await, "good");
    }
    let metrics = client()
        .get(p.api("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let retries = metrics
        .lines()
        .find(|l| l.starts_with("pingora_vhost_upstream_retries_total{domain=\"retry.test\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "no retry happened:\n{metrics}");
    wait_all_idle(&p, Duration::from_secs(5)).await;
}
