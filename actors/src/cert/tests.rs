//! Unit tests of certificate material, the store, the cache and the renewal arithmetic.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn self_signed_parses_and_covers_its_domain() {
    let m = CertMaterial::self_signed("app.example.com").unwrap();
    assert_eq!(m.names(), ["app.example.com"]);
    assert!(m.covers("app.example.com"));
    assert!(m.covers("APP.example.com."));
    assert!(!m.covers("other.example.com"));
    let now = unix_now();
    assert!(m.not_before() < now && m.not_after() > now + 300 * 86_400);
    assert!(!m.serial().is_empty());
}

#[test]
fn wildcard_covers_one_label() {
    let m = CertMaterial::self_signed("*.example.com").unwrap();
    assert!(m.covers("x.example.com"));
    assert!(!m.covers("example.com"));
    assert!(!m.covers("a.b.example.com"));
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let a = CertMaterial::self_signed("a.example.com").unwrap();
    let b = CertMaterial::self_signed("b.example.com").unwrap();
    let err = CertMaterial::from_pem(a.chain_pem(), b.key_pem(), "test pair").unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn unreadable_and_empty_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = CertMaterial::from_files(&missing, &missing).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot read certificate"),
        "{err}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = CertMaterial::from_files(&empty, &empty).unwrap_err();
    assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
    let m = CertMaterial::self_signed("a.example.com").unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, m.chain_pem()).unwrap();
    let err = CertMaterial::from_files(&cert, &empty).unwrap_err();
    assert!(matches!(err, CertError::NoKey { .. }), "{err}");
}

#[test]
fn store_resolves_exact_then_wildcard() {
    let store = CertStore::new();
    let exact = CertMaterial::self_signed("a.example.com").unwrap();
    let wild = CertMaterial::self_signed("*.example.com").unwrap();
    store.install("a.example.com", &exact, CertSource::Manual);
    store.install("*.example.com", &wild, CertSource::SelfSigned);
    let got = store.resolve("a.example.com").unwrap();
    assert!(Arc::ptr_eq(&got, exact.certified_key()));
    let got = store.resolve("B.Example.com.").unwrap();
    assert!(Arc::ptr_eq(&got, wild.certified_key()));
    assert!(store.resolve("example.com").is_none());
    assert!(store.resolve("x.y.example.com").is_none());
    assert!(store.remove("*.example.com"));
    assert!(store.resolve("b.example.com").is_none());
}

#[test]
fn status_keeps_the_served_certificate_and_serializes_as_the_api_says() {
    let store = CertStore::new();
    store.set_status(
        "new.example.com",
        CertSource::Acme,
        CertStatus::Pending,
        None,
    );
    assert!(store.resolve("new.example.com").is_none());
    let json = serde_json::to_value(store.info("new.example.com").unwrap()).unwrap();
    assert_eq!(json["not_after"], serde_json::Value::Null);
    assert_eq!(json["status"], "pending");
    assert_eq!(json["source"], "acme");

    let m = CertMaterial::self_signed("new.example.com").unwrap();
    store.install("new.example.com", &m, CertSource::Acme);
    store.set_status(
        "new.example.com",
        CertSource::Acme,
        CertStatus::Failed,
        Some("boom".into()),
    );
    assert!(store.resolve("new.example.com").is_some());
    let info = store.info("new.example.com").unwrap();
    assert_eq!(info.not_after, Some(m.not_after()));
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["last_error"], "boom");
    let rfc3339 = json["not_after"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(rfc3339).unwrap();
    assert_eq!(
        parsed.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64,
        m.not_after()
    );
    let json = serde_json::to_value(CertSource::SelfSigned).unwrap();
    assert_eq!(json, "self-signed");
}

#[test]
fn cache_round_trip_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CertCache::new(dir.path().join("certs"));
    assert!(cache.load("a.example.com").unwrap().is_none());
    let m = CertMaterial::self_signed("a.example.com").unwrap();
    cache.save("a.example.com", &m).unwrap();
    let back = cache.load("a.example.com").unwrap().unwrap();
    assert_eq!(back.serial(), m.serial());
    for p in [
        cache.cert_path("a.example.com"),
        cache.key_path("a.example.com"),
    ] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // A key written without its certificate (a crash between the two writes) is refused.
    let other = CertMaterial::self_signed("a.example.com").unwrap();
    write_private_file(&cache.key_path("a.example.com"), other.key_pem().as_bytes()).unwrap();
    assert!(matches!(
        cache.load("a.example.com"),
        Err(CertError::KeyMismatch { .. })
    ));
}

