//! The operator dashboard in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver, the fantoccini crate) against the real binary. Load, enter the
//! token, see domains and backends, switch a domain through the page and see the next request
//! served by the other tag, see API errors in the banner. Screenshots go to
//! `target/test-artifacts/dashboard-*.png`.

mod support;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::future::Future;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN: &str = "dashboard-test-token";

// === the browser ===

/// chromedriver (in a process group of its own, with the Chromium it starts) and a session.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile; `None` when they are
    /// not installed and `CHROMIUM_REQUIRED` is not set.
    async fn start() -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            assert!(
                std::env::var("CHROMIUM_REQUIRED").as_deref() != Ok("1"),
                "CHROMIUM_REQUIRED=1 but {missing:?} missing: apt-get install chromium chromium-driver"
            );
            // Straight to stderr: libtest would swallow eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "note: {missing:?} not installed, the dashboard browser test is skipped \
                 (apt-get install chromium chromium-driver, or run scripts/test)"
            );
            return None;
        }
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            // Chromium inherits the group, so one kill ends both even when the test panics.
            .process_group(0)
            .spawn()
            .unwrap();
        let mut browser = Browser {
            client: None,
            driver,
            _profile: profile,
        };
        let url = format!("http://127.0.0.1:{port}");
        wait_until(
            "chromedriver listening",
            Duration::from_secs(20),
            move || async move {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then_some(())
            },
        )
        .await;
        let data_dir = browser._profile.path().join("chromium");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", data_dir.display()),
                ],
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no Chromium session: {e}"));
        browser.client = Some(client);
        Some(browser)
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    /// Ends the session (Chromium exits with it).
    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

// === helpers ===

/// Polls `probe` until it gives a value; fails the test with `what` after `within`.
async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first element matching `css`, if any.
async fn find(c: &Client, css: &str) -> Option<Element> {
    c.find(Locator::Css(css)).await.ok()
}

/// The visible text of the first element matching `css`, if it is there.
async fn text(c: &Client, css: &str) -> Option<String> {
    find(c, css).await?.text().await.ok()
}

/// Waits until `css` is displayed and returns it.
async fn displayed(c: &Client, css: &str) -> Element {
    wait_until(css, Duration::from_secs(15), move || async move {
        let e = find(c, css).await?;
        e.is_displayed().await.ok()?.then_some(e)
    })
    .await
}

/// Waits until the text of `css` satisfies `ok`; returns it.
async fn text_where(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let ok = &ok;
    wait_until(what, Duration::from_secs(15), move || async move {
        text(c, css).await.filter(|t| ok(t))
    })
    .await
}

/// The error banner's text while it is shown.
async fn shown_banner(c: &Client) -> Option<String> {
    let e = find(c, "[data-testid=\"error-banner\"]").await?;
    if e.is_displayed().await.ok()? {
        e.text().await.ok()
    } else {
        None
    }
}

fn row(domain: &str) -> String {
    format!("[data-testid=\"domain-row\"][data-domain=\"{domain}\"]")
}

