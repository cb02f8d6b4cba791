//! `ip_hash` and `header_hash`: a key stays on its backend, one of five backends removed moves
//! about a fifth of the keys, and the same backend back brings every key home.

use super::harness::*;
use super::support::*;
use reqwest::Method;
use std::net::IpAddr;
use std::time::Duration;

/// Which backend each of `users` (by header) and each of `clients` (by source address) lands on.
async fn owners(
    p: &Proxy,
    users: &[String],
    clients: &[(IpAddr, reqwest::Client)],
) -> (Vec<String>, Vec<String>) {
    let http = client();
    let mut by_user = Vec::new();
    for u in users {
        by_user.push(served_by(p, &http, "hh.test", Some(u)).await);
    }
    let mut by_ip = Vec::new();
    for (_, c) in clients {
        by_ip.push(served_by(p, c, "ip.test", None).await);
    }
    (by_user, by_ip)
}

fn moved(before: &[String], after: &[String]) -> f64 {
    let n = before.iter().zip(after).filter(|(b, a)| b != a).count();
    n as f64 / before.len() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn hashing_keeps_keys_and_moves_about_a_fifth_when_one_of_five_goes() {
    let origins: Vec<Origin> = start_origins((1..=5).map(|i| format!("h{i}"))).await;
    let mut toml: String = origins
        .iter()
        .map(|o| lb_backend(&o.name, o.addr, "a", 1, 0))
        .collect();
    toml += &lb_vhost("hh.test", "a", "header_hash");
    toml += &lb_vhost("ip.test", "a", "ip_hash");
    let p = Proxy::start(&toml).await;

    let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    // ip_hash keys on the TCP peer: each client connects from its own loopback address.
    let clients: Vec<(IpAddr, reqwest::Client)> = (0..1000u16)
        .map(|i| {
            let ip = IpAddr::from([127, 0, 1 + (i / 250) as u8, (i % 250) as u8]);
            let c = reqwest::Client::builder()
                .local_address(ip)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            (ip, c)
        })
        .collect();

    let first = owners(&p, &users, &clients).await;
    let again = owners(&p, &users, &clients).await;
    assert_eq!(first, again, "a key stays on its backend");
    for by in [&first.0, &first.1] {
        let spread: std::collections::BTreeSet<_> = by.iter().collect();
        assert_eq!(spread.len(), 5, "keys spread over all five");
    }

    let (s, _) = call(Method::DELETE, &p.api("/backends/h3"), None).await;
    assert_eq!(s, 204);
    let without = owners(&p, &users, &clients).await;
    let (user_moved, ip_moved) = (moved(&first.0, &without.0), moved(&first.1, &without.1));
    println!(
        "one of 5 backends removed: {:.1} % of 1000 header keys moved, {:.1} % of 1000 client addresses",
        user_moved * 100.0,
        ip_moved * 100.0
    );
    for (share, by_before, by_after) in [
        (user_moved, &first.0, &without.0),
        (ip_moved, &first.1, &without.1),
    ] {
        assert!((0.10..=0.30).contains(&share), "moved {share}");
        assert!(by_after.iter().all(|b| b != "h3"));
        let others_moved = by_before
            .iter()
            .zip(by_after)
            .filter(|(b, a)| b != a && *b != "h3")
            .count();
        println!(
            "  of {} keys: {} were on h3, {others_moved} of the others moved",
            by_before.len(),
            by_before.iter().filter(|b| *b == "h3").count()
        );
        assert!(
            others_moved * 50 <= by_before.len(),
            "{others_moved} keys of backends still there moved"
        );
    }

    // Back with the same id: every key returns to where it was.
    let h3 = &origins[2];
    let (s, body) = call(
        Method::POST,
        &p.api("/backends"),
        Some(serde_json::json!({"id": "h3", "address": h3.addr.to_string(), "tags": ["a"]})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(owners(&p, &users, &clients).await, first);
}

/// Starts one origin per name, in order.
async fn start_origins(names: impl Iterator<Item = String>) -> Vec<Origin> {
    let mut out = Vec::new();
    for n in names {
        out.push(Origin::start(&n).await);
    }
    out
}
