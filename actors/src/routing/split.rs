//! A domain's traffic split between tags: which tag's route a request takes. Smooth weighted
//! round robin over the tags (unrolled at publish time), or the tag a sticky cookie names.

use super::{smooth_order, Route};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The name of the cookie that keeps a client on one tag.
pub const STICKY_COOKIE: &str = "pingora_vhost_tag";

/// The tags of a split, each with its weight and its own single-tag route.
#[derive(Debug)]
pub struct Split {
    lanes: Vec<Arc<Route>>,
    /// Indices into `lanes`, interleaved by weight.
    order: Vec<u32>,
    cursor: AtomicUsize,
    /// Keep each client on the tag it first got.
    pub sticky: bool,
}

/// The route a request of a split domain takes.
#[derive(Debug)]
pub struct LaneChoice {
    /// The single-tag route to use.
    pub route: Arc<Route>,
    /// The answer must set the sticky cookie to this route's tag.
    pub set_cookie: bool,
}

impl Split {
    /// A split over `(weight, route)` lanes with weights above zero.
    pub fn new(lanes: Vec<(u32, Arc<Route>)>, sticky: bool) -> Self {
        let weights: Vec<u32> = lanes.iter().map(|(w, _)| *w).collect();
        Self {
            order: smooth_order(&weights),
            lanes: lanes.into_iter().map(|(_, r)| r).collect(),
            cursor: AtomicUsize::new(0),
            sticky,
        }
    }

    /// The lanes' routes.
    pub fn lanes(&self) -> &[Arc<Route>] {
        &self.lanes
    }

    /// The lane for a request carrying `cookie` (the sticky cookie's value, if any): the tag it
    /// names while that tag is in the split, else the next by weight. A lane with no backend
    /// that may take traffic is passed over while another has one.
    pub fn choose(&self, cookie: Option<&[u8]>) -> LaneChoice {
        if self.sticky {
            if let Some(lane) = cookie.and_then(|c| {
                self.lanes
                    .iter()
                    .find(|l| l.tag.as_str().as_bytes() == c && l.pool.has_routable(|_| false))
            }) {
                return LaneChoice {
                    route: Arc::clone(lane),
                    set_cookie: false,
                };
            }
        }
        let len = self.order.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut pick = &self.lanes[self.order[start % len] as usize];
        if !pick.pool.has_routable(|_| false) {
            if let Some(up) = self.lanes.iter().find(|l| l.pool.has_routable(|_| false)) {
                pick = up;
            }
        }
        LaneChoice {
            route: Arc::clone(pick),
            set_cookie: self.sticky,
        }
    }
}

/// The sticky cookie's value in a `Cookie` request header, if present.
pub fn sticky_cookie(header: &[u8]) -> Option<&[u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (name, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        (name == STICKY_COOKIE.as_bytes()).then(|| &value[1..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sticky_cookie_among_others() {
        assert_eq!(
            sticky_cookie(b"a=1; pingora_vhost_tag=b; c=3"),
            Some(&b"b"[..])
        );
        assert_eq!(
            sticky_cookie(b"pingora_vhost_tag=canary"),
            Some(&b"canary"[..])
        );
        assert_eq!(sticky_cookie(b"xpingora_vhost_tag=b"), None);
        assert_eq!(sticky_cookie(b"other=1"), None);
        assert_eq!(sticky_cookie(b""), None);
    }
}
