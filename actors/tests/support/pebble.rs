//! Pebble (Let's Encrypt's RFC 8555 test server, Debian package `pebble`) for end-to-end
//! ACME tests: pebble-challtestsrv as DNS answering 127.0.0.1 for every name, Pebble with its
//! own test CA, and the HTTP-01 port pointed where the test answers challenges. Shared by the
//! actors' tests and the proxy's tests (included with `#[path]`).
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// === Pebble ===

pub struct Pebble {
    pub children: Vec<Child>,
    pub dir: tempfile::TempDir,
    pub directory_url: String,
    pub ca_pem: String,
    pub server: Command,
    pub dir_port: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts the ACME server (it keeps everything in memory: a restart forgets all accounts).
    pub fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pebble.log"))
            .unwrap();
        let child = self
            .server
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pebble");
        self.children.push(child);
        wait_for_port(self.dir_port, "pebble");
    }

    /// Stops the ACME server and starts it again on the same address.
    pub fn restart_server(&mut self) {
        if let Some(mut old) = self.children.pop() {
            let _ = old.kill();
            let _ = old.wait();
        }
        self.start_server();
    }

    pub fn logs(&self) -> String {
        logs_in(self.dir.path())
    }
}

pub fn logs_in(dir: &Path) -> String {
    ["challtestsrv.log", "pebble.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// Pebble's two binaries, installed with scripts/pebble.sh when missing.
pub fn pebble_binaries() -> Option<(PathBuf, PathBuf)> {
    let found = || Some((on_path("pebble")?, on_path("pebble-challtestsrv")?));
    if let Some(bins) = found() {
        return Some(bins);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = [
        manifest.join("scripts/pebble.sh"),
        manifest.join("../scripts/pebble.sh"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .expect("scripts/pebble.sh");
    eprintln!("pebble not found; running {}", script.display());
    let _ = Command::new("bash").arg(&script).status();
    found()
}

/// A CA and a `localhost`/`127.0.0.1` certificate signed by it, for Pebble's HTTPS directory
/// (the Debian package does not ship Pebble's test certificates).
pub fn directory_tls() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "pingora-vhost test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, leaf.pem(), key.serialize_pem())
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn start_pebble(
    pebble: &Path,
    challtestsrv: &Path,
    http_port: u16,
    validity_secs: u64,
) -> Pebble {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert_pem, key_pem) = directory_tls();
    std::fs::write(dir.path().join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();
    let (dns, mgmt, dir_port, tls_port) = (free_port(), free_port(), free_port(), free_port());
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{dir_port}"),
        "managementListenAddress": "",
        "certificate": dir.path().join("cert.pem"),
        "privateKey": dir.path().join("key.pem"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
        "certificateValidityPeriod": validity_secs,
    }});
    let config_path = dir.path().join("pebble-config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();

    let mut children = Vec::new();
    let dns_addr = format!("127.0.0.1:{dns}");
    children.push(
        Command::new(challtestsrv)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args([
                "-dns01",
                &dns_addr,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args(["-management", &format!("127.0.0.1:{mgmt}")])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err.log"))
            .spawn()
            .expect("start pebble-challtestsrv"),
    );
    let mut pebble = Pebble {
        children,
        dir,
        directory_url: format!("https://127.0.0.1:{dir_port}/dir"),
        ca_pem,
        server: Command::new(pebble),
        dir_port,
    };
    pebble
        .server
        .arg("-config")
        .arg(&config_path)
        .args(["-dnsserver", &dns_addr, "-strict=false"])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdin(Stdio::null());
    wait_for_port(dns, "pebble-challtestsrv");
    pebble.start_server();
    pebble
}
