//! End-to-end harness: real origins on free ports, the real `pingora-vhost` binary started as a
//! child process with a generated config, and an HTTP client.
#![allow(dead_code)]

pub mod api;
pub mod control;
pub mod etcd;
pub mod pki;

use axum::extract::Request;
use axum::Json;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pingora-vhost")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address that refuses every connection for as long as this value lives: the port is bound
/// (so no other test or proxy can take it) but never listened on, so a connect gets a reset.
pub struct RefusedAddr {
    pub addr: SocketAddr,
    _socket: tokio::net::TcpSocket,
}

impl RefusedAddr {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        RefusedAddr {
            addr,
            _socket: socket,
        }
    }
}

// === origins ===

/// A real HTTP origin that answers JSON naming itself and echoing the request.
pub struct Origin {
    pub name: String,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts an origin on a free port.
    pub async fn start(name: &str) -> Origin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let n = name.to_string();
        let app = axum::Router::new().fallback(move |req: Request| {
            let n = n.clone();
            async move {
                let headers: BTreeMap<String, String> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                Json(serde_json::json!({
                    "backend": n,
                    "method": req.method().as_str(),
                    "uri": req.uri().to_string(),
                    "headers": headers,
                }))
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Origin {
            name: name.to_string(),
            addr,
            task,
        }
    }

    /// Stops answering: the port then refuses connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === the proxy under test ===

/// A running `pingora-vhost` with its own directory, ports and config.
pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    child: Option<Child>,
    /// Extra environment variables of the child.
    env: Vec<(String, String)>,
}

/// Config text with the given ports and extra TOML (virtual hosts, backends, sections).
pub fn config_text(http: SocketAddr, admin: SocketAddr, extra: &str) -> String {
    config_text_with(http, admin, "", extra)
}

/// Like [`config_text`], with extra keys in `[proxy]` (e.g. `listen_addr = "..."`).
pub fn config_text_with(
    http: SocketAddr,
    admin: SocketAddr,
    proxy_keys: &str,
    extra: &str,
) -> String {
    config_text_limits(http, admin, proxy_keys, "", extra)
}

/// Like [`config_text_with`], with extra keys in `[limits]` too (each line ending in `\n`).
pub fn config_text_limits(
    http: SocketAddr,
    admin: SocketAddr,
    proxy_keys: &str,
    limits_keys: &str,
    extra: &str,
) -> String {
    config_text_state(http, admin, proxy_keys, "", limits_keys, extra)
}

/// Like [`config_text_limits`], with extra keys in `[state]` too (e.g. `backend = "etcd"`).
pub fn config_text_state(
    http: SocketAddr,
    admin: SocketAddr,
    proxy_keys: &str,
    state_keys: &str,
    limits_keys: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[proxy]
listen_addr_http = "{http}"
management_api_addr = "{admin}"
threads = 2
grace_period_secs = 5
{proxy_keys}

[state]
path = "state/state.json"
{state_keys}

[limits]
upstream_connect_timeout_ms = 500
{limits_keys}
{extra}
"#
    )
}

/// TOML for one backend.
pub fn backend_toml(id: &str, addr: SocketAddr, tags: &[&str]) -> String {
    let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\ntags = [{}]\n\n",
        tags.join(", ")
    )
}

/// TOML for one virtual host.
pub fn vhost_toml(domain: &str, tag: &str) -> String {
    format!("[[virtual_hosts]]\ndomain = \"{domain}\"\nenabled_backends_tag = \"{tag}\"\n\n")
}

impl Proxy {
    /// Writes the config into a fresh directory and starts the proxy, waiting until it serves.
    pub async fn start(extra: &str) -> Proxy {
        Self::start_with("", extra).await
    }

    /// Like [`Proxy::start`], with extra keys in `[proxy]`.
    pub async fn start_with(proxy_keys: &str, extra: &str) -> Proxy {
        Self::launch(None, &|http, admin| {
            config_text_with(http, admin, proxy_keys, extra)
        })
        .await
    }

    /// Like [`Proxy::start_with`], with extra keys in `[limits]` too.
    pub async fn start_with_limits(proxy_keys: &str, limits_keys: &str, extra: &str) -> Proxy {
        Self::launch(None, &|http, admin| {
            config_text_limits(http, admin, proxy_keys, limits_keys, extra)
        })
        .await
    }

    /// Like [`Proxy::start_with`], on a given plain-HTTP address.
    pub async fn start_on(http: SocketAddr, proxy_keys: &str, extra: &str) -> Proxy {
        Self::launch(Some(http), &|http, admin| {
            config_text_with(http, admin, proxy_keys, extra)
        })
        .await
    }

