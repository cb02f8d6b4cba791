//! Access control in the registry: what is validated, what a patch keeps and removes, what a
//! publish builds (and keeps of the previous rate limiter), and what a state load refuses.

use super::seeded;
use crate::command::{Command, DomainPatch};
use crate::registry::{Registry, RegistryError};
use crate::routing::{RouteTable, Verdict};
use crate::store::PersistedState;
use std::sync::Arc;

fn patch(r: &mut Registry, p: DomainPatch) -> Result<(), RegistryError> {
    r.apply(Command::UpdateDomain("app.example.com".into(), p))
        .map(|_| ())
}

fn publish(r: &mut Registry, table: &RouteTable) {
    let mut m = crate::metrics::RouteHandles::new(crate::metrics::Metrics::new());
    r.publish_all(table, &mut m);
}

#[test]
fn invalid_settings_change_nothing() {
    let mut r = seeded();
    let before = r.domain("app.example.com").unwrap().clone();
    let e = patch(
        &mut r,
        DomainPatch {
            allow: Some(Some(vec!["10.0.0.0/8".into(), "bad".into()])),
            rate_limit_burst: Some(Some(3)),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, RegistryError::Invalid(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("allow[1]") && msg.contains("needs rate_limit_rps"),
        "{msg}"
    );
    assert_eq!(r.domain("app.example.com").unwrap(), &before);
}

#[test]
fn a_publish_applies_the_lists_and_keeps_the_allowances() {
    let mut r = seeded();
    patch(
        &mut r,
        DomainPatch {
            deny: Some(Some(vec!["192.0.2.0/24".into()])),
            rate_limit_rps: Some(Some(1)),
            ..Default::default()
        },
    )
    .unwrap();
    let table = RouteTable::new();
    publish(&mut r, &table);
    let route = table.lookup("app.example.com").unwrap();
    let access = route.access.as_ref().expect("access published");
    let ip = |s: &str| Some(s.parse().unwrap());
    assert_eq!(access.admit(ip("192.0.2.9")), Verdict::Forbidden);
    assert_eq!(access.admit(ip("198.51.100.1")), Verdict::Pass);
    // A switch republishes the route: the client's used allowance is still used.
    r.apply(Command::SwitchTag(
        "app.example.com".into(),
        Default::default(),
    ))
    .unwrap();
    publish(&mut r, &table);
    let again = table.lookup("app.example.com").unwrap();
    assert!(!Arc::ptr_eq(&route, &again));
    assert!(matches!(
        again.access.as_ref().unwrap().admit(ip("198.51.100.1")),
        Verdict::Limited { .. }
    ));
    assert_eq!(table.limiters().len(), 1);
    // Removing everything removes the check from the request path.
    patch(
        &mut r,
        DomainPatch {
            deny: Some(None),
            rate_limit_rps: Some(None),
            ..Default::default()
        },
    )
    .unwrap();
    publish(&mut r, &table);
    assert!(table.lookup("app.example.com").unwrap().access.is_none());
    assert!(table.limiters().is_empty());
}

#[test]
fn a_state_with_invalid_settings_is_refused_with_the_reason() {
    let mut r = seeded();
    let mut state: PersistedState = r.state();
    state.domains[0].access.rate_limit_rps = Some(0);
    let errors = Registry::from_state(state).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("rate_limit_rps 0 is out of range")),
        "{errors:?}"
    );
    patch(
        &mut r,
        DomainPatch {
            allow: Some(Some(vec!["10.0.0.0/8".into()])),
            ..Default::default()
        },
    )
    .unwrap();
    let loaded = Registry::from_state(r.state()).unwrap();
    assert_eq!(
        loaded.domain("app.example.com").unwrap().access,
        r.domain("app.example.com").unwrap().access
    );
}
