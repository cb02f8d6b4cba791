//! ACME end to end against a real Pebble (Debian package `pebble`, installed by
//! scripts/pebble.sh when missing): first issuance, reuse of the cached certificate after an
//! actor restart (same serial, no order), renewal before expiry (new serial), and a failed
//! HTTP-01 challenge that shows up as `last_error` and is retried until it succeeds.
//!
//! Pebble issues 30-second certificates here, so the `renew_before` rule (12 s) renews within
//! the test; pebble-challtestsrv answers 127.0.0.1 for every name, and the challenge responder
//! below answers from [`AcmeChallenges`], as the proxy's plain-HTTP listener does.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vhost_actors::cert::{
    AcmeChallenges, AcmeIssuer, AcmeSettings, CertActor, CertArgs, CertCache, CertInfo, CertMsg,
    CertSource, CertStatus, CertStore,
};
use vhost_actors::ractor::{call_t, Actor, ActorRef};

mod support;

use support::pebble::*;

const VALIDITY_SECS: u64 = 30;
const RENEW_BEFORE: Duration = Duration::from_secs(12);

// === HTTP-01 responder ===

/// Answers `/.well-known/acme-challenge/<token>` from `challenges`, as the proxy's plain-HTTP
/// listener does; for hosts in `sabotaged` it answers a wrong key authorization.
#[derive(Clone, Default)]
struct Responder {
    challenges: AcmeChallenges,
    sabotaged: Arc<Mutex<HashSet<String>>>,
}

impl Responder {
    async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let host = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("host").then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                let host = host.split(':').next().unwrap_or("").to_owned();
                let answer = if this.sabotaged.lock().unwrap().contains(&host) {
                    Some("not-the-key-authorization".to_owned())
                } else {
                    this.challenges.respond(&path)
                };
                let response = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned()
                    }
                };
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    }
}

// === helpers ===

fn settings(pebble: &Pebble, cache_dir: &Path) -> AcmeSettings {
    let mut s = AcmeSettings::new("ops@pingora-vhost.test", &pebble.directory_url, cache_dir);
    s.ca_root_pem = Some(pebble.ca_pem.clone().into_bytes());
    s.renew_before = RENEW_BEFORE;
    s.retry_base = Duration::from_millis(500);
    s.order_timeout = Duration::from_secs(20);
    s
}

async fn spawn_cert_actor(
    domain: &str,
    issuer: &Arc<AcmeIssuer>,
    store: &CertStore,
) -> (ActorRef<CertMsg>, tokio::task::JoinHandle<()>) {
    let (actor, handle) = Actor::spawn(
        None,
        CertActor,
        CertArgs {
            domain: domain.to_owned(),
            issuer: Arc::clone(issuer),
            store: store.clone(),
        },
    )
    .await
    .expect("spawn cert actor");
    (actor, handle)
}

