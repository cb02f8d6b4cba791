//! Small values the request path renders on every request, written into stack buffers instead
//! of through `format!`: the request id and the client address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A process-unique request id: 16 lowercase hex digits of a random-per-start counter.
#[derive(Clone, Copy)]
pub struct RequestId([u8; 16]);

impl RequestId {
    /// The next id.
    pub fn next() -> Self {
        static NEXT: OnceLock<AtomicU64> = OnceLock::new();
        let next = NEXT.get_or_init(|| {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            AtomicU64::new(seed.rotate_left(24) ^ u64::from(std::process::id()))
        });
        Self::from_u64(next.fetch_add(1, Ordering::Relaxed))
    }

    fn from_u64(n: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((n >> ((15 - i) * 4)) & 0xf) as usize];
        }
        RequestId(out)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }
}

/// An IP address as text, without allocating.
pub struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    /// Renders `ip` (IPv4 by hand, IPv6 through its `Display`).
    pub fn new(ip: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b".");
                    }
                    t.push(digits.format(octet).as_bytes());
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut t.buf[..]);
                // 45 bytes hold the longest IPv6 text form.
                let _ = write!(cursor, "{v6}");
                t.len = cursor.position() as usize;
            }
        }
        t
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_hex_and_unique() {
        assert_eq!(RequestId::from_u64(0xab).as_str(), "00000000000000ab");
        assert_eq!(
            RequestId::from_u64(u64::MAX - 1).as_str(),
            "fffffffffffffffe"
        );
        let (a, b) = (RequestId::next(), RequestId::next());
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn addresses_render_like_display() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "::ffff:192.168.100.200",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }
}
