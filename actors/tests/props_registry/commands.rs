//! Random API commands, valid and invalid, over small pools of names so that they keep meeting
//! the same domains, backends and tags; and restarts between them.

use crate::props_gen::{address_text, bad_address, bad_backend_id, bad_domain, bad_tag};
use crate::props_gen::{pool_tag, random_case};
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;
use vhost_actors::command::*;
use vhost_actors::model::{BackendProtocol, HealthCheck, LbPolicy};
use vhost_actors::rollout::RollbackPolicy;

/// Stands for the CA file written into each case's directory (see [`Op::with_ca`]).
pub const CA_FILE: &str = "<ca file>";

/// One step of a sequence.
#[derive(Clone, Debug)]
pub enum Op {
    /// An API command (refused or not).
    Apply(Command),
    /// Stop the actors and start them again from the state file.
    Restart,
}

impl Op {
    /// The op with [`CA_FILE`] replaced by `path`.
    pub fn with_ca(self, path: &str) -> Op {
        let fix = |f: &mut Option<String>| {
            if f.as_deref() == Some(CA_FILE) {
                *f = Some(path.to_string());
            }
        };
        match self {
            Op::Apply(Command::AddBackend(mut new)) => {
                fix(&mut new.tls_ca_file);
                Op::Apply(Command::AddBackend(new))
            }
            Op::Apply(Command::UpdateBackend(id, mut patch)) => {
                if let Some(f) = patch.tls_ca_file.as_mut() {
                    fix(f);
                }
                Op::Apply(Command::UpdateBackend(id, patch))
            }
            op => op,
        }
    }
}

/// Mostly one of `valid`, sometimes one of `invalid`.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    valid: impl Strategy<Value = T> + 'static,
    invalid: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![9 => valid, 1 => invalid].boxed()
}

/// A domain of the pool, written in any case, maybe with a trailing dot; sometimes invalid.
fn domain() -> BoxedStrategy<String> {
    let pool = select(vec!["app.test", "*.wild.test", "shop.example"]);
    let written = (
        pool.prop_flat_map(|d| random_case(d.to_string())),
        any::<bool>(),
    )
        .prop_map(|(d, dot)| if dot { format!("{d}.") } else { d });
    mostly(written, bad_domain())
}

/// A tag of the pool, mostly `a` or `b` (those the setup gives backends); sometimes invalid.
fn tag() -> BoxedStrategy<String> {
    let ab = select(vec!["a", "b"]).prop_map(str::to_string);
    mostly(prop_oneof![2 => ab, 1 => pool_tag()], bad_tag())
}

fn backend_id() -> BoxedStrategy<String> {
    let pool = select(vec!["b0", "b1", "b2", "b3", "B0"]).prop_map(str::to_string);
    mostly(pool, bad_backend_id())
}

fn tags() -> BoxedStrategy<Vec<String>> {
    let ab = select(vec!["a", "b"]).prop_map(str::to_string);
    let valid = prop::collection::btree_set(prop_oneof![ab, pool_tag()], 1..=3)
        .prop_map(|s| s.into_iter().collect());
    mostly(valid, prop::collection::vec(tag(), 0..3))
}

fn weight() -> BoxedStrategy<Option<u32>> {
    mostly(prop::option::of(1u32..=1000), Just(Some(0)))
}

fn policy() -> BoxedStrategy<(Option<LbPolicy>, Option<String>)> {
    let policy = select(vec![
        LbPolicy::RoundRobin,
        LbPolicy::LeastConn,
        LbPolicy::IpHash,
        LbPolicy::HeaderHash,
    ]);
    let header = select(vec!["x-user", "X-Tenant", "bad header"]).prop_map(str::to_string);
    (
        prop::option::weighted(0.3, policy),
        prop::option::weighted(0.3, header),
    )
        .boxed()
}

/// Protocol, TLS settings and probe kind: plain most of the time, https with the case's CA file
/// or without one, and some combinations the registry refuses.
#[derive(Clone, Debug)]
struct Transport {
    protocol: Option<BackendProtocol>,
    tls_server_name: Option<String>,
    tls_verify: Option<bool>,
    tls_ca_file: Option<String>,
    health_check: Option<HealthCheck>,
}

