//! Several instances sharing one registry through a real 3-member etcd cluster on loopback:
//! a change through one instance's API reaches the others' request paths, conflicting writes
//! converge, a switch under load fails nothing elsewhere, losing quorum keeps traffic flowing
//! and refuses writes with 503, and a restarted instance catches up.

#[path = "../actors/tests/support/pebble.rs"]
mod pebble;
mod support;

use reqwest::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::etcd::{etcd_bin, EtcdCluster};
use support::*;

const HOST: &str = "app.example.test";

/// Starts one instance on the cluster, seeding `prefix` from `seed` if it is empty.
async fn instance(cluster: &EtcdCluster, prefix: &str, seed: &str) -> Proxy {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    instance_on(cluster, http, "", prefix, seed).await
}

/// Like [`instance`], on a given plain-HTTP address and with extra `[proxy]` keys.
async fn instance_on(
    cluster: &EtcdCluster,
    http: SocketAddr,
    proxy_keys: &str,
    prefix: &str,
    seed: &str,
) -> Proxy {
    let state = format!(
        "backend = \"etcd\"\n\n[state.etcd]\nendpoints = {}\nprefix = \"{prefix}\"\n",
        cluster.endpoints_toml()
    );
    Proxy::start_config(http, &|admin| {
        config_text_state(http, admin, proxy_keys, &state, "", seed)
    })
    .await
}

struct Setup {
    cluster: EtcdCluster,
    instances: Vec<Proxy>,
    _origins: (Origin, Origin),
}

/// A cluster, two origins (tags `a` and `b`) and three instances sharing one prefix.
async fn setup() -> Option<Setup> {
    let bin = etcd_bin()?;
    let cluster = EtcdCluster::start(bin, 3).await;
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let seed = format!(
        "{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml(HOST, "a"),
    );
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance(&cluster, "/test/", &seed).await);
    }
    Some(Setup {
        cluster,
        instances,
        _origins: (a, b),
    })
}

