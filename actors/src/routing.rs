//! What the request path reads to route a request: the table of published routes and, inside
//! each route, the pool of backends of its tag. Only the RegistryActor writes it.

mod pool;
mod split;
mod table;
#[cfg(test)]
mod tests;

pub use pool::{smooth_order, BackendPool};
pub use split::{sticky_cookie, LaneChoice, Split, STICKY_COOKIE};
pub use table::{Route, RouteTable};
