//! The admin API's write endpoints under random bodies, in-process (tests/support/control.rs):
//! never a 5xx, only the contract's statuses, every 4xx a JSON `{"error": "<non-empty>"}`,
//! and a refused request changes nothing.

use crate::gen::{address_text, backend_id_text, domain_text, pool_tag, random_case};
use crate::gen::{bad_address, bad_backend_id, bad_domain, bad_tag};
use crate::support::control::{Answer, ControlPlane};
use axum::http::Method;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

mod bodies;
use bodies::*;

/// The admin body limit of these tests: small, so that padded bodies meet it.
const MAX_BODY: usize = 2048;

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    AddDomain,
    UpdateDomain,
    Switch,
    Split,
    AddBackend,
    UpdateBackend,
}

use Endpoint::*;

const ENDPOINTS: [Endpoint; 6] = [
    AddDomain,
    UpdateDomain,
    Switch,
    Split,
    AddBackend,
    UpdateBackend,
];

impl Endpoint {
    /// The method, the path, and the status of a success.
    fn route(self, target: &str) -> (Method, String, u16) {
        match self {
            AddDomain => (Method::POST, "/api/v1/domains".into(), 201),
            UpdateDomain => (Method::PUT, format!("/api/v1/domains/{target}"), 200),
            Switch => (
                Method::POST,
                format!("/api/v1/domains/{target}/switch"),
                200,
            ),
            Split => (Method::POST, format!("/api/v1/domains/{target}/split"), 200),
            AddBackend => (Method::POST, "/api/v1/backends".into(), 201),
            UpdateBackend => (Method::PUT, format!("/api/v1/backends/{target}"), 200),
        }
    }

    /// The fields of its body, each with how often it is there, and its value: mostly valid,
    /// sometimes invalid or of another type.
    fn fields(self) -> Vec<(&'static str, f64, BoxedStrategy<Value>)> {
        let (always, often, rarely) = (0.95, 0.5, 0.15);
        let domain = ("domain", always, text(domain_text(), bad_domain()));
        let tag = |name, p| (name, p, text(pool_tag(), bad_tag()));
        let policy = ("lb_policy", rarely, strs(POLICIES, &["random", ""]));
        let header = (
            "lb_hash_header",
            rarely,
            nullable(&["x-user", "X-Tenant"], &["a b", ""]),
        );
        let flag = |name, p| (name, p, flag());
        let access = || {
            vec![
                ("allow", rarely, cidr_list()),
                ("deny", rarely, cidr_list()),
                ("rate_limit_rps", rarely, count()),
                ("rate_limit_burst", rarely, count()),
            ]
        };
        match self {
            AddDomain => [
                vec![
                    domain,
                    tag("enabled_backends_tag", always),
                    flag("http_to_https", often),
                    policy,
                    header,
                ],
                access(),
            ]
            .concat(),
            UpdateDomain => [
                vec![
                    tag("enabled_backends_tag", often),
                    flag("http_to_https", often),
                    policy,
                    header,
                    flag("force", often),
                ],
                access(),
            ]
            .concat(),
            Switch => vec![tag("new_tag", often), flag("force", often)],
            Split => vec![
                ("weights", always, weights()),
                flag("sticky", often),
                ("rollback", often, rollback()),
                flag("force", often),
            ],
            AddBackend | UpdateBackend => {
                let required = if let AddBackend = self { always } else { often };
                let protocols = strs(&["http1", "h2c", "https"], &["h3", "HTTP1"]);
                let mut fields = vec![
                    ("address", required, text(address_text(), bad_address())),
                    ("tags", required, tags()),
                    ("weight", often, count()),
                    ("max_connections", often, count()),
                    ("protocol", rarely, protocols),
                    (
                        "tls_server_name",
                        rarely,
                        nullable(
                            &["x.test", "X.Test", "127.0.0.1"],
                            &["Bad Name", "*.x.test"],
                        ),
                    ),
                    flag("tls_verify", rarely),
                    (
                        "tls_ca_file",
                        rarely,
                        nullable(&["/nonexistent/ca.pem"], &["", "/"]),
                    ),
                    (
                        "health_check",
                        rarely,
                        strs(&["http", "grpc", "tcp"], &["icmp"]),
                    ),
                ];
                if let AddBackend = self {
                    let id = prop_oneof![9 => backend_id_text(), 1 => Just("a1".to_string())];
                    fields.insert(0, ("id", always, text(id, bad_backend_id())));
                }
                fields
            }
        }
    }
}

