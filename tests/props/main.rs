//! Property tests, bounded for CI (each property's case count is next to it; the whole binary
//! runs in well under a minute in a debug build): host normalisation (host.rs), config
//! checking (config.rs) and the admin API's answers to random bodies (api.rs).

#[path = "../../actors/tests/props_gen/mod.rs"]
mod gen;
#[path = "../support/mod.rs"]
mod support;

mod api;
mod config;
mod host;
