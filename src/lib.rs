//! pingora-vhost: Host/SNI virtual hosting on Pingora with tag-based backend pools and atomic
//! A/B switching, driven by an admin REST API.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod demo;
pub mod proxy;
pub mod server;
pub mod telemetry;
pub mod tls;