async fn wait_for(
    store: &CertStore,
    domain: &str,
    within: Duration,
    what: &str,
    pebble: &Pebble,
    ok: impl Fn(&CertInfo) -> bool,
) -> CertInfo {
    let deadline = Instant::now() + within;
    loop {
        if let Some(info) = store.info(domain).filter(|i| ok(i)) {
            return info;
        }
        if Instant::now() > deadline {
            panic!(
                "{domain}: {what} not reached within {within:?}; now {:?}\n--- pebble logs ---\n{}",
                store.info(domain),
                pebble.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn must_run() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("PEBBLE_REQUIRED").is_some()
}

// === the test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_against_pebble() {
    let Some((pebble_bin, challtestsrv_bin)) = pebble_binaries() else {
        assert!(
            !must_run(),
            "pebble is required here but cannot be installed"
        );
        eprintln!("SKIPPED acme_against_pebble: pebble could not be installed (scripts/pebble.sh)");
        return;
    };
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    let mut pebble = start_pebble(&pebble_bin, &challtestsrv_bin, http_port, VALIDITY_SECS);
    let responder = Responder::default();
    tokio::spawn(responder.clone().serve(listener));
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&pebble, &cache.path().join("certs"));

    // A failing domain runs alongside: its challenge gets a wrong answer until we fix it.
    let failing = {
        let settings = settings.clone();
        let responder = responder.clone();
        let log_dir = pebble.dir.path().to_path_buf();
        tokio::spawn(async move { failed_challenge_is_retried(settings, responder, log_dir).await })
    };

    // --- first issuance ---
    let domain = "first.pingora-vhost.test";
    let issuer = AcmeIssuer::new(settings.clone(), responder.challenges.clone()).unwrap();
    let store = CertStore::new();
    let t0 = Instant::now();
    let (actor, handle) = spawn_cert_actor(domain, &issuer, &store).await;
    let first = wait_for(
        &store,
        domain,
        Duration::from_secs(30),
        "a certificate",
        &pebble,
        |i| i.status == CertStatus::Valid,
    )
    .await;
    let first_took = t0.elapsed();
    eprintln!(
        "first certificate for {domain} after {first_took:?} (pebble up after {:?})",
        t0 - started
    );
    assert_eq!(first.source, CertSource::Acme);
    assert_eq!(first.last_error, None);
    let now = vhost_now();
    let not_after = first.not_after.expect("not_after parsed");
    assert!(
        (now + 10..=now + VALIDITY_SECS as i64 + 5).contains(&not_after),
        "not_after {not_after} vs now {now}"
    );
    assert_eq!(issuer.counters().read(), (1, 0));
    assert!(store.resolve(domain).is_some());
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(json["source"], "acme");
    assert_eq!(json["status"], "valid");
    assert!(humantime::parse_rfc3339(json["not_after"].as_str().unwrap()).is_ok());
    let via_actor = call_t!(actor, CertMsg::Info, 2000).unwrap().unwrap();
    assert_eq!(via_actor, first);
    assert!(
        responder.challenges.is_empty(),
        "tokens withdrawn after the order"
    );

    let files = CertCache::new(&settings.cache_dir);
    let account_path = issuer.account_path();
    for p in [
        files.cert_path(domain),
        files.key_path(domain),
        account_path.clone(),
    ] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    let cached = files.load(domain).unwrap().unwrap();
    assert_eq!(Some(cached.serial()), first.serial.as_deref());
    assert!(cached.covers(domain));
    assert!(
        cached.chain_pem().matches("BEGIN CERTIFICATE").count() >= 2,
        "chain includes the intermediate"
    );
    let account_before = std::fs::read(&account_path).unwrap();

    // --- reuse after restart: a new actor, store and issuer load everything from the cache ---
    actor.stop(None);
    handle.await.unwrap();
    let issuer = AcmeIssuer::new(settings.clone(), responder.challenges.clone()).unwrap();
    let store = CertStore::new();
    let (actor, handle) = spawn_cert_actor(domain, &issuer, &store).await;
    let reused = store.info(domain).expect("installed before spawn returns");
    assert_eq!(reused.serial, first.serial);
    assert_eq!(reused.status, CertStatus::Valid);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        issuer.counters().read(),
        (0, 0),
        "no order for a cached certificate"
    );
    assert_eq!(store.info(domain).unwrap().serial, first.serial);
    assert_eq!(
        std::fs::read(&account_path).unwrap(),
        account_before,
        "account reused"
    );

    // --- renewal: 12 s before expiry of a 30 s certificate ---
    let renewed = wait_for(
        &store,
        domain,
        Duration::from_secs(VALIDITY_SECS),
        "a renewed certificate",
        &pebble,
        |i| i.status == CertStatus::Valid && i.serial != first.serial,
    )
    .await;
    let renewed_after =
        Duration::from_secs((vhost_now() - (not_after - VALIDITY_SECS as i64)) as u64);
    eprintln!("renewed {domain} about {renewed_after:?} after the first issuance");
    assert!(renewed.not_after.unwrap() > not_after);
    assert_eq!(issuer.counters().read(), (1, 0));
    assert_eq!(
        files.load(domain).unwrap().unwrap().serial(),
        renewed.serial.as_deref().unwrap(),
        "the renewed certificate is cached"
    );
    actor.stop(None);
    handle.await.unwrap();

    failing.await.unwrap();

    // --- the directory forgot the account (Pebble keeps it in memory): the cached credentials
    // are dropped and a new account is created on the retry ---
    pebble.restart_server();
    let domain = "later.pingora-vhost.test";
    let issuer = AcmeIssuer::new(settings.clone(), responder.challenges.clone()).unwrap();
    let store = CertStore::new();
    let (actor, handle) = spawn_cert_actor(domain, &issuer, &store).await;
    wait_for(
        &store,
        domain,
        Duration::from_secs(30),
        "a certificate after the directory restart",
        &pebble,
        |i| i.status == CertStatus::Valid,
    )
    .await;
    let (successes, failures) = issuer.counters().read();
    assert_eq!(
        (successes, failures),
        (1, 1),
        "one order refused (unknown account), then one issued"
    );
    assert_ne!(
        std::fs::read(&account_path).unwrap(),
        account_before,
        "a new account was stored"
    );
    actor.stop(None);
    handle.await.unwrap();
    assert!(
        responder.challenges.is_empty(),
        "every token withdrawn after its order"
    );
    eprintln!("whole test took {:?}", started.elapsed());
}

/// A challenge answered wrongly fails the order with the directory's reason in `last_error`;
/// once the answer is right, a retry (backoff from 500 ms) obtains the certificate.
async fn failed_challenge_is_retried(
    settings: AcmeSettings,
    responder: Responder,
    log_dir: PathBuf,
) {
    let domain = "broken.pingora-vhost.test";
    responder
        .sabotaged
        .lock()
        .unwrap()
        .insert(domain.to_owned());
    let issuer = AcmeIssuer::new(settings, responder.challenges.clone()).unwrap();
    let store = CertStore::new();
    let (actor, handle) = spawn_cert_actor(domain, &issuer, &store).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        match store.info(domain) {
            Some(i) if i.status == CertStatus::Failed => break i,
            _ if Instant::now() > deadline => panic!(
                "{domain} never failed: {:?}\n{}",
                store.info(domain),
                logs_in(&log_dir)
            ),
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    };
    let error = failed.last_error.clone().expect("last_error set");
    eprintln!("failed order, last_error: {error}");
    assert!(error.contains(domain), "{error}");
    assert!(error.contains("urn:ietf:params:acme:error:"), "{error}");
    assert!(store.resolve(domain).is_none());
    let (_, failures) = issuer.counters().read();
    assert!(failures >= 1);

    responder.sabotaged.lock().unwrap().remove(domain);
    let deadline = Instant::now() + Duration::from_secs(30);
    let valid = loop {
        match store.info(domain) {
            Some(i) if i.status == CertStatus::Valid => break i,
            _ if Instant::now() > deadline => panic!(
                "{domain} never recovered: {:?}\n{}",
                store.info(domain),
                logs_in(&log_dir)
            ),
            _ => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    };
    assert_eq!(valid.last_error, None);
    let (successes, failures) = issuer.counters().read();
    assert_eq!(successes, 1);
    assert!(failures >= 1);
    eprintln!("{domain} obtained after {failures} failed order(s)");
    assert!(store.resolve(domain).is_some());
    actor.stop(None);
    handle.await.unwrap();
}

fn vhost_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