#[test]
fn renewal_time_and_backoff() {
    let mut s = AcmeSettings::new("", "https://acme.invalid/dir", "/tmp/unused");
    let m = CertMaterial::self_signed("a.example.com").unwrap();
    let not_after = UNIX_EPOCH + Duration::from_secs(m.not_after() as u64);
    s.renew_before = Duration::from_secs(30 * 86_400);
    assert_eq!(s.renew_at(&m), not_after - Duration::from_secs(30 * 86_400));
    // Longer than the lifetime: capped at half of it.
    s.renew_before = Duration::from_secs(1000 * 86_400);
    let lifetime = (m.not_after() - m.not_before()) as u64;
    assert_eq!(
        s.renew_at(&m),
        not_after - Duration::from_secs(lifetime / 2)
    );

    s.retry_base = Duration::from_secs(5);
    s.retry_max = Duration::from_secs(3600);
    let delays: Vec<u64> = (1..=12).map(|n| s.retry_delay(n).as_secs()).collect();
    assert_eq!(
        delays,
        [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    );
    assert_eq!(s.retry_delay(u32::MAX).as_secs(), 3600);
}

#[test]
fn challenges_answer_only_published_tokens() {
    let c = AcmeChallenges::new();
    c.publish("tok-1", "tok-1.thumb");
    assert_eq!(
        c.respond("/.well-known/acme-challenge/tok-1").as_deref(),
        Some("tok-1.thumb")
    );
    assert_eq!(c.respond("/.well-known/acme-challenge/other"), None);
    assert_eq!(c.respond("/.well-known/acme-challenge/"), None);
    assert_eq!(c.respond("/tok-1"), None);
    assert!(AcmeChallenges::is_challenge_path(
        "/.well-known/acme-challenge/x"
    ));
    {
        let mut guard = challenges::PublishedTokens::new(&c, None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(guard.publish("tok-2".into(), "v".into()))
            .unwrap();
        assert_eq!(c.len(), 2);
    }
    assert_eq!(c.len(), 1);
    c.withdraw("tok-1");
    assert!(c.is_empty());
}

#[test]
fn crypto_provider_install_is_idempotent() {
    install_crypto_provider();
    install_crypto_provider();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}

#[test]
fn a_bad_ca_root_is_refused_at_start() {
    let mut s = AcmeSettings::new("", "https://127.0.0.1:1/dir", "/tmp/unused");
    s.ca_root_pem = Some(b"not a certificate".to_vec());
    let err = AcmeIssuer::new(s, AcmeChallenges::new()).unwrap_err();
    assert!(err.to_string().contains("ca_root"), "{err}");
}

#[tokio::test]
async fn an_unreachable_directory_is_a_counted_failure() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1; the default client (platform roots) is used.
    let s = AcmeSettings::new("ops@example.org", "https://127.0.0.1:1/dir", dir.path());
    let issuer = AcmeIssuer::new(s, AcmeChallenges::new()).unwrap();
    let err = issuer.issue("a.example.com", None).await.unwrap_err();
    assert!(matches!(err, AcmeError::Account(_)), "{err}");
    assert_eq!(issuer.counters().read(), (0, 1));
    assert!(!issuer.account_path().exists());
}

#[tokio::test]
async fn a_wildcard_acme_domain_fails_clearly_without_ordering() {
    let dir = tempfile::tempdir().unwrap();
    let s = AcmeSettings::new("", "https://127.0.0.1:1/dir", dir.path());
    let issuer = AcmeIssuer::new(s, AcmeChallenges::new()).unwrap();
    let store = CertStore::new();
    let args = CertArgs {
        domain: "*.example.com".into(),
        issuer: Arc::clone(&issuer),
        store: store.clone(),
    };
    let (actor, handle) = ractor::Actor::spawn(None, CertActor, args).await.unwrap();
    let info = ractor::call_t!(actor, CertMsg::Info, 1000)
        .unwrap()
        .unwrap();
    assert_eq!(info.status, CertStatus::Failed);
    assert!(info.last_error.unwrap().contains("DNS-01"));
    assert_eq!(issuer.counters().read(), (0, 0));
    actor.stop(None);
    handle.await.unwrap();
}
