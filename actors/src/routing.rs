//! What the request path reads to route a request: the table of published routes and, inside
//! each route, the pool of backends of its tag and the policy that picks one of them. Only the
//! RegistryActor writes it.

mod access;
mod lease;
mod maglev;
mod policy;
mod pool;
mod split;
mod table;
#[cfg(test)]
mod tests;

pub use access::{Access, ClientLimiter, Verdict};
pub use lease::Lease;
pub use maglev::{HashTables, MaglevTable};
pub use policy::{hash_ip, hash_key, Affinity, Policy};
pub use pool::{smooth_order, BackendPool, PoolMember};
pub use split::{sticky_cookie, LaneChoice, Split, STICKY_COOKIE};
pub use table::{Route, RouteTable};