fn transport() -> BoxedStrategy<Transport> {
    let plain = Just(Transport {
        protocol: None,
        tls_server_name: None,
        tls_verify: None,
        tls_ca_file: None,
        health_check: None,
    });
    let protocol = select(vec![
        BackendProtocol::Http1,
        BackendProtocol::H2c,
        BackendProtocol::Https,
    ]);
    let check = select(vec![HealthCheck::Http, HealthCheck::Grpc, HealthCheck::Tcp]);
    let name = select(vec!["backend.test", "127.0.0.1", "Bad Name"]).prop_map(str::to_string);
    let ca = select(vec![CA_FILE, "/nonexistent/ca.pem"]).prop_map(str::to_string);
    let other = (
        prop::option::of(protocol),
        prop::option::weighted(0.3, name),
        prop::option::weighted(0.3, any::<bool>()),
        prop::option::weighted(0.4, ca),
        prop::option::weighted(0.5, check),
    )
        .prop_map(
            |(protocol, tls_server_name, tls_verify, tls_ca_file, health_check)| Transport {
                protocol,
                tls_server_name,
                tls_verify,
                tls_ca_file,
                health_check,
            },
        );
    prop_oneof![3 => plain, 1 => other].boxed()
}

fn add_backend() -> impl Strategy<Value = Command> {
    let address = mostly(address_text(), bad_address());
    let cap = prop::option::weighted(0.3, any::<u32>());
    (backend_id(), address, tags(), weight(), cap, transport()).prop_map(
        |(id, address, tags, weight, max_connections, t)| {
            Command::AddBackend(NewBackend {
                id,
                address,
                tags,
                weight,
                max_connections,
                protocol: t.protocol,
                tls_server_name: t.tls_server_name,
                tls_verify: t.tls_verify,
                tls_ca_file: t.tls_ca_file,
                health_check: t.health_check,
            })
        },
    )
}

fn update_backend() -> impl Strategy<Value = Command> {
    let address = prop::option::weighted(0.3, mostly(address_text(), bad_address()));
    let tags = prop::option::weighted(0.4, tags());
    let weight = prop::option::weighted(0.3, weight()).prop_map(Option::flatten);
    let cap = prop::option::weighted(0.2, any::<u32>());
    let nullable = |t: Option<String>, clear: bool| match (t, clear) {
        (Some(v), _) => Some(Some(v)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let clears = (any::<bool>(), any::<bool>());
    (
        backend_id(),
        address,
        tags,
        weight,
        cap,
        transport(),
        clears,
    )
        .prop_map(
            move |(id, address, tags, weight, max_connections, t, (clear_name, clear_ca))| {
                let patch = BackendPatch {
                    address,
                    tags,
                    weight,
                    max_connections,
                    protocol: t.protocol,
                    tls_server_name: nullable(t.tls_server_name, clear_name),
                    tls_verify: t.tls_verify,
                    tls_ca_file: nullable(t.tls_ca_file, clear_ca),
                    health_check: t.health_check,
                };
                Command::UpdateBackend(id, patch)
            },
        )
}

/// Access lists as a request writes them: CIDRs, bare addresses, and now and then garbage.
fn cidrs() -> impl Strategy<Value = Vec<String>> {
    let entry = prop_oneof![
        4 => (any::<[u8; 4]>(), 0u8..=32).prop_map(|(o, len)| format!("{}.{}.{}.{}/{len}", o[0], o[1], o[2], o[3])),
        2 => any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        1 => (any::<u16>(), 0u8..=128).prop_map(|(h, len)| format!("2001:db8:{h:x}::/{len}")),
        1 => Just("not-a-cidr".to_string()),
        1 => Just("10.0.0.0/33".to_string()),
    ];
    prop::collection::vec(entry, 0..4)
}

/// A rate (or burst) as a request writes it, out of range now and then.
fn rate() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..=1000, 1 => Just(0u32), 1 => Just(2_000_000u32)]
}

/// A nullable field of a patch: left out, `null`, or a value.
fn patch_of<T: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Option<T>>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(None)),
        2 => value.prop_map(|v| Some(Some(v))),
    ]
}

fn add_domain() -> impl Strategy<Value = Command> {
    let access = (
        prop::option::weighted(0.2, cidrs()),
        prop::option::weighted(0.2, cidrs()),
        prop::option::weighted(0.2, rate()),
        prop::option::weighted(0.1, rate()),
    );
    (domain(), tag(), any::<bool>(), policy(), access).prop_map(
        |(domain, tag, https, (policy, header), (allow, deny, rps, burst))| {
            Command::AddDomain(NewDomain {
                domain,
                enabled_backends_tag: tag,
                http_to_https: https,
                lb_policy: policy,
                lb_hash_header: header,
                allow,
                deny,
                rate_limit_rps: rps,
                rate_limit_burst: burst,
            })
        },
    )
}

