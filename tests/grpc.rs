//! gRPC end to end with tonic on both sides: unary and server-streaming calls, error statuses
//! with their messages and trailers, through TLS to `h2c` and `https` backends and through h2c on
//! the plain listener; a backend that is down answers UNAVAILABLE in gRPC's own shape; many
//! client streams share few upstream connections.

mod support;

use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::pki::TestCa;
use support::*;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The error message the origin sends for `check("fail")`: non-ASCII and a `%`, which gRPC
/// percent-encodes, to see it arrive unchanged.
const FAIL_MESSAGE: &str = "denied: ünïcode & 100% sure";

// === the origin ===

/// The standard health service with test behaviour by service name: `""` SERVING (the request's
/// forwarding headers echoed as response metadata), `"fail"` PERMISSION_DENIED, `"slow"` SERVING
/// after 300 ms; `watch` streams five answers, or two and ABORTED for `"fail"`.
struct TestService {
    name: &'static str,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for TestService {
    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let seen = |h: &str| {
            req.metadata()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        let echoed = [
            ("seen-forwarded-for", seen("x-forwarded-for")),
            ("seen-forwarded-proto", seen("x-forwarded-proto")),
            ("seen-forwarded-host", seen("x-forwarded-host")),
        ];
        match req.get_ref().service.as_str() {
            "fail" => Err(Status::new(Code::PermissionDenied, FAIL_MESSAGE)),
            service => {
                if service == "slow" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let mut resp = Response::new(answer(ServingStatus::Serving));
                for (k, v) in echoed {
                    resp.metadata_mut().insert(k, v.parse().unwrap());
                }
                resp.metadata_mut()
                    .insert("served-by", self.name.parse().unwrap());
                Ok(resp)
            }
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let statuses = [
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::Serving,
            ServingStatus::NotServing,
            ServingStatus::Serving,
        ];
        let fail = req.get_ref().service == "fail";
        let take = if fail { 2 } else { statuses.len() };
        let items: Vec<Result<HealthCheckResponse, Status>> =
            statuses[..take].iter().map(|s| Ok(answer(*s))).collect();
        let tail = fail.then(|| Err(Status::aborted("stream broke after two")));
        let stream =
            tokio_stream::iter(items.into_iter().chain(tail)).throttle(Duration::from_millis(20));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A gRPC origin on a free port, counting the connections it accepts.
struct GrpcOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcOrigin {
    /// Serves h2c, or TLS with `identity` (ALPN h2).
    async fn start(name: &'static str, identity: Option<Identity>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |s| {
            counter.fetch_add(1, Ordering::SeqCst);
            s
        });
        let mut builder = Server::builder();
        if let Some(identity) = identity {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let router = builder.add_service(HealthServer::new(TestService { name }));
        let task = tokio::spawn(async move {
            let _ = router.serve_with_incoming(incoming).await;
        });
        GrpcOrigin {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for GrpcOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === the proxy and its clients ===

/// The proxy with an HTTPS listener (certificate for `*.grpc.test` from `ca`) and a plain one
/// with h2c: `h2c.grpc.test` on an h2c backend, `tls.grpc.test` on an https backend verified
/// with `ca`, `down.grpc.test` on a backend that refuses connections, `web.grpc.test` on a
/// plain HTTP/1.1 origin.
struct Setup {
    proxy: Proxy,
    https: SocketAddr,
    ca: TestCa,
    h2c_origin: GrpcOrigin,
    tls_origin: GrpcOrigin,
    _web: Origin,
    _refused: RefusedAddr,
    _files: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(&fast_health_toml(2, 1)).await
}

/// [`setup`] with its own `[health_check]` section.
async fn setup_with(health: &str) -> Setup {
    let ca = TestCa::new();
    let files = tempfile::tempdir().unwrap();
    let ca_path = ca.write(files.path());
    let (cert, key) = ca.leaf(&["*.grpc.test"]).write(files.path(), "proxy");
    let origin_leaf = ca.leaf(&["grpc-origin.test"]);
    let h2c_origin = GrpcOrigin::start("h2c-origin", None).await;
    let tls_origin = GrpcOrigin::start(
        "tls-origin",
        Some(Identity::from_pem(
            &origin_leaf.cert_pem,
            &origin_leaf.key_pem,
        )),
    )
    .await;
    let web = Origin::start("web").await;
    let refused = RefusedAddr::new();
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = format!(
        "[[certificates]]\ndomain = \"*.grpc.test\"\ncert_path = \"{cert}\"\nkey_path = \"{key}\"\n\n\
         [[backends]]\nid = \"g-h2c\"\naddress = \"{h2c}\"\ntags = [\"a\"]\nprotocol = \"h2c\"\nhealth_check = \"grpc\"\n\n\
         [[backends]]\nid = \"g-tls\"\naddress = \"{tls}\"\ntags = [\"b\"]\nprotocol = \"https\"\n\
         tls_server_name = \"grpc-origin.test\"\ntls_ca_file = \"{ca}\"\nhealth_check = \"grpc\"\n\n\
         [[backends]]\nid = \"g-down\"\naddress = \"{down}\"\ntags = [\"down\"]\nprotocol = \"h2c\"\n\n\
         {web}{vh_a}{vh_b}{vh_down}{vh_web}",
        h2c = h2c_origin.addr,
        tls = tls_origin.addr,
        ca = ca_path.display(),
        down = refused.addr,
        web = backend_toml("web", web.addr, &["web"]),
        vh_a = vhost_toml("h2c.grpc.test", "a"),
        vh_b = vhost_toml("tls.grpc.test", "b"),
        vh_down = vhost_toml("down.grpc.test", "down"),
        vh_web = vhost_toml("web.grpc.test", "web"),
    );
    let extra = format!("{health}{extra}");
    let proxy = Proxy::start_with(&format!("listen_addr = \"{https}\"\nh2c = true"), &extra).await;
    Setup {
        proxy,
        https,
        ca,
        h2c_origin,
        tls_origin,
        _web: web,
        _refused: refused,
        _files: files,
    }
}

/// A gRPC client for `domain` over TLS to the proxy (the certificate checked against `ca`).
async fn tls_client(s: &Setup, domain: &str) -> HealthClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(s.ca.pem()))
        .domain_name(domain);
    let endpoint = Endpoint::from_shared(format!("https://{domain}:{}", s.https.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    HealthClient::new(connect_to(endpoint, s.https).await)
}

/// A gRPC client for `domain` over h2c (prior knowledge) to the proxy's plain listener.
async fn h2c_client(s: &Setup, domain: &str) -> HealthClient<Channel> {
    let endpoint =
        Endpoint::from_shared(format!("http://{domain}:{}", s.proxy.http.port())).unwrap();
    HealthClient::new(connect_to(endpoint, s.proxy.http).await)
}

/// Connects `endpoint` (named by domain, which does not resolve) to the proxy at `addr`.
async fn connect_to(endpoint: Endpoint, addr: SocketAddr) -> Channel {
    endpoint
        .connect_with_connector(tower::service_fn(move |_: http::Uri| async move {
            tokio::net::TcpStream::connect(addr).await.map(TokioIo::new)
        }))
        .await
        .unwrap()
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

/// Unary success (with the forwarding headers the origin saw), unary error, streaming success
/// and a stream that ends in an error, for one client.
async fn exercise(client: &mut HealthClient<Channel>, proto: &str, served_by: &str) {
    let resp = client.check(check("")).await.unwrap();
    let meta = resp.metadata().clone();
    assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32);
    assert_eq!(meta.get("served-by").unwrap(), served_by);
    assert_eq!(meta.get("seen-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(meta.get("seen-forwarded-proto").unwrap(), proto);
    assert_ne!(meta.get("seen-forwarded-host").unwrap(), "-");

    let err = client.check(check("fail")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(err.message(), FAIL_MESSAGE);

    let mut stream = client.watch(check("")).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(item) = stream.next().await {
        seen.push(item.unwrap().status);
    }
    assert_eq!(seen, [1, 2, 1, 2, 1], "every streamed message, then OK");

    let mut stream = client.watch(check("fail")).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let second = stream.message().await.unwrap().unwrap();
    assert_eq!((first.status, second.status), (1, 2));
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(err.message(), "stream broke after two");
}

// === the tests ===

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_tls_to_h2c_and_https_backends() {
    let s = setup().await;
    wait_for_health(&s.proxy, "g-h2c", "healthy", Duration::from_secs(30)).await;
    wait_for_health(&s.proxy, "g-tls", "healthy", Duration::from_secs(30)).await;
    let mut h2c = tls_client(&s, "h2c.grpc.test").await;
    exercise(&mut h2c, "https", "h2c-origin").await;
    let mut tls = tls_client(&s, "tls.grpc.test").await;
    exercise(&mut tls, "https", "tls-origin").await;
    assert!(!s.proxy.log().contains("ERROR"), "{}", s.proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_h2c_on_the_plain_listener_next_to_http1() {
    let s = setup().await;
    let mut h2c = h2c_client(&s, "h2c.grpc.test").await;
    exercise(&mut h2c, "http", "h2c-origin").await;
    let mut tls = h2c_client(&s, "tls.grpc.test").await;
    exercise(&mut tls, "http", "tls-origin").await;
    // Plain HTTP/1.1 on the same listener.
    let (status, body) = s.proxy.get("web.grpc.test", "/plain").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""backend":"web""#), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_is_down_answers_grpc_unavailable() {
    let s = setup().await;
    let err = tls_client(&s, "down.grpc.test")
        .await
        .check(check(""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // The answer itself: HTTP 200, application/grpc, grpc-status 14, never a text page.
    let tcp = tokio::net::TcpStream::connect(s.proxy.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = http::Request::post("http://down.grpc.test/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        // No message, then the status in the trailers.
        let body = resp.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "14", "{trailers:?}");
        assert!(!trailers["grpc-message"].is_empty());
        assert!(body.to_bytes().is_empty());
    }
    // The second call found the backend ejected and was answered before any connect, in the
    // same shape; a request that is not gRPC keeps the text answer.
    let text = reqwest::Client::new()
        .get(s.proxy.url("/"))
        .header("host", "down.grpc.test")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 503, "non-gRPC requests keep the text answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_client_streams_share_few_upstream_connections() {
    // One probe at start (healthy at once), none while the connections are counted.
    let s = setup_with(
        "[health_check]\ninterval_secs = 600\nunhealthy_threshold = 1\nhealthy_threshold = 1\n\n",
    )
    .await;
    wait_for_health(&s.proxy, "g-h2c", "healthy", Duration::from_secs(30)).await;
    wait_for_health(&s.proxy, "g-tls", "healthy", Duration::from_secs(30)).await;
    for (domain, origin) in [
        ("h2c.grpc.test", &s.h2c_origin),
        ("tls.grpc.test", &s.tls_origin),
    ] {
        let client = tls_client(&s, domain).await;
        // Cold: no upstream connection yet, 100 streams at once.
        let cold = concurrent_calls(&client, origin).await;
        // Warm: the connections the proxy keeps carry the next 100.
        let warm = concurrent_calls(&client, origin).await;
        println!(
            "{domain}: 100 concurrent client streams opened {cold} upstream connection(s) cold, \
             {warm} more warm"
        );
        assert!(
            cold <= 3,
            "{domain}: {cold} upstream connections for 100 streams"
        );
        // The health probe connects too (once a second).
        assert!(
            warm <= 2,
            "{domain}: {warm} new upstream connections when warm"
        );
    }
}

/// Makes 100 slow calls at once; returns how many connections the origin accepted meanwhile.
async fn concurrent_calls(client: &HealthClient<Channel>, origin: &GrpcOrigin) -> usize {
    let before = origin.accepted.load(Ordering::SeqCst);
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.check(check("slow")).await.map(|_| ()) })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    origin.accepted.load(Ordering::SeqCst) - before
}

/// An h2c origin that refuses every other stream (RST_STREAM REFUSED_STREAM) and closes each
/// connection with a GOAWAY after `per_connection` streams, as servers rotating connections do.
async fn refusing_origin(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut streams = 0;
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    streams += 1;
                    if streams % 2 == 0 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        count.fetch_add(1, Ordering::SeqCst);
                        let resp = http::Response::builder().status(200).body(()).unwrap();
                        let mut body = respond.send_response(resp, false).unwrap();
                        let _ = body.send_data(bytes::Bytes::from_static(b"served\n"), true);
                    }
                    if streams == per_connection {
                        conn.graceful_shutdown();
                    }
                }
            });
        }
    });
    (addr, served)
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_streams_and_rotated_connections_are_sent_again() {
    let (addr, served) = refusing_origin(5).await;
    let p = Proxy::start(&format!(
        "[[backends]]\nid = \"rotating\"\naddress = \"{addr}\"\ntags = [\"a\"]\nprotocol = \"h2c\"\n\n{}",
        vhost_toml("h2.test", "a")
    ))
    .await;
    for i in 0..30 {
        let (status, body) = p.get("h2.test", &format!("/{i}")).await;
        assert_eq!(status, 200, "request {i}: {body}\n{}", p.log());
        assert_eq!(body, "served\n");
    }
    assert!(
        served.load(Ordering::SeqCst) >= 30,
        "each answered once (and the probe)"
    );
    let (_, b) = call(reqwest::Method::GET, &p.api("/backends/rotating"), None).await;
    assert_ne!(b["health"]["status"], "unhealthy", "never ejected: {b}");
    // The gRPC method is POST: refused streams are sent again whatever the method.
    let resp = client()
        .post(p.url("/svc/Method"))
        .header("host", "h2.test")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
