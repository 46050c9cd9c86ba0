//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

/// Installs a `tracing` subscriber once, when `RUST_LOG` is set.
pub fn trace_init() {}
