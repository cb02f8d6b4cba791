//! Tests of the health word: thresholds, passive ejection, and transitions that race.

use super::*;
use std::sync::atomic::AtomicBool;

const T: Thresholds = Thresholds {
    unhealthy: 3,
    healthy: 2,
};

#[test]
fn thresholds_drive_the_status() {
    let h = BackendHealth::default();
    assert_eq!(h.record_probe(true, T, 1), None);
    assert_eq!(
        h.record_probe(true, T, 2),
        Some((HealthStatus::Unknown, HealthStatus::Healthy))
    );
    assert_eq!(h.record_probe(false, T, 3), None);
    assert_eq!(h.record_probe(false, T, 4), None);
    assert_eq!(
        h.record_probe(false, T, 5),
        Some((HealthStatus::Healthy, HealthStatus::Unhealthy))
    );
    assert!(!h.is_routable());
    assert_eq!(h.read().consecutive_failures, 3);
    assert_eq!(h.record_probe(true, T, 6), None);
    assert_eq!(
        h.record_probe(true, T, 7),
        Some((HealthStatus::Unhealthy, HealthStatus::Healthy))
    );
    assert_eq!(h.read().last_check_ms, Some(7));
}

#[test]
fn passive_failures_eject_at_the_threshold() {
    let h = BackendHealth::default();
    assert!(!h.record_passive_failure(3));
    h.record_passive_success();
    assert!(!h.record_passive_failure(3));
    assert!(!h.record_passive_failure(3));
    assert!(h.record_passive_failure(3));
    assert_eq!(h.status(), HealthStatus::Unhealthy);
    assert!(!h.record_passive_failure(3), "ejected once");
}

#[test]
fn a_healthy_probe_verdict_forgives_passive_failures() {
    let h = BackendHealth::default();
    assert!(h.record_passive_failure(1));
    h.record_probe(true, T, 1);
    h.record_probe(true, T, 2);
    assert_eq!(h.status(), HealthStatus::Healthy);
    assert!(!h.record_passive_failure(2), "the count started again");
}

#[test]
fn counters_saturate_instead_of_wrapping() {
    let h = BackendHealth::default();
    let huge = Thresholds {
        unhealthy: u32::MAX,
        healthy: u32::MAX,
    };
    for i in 0..(COUNTER_MAX + 10) as i64 {
        h.record_probe(false, huge, i + 1);
    }
    let r = h.read();
    assert_eq!(u64::from(r.consecutive_failures), COUNTER_MAX);
    assert_eq!(
        r.status,
        HealthStatus::Unhealthy,
        "a saturated count meets any threshold"
    );
}

/// A probe that reads the word, decides, then stores its verdict would overwrite an ejection
/// the request path made in between; one compare-and-swap per transition cannot.
#[test]
fn a_probe_never_undoes_an_ejection_made_while_it_ran() {
    let lenient = Thresholds {
        unhealthy: 1_000_000,
        healthy: 1_000_000,
    };
    for round in 0..200 {
        let h = Arc::new(BackendHealth::default());
        h.record_probe(
            true,
            Thresholds {
                unhealthy: 1,
                healthy: 1,
            },
            1,
        );
        assert_eq!(h.status(), HealthStatus::Healthy);
        let stop = Arc::new(AtomicBool::new(false));
        let probe = {
            let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
            std::thread::spawn(move || {
                // Failures below the threshold: each leaves the status as it found it.
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) || n < 1_000 {
                    h.record_probe(false, lenient, 2);
                    n += 1;
                }
            })
        };
        std::thread::yield_now();
        assert!(h.record_passive_failure(1), "round {round}: ejected");
        stop.store(true, Ordering::Relaxed);
        probe.join().unwrap();
        assert_eq!(
            h.status(),
            HealthStatus::Unhealthy,
            "round {round}: a probe overwrote the ejection"
        );
    }
}

#[test]
fn a_capped_backend_never_hands_out_more_slots_than_its_cap() {
    let b = Arc::new(UpstreamBackend::new("b", "127.0.0.1:1".parse().unwrap()));
    assert!(b.try_acquire(0) && b.try_acquire(0), "no cap");
    b.release();
    b.release();
    let holders = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let most = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (b, holders, most) = (Arc::clone(&b), Arc::clone(&holders), Arc::clone(&most));
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    if b.try_acquire(3) {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        holders.fetch_sub(1, Ordering::SeqCst);
                        b.release();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 3);
    assert_eq!(b.in_flight(), 0);
    for _ in 0..3 {
        assert!(b.try_acquire(3));
    }
    assert!(!b.try_acquire(3), "at the cap");
    assert!(!b.has_room(3) && b.has_room(4) && b.has_room(0));
}
