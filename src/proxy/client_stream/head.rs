//! Where a request head ends and whether its request line is well formed, followed as the
//! bytes arrive (a head may come in any number of pieces).

/// Follows a request head as it arrives: where it ends (the first empty line after the request
/// line), and whether the request line is `METHOD SP target SP version` with no other space or
/// control byte.
#[derive(Default)]
pub(super) struct HeadScan {
    /// Bytes of the head seen so far.
    pub(super) len: usize,
    at: Scan,
    spaces: usize,
    /// The request line's bytes so far ended with a CR, which must be followed by its LF.
    cr: bool,
    pub(super) bad_line: bool,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Scan {
    /// Empty lines before the request line are skipped.
    #[default]
    BeforeLine,
    RequestLine,
    LineStart,
    LineStartCr,
    Header,
}

impl HeadScan {
    /// Feeds the next bytes; returns the offset just past the head's end if it is in them.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.at {
                Scan::BeforeLine => {
                    if b != b'\r' && b != b'\n' {
                        self.at = Scan::RequestLine;
                        continue;
                    }
                }
                Scan::RequestLine => {
                    let rest = &bytes[i..];
                    match memchr::memchr(b'\n', rest) {
                        Some(lf) => {
                            self.request_line(&rest[..lf], true);
                            i += lf;
                            self.at = Scan::LineStart;
                        }
                        None => {
                            self.request_line(rest, false);
                            break;
                        }
                    }
                }
                Scan::LineStart => match b {
                    b'\n' => return Some(self.ended(i + 1)),
                    b'\r' => self.at = Scan::LineStartCr,
                    _ => self.at = Scan::Header,
                },
                Scan::LineStartCr => {
                    if b == b'\n' {
                        return Some(self.ended(i + 1));
                    }
                    self.at = Scan::Header;
                    continue;
                }
                Scan::Header => match memchr::memchr(b'\n', &bytes[i..]) {
                    Some(lf) => {
                        i += lf;
                        self.at = Scan::LineStart;
                    }
                    None => break,
                },
            }
            i += 1;
        }
        self.len += bytes.len();
        None
    }

    /// The next piece of the request line; `ends` when its LF follows.
    fn request_line(&mut self, piece: &[u8], ends: bool) {
        // A CR may only come right before the LF.
        if self.cr && !(ends && piece.is_empty()) {
            self.bad_line = true;
        }
        let mut text = piece;
        if let Some(head) = text.strip_suffix(b"\r") {
            text = head;
            self.cr = !ends;
        } else {
            self.cr = false;
        }
        self.spaces += text.iter().filter(|&&b| b == b' ').count();
        if text.iter().any(|&b| b < 0x20 || b == 0x7f) {
            self.bad_line = true;
        }
        if ends && self.spaces != 2 {
            self.bad_line = true;
        }
    }

    fn ended(&mut self, n: usize) -> usize {
        self.len += n;
        n
    }
}
