//! The certificate cache directory: `<domain>.crt` (chain) and `<domain>.key` next to the ACME
//! account credentials, every file mode 0600 and written atomically (temp, fsync, rename).

use super::material::{CertError, CertMaterial};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically with mode 0600: a temp file in the same directory,
/// fsync, rename over `path`, fsync of the directory. Creates the directory (mode 0700).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // Unique per call: two writers of the same file must not share a temp file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // A leftover temp file keeps its old mode through `open`; make sure.
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Where certificates of ACME domains are kept between runs.
#[derive(Clone, Debug)]
pub struct CertCache {
    dir: PathBuf,
}

impl CertCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stem(domain: &str) -> String {
        domain
            .chars()
            .map(|c| match c {
                '*' => '_',
                c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
                _ => '_',
            })
            .collect()
    }

    /// The chain file of `domain`.
    pub fn cert_path(&self, domain: &str) -> PathBuf {
        self.dir.join(format!("{}.crt", Self::stem(domain)))
    }

    /// The key file of `domain`.
    pub fn key_path(&self, domain: &str) -> PathBuf {
        self.dir.join(format!("{}.key", Self::stem(domain)))
    }

    /// The cached certificate of `domain`: `Ok(None)` when there is none, an error when the
    /// files are unreadable, invalid, or do not belong together.
    pub fn load(&self, domain: &str) -> Result<Option<CertMaterial>, CertError> {
        let (cert_path, key_path) = (self.cert_path(domain), self.key_path(domain));
        if !cert_path.exists() && !key_path.exists() {
            return Ok(None);
        }
        CertMaterial::from_files(&cert_path, &key_path).map(Some)
    }

    /// Stores `material` as the certificate of `domain`: the key first, so that a crash between
    /// the two writes leaves a pair that fails the key check (and is replaced), never a
    /// certificate served with a stale key.
    pub fn save(&self, domain: &str, material: &CertMaterial) -> io::Result<()> {
        write_private_file(&self.key_path(domain), material.key_pem().as_bytes())?;
        write_private_file(&self.cert_path(domain), material.chain_pem().as_bytes())
    }
}
