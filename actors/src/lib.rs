//! Domain model, routing view and actors of pingora-vhost. No Pingora or HTTP server here:
//! the binary wires these into the proxy and the admin API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cert;
pub mod command;
pub mod health;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod resolve;
pub mod rollout;
pub mod routing;
pub mod store;
pub mod upstream;

pub use ractor;
