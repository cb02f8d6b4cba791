//! schemathesis (the property-based API tester from PyPI) against a running proxy, driven by
//! the admin API's own OpenAPI document: a bounded run over every operation (examples,
//! coverage, fuzzing, stateful sequences) must find no 5xx, no answer off the document
//! (status, content type, headers, body schema), no operation that ignores the token, no
//! deleted object still there, no created one missing, no wrong method answered or its
//! `Allow` header wrong. Its output goes to
//! `target/test-artifacts/schemathesis.txt`, its JUnit report to `schemathesis-junit.xml` beside it.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::api::ApiSpec;
use support::{artifacts_dir, free_port};

/// Test cases per operation in each round of a phase.
const MAX_EXAMPLES: &str = "50";

/// Seconds for the whole run: fuzzing and stateful sequences go on in rounds until then, so
/// the run takes this long on any machine and finds more where there is time for more.
const MAX_SECONDS: &str = "40";

/// A fixed seed by default, so that CI runs the same cases each time; `SCHEMATHESIS_SEED`
/// picks another (schemathesis prints the seed of every run).
const DEFAULT_SEED: &str = "20261202";

/// schemathesis stops itself after `MAX_SECONDS`; this only stops a hung run.
const HARD_LIMIT: Duration = Duration::from_secs(120);

const TOKEN: &str = "s3cret-for-schemathesis";

/// The schemathesis CLI (`schemathesis`, or its short name `st`), or `None` (skip) when
/// neither runs and `SCHEMATHESIS_REQUIRED` is not `1`.
fn cli() -> Option<&'static str> {
    for name in ["schemathesis", "st"] {
        let ok = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(name);
        }
    }
    assert!(
        std::env::var("SCHEMATHESIS_REQUIRED").as_deref() != Ok("1"),
        "SCHEMATHESIS_REQUIRED=1 but schemathesis is not installed \
         (python3 -m pip install schemathesis)"
    );
    // Straight to stderr: libtest would swallow eprintln! of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "note: schemathesis not installed, its run is skipped \
         (python3 -m pip install schemathesis, or run scripts/test)"
    );
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let Some(cli) = cli() else { return };
    // Objects named like the document's examples, so that example-driven cases reach real
    // ones; an HTTPS listener, so that domains get certificates and the list has entries.
    let https = format!("listen_addr = \"127.0.0.1:{}\"\n", free_port());
    let p = ApiSpec::new()
        .backend("web-v1", &["a"])
        .backend("web-v2", &["b"])
        .backend("web-v3", &["a", "b"])
        .domain("app.example.com", "a")
        .domain("other.example.com", "b")
        .proxy_keys(&https)
        .token(TOKEN)
        .start()
        .await;

    let artifacts = artifacts_dir();
    let work = tempfile::tempdir().unwrap();
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    let mut cmd = Command::new(cli);
    cmd.arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", p.admin))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        // Every check but the two that judge how strict validation is against the schema's
        // patterns (the API accepts some spellings the document does not advertise, such as a
        // domain with spaces around it, and refuses some it cannot describe, such as a host
        // name that does not resolve).
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--max-time", MAX_SECONDS])
        .args(["--seed", &seed])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit"])
        .arg("--report-junit-path")
        .arg(artifacts.join("schemathesis-junit.xml"))
        .arg("--no-color")
        // Its own files (caches) stay out of the work tree.
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let (status, output) = tokio::task::spawn_blocking(move || run_bounded(cmd, HARD_LIMIT))
        .await
        .unwrap();
    std::fs::write(artifacts.join("schemathesis.txt"), &output).unwrap();
    let summary: Vec<&str> = output
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "schemathesis ran in {:.0?}:\n{}",
        started.elapsed(),
        summary.join("\n")
    );
    assert!(
        status == Some(0),
        "schemathesis failed (exit {status:?}):\n{output}\n--- proxy log ---\n{}",
        p.log()
    );
    assert!(
        output.contains("generated") && output.contains("passed"),
        "no test cases ran:\n{output}"
    );
}

/// Runs `cmd` to its end or until `limit` (then kills it); its exit code (`None` when killed
/// or signalled) and its stdout and stderr.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd.spawn().expect("start schemathesis");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = out.join().unwrap();
    text.push_str(&err.join().unwrap());
    if status.is_none() {
        text.push_str(&format!("\n(killed after {limit:?})"));
    }
    (status, text)
}
