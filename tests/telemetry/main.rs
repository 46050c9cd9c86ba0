//! Per-layer telemetry: names, snapshots, listeners and (feature `serde`)
//! serialised snapshots.

#[cfg(feature = "http")]
mod idempotency;
mod listeners;
mod names;
#[cfg(feature = "serde")]
mod serde;
mod snapshots;
