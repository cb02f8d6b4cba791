//! The lane a request for a split domain takes: the tag its sticky cookie names while that tag
//! is in the split, else the next by weight.

use super::RequestCtx;
use http::header;
use pingora::http::RequestHeader;
use std::sync::Arc;
use vhost_actors::routing::{sticky_cookie, Route};

/// A split domain's request takes the route of one of its tags: the one its sticky cookie names
/// (while that tag is in the split), else the next by weight. Other domains keep their route.
pub fn choose_lane(req: &RequestHeader, route: Arc<Route>, ctx: &mut RequestCtx) -> Arc<Route> {
    let Some(split) = &route.split else {
        return route;
    };
    let cookie = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|v| sticky_cookie(v.as_bytes()));
    let choice = split.choose(cookie);
    if choice.set_cookie {
        ctx.sticky_tag = Some(choice.route.tag.clone());
    }
    choice.route
}