fn update_domain() -> impl Strategy<Value = Command> {
    let tag = prop::option::weighted(0.5, tag());
    let https = prop::option::weighted(0.3, any::<bool>());
    let clear_header = any::<bool>();
    let access = (
        patch_of(cidrs()),
        patch_of(cidrs()),
        patch_of(rate()),
        patch_of(rate()),
    );
    (
        domain(),
        tag,
        https,
        policy(),
        clear_header,
        any::<bool>(),
        access,
    )
        .prop_map(
            |(domain, tag, https, (policy, header), clear, force, (allow, deny, rps, burst))| {
                let lb_hash_header = match (header, clear) {
                    (Some(h), _) => Some(Some(h)),
                    (None, true) => Some(None),
                    (None, false) => None,
                };
                Command::UpdateDomain(
                    domain,
                    DomainPatch {
                        enabled_backends_tag: tag,
                        http_to_https: https,
                        lb_policy: policy,
                        lb_hash_header,
                        allow,
                        deny,
                        rate_limit_rps: rps,
                        rate_limit_burst: burst,
                        force,
                    },
                )
            },
        )
}

fn rollback() -> impl Strategy<Value = Option<RollbackPolicy>> {
    let rule = (
        0.0f64..=1.0,
        1u64..=500,
        prop_oneof![9 => 1u64..=300, 1 => Just(0u64)],
    )
        .prop_map(
            |(max_error_rate, min_requests, window_secs)| RollbackPolicy {
                max_error_rate,
                min_requests,
                window_secs,
            },
        );
    prop::option::weighted(0.3, rule)
}

fn split() -> impl Strategy<Value = Command> {
    let weight = prop_oneof![9 => 0u32..=100, 1 => Just(10_001u32)];
    let weights = prop_oneof![
        1 => Just(BTreeMap::new()),
        9 => prop::collection::btree_map(tag(), weight, 1..=3),
    ];
    let sticky = prop::option::of(any::<bool>());
    (domain(), weights, sticky, rollback(), any::<bool>()).prop_map(
        |(domain, weights, sticky, rollback, force): (_, BTreeMap<_, _>, _, _, _)| {
            let req = SplitRequest {
                weights,
                sticky,
                rollback,
                force,
            };
            Command::Split(domain, req)
        },
    )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => add_backend().boxed(),
        2 => update_backend().boxed(),
        2 => (backend_id(), any::<bool>())
            .prop_map(|(id, force)| Command::DeleteBackend { id, force })
            .boxed(),
        3 => add_domain().boxed(),
        2 => update_domain().boxed(),
        1 => domain().prop_map(Command::DeleteDomain).boxed(),
        3 => (domain(), prop::option::of(tag()), any::<bool>())
            .prop_map(|(d, new_tag, force)| Command::SwitchTag(d, SwitchRequest { new_tag, force }))
            .boxed(),
        3 => split().boxed(),
        2 => domain().prop_map(Command::Undo).boxed(),
    ]
}

/// Backends `b0` on tag `a` and `b1` on `b`, maybe `b2`, and the three domains of the pool
/// on `a` or `b`: the random steps after them find things to change.
fn setup() -> impl Strategy<Value = Vec<Op>> {
    let backend = |id: &'static str, tags: Vec<String>| {
        address_text().prop_map(move |address| {
            Command::AddBackend(NewBackend {
                id: id.to_string(),
                address,
                tags: tags.clone(),
                ..NewBackend::default()
            })
        })
    };
    let both = vec!["a".to_string(), "b".to_string()];
    let third = prop::option::of(backend("b2", both));
    let domain = |name: &'static str| {
        (random_case(name.to_string()), select(vec!["a", "b"])).prop_map(|(domain, tag)| {
            Command::AddDomain(NewDomain {
                domain,
                enabled_backends_tag: tag.to_string(),
                ..NewDomain::default()
            })
        })
    };
    let backends = (
        backend("b0", vec!["a".into()]),
        backend("b1", vec!["b".into()]),
        third,
    );
    let domains = (
        domain("app.test"),
        domain("*.wild.test"),
        domain("shop.example"),
    );
    (backends, domains).prop_map(|((b0, b1, b2), (d0, d1, d2))| {
        [Some(b0), Some(b1), b2, Some(d0), Some(d1), Some(d2)]
            .into_iter()
            .flatten()
            .map(Op::Apply)
            .collect()
    })
}

/// The setup, then up to `max` random steps, about one in fifteen a restart.
pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![14 => command().prop_map(Op::Apply), 1 => Just(Op::Restart)];
    (setup(), prop::collection::vec(op, 1..=max)).prop_map(|(mut setup, ops)| {
        setup.extend(ops);
        setup
    })
}
