//! Tests of the registry's transitions, publishing and reverts.

mod access;
mod lb;

use super::*;
use crate::command::*;
use crate::routing::RouteTable;
use crate::store::StateChange;
use crate::upstream::Thresholds;

fn backend(id: &str, port: u16, tags: &[&str]) -> Command {
    Command::AddBackend(NewBackend {
        id: id.into(),
        address: format!("127.0.0.1:{port}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..NewBackend::default()
    })
}

fn domain(name: &str, tag: &str) -> Command {
    Command::AddDomain(NewDomain {
        domain: name.into(),
        enabled_backends_tag: tag.into(),
        http_to_https: false,
        ..NewDomain::default()
    })
}

fn switch(name: &str, tag: Option<&str>, force: bool) -> Command {
    Command::SwitchTag(
        name.into(),
        SwitchRequest {
            new_tag: tag.map(Into::into),
            force,
        },
    )
}

fn seeded() -> Registry {
    let mut r = Registry::default();
    for c in [
        backend("a1", 3001, &["a"]),
        backend("a2", 3002, &["a"]),
        backend("b1", 3003, &["b"]),
        domain("App.Example.com.", "a"),
    ] {
        r.apply(c).unwrap();
    }
    r
}

fn tag_of(r: &Registry, d: &str) -> String {
    r.domain(d).unwrap().enabled_backends_tag.to_string()
}

#[test]
fn add_domain_normalises_and_rejects_duplicates_and_unknown_tags() {
    let mut r = seeded();
    assert_eq!(
        r.domain("app.example.com").unwrap().domain.as_str(),
        "app.example.com"
    );
    assert!(matches!(
        r.apply(domain("APP.example.com", "a")),
        Err(RegistryError::Conflict(_))
    ));
    assert!(matches!(
        r.apply(domain("new.example.com", "zzz")),
        Err(RegistryError::Invalid(_))
    ));
    assert!(matches!(
        r.apply(domain("bad domain", "a")),
        Err(RegistryError::Invalid(_))
    ));
}

#[test]
fn switch_toggles_and_remembers_previous() {
    let mut r = seeded();
    let (_, fx) = r.apply(switch("app.example.com", None, false)).unwrap();
    assert_eq!(
        fx.switched.as_ref().map(|d| d.as_str()),
        Some("app.example.com")
    );
    assert_eq!(tag_of(&r, "app.example.com"), "b");
    assert_eq!(
        r.domain("app.example.com")
            .unwrap()
            .previous_tag
            .as_ref()
            .unwrap()
            .as_str(),
        "a"
    );
    r.apply(switch("app.example.com", None, false)).unwrap();
    assert_eq!(tag_of(&r, "app.example.com"), "a");
    let (_, fx) = r
        .apply(switch("app.example.com", Some("a"), false))
        .unwrap();
    assert_eq!(fx.switched, None, "same tag is not a switch");
    assert!(matches!(
        r.apply(switch("nope.com", None, false)),
        Err(RegistryError::NotFound(_))
    ));
    assert!(matches!(
        r.apply(switch("app.example.com", Some("c"), false)),
        Err(RegistryError::Invalid(_))
    ));
}

#[test]
fn switch_to_unhealthy_tag_needs_force() {
    let mut r = seeded();
    let b1 = r
        .upstream(&BackendId::parse("b1").unwrap())
        .unwrap()
        .clone();
    b1.health.record_probe(
        false,
        Thresholds {
            unhealthy: 1,
            healthy: 1,
        },
        1,
    );
    assert!(matches!(
        r.apply(switch("app.example.com", Some("b"), false)),
        Err(RegistryError::Conflict(_))
    ));
    assert_eq!(tag_of(&r, "app.example.com"), "a");
    r.apply(switch("app.example.com", Some("b"), true)).unwrap();
    assert_eq!(tag_of(&r, "app.example.com"), "b");
}

#[test]
fn last_backend_of_a_used_tag_needs_force() {
    let mut r = seeded();
    r.apply(Command::DeleteBackend {
        id: "a1".into(),
        force: false,
    })
    .unwrap();
    let err = r
        .apply(Command::DeleteBackend {
            id: "a2".into(),
            force: false,
        })
        .unwrap_err();
    assert!(matches!(err, RegistryError::Conflict(_)), "{err:?}");
    // b1 is the last of tag b, but no domain uses b.
    r.apply(Command::DeleteBackend {
        id: "b1".into(),
        force: false,
    })
    .unwrap();
    r.apply(Command::DeleteBackend {
        id: "a2".into(),
        force: true,
    })
    .unwrap();
    assert_eq!(r.backends().count(), 0);
}

#[test]
fn retagging_the_last_backend_is_refused() {
    let mut r = seeded();
    r.apply(Command::DeleteBackend {
        id: "a1".into(),
        force: false,
    })
    .unwrap();
    let patch = BackendPatch {
        tags: Some(vec!["b".into()]),
        ..Default::default()
    };
    assert!(matches!(
        r.apply(Command::UpdateBackend("a2".into(), patch)),
        Err(RegistryError::Conflict(_))
    ));
    let patch = BackendPatch {
        tags: Some(vec!["a".into(), "c".into()]),
        weight: Some(3),
        ..Default::default()
    };
    let (reply, fx) = r.apply(Command::UpdateBackend("a2".into(), patch)).unwrap();
    assert!(fx.republish.iter().any(|d| d.as_str() == "app.example.com"));
    let Reply::Backend(v) = reply else { panic!() };
    assert_eq!(v.backend.weight, 3);
    assert_eq!(v.health.status, "unknown");
}

#[test]
fn invalid_backends_are_rejected() {
    let mut r = seeded();
    for bad in [
        backend("x", 0, &["a"]),
        backend("x", 3000, &[]),
        backend("a1", 3000, &["a"]),
        backend("bad id", 3000, &["a"]),
    ] {
        assert!(r.apply(bad).is_err());
    }
    let mut nb = NewBackend {
        id: "w".into(),
        address: "127.0.0.1:1".into(),
        tags: vec!["a".into()],
        weight: Some(0),
        ..NewBackend::default()
    };
    assert!(r.apply(Command::AddBackend(nb.clone())).is_err());
    nb.address = "nohost".into();
    nb.weight = None;
    assert!(r.apply(Command::AddBackend(nb)).is_err());
}

#[test]
fn publish_makes_routes_visible_and_switch_swaps_pool() {
    let mut r = seeded();
    let table = RouteTable::new();
    let mut m = crate::metrics::RouteHandles::new(crate::metrics::Metrics::new());
    r.publish_all(&table, &mut m);
    let route = table.lookup("app.example.com").unwrap();
    assert_eq!(route.pool.members().len(), 2);
    let (_, fx) = r
        .apply(switch("app.example.com", Some("b"), false))
        .unwrap();
    r.publish(&fx, &table, &mut m);
    let after = table.lookup("app.example.com").unwrap();
    assert_eq!(after.tag.as_str(), "b");
    assert_eq!(&*after.pool.members()[0].id, "b1");
    assert_eq!(
        route.tag.as_str(),
        "a",
        "old Arc stays intact for in-flight requests"
    );
    let (_, fx) = r
        .apply(Command::DeleteDomain("app.example.com".into()))
        .unwrap();
    r.publish(&fx, &table, &mut m);
    assert!(table.lookup("app.example.com").is_none());
}

#[test]
fn from_state_lists_every_problem() {
    let mut state = seeded().state();
    state.backends[0].address = "nope".into();
    state.domains[0].enabled_backends_tag = Tag::parse("zz").unwrap();
    state.domains.push(state.domains[0].clone());
    let errs = Registry::from_state(state).unwrap_err();
    // The bad address and the duplicate domain; a tag without backends is a state the API can
    // leave (forced delete), so it loads.
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn whatever_the_api_accepts_loads_again() {
    let mut r = seeded();
    r.apply(Command::DeleteBackend {
        id: "a1".into(),
        force: true,
    })
    .unwrap();
    r.apply(Command::DeleteBackend {
        id: "a2".into(),
        force: true,
    })
    .unwrap();
    let state = r.state();
    let mut loaded = Registry::from_state(state.clone()).expect("a forced delete's state loads");
    assert_eq!(loaded.state(), state);
    let table = RouteTable::new();
    loaded.publish_all(
        &table,
        &mut crate::metrics::RouteHandles::new(crate::metrics::Metrics::new()),
    );
    let route = table.lookup("app.example.com").expect("published");
    assert!(route.pool.pick(|_| false).is_none(), "no backend: 503");
}

#[test]
fn a_host_name_that_does_not_resolve_starts_unhealthy_and_resolves_later() {
    // Names under `.invalid` never resolve (RFC 6761) unless the resolver answers every name.
    if resolve_address("no-such-host.invalid:8080").is_ok() {
        eprintln!("skipped: this machine resolves no-such-host.invalid");
        return;
    }
    let mut state = seeded().state();
    state.backends[0].address = "no-such-host.invalid:8080".into();
    let mut r = Registry::from_state(state).expect("starts anyway");
    let id = state_id(&r, 0);
    let up = r.upstream(&id).unwrap().clone();
    assert!(!up.is_resolved());
    assert!(!up.health.is_routable());
    let unresolved: Vec<_> = r
        .unresolved()
        .map(|(i, a)| (i.clone(), a.to_string()))
        .collect();
    assert_eq!(
        unresolved,
        vec![(id.clone(), "no-such-host.invalid:8080".to_string())]
    );
    let addr = "127.0.0.1:8080".parse().unwrap();
    assert!(
        r.resolve_later(&id, "other:1", addr).is_none(),
        "stale lookups are ignored"
    );
    let fx = r
        .resolve_later(&id, "no-such-host.invalid:8080", addr)
        .expect("resolved");
    assert_eq!(fx.probe, vec![id.clone()]);
    assert!(!fx.republish.is_empty());
    let up = r.upstream(&id).unwrap();
    assert!(up.is_resolved() && up.health.is_routable());
    assert_eq!(up.addr, addr);
    assert_eq!(r.unresolved().count(), 0);
}

fn state_id(r: &Registry, i: usize) -> BackendId {
    r.backend_ids().nth(i).unwrap().clone()
}

#[test]
fn backend_changes_start_and_stop_probes() {
    let mut r = seeded();
    let (_, fx) = r.apply(backend("n1", 3009, &["a"])).unwrap();
    assert_eq!(fx.probe, vec![BackendId::parse("n1").unwrap()]);
    let patch = BackendPatch {
        weight: Some(2),
        ..Default::default()
    };
    let (_, fx) = r.apply(Command::UpdateBackend("n1".into(), patch)).unwrap();
    assert!(fx.probe.is_empty(), "same address: the probe keeps running");
    let patch = BackendPatch {
        address: Some("127.0.0.1:3010".into()),
        ..Default::default()
    };
    let (_, fx) = r.apply(Command::UpdateBackend("n1".into(), patch)).unwrap();
    assert_eq!(fx.probe.len(), 1, "a new address gets a new probe");
    let (_, fx) = r
        .apply(Command::DeleteBackend {
            id: "n1".into(),
            force: false,
        })
        .unwrap();
    assert_eq!(fx.unprobe, vec![BackendId::parse("n1").unwrap()]);
}

#[test]
fn revert_puts_back_what_a_command_changed() {
    let mut r = seeded();
    let before = r.state();
    let a1 = r
        .upstream(&BackendId::parse("a1").unwrap())
        .unwrap()
        .clone();
    let cmds = vec![
        domain("new.example.com", "a"),
        switch("app.example.com", Some("b"), false),
        Command::DeleteDomain("app.example.com".into()),
        backend("n1", 3100, &["a"]),
        Command::UpdateBackend(
            "a1".into(),
            BackendPatch {
                address: Some("127.0.0.1:4000".into()),
                tags: Some(vec!["a".into(), "z".into()]),
                ..Default::default()
            },
        ),
        Command::DeleteBackend {
            id: "b1".into(),
            force: true,
        },
    ];
    for cmd in cmds {
        r.apply(cmd.clone()).unwrap();
        assert_ne!(r.state(), before, "{cmd:?} changed something");
        r.revert();
        assert_eq!(r.state(), before, "{cmd:?} was undone");
        assert!(Arc::ptr_eq(
            r.upstream(&BackendId::parse("a1").unwrap()).unwrap(),
            &a1
        ));
    }
}

#[test]
fn last_changes_name_every_touched_record() {
    let mut r = seeded();
    r.apply(Command::DeleteBackend {
        id: "b1".into(),
        force: false,
    })
    .unwrap();
    assert_eq!(
        r.last_changes(),
        vec![StateChange::DeleteBackend(BackendId::parse("b1").unwrap())]
    );
    r.apply(domain("new.example.com", "a")).unwrap();
    let changes = r.last_changes();
    assert!(
        matches!(&changes[..], [StateChange::PutDomain(d)] if d.domain.as_str() == "new.example.com")
    );
    let mut replayed = seeded().state();
    replayed.apply([StateChange::DeleteBackend(BackendId::parse("b1").unwrap())]);
    replayed.apply(changes);
    assert_eq!(replayed, r.state());
}

mod transport;
