//! A real etcd cluster on loopback (Debian's `etcd-server`), one process per member, for the
//! tests of instances sharing a registry. Without the binary the tests say so and pass, unless
//! `ETCD_REQUIRED=1` (CI) makes that a failure.

use super::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary, if installed.
pub fn etcd_bin() -> Option<PathBuf> {
    let candidates = [std::env::var("ETCD_BIN").ok(), Some("/usr/bin/etcd".into())];
    let found = candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("ETCD_REQUIRED").as_deref() != Ok("1"),
            "ETCD_REQUIRED=1 but no etcd binary (apt-get install etcd-server)"
        );
        eprintln!("skipped: no etcd binary (apt-get install etcd-server)");
    }
    found
}

/// One member: its ports and data directory.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A cluster of members on loopback; killed when dropped.
pub struct EtcdCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    token: String,
    /// Extra flags of every member.
    flags: Vec<String>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster has a leader.
    pub async fn start(bin: PathBuf, n: usize) -> EtcdCluster {
        Self::start_with(bin, n, &[]).await
    }

    /// Like [`EtcdCluster::start`], with extra flags for every member.
    pub async fn start_with(bin: PathBuf, n: usize, flags: &[&str]) -> EtcdCluster {
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut c = EtcdCluster {
            bin,
            dir: tempfile::tempdir().unwrap(),
            members,
            token: format!("t{}", std::process::id()),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        for i in 0..n {
            c.start_member(i);
        }
        c.wait_healthy(Duration::from_secs(30)).await;
        c
    }

    /// The client URLs, as `[state.etcd] endpoints` lists them.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// TOML for `endpoints = [...]`.
    pub fn endpoints_toml(&self) -> String {
        let list: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", list.join(", "))
    }

    fn start_member(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client))
            .arg("--advertise-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-cluster")
            .arg(cluster.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.flags)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd starts");
        self.members[i].child = Some(child);
    }

    /// Stops member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes member `i` (SIGSTOP): its ports still accept connections, nothing answers.
    pub fn pause(&mut self, i: usize) {
        if let Some(c) = &self.members[i].child {
            let status = Command::new("kill")
                .args(["-STOP", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_member(i);
    }

    /// Waits until every running member answers its health endpoint with a leader.
    pub async fn wait_healthy(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        let client = reqwest::Client::new();
        loop {
            let mut all = true;
            for m in self.members.iter().filter(|m| m.child.is_some()) {
                let ok = client
                    .get(format!("http://127.0.0.1:{}/health", m.client))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .is_some();
                all &= ok;
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts `key` = `value` through member `i`'s JSON gateway (etcd's own v3 API over HTTP).
    pub async fn put(&self, i: usize, key: &str, value: &str) {
        let body = serde_json::json!({"key": b64(key), "value": b64(value)});
        self.gateway(i, "put", body).await;
    }

    /// Deletes `key` through member `i`'s JSON gateway.
    pub async fn delete(&self, i: usize, key: &str) {
        let body = serde_json::json!({"key": b64(key)});
        self.gateway(i, "deleterange", body).await;
    }

    /// One request to member `i`'s gateway, tried again (for up to 30 s) while the cluster
    /// elects a leader after a member went away.
    async fn gateway(&self, i: usize, op: &str, body: serde_json::Value) {
        let url = format!("http://127.0.0.1:{}/v3/kv/{op}", self.members[i].client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sent = reqwest::Client::new()
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                other => assert!(
                    Instant::now() < deadline,
                    "{op} through member {i}: {other:?}\n{}",
                    self.logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Turns authentication on: a `root` user (password `root`), and `user` with `password`
    /// allowed to read and write every key under `prefix`.
    pub async fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let end = String::from_utf8(end).unwrap();
        let steps = [
            (
                "user/add",
                serde_json::json!({"name": "root", "password": "root"}),
            ),
            ("role/add", serde_json::json!({"name": "root"})),
            (
                "user/grant",
                serde_json::json!({"user": "root", "role": "root"}),
            ),
            ("role/add", serde_json::json!({"name": user})),
            (
                "role/grant",
                serde_json::json!({"name": user, "perm": {
                    "permType": "READWRITE", "key": b64(prefix), "range_end": b64(&end)}}),
            ),
            (
                "user/add",
                serde_json::json!({"name": user, "password": password}),
            ),
            (
                "user/grant",
                serde_json::json!({"user": user, "role": user}),
            ),
            ("enable", serde_json::json!({})),
        ];
        for (op, body) in steps {
            let url = format!("http://127.0.0.1:{}/v3/auth/{op}", self.members[0].client);
            let r = reqwest::Client::new()
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            // The root role may exist from the start.
            let exists = op == "role/add" && text.contains("already exists");
            assert!(status.is_success() || exists, "auth {op}: {status} {text}");
        }
    }

    /// Every member's log.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {}\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Standard base64 with padding: how the gateway takes keys and values.
fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
