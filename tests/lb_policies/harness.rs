//! What the load-balancing tests share: an origin that counts its concurrent requests, config
//! snippets with policies, weights and caps, and readers of the answers and of `in_flight`.

use super::support::*;
use axum::extract::Request;
use axum::Json;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An origin that answers after `delay`, counting the requests it is serving at once (its
/// `/health` answers at once and is not counted).
pub struct SlowOrigin {
    pub addr: SocketAddr,
    /// The most requests it served at once.
    pub most: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowOrigin {
    pub async fn start(name: &str, delay: Duration) -> SlowOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, c, m) = (name.to_string(), Arc::clone(&now), Arc::clone(&most));
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .fallback(move |_req: Request| {
                let (n, c, m) = (n.clone(), Arc::clone(&c), Arc::clone(&m));
                async move {
                    let serving = c.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(serving, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    c.fetch_sub(1, Ordering::SeqCst);
                    Json(serde_json::json!({ "backend": n }))
                }
            });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SlowOrigin { addr, most, task }
    }
}

impl Drop for SlowOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TOML for a backend with a weight and a connection cap.
pub fn lb_backend(
    id: &str,
    addr: SocketAddr,
    tag: &str,
    weight: u32,
    max_connections: u32,
) -> String {
    format!(
        "[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\ntags = [\"{tag}\"]\n\
         weight = {weight}\nmax_connections = {max_connections}\n\n"
    )
}

/// TOML for a virtual host with a policy (and the header `header_hash` keys on).
pub fn lb_vhost(domain: &str, tag: &str, policy: &str) -> String {
    format!(
        "[[virtual_hosts]]\ndomain = \"{domain}\"\nenabled_backends_tag = \"{tag}\"\n\
         lb_policy = \"{policy}\"\nlb_hash_header = \"X-User-Id\"\n\n"
    )
}

pub fn backend_in(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["backend"].as_str().unwrap().to_string()
}

/// One GET through `http`; the backend that answered.
pub async fn served_by(
    p: &Proxy,
    http: &reqwest::Client,
    host: &str,
    user: Option<&str>,
) -> String {
    let mut req = http.get(p.url("/")).header("host", host);
    if let Some(u) = user {
        req = req.header("x-user-id", u);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    backend_in(&r.text().await.unwrap())
}

/// `in_flight` of every backend, from `GET /api/v1/backends`.
pub async fn in_flight(p: &Proxy) -> BTreeMap<String, u64> {
    let (status, list) = call(Method::GET, &p.api("/backends"), None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let n = b["in_flight"].as_u64().unwrap_or_else(|| panic!("{b}"));
            (b["id"].as_str().unwrap().to_string(), n)
        })
        .collect()
}

/// Waits until every backend's `in_flight` is 0.
pub async fn wait_all_idle(p: &Proxy, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let counts = in_flight(p).await;
        if counts.values().all(|&n| n == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "still in flight: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn longest_run(seq: &[bool], of: bool) -> usize {
    let (mut best, mut run) = (0, 0);
    for &x in seq {
        run = if x == of { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}
