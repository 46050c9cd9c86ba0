//! Per-layer telemetry: names, snapshots, listeners and (feature `serde`)
//! serialised snapshots.

#[cfg(feature = "http")]
mod idempotency;
mod names;
mod snapshots;