/// An object with each field of `endpoint` present or not, maybe an unknown field.
fn near_valid(endpoint: Endpoint) -> impl Strategy<Value = Value> {
    let fields: Vec<_> = endpoint
        .fields()
        .into_iter()
        .map(|(name, p, value)| (Just(name), prop::option::weighted(p, value)))
        .collect();
    (fields, prop::option::weighted(0.05, json())).prop_map(|(fields, unknown)| {
        let mut m: Map<String, Value> = fields
            .into_iter()
            .filter_map(|(name, v)| Some((name.to_string(), v?)))
            .collect();
        if let Some(v) = unknown {
            m.insert("bogus".into(), v);
        }
        Value::Object(m)
    })
}

/// One request: endpoint, path target, content type and body bytes.
#[derive(Clone, Debug)]
struct Req {
    endpoint: Endpoint,
    target: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn request() -> impl Strategy<Value = Req> {
    let endpoint = select(ENDPOINTS.to_vec());
    endpoint.prop_flat_map(|endpoint| {
        let target = match endpoint {
            AddBackend | UpdateBackend => prop_oneof![
                3 => select(vec!["a1", "b1"]).prop_map(str::to_string),
                1 => backend_id_text(),
            ]
            .boxed(),
            _ => prop_oneof![
                3 => random_case("app.test".to_string()),
                1 => Just("app.test.".to_string()),
                1 => domain_text(),
            ]
            .boxed(),
        };
        let json_body = prop_oneof![
            4 => near_valid(endpoint).boxed(),
            1 => json().boxed(),
        ]
        .prop_map(|v| serde_json::to_vec(&v).unwrap());
        let body = prop_oneof![
            16 => json_body.clone(),
            1 => (json_body.clone(), any::<prop::sample::Index>())
                .prop_map(|(b, cut)| b[..cut.index(b.len())].to_vec()),
            1 => json_body.prop_map(|mut b| {
                b.splice(1..1, br#""pad": ""#.iter().copied().chain([b'x'; MAX_BODY]).chain(*br#"","#));
                b
            }),
            1 => any::<Vec<u8>>(),
        ];
        let content_type = prop_oneof![
            24 => Just(Some("application/json")),
            1 => Just(Some("application/json; charset=utf-8")),
            1 => Just(Some("text/plain")),
            1 => Just(None),
        ];
        (Just(endpoint), target, content_type, body).prop_map(|(endpoint, target, content_type, body)| Req {
            endpoint,
            target,
            content_type,
            body,
        })
    })
}

/// What the API shows of the registry.
async fn snapshot(cp: &ControlPlane) -> (Value, Value) {
    let (d, b) = (
        cp.get("/api/v1/domains").await,
        cp.get("/api/v1/backends").await,
    );
    assert_eq!((d.status, b.status), (200, 200));
    (d.body, b.body)
}

fn check_answer(req: &Req, got: &Answer, success: u16) -> Result<(), TestCaseError> {
    let body = String::from_utf8_lossy(&req.body);
    let what = format!(
        "{:?} {} {:?}: {} {}",
        req.endpoint, req.target, req.content_type, got.status, got.body
    );
    let mut allowed = vec![success, 400, 409, 413, 415];
    if !matches!(req.endpoint, AddDomain | AddBackend) {
        allowed.push(404);
    }
    prop_assert!(allowed.contains(&got.status), "{}\nbody {}", what, body);
    if got.status >= 400 {
        prop_assert!(
            got.content_type().starts_with("application/json"),
            "{}",
            what
        );
        let obj = got.body.as_object();
        let message = obj
            .filter(|o| o.len() == 1)
            .and_then(|o| o["error"].as_str());
        prop_assert!(
            message.is_some_and(|m| !m.trim().is_empty()),
            "{}\nbody {}",
            what,
            body
        );
    } else {
        prop_assert!(got.body.is_object(), "{}", what);
    }
    Ok(())
}

// 1000 cases on one control plane whose registry the accepted requests keep changing; about
// 4 ms a case (five requests, a state-file write per accepted change).
#[test]
fn random_bodies_get_contract_answers_and_refusals_change_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cp = rt.block_on(ControlPlane::start_ab(None, MAX_BODY));
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        ..Config::default()
    });
    let result = runner.run(&request(), |req| {
        rt.block_on(async {
            let (method, path, success) = req.endpoint.route(&req.target);
            let before = snapshot(&cp).await;
            let got = cp
                .send(method, &path, req.content_type, req.body.clone(), None)
                .await;
            check_answer(&req, &got, success)?;
            if got.status >= 400 {
                prop_assert_eq!(
                    snapshot(&cp).await,
                    before,
                    "{:?} changed the registry",
                    req
                );
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