fn artifacts() -> PathBuf {
    // The binary is target/<profile>/pingora-vhost: artifacts sit next to the profiles.
    let target = Path::new(bin()).parent().unwrap().parent().unwrap();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = artifacts().join(format!("dashboard-{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// Picks `tag` in the domain's select, presses Switch, checks the page asks, confirms.
async fn switch_in_page(c: &Client, domain: &str, tag: &str, shot: Option<&str>) {
    let select = displayed(c, &format!("{} [data-testid=\"tag-select\"]", row(domain))).await;
    select.select_by_value(tag).await.unwrap();
    displayed(
        c,
        &format!("{} [data-testid=\"switch-button\"]", row(domain)),
    )
    .await
    .click()
    .await
    .unwrap();
    let confirm = displayed(c, "[data-testid=\"confirm-button\"]").await;
    let question = text(c, "#confirm-title").await.unwrap_or_default();
    assert!(
        question.contains(domain) && question.contains(tag),
        "the dialog says what it will do: {question:?}"
    );
    if let Some(name) = shot {
        screenshot(c, name).await;
    }
    confirm.click().await.unwrap();
}

/// An admin API call with the token; returns status and JSON body.
async fn authed(
    p: &Proxy,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = client().request(method, p.api(path)).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

// === the tests ===

#[tokio::test(flavor = "multi_thread")]
async fn page_loads_without_the_token_and_the_api_still_needs_it() {
    let a = Origin::start("a1").await;
    let p = Proxy::start_with(
        &format!("admin_token = \"{TOKEN}\""),
        &format!(
            "{}{}",
            backend_toml("a1", a.addr, &["a"]),
            vhost_toml("app.test", "a")
        ),
    )
    .await;
    let r = client()
        .get(format!("http://{}/", p.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("data-testid=\"token-input\""), "{html}");
    assert!(!html.contains(TOKEN), "the page carries no secret");
    let (status, _) = call(reqwest::Method::GET, &p.api("/domains"), None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_switches_a_domain_and_sees_api_errors_in_the_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let a = Origin::start("a1").await;
    let b = Origin::start("b1").await;
    let down = RefusedAddr::new();
    let p = Proxy::start_with(
        &format!("admin_token = \"{TOKEN}\""),
        &format!(
            "{}{}{}{}{}{}",
            fast_health_toml(1, 1),
            backend_toml("a1", a.addr, &["a"]),
            backend_toml("b1", b.addr, &["b"]),
            backend_toml("c1", down.addr, &["c"]),
            vhost_toml("app.test", "a"),
            vhost_toml("shop.test", "b"),
        ),
    )
    .await;
    let c = browser.c();
    let page = format!("http://{}/", p.admin);

    // The page loads without a token, then asks for it.
    c.goto(&page).await.unwrap();
    let input = displayed(c, "[data-testid=\"token-input\"]").await;
    screenshot(c, "token").await;
    input.send_keys(TOKEN).await.unwrap();
    displayed(c, "[data-testid=\"token-save\"]")
        .await
        .click()
        .await
        .unwrap();

    // Both domains with their tags, every backend with its health.
    for (domain, tag) in [("app.test", "a"), ("shop.test", "b")] {
        text_where(
            c,
            &format!("{} [data-testid=\"domain-tag\"]", row(domain)),
            &format!("{domain} on tag {tag}"),
            |t| t == tag,
        )
        .await;
    }
    for (id, health) in [("a1", "healthy"), ("b1", "healthy"), ("c1", "unhealthy")] {
        text_where(
            c,
            &format!("[data-testid=\"backend-row\"][data-backend=\"{id}\"] [data-testid=\"backend-health\"]"),
            &format!("{id} {health}"),
            |t| t == health,
        )
        .await;
    }
    assert!(
        !find(c, "[data-testid=\"token-input\"]")
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "the token box is gone once the token works"
    );
    let kept = c
        .execute(
            "return sessionStorage.getItem('pingora-vhost-admin-token')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, TOKEN, "the token is kept in sessionStorage");

    // Live figures: traffic to app.test shows as a request rate of its tag a.
    for _ in 0..20 {
        assert_eq!(p.get("app.test", "/").await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tag_a = format!("{} [data-tag=\"a\"]", row("app.test"));
    let rate = text_where(
        c,
        &format!("{tag_a} [data-testid=\"tag-rate\"]"),
        "a request rate for app.test tag a",
        |t| {
            t.ends_with("req/s")
                && t.trim_end_matches(" req/s")
                    .parse::<f64>()
                    .is_ok_and(|v| v > 0.0)
        },
    )
    .await;
    let errors = text(c, &format!("{tag_a} [data-testid=\"tag-error-rate\"]"))
        .await
        .unwrap();
    assert_eq!(errors, "0.00 %", "no errors on tag a (rate {rate})");
    let p99 = text(c, &format!("{tag_a} [data-testid=\"tag-p99\"]"))
        .await
        .unwrap();
    assert!(p99 == "–" || p99.ends_with(" ms"), "p99 shown: {p99:?}");
    screenshot(c, "overview").await;

    // Switch app.test to b through the page; the next request is served by b1.
    assert_eq!(p.backend_for("app.test").await, "a1");
    switch_in_page(c, "app.test", "b", Some("confirm")).await;
    text_where(
        c,
        &format!("{} [data-testid=\"domain-tag\"]", row("app.test")),
        "app.test on tag b",
        |t| t == "b",
    )
    .await;
    assert_eq!(p.backend_for("app.test").await, "b1");
    let (_, d) = authed(&p, reqwest::Method::GET, "/domains/app.test", None).await;
    assert_eq!(d["enabled_backends_tag"], "b", "{d}");
    screenshot(c, "switched").await;

    // A switch the API refuses (tag c has no healthy backend): its error is in the banner,
    // and nothing changed.
    let banner = "[data-testid=\"error-banner\"]";
    switch_in_page(c, "shop.test", "c", None).await;
    displayed(c, banner).await;
    let shown = text(c, banner).await.unwrap();
    let (status, refused) = authed(
        &p,
        reqwest::Method::POST,
        "/domains/shop.test/switch",
        Some(serde_json::json!({"new_tag": "c"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(
        shown.contains(message) && shown.contains("409"),
        "banner {shown:?} shows the API's error {message:?}"
    );
    assert_eq!(p.backend_for("shop.test").await, "b1");
    screenshot(c, "error").await;

    // Split asks for weights and confirmation. Until split exists the API's 404 shows in the
    // banner; once it does, the weights show on the row.
    find(c, "#error-dismiss")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    displayed(
        c,
        &format!("{} [data-testid=\"split-button\"]", row("shop.test")),
    )
    .await
    .click()
    .await
    .unwrap();
    let weight_a = displayed(c, "[data-testid=\"split-weight\"][data-tag=\"a\"]").await;
    weight_a.clear().await.unwrap();
    weight_a.send_keys("10").await.unwrap();
    screenshot(c, "split").await;
    displayed(c, "[data-testid=\"confirm-button\"]")
        .await
        .click()
        .await
        .unwrap();
    wait_until(
        "split's outcome on the page",
        Duration::from_secs(15),
        move || async move {
            if let Some(t) = shown_banner(c).await {
                assert!(t.contains("split shop.test failed"), "{t}");
                return Some(());
            }
            let w = text(
                c,
                &format!("{} [data-testid=\"domain-weights\"]", row("shop.test")),
            )
            .await?;
            w.contains("a 10").then_some(())
        },
    )
    .await;

    // Undo asks first too. Until undo exists the API's 404 shows in the banner; once it does,
    // app.test goes back to tag a.
    if shown_banner(c).await.is_some() {
        find(c, "#error-dismiss")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    displayed(
        c,
        &format!("{} [data-testid=\"undo-button\"]", row("app.test")),
    )
    .await
    .click()
    .await
    .unwrap();
    displayed(c, "[data-testid=\"confirm-button\"]")
        .await
        .click()
        .await
        .unwrap();
    wait_until(
        "undo's outcome on the page",
        Duration::from_secs(15),
        move || async move {
            if let Some(t) = shown_banner(c).await {
                assert!(t.contains("undo on app.test failed"), "{t}");
                return Some(());
            }
            let tag = text(
                c,
                &format!("{} [data-testid=\"domain-tag\"]", row("app.test")),
            )
            .await?;
            (tag == "a").then_some(())
        },
    )
    .await;

    // A reload keeps the token: the page does not ask again.
    c.goto(&page).await.unwrap();
    displayed(c, &row("shop.test")).await;
    assert!(
        !find(c, "[data-testid=\"token-input\"]")
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "asked for the token once only"
    );
    browser.close().await;
}

/// The rollout fields (split weights, stickiness, rollback, `last_minute`) as the page shows
/// them, from a stub API serving the same page: the page is ready for them before the proxy
/// reports them.
#[tokio::test(flavor = "multi_thread")]
async fn shows_splits_rollbacks_and_server_side_last_minute_figures() {
    use axum::routing::get;
    use axum::Json;
    use serde_json::json;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let lm = |requests: u64, rps: f64, err: f64, p99: Option<f64>| {
        json!({"requests": requests, "requests_per_sec": rps, "error_rate": err,
               "p50_ms": p99.map(|v| v / 2.0), "p99_ms": p99})
    };
    let traffic = json!({"total_requests": 10, "success_requests": 10, "error_requests": 0,
                         "avg_latency_ms": 1.0});
    let mut a = traffic.clone();
    a["last_minute"] = lm(270, 4.5, 0.0, Some(12.34));
    let mut b = traffic.clone();
    b["last_minute"] = lm(30, 0.5, 0.2, None);
    let mut all = traffic.clone();
    all["last_minute"] = lm(300, 5.0, 0.02, Some(12.34));
    all["tags"] = json!({"a": a, "b": b});
    let stats = json!({"domains": {"<b>canary</b>.test": all}});
    let domains = json!([{
        "domain": "<b>canary</b>.test", "enabled_backends_tag": "a", "previous_tag": null,
        "http_to_https": false, "weights": {"a": 90, "b": 10}, "sticky": true,
        "allow": ["10.0.0.0/8"], "deny": null, "rate_limit_rps": 100, "rate_limit_burst": 200,
        "rollback": {"max_error_rate": 0.05, "min_requests": 100, "window_secs": 60},
        "last_rollback": {"at": "2025-01-02T03:04:05Z", "from_tag": "b", "to_tag": "a",
                          "reason": "error rate 0.2 over 0.05"},
    }]);
    let backends = json!([
        {"id": "a1", "address": "127.0.0.1:1", "tags": ["a"], "weight": 1,
         "health": {"status": "healthy", "consecutive_failures": 0, "consecutive_successes": 3, "last_check": null}},
        {"id": "b1", "address": "127.0.0.1:2", "tags": ["b"], "weight": 1,
         "health": {"status": "unknown", "consecutive_failures": 0, "consecutive_successes": 0, "last_check": null}},
    ]);
    let page = include_str!("../src/admin/dashboard.html");
    let app = axum::Router::new()
        .route("/", get(move || async move { axum::response::Html(page) }))
        .route("/api/v1/domains", get(move || async move { Json(domains) }))
        .route(
            "/api/v1/backends",
            get(move || async move { Json(backends) }),
        )
        .route("/api/v1/stats", get(move || async move { Json(stats) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let c = browser.c();
    c.goto(&format!("http://{addr}/")).await.unwrap();
    // A domain name is data, never markup.
    let r = row("<b>canary</b>.test");
    text_where(
        c,
        &format!("{r} [data-testid=\"domain-weights\"]"),
        "the split weights",
        |t| t == "split a 90 · b 10",
    )
    .await;
    assert!(
        find(c, &format!("{r} b")).await.is_none(),
        "no markup injected"
    );
    assert_eq!(
        text(c, &format!("{r} td.name"))
            .await
            .unwrap()
            .lines()
            .next(),
        Some("<b>canary</b>.test")
    );
    for (css, want) in [
        ("[data-testid=\"domain-tag\"]", "a"),
        ("[data-testid=\"domain-sticky\"]", "yes"),
        (
            "[data-testid=\"domain-flags\"]",
            "allow 10.0.0.0/8 · 100 req/s per client (burst 200)",
        ),
        ("[data-tag=\"a\"] [data-testid=\"tag-rate\"]", "4.50 req/s"),
        (
            "[data-tag=\"a\"] [data-testid=\"tag-error-rate\"]",
            "0.00 %",
        ),
        ("[data-tag=\"a\"] [data-testid=\"tag-p99\"]", "12.3 ms"),
        ("[data-tag=\"b\"] [data-testid=\"tag-rate\"]", "0.50 req/s"),
        (
            "[data-tag=\"b\"] [data-testid=\"tag-error-rate\"]",
            "20.0 %",
        ),
        ("[data-tag=\"b\"] [data-testid=\"tag-p99\"]", "–"),
    ] {
        assert_eq!(
            text(c, &format!("{r} {css}")).await.as_deref(),
            Some(want),
            "{css}"
        );
    }
    let rollback = text(c, &format!("{r} [data-testid=\"domain-rollback\"]"))
        .await
        .unwrap();
    assert!(
        rollback.contains("5.00 %") && rollback.contains("100 requests"),
        "{rollback}"
    );
    let last = text(c, &format!("{r} [data-testid=\"domain-last-rollback\"]"))
        .await
        .unwrap();
    assert!(
        last.contains("b → a") && last.contains("error rate 0.2"),
        "{last}"
    );
    screenshot(c, "split-view").await;
    browser.close().await;
    server.abort();
}
