//! Property tests, bounded for CI (each property's case count is next to it; the whole binary
//! runs in well under a minute in a debug build): host normalisation (host.rs),
//! config checking (config.rs).

#[path = "../../actors/tests/props_gen/mod.rs"]
mod gen;

mod config;
mod host;