/// Waits until `p` routes the test host to `backend`; how long that took.
async fn until_served_by(p: &Proxy, backend: &str, patience: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = p.get(HOST, "/").await;
        if status == 200 && body.contains(&format!("\"backend\":\"{backend}\"")) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < patience,
            "{} not served by {backend} after {patience:?}: {status} {body}\n{}",
            p.http,
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn switch(p: &Proxy, tag: &str) -> (u16, serde_json::Value) {
    call(
        Method::POST,
        &p.api(&format!("/domains/{HOST}/switch")),
        Some(json!({ "new_tag": tag })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_through_one_instance_reaches_the_others_within_a_second() {
    let Some(s) = setup().await else { return };
    let [a, b, c] = &s.instances[..] else {
        unreachable!()
    };
    for p in &s.instances {
        assert_eq!(p.backend_for(HOST).await, "a1");
    }
    assert!(b.log().contains("found: it is the registry"), "{}", b.log());

    // Switches through one instance, timed to the others' request paths.
    let mut times = Vec::new();
    for i in 0..20 {
        let tag = if i % 2 == 0 { "b" } else { "a" };
        let (st, body) = switch(a, tag).await;
        assert_eq!(st, 200, "{body}");
        let origin = format!("{tag}1");
        for other in [b, c] {
            times.push(until_served_by(other, &origin, Duration::from_secs(5)).await);
        }
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!("etcd propagation, API answer on one instance to another's request path: p50 {p50:?}, max {max:?}");
    assert!(max < Duration::from_secs(1), "max {max:?}");

    // Backends and domains added on one instance appear on the others, with history.
    let extra = Origin::start("c1").await;
    let (st, body) = call(
        Method::POST,
        &b.api("/backends"),
        Some(json!({"id": "c1", "address": extra.addr.to_string(), "tags": ["c"]})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = call(
        Method::POST,
        &b.api("/domains"),
        Some(json!({"domain": "new.example.test", "enabled_backends_tag": "c"})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let start = Instant::now();
    loop {
        let (status, body) = c.get("new.example.test", "/").await;
        if status == 200 && body.contains("c1") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{status} {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (st, history) = call(
        Method::GET,
        &c.api(&format!("/domains/{HOST}/history")),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(history.as_array().map(Vec::len), Some(20), "{history}");

    // A deletion too.
    let (st, _) = call(Method::DELETE, &a.api("/domains/new.example.test"), None).await;
    assert_eq!(st, 204);
    let start = Instant::now();
    while c.get("new.example.test", "/").await.0 != 404 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, health) = call(Method::GET, &c.api("/health"), None).await;
    assert_eq!(
        health["store"],
        json!({"backend": "etcd", "up": true}),
        "{health}"
    );
    drop(s.cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_writes_converge_and_different_objects_never_conflict() {
    let Some(s) = setup().await else { return };
    let [a, b, c] = &s.instances[..] else {
        unreachable!()
    };
    // The same domain changed on two instances at once, many times: each answer is a success
    // or a 409, never a lost update, and every instance ends on one value.
    let mut conflicts = 0;
    for i in 0..20 {
        let (x, y) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
        let ((s1, _), (s2, _)) = tokio::join!(switch(a, x), switch(b, y));
        for st in [s1, s2] {
            assert!(st == 200 || st == 409, "{st}");
            conflicts += usize::from(st == 409);
        }
    }
    println!(
        "concurrent switches of one domain from two instances: {conflicts} of 40 answered 409"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut seen = Vec::new();
    for p in &s.instances {
        let (_, d) = call(Method::GET, &p.api(&format!("/domains/{HOST}")), None).await;
        seen.push(d["enabled_backends_tag"].clone());
    }
    assert!(seen.iter().all(|t| *t == seen[0]), "{seen:?}");
    let served: Vec<String> = {
        let mut v = Vec::new();
        for p in &s.instances {
            v.push(p.backend_for(HOST).await);
        }
        v
    };
    assert!(served.iter().all(|b| *b == served[0]), "{served:?}");

    // Different backends added on two instances at once: no conflict at all.
    let origin = Origin::start("x").await;
    let add = |p: &Proxy, id: String| {
        let url = p.api("/backends");
        let addr = origin.addr.to_string();
        async move {
            call(
                Method::POST,
                &url,
                Some(json!({"id": id, "address": addr, "tags": ["x"]})),
            )
            .await
            .0
        }
    };
    for i in 0..10 {
        let (s1, s2) = tokio::join!(add(a, format!("a-{i}")), add(b, format!("b-{i}")));
        assert_eq!((s1, s2), (201, 201));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, list) = call(Method::GET, &c.api("/backends"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 22, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_under_load_on_one_instance_fails_nothing_on_the_others() {
    let Some(s) = setup().await else { return };
    let [a, b, c] = &s.instances[..] else {
        unreachable!()
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = |p: &Proxy| {
        let url = p.url("/");
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(&url).header("host", HOST).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let loads = [load(b), load(b), load(c), load(c)];
    for i in 0..10 {
        let (st, _) = switch(a, if i % 2 == 0 { "b" } else { "a" }).await;
        assert_eq!(st, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in loads {
        let (ok, failed) = l.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        total += ok;
    }
    println!("10 switches on one instance: {total} requests on the two others, 0 failed");
    assert!(total > 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_quorum_keeps_traffic_flowing_refuses_writes_and_catches_up() {
    let Some(mut s) = setup().await else { return };
    s.cluster.kill(1);
    s.cluster.kill(2);
    let a = &s.instances[0];
    // Health says so within a few seconds.
    let start = Instant::now();
    wait_for_store_down(a, Duration::from_secs(10), "quorum lost").await;
    // The gauge follows within a second.
    loop {
        let text = scrape(&a.api("/metrics")).await;
        if text.contains("pingora_vhost_store_up 0") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(12), "{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Traffic flows on every instance.
    for p in &s.instances {
        assert_eq!(p.backend_for(HOST).await, "a1");
    }
    // Writes are refused with a clear 503, and nothing changes.
    let started = Instant::now();
    let (st, body) = switch(a, "b").await;
    let took = started.elapsed();
    println!("write without quorum: {st} after {took:?}: {body}");
    assert_eq!(st, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(a.backend_for(HOST).await, "a1");
    let (_, d) = call(Method::GET, &a.api(&format!("/domains/{HOST}")), None).await;
    assert_eq!(d["enabled_backends_tag"], "a");

    // Quorum returns: writes succeed again and reach the others, without a restart.
    s.cluster.restart(1);
    s.cluster.restart(2);
    s.cluster.wait_healthy(Duration::from_secs(30)).await;
    switch_until_ok(a, "b", Duration::from_secs(30)).await;
    for p in &s.instances[1..] {
        until_served_by(p, "b1", Duration::from_secs(10)).await;
    }
    let (_, h) = call(Method::GET, &a.api("/health"), None).await;
    assert_eq!(h["store"]["up"], json!(true), "{h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_restarted_catches_up_and_reset_state_reseeds() {
    let Some(mut s) = setup().await else { return };
    s.instances[2].stop();
    let (st, _) = switch(&s.instances[0], "b").await;
    assert_eq!(st, 200);
    s.instances[2].spawn(&[]).await;
    assert_eq!(s.instances[2].backend_for(HOST).await, "b1");
    // The config seeds the prefix again on --reset-state; the others follow.
    s.instances[2].stop();
    s.instances[2].spawn(&["--reset-state"]).await;
    assert_eq!(s.instances[2].backend_for(HOST).await, "a1");
    until_served_by(&s.instances[0], "a1", Duration::from_secs(5)).await;
    until_served_by(&s.instances[1], "a1", Duration::from_secs(5)).await;
    drop(s.cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_order_one_certificate_and_any_answers_the_challenge() {
    let Some(bin) = etcd_bin() else { return };
    let (pebble_bin, challtestsrv) =
        pebble::pebble_binaries().expect("pebble is installed by scripts/pebble.sh");
    let cluster = EtcdCluster::start(bin, 3).await;
    // Pebble validates every challenge on the first instance's port, whichever instance
    // ordered: that instance answers tokens the others published.
    let first_http = free_addr();
    let pebble = pebble::start_pebble(&pebble_bin, &challtestsrv, first_http.port(), 3600);
    let ca = pebble.dir.path().join("directory-ca.pem");
    std::fs::write(&ca, &pebble.ca_pem).unwrap();
    let a = Origin::start("a1").await;
    let caches: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The seed has no domain: they are added through instances 1 and 2, whose certificate
    // actors start first and so order, while Pebble asks instance 0 for the tokens.
    let mut instances = Vec::new();
    for (i, cache) in caches.iter().enumerate() {
        let seed = format!(
            "[lets_encrypt]\nemail = \"ops@example.test\"\ncache_dir = \"{}\"\ndirectory_url = \"{}\"\nca_root = \"{}\"\n\n{}",
            cache.path().display(),
            pebble.directory_url,
            ca.display(),
            backend_toml("a1", a.addr, &["a"]),
        );
        let http = if i == 0 { first_http } else { free_addr() };
        let https = format!("listen_addr = \"{}\"", free_addr());
        instances.push(instance_on(&cluster, http, &https, "/acme/", &seed).await);
    }
    for (via, domain) in [(1, "acme.test"), (2, "late.acme.test")] {
        let (st, body) = call(
            Method::POST,
            &instances[via].api("/domains"),
            Some(json!({"domain": domain, "enabled_backends_tag": "a"})),
        )
        .await;
        assert_eq!(st, 201, "{body}");
        let mut serials = Vec::new();
        for p in &instances {
            serials.push(wait_for_valid(p, domain).await);
        }
        assert!(serials.iter().all(|s| *s == serials[0]), "{serials:?}");
        let ordered_by: Vec<usize> = (0..3)
            .filter(|i| {
                instances[*i]
                    .log()
                    .lines()
                    .any(|l| l.contains("ACME certificate issued") && l.contains(domain))
            })
            .collect();
        println!("{domain}: added through instance {via}, ordered by instance(s) {ordered_by:?}, served by all three");
    }
    let mut orders = 0;
    for p in &instances {
        let text = scrape(&p.api("/metrics")).await;
        orders += text
            .lines()
            .find_map(|l| l.strip_prefix(r#"pingora_vhost_acme_orders_total{result="success"} "#))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    println!("ACME orders for 2 domains served by 3 instances: {orders}");
    assert_eq!(orders, 2);
    drop(pebble);
}

/// Waits until `p` serves a valid certificate for `domain`; its serial.
async fn wait_for_valid(p: &Proxy, domain: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, list) = call(Method::GET, &p.api("/certificates"), None).await;
        let found = list
            .as_array()
            .and_then(|l| l.iter().find(|c| c["domain"] == domain).cloned());
        if let Some(c) = &found {
            if c["status"] == "valid" {
                return c["serial"].as_str().unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{domain}: {found:?}\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// The ACME token mirror of an instance whose only etcd member goes away: tokens withdrawn and
/// published meanwhile (through the other members, which keep quorum) are withdrawn and
/// published on the instance once its member is back, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_mirror_catches_up_after_its_member_comes_back() {
    let Some(bin) = etcd_bin() else { return };
    let mut cluster = EtcdCluster::start(bin, 3).await;
    let a = Origin::start("a1").await;
    let cache = tempfile::tempdir().unwrap();
    // ACME is on (no domain, so nothing is ordered): the instance mirrors the shared tokens.
    let seed = format!(
        "[lets_encrypt]\nemail = \"ops@example.test\"\ncache_dir = \"{}\"\ndirectory_url = \"http://127.0.0.1:9/directory\"\n\n{}",
        cache.path().display(),
        backend_toml("a1", a.addr, &["a"]),
    );
    let only_first = format!("[\"{}\"]", cluster.endpoints()[0]);
    let state = format!(
        "backend = \"etcd\"\n\n[state.etcd]\nendpoints = {only_first}\nprefix = \"/mirror/\"\n"
    );
    let http = free_addr();
    let https = format!("listen_addr = \"{}\"", free_addr());
    let p = Proxy::start_config(http, &|admin| {
        config_text_state(http, admin, &https, &state, "", &seed)
    })
    .await;
    let token = |t: &str| format!("/mirror/acme/challenges/{t}");
    let answer = |t: &str| {
        let url = p.url(&format!("/.well-known/acme-challenge/{t}"));
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let until = |t: &'static str, want: u16| {
        let answer = &answer;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (status, _) = answer(t).await;
                if status == want {
                    return;
                }
                assert!(Instant::now() < deadline, "token {t}: {status}, not {want}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    cluster.put(1, &token("gone"), "gone.key").await;
    cluster.put(1, &token("kept"), "kept.key").await;
    until("gone", 200).await;
    until("kept", 200).await;
    assert_eq!(answer("kept").await, (200, "kept.key".to_string()));

    cluster.kill(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.delete(1, &token("gone")).await;
    cluster.put(2, &token("new"), "new.key").await;
    cluster.restart(0);
    cluster.wait_healthy(Duration::from_secs(30)).await;

    until("new", 200).await;
    assert_eq!(
        answer("gone").await.0,
        404,
        "withdrawn while the member was away"
    );
    assert_eq!(answer("kept").await, (200, "kept.key".to_string()));
}

/// Starts one instance on `cluster` under `prefix` logging in as `user` with `password`.
async fn instance_as(
    cluster: &EtcdCluster,
    prefix: &str,
    user: &str,
    password: &str,
    seed: &str,
) -> Proxy {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let state = format!(
        "backend = \"etcd\"\n\n[state.etcd]\nendpoints = {}\nprefix = \"{prefix}\"\nusername = \"{user}\"\n",
        cluster.endpoints_toml()
    );
    Proxy::start_config_env(
        http,
        &[("PINGORA_VHOST_ETCD_PASSWORD", password)],
        &|admin| config_text_state(http, admin, "", &state, "", seed),
    )
    .await
}

/// Switches through `p` until it answers 200 (for at most `patience`).
/// Polls `GET /api/v1/health` until it says the store is down.
async fn wait_for_store_down(p: &Proxy, patience: Duration, scenario: &str) {
    let start = Instant::now();
    loop {
        let (_, h) = call(Method::GET, &p.api("/health"), None).await;
        if h["store"]["up"] == json!(false) {
            return;
        }
        assert!(start.elapsed() < patience, "{scenario}: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn switch_until_ok(p: &Proxy, tag: &str, patience: Duration) {
    let start = Instant::now();
    loop {
        let (st, body) = switch(p, tag).await;
        if st == 200 {
            return;
        }
        assert!(
            start.elapsed() < patience,
            "switch to {tag}: {st} {body}\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_user_the_instances_log_in_again_when_the_token_expires_or_etcd_restarts() {
    let Some(bin) = etcd_bin() else { return };
    let mut cluster = EtcdCluster::start_with(bin, 3, &["--auth-token-ttl", "2"]).await;
    cluster.enable_auth("vhost", "vhost-pw", "/auth/").await;
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let seed = format!(
        "{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml(HOST, "a"),
    );
    let p = instance_as(&cluster, "/auth/", "vhost", "vhost-pw", &seed).await;
    let q = instance_as(&cluster, "/auth/", "vhost", "vhost-pw", &seed).await;
    assert_eq!(p.backend_for(HOST).await, "a1");

    // Longer than the token's TTL: a write still succeeds at once, and reaches the other.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (st, body) = switch(&p, "b").await;
    assert_eq!(st, 200, "{body}\n{}", p.log());
    until_served_by(&p, "b1", Duration::from_secs(5)).await;
    until_served_by(&q, "b1", Duration::from_secs(5)).await;

    // Every member restarts (their tokens are gone): writes succeed again without a restart
    // of the instances, and the watches carry them to the other instance.
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_healthy(Duration::from_secs(30)).await;
    switch_until_ok(&q, "a", Duration::from_secs(15)).await;
    until_served_by(&q, "a1", Duration::from_secs(5)).await;
    until_served_by(&p, "a1", Duration::from_secs(10)).await;
    let (_, h) = call(Method::GET, &p.api("/health"), None).await;
    assert_eq!(h["store"]["up"], json!(true), "{h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn while_etcd_is_down_parallel_writes_and_health_answer_promptly() {
    let Some(bin) = etcd_bin() else { return };
    let mut cluster = EtcdCluster::start(bin, 3).await;
    let (a, b) = (Origin::start("a1").await, Origin::start("b1").await);
    let seed = format!(
        "{}{}{}",
        backend_toml("a1", a.addr, &["a"]),
        backend_toml("b1", b.addr, &["b"]),
        vhost_toml(HOST, "a"),
    );
    let p = instance(&cluster, "/down/", &seed).await;
    assert_eq!(p.backend_for(HOST).await, "a1");

    for scenario in ["quorum lost", "every member gone", "every member frozen"] {
        match scenario {
            "quorum lost" => {
                cluster.kill(1);
                cluster.kill(2);
            }
            "every member gone" => (0..3).for_each(|i| cluster.kill(i)),
            _ => (0..3).for_each(|i| cluster.pause(i)),
        }
        wait_for_store_down(&p, Duration::from_secs(20), scenario).await;

        // Five writes at once and a health check: each answers within 5 s of being sent.
        let writes: Vec<_> = (0..5)
            .map(|i| {
                let api = p.api(&format!("/domains/{HOST}/switch"));
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let tag = if i % 2 == 0 { "b" } else { "a" };
                    let (st, body) =
                        call(Method::POST, &api, Some(json!({ "new_tag": tag }))).await;
                    (st, body, sent.elapsed())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent = Instant::now();
        let (_, h) = call(Method::GET, &p.api("/health"), None).await;
        let health_took = sent.elapsed();
        assert!(
            health_took < Duration::from_secs(5),
            "{scenario}: health took {health_took:?}"
        );
        assert_eq!(h["store"]["up"], json!(false), "{scenario}: {h}");
        for w in writes {
            let (st, body, took) = w.await.unwrap();
            println!("{scenario}: parallel write: {st} after {took:?}: {body}");
            assert_eq!(st, 503, "{scenario}: {body}");
            assert!(
                body["error"].as_str().unwrap().contains("unavailable"),
                "{body}"
            );
            assert!(
                took < Duration::from_secs(5),
                "{scenario}: write took {took:?}"
            );
        }
        assert_eq!(p.backend_for(HOST).await, "a1");

        // etcd back: writes succeed again without a restart.
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster.wait_healthy(Duration::from_secs(30)).await;
        switch_until_ok(&p, "b", Duration::from_secs(15)).await;
        until_served_by(&p, "b1", Duration::from_secs(5)).await;
        switch_until_ok(&p, "a", Duration::from_secs(5)).await;
        until_served_by(&p, "a1", Duration::from_secs(5)).await;
    }
}