    /// Starts the proxy with a whole config of its own, `config(admin_addr)`; `listen` is the
    /// proxy listener that must accept connections before the start counts as done.
    pub async fn start_config(listen: SocketAddr, config: &dyn Fn(SocketAddr) -> String) -> Proxy {
        Self::launch(Some(listen), &|_, admin| config(admin)).await
    }

    /// Like [`Proxy::start_config`], with extra environment variables for the child.
    pub async fn start_config_env(
        listen: SocketAddr,
        env: &[(&str, &str)],
        config: &dyn Fn(SocketAddr) -> String,
    ) -> Proxy {
        Self::launch_env(Some(listen), env, &|_, admin| config(admin)).await
    }

    /// Starts the proxy on fresh ports (or the given HTTP address). Tests run in parallel, so a
    /// port found free can be taken before the child binds it: then it starts again on others.
    async fn launch(
        http: Option<SocketAddr>,
        config: &dyn Fn(SocketAddr, SocketAddr) -> String,
    ) -> Proxy {
        Self::launch_env(http, &[], config).await
    }

    async fn launch_env(
        http: Option<SocketAddr>,
        env: &[(&str, &str)],
        config: &dyn Fn(SocketAddr, SocketAddr) -> String,
    ) -> Proxy {
        for attempt in 1.. {
            let http =
                http.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
            let dir = tempfile::tempdir().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let config_path = dir.path().join("config.toml");
            std::fs::write(&config_path, config(http, admin)).unwrap();
            let mut p = Proxy {
                dir,
                http,
                admin,
                config_path,
                child: None,
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            match p.try_spawn(&[]).await {
                Ok(()) => return p,
                Err(log) if attempt < 5 && log.contains("cannot listen on") => continue,
                Err(log) => panic!("proxy exited early:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Starts the binary again with the same config and directory (after `stop`).
    pub async fn spawn(&mut self, extra_args: &[&str]) {
        if let Err(log) = self.try_spawn(extra_args).await {
            panic!("proxy exited early:\n{log}");
        }
    }

    /// Starts the binary and waits until it serves; `Err` with its output if it exits first.
    async fn try_spawn(&mut self, extra_args: &[&str]) -> Result<(), String> {
        let child = self.command(extra_args).spawn().unwrap();
        self.child = Some(child);
        self.wait_ready().await
    }

    /// The `run` command for this proxy, not yet started.
    pub fn command(&self, extra_args: &[&str]) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .args(extra_args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("PINGORA_VHOST_ADMIN_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        cmd
    }

    /// Where the child's stdout and stderr go.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("proxy.log")
    }

    /// Everything the proxy printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state/state.json")
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{}/api/v1/health", self.admin);
        // The HTTPS listener, when the config has one, must accept too.
        let https: Option<SocketAddr> = read(&self.config_path).lines().find_map(|l| {
            let v = l.trim().strip_prefix("listen_addr")?.trim_start();
            v.strip_prefix('=')?.trim().trim_matches('"').parse().ok()
        });
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status})\n{}", self.log()));
            }
            let ready = reqwest::get(&url)
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
                && std::net::TcpStream::connect(self.http).is_ok()
                && https.is_none_or(|a| std::net::TcpStream::connect(a).is_ok());
            if ready {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "proxy not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal and waits for the process to exit; returns how long it took.
    pub fn signal_and_wait(&mut self, signal: &str) -> Duration {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        // A ceiling, so that a process that does not stop fails the test instead of hanging it.
        let deadline = start + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running 30 s after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        start.elapsed()
    }

    /// The running process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the process at once.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// URL on the admin API.
    pub fn api(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.admin)
    }

    /// URL on the plain-HTTP listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET through the proxy with a Host header; returns status and body.
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let r = client()
            .get(self.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Which backend served `host` (from the origin's JSON answer).
    pub async fn backend_for(&self, host: &str) -> String {
        let (status, body) = self.get(host, "/").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["backend"].as_str().unwrap().to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

// === load ===

/// Keep-alive clients sending GETs for one host until [`Load::finish`], each answer counted.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<LoadResult>>,
}

/// What the clients of a [`Load`] saw.
#[derive(Default)]
pub struct LoadResult {
    /// 200 answers, by `key(body)`.
    pub seen: BTreeMap<String, u64>,
    /// Every other status or connection error, described.
    pub errors: Vec<String>,
}

impl LoadResult {
    /// 200 answers.
    pub fn ok(&self) -> u64 {
        self.seen.values().sum()
    }

    /// Requests that got an answer or an error.
    pub fn sent(&self) -> u64 {
        self.ok() + self.errors.len() as u64
    }
}

impl Load {
    /// `clients` tasks GET `url` with `host`, waiting `pause` between requests; a 200's body is
    /// counted under `key(body)`.
    pub fn start(
        url: String,
        host: &'static str,
        clients: usize,
        pause: Duration,
        key: fn(&str) -> String,
    ) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (stop, url) = (std::sync::Arc::clone(&stop), url.clone());
                tokio::spawn(async move {
                    let http = client();
                    let mut got = LoadResult::default();
                    while !stop.load(Ordering::Relaxed) {
                        match http.get(&url).header("host", host).send().await {
                            Ok(r) if r.status() == 200 => {
                                let body = r.text().await.unwrap();
                                *got.seen.entry(key(&body)).or_default() += 1;
                            }
                            Ok(r) => got.errors.push(format!("status {}", r.status())),
                            Err(e) => got.errors.push(format!("connection error: {e}")),
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    got
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients and adds up what they saw.
    pub async fn finish(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadResult::default();
        for c in self.clients {
            let got = c.await.unwrap();
            for (k, v) in got.seen {
                *total.seen.entry(k).or_default() += v;
            }
            total.errors.extend(got.errors);
        }
        total
    }
}

/// GETs a metrics endpoint asking for OpenMetrics: 200 with that content type; returns the text.
pub async fn scrape(url: &str) -> String {
    let (ct, text) = scrape_as(url, "application/openmetrics-text").await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    text
}

/// GETs a metrics endpoint with the given `Accept` (empty: none); asserts 200 and returns the
/// content type and the text.
pub async fn scrape_as(url: &str, accept: &str) -> (String, String) {
    let mut req = client().get(url);
    if !accept.is_empty() {
        req = req.header("accept", accept);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    (ct, r.text().await.unwrap())
}

/// A keep-alive HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends a JSON request to the admin API; returns status and parsed body (Null when empty).
pub async fn call(
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, v)
}

/// `target/test-artifacts`, next to the profiles (the binary is `target/<profile>/...`):
/// where tests leave files for people and CI to look at.
pub fn artifacts_dir() -> PathBuf {
    let target = Path::new(bin()).parent().unwrap().parent().unwrap();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads a file, empty when missing.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// === origins for health checks ===

/// An origin whose `/health` can be switched between 200 and 500; other paths name it.
pub struct FlakyOrigin {
    pub origin: Origin,
    pub healthy: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyOrigin {
    /// Starts healthy.
    pub async fn start(name: &str) -> FlakyOrigin {
        Self::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    /// Starts healthy on a given address.
    pub async fn start_on(addr: SocketAddr, name: &str) -> FlakyOrigin {
        use std::sync::atomic::Ordering;
        let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (n, h) = (name.to_string(), healthy.clone());
        let app = axum::Router::new()
            .route(
                "/health",
                axum::routing::get(move || {
                    let ok = h.load(Ordering::Relaxed);
                    async move {
                        if ok {
                            (axum::http::StatusCode::OK, "ok")
                        } else {
                            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "failing")
                        }
                    }
                }),
            )
            .fallback(move || {
                let n = n.clone();
                async move { Json(serde_json::json!({ "backend": n })) }
            });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FlakyOrigin {
            origin: Origin {
                name: name.to_string(),
                addr,
                task,
            },
            healthy,
        }
    }

    /// Makes `/health` answer 200 (`true`) or 500.
    pub fn set_healthy(&self, ok: bool) {
        self.healthy.store(ok, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A listener that accepts connections and never answers.
pub async fn hanging_origin() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// `[health_check]` with a 1 s interval and the given thresholds.
pub fn fast_health_toml(unhealthy: u32, healthy: u32) -> String {
    format!(
        "[health_check]\ninterval_secs = 1\ntimeout_secs = 1\nunhealthy_threshold = {unhealthy}\nhealthy_threshold = {healthy}\npath = \"/health\"\n\n"
    )
}

/// Polls `GET /backends/{id}` until its health status is `want`; returns the Backend JSON.
pub async fn wait_for_health(
    p: &Proxy,
    id: &str,
    want: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, b) = call(
            reqwest::Method::GET,
            &p.api(&format!("/backends/{id}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{b}");
        if b["health"]["status"] == want {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "backend {id} not {want} within {within:?}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
