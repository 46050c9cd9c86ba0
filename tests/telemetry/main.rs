//! Per-layer telemetry: names, snapshots, listeners and (feature `serde`)
//! serialised snapshots.

mod names;
