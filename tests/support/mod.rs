//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

/// Installs a `tracing` subscriber that prints through the test harness, once,
/// when `RUST_LOG` names a level (`error`, `warn`, `info`, `debug`, `trace`).
pub fn trace_init() {
    let Ok(level) = std::env::var("RUST_LOG") else {
        return;
    };
    let Ok(level) = level.parse::<tracing::Level>() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_test_writer()
        .try_init();
}
