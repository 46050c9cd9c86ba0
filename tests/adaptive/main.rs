//! The adaptive concurrency limit.
//!
//! * `layer`: drops, RTT samples, cancellation, the bulkhead following, the
//!   handle and metrics, the configuration (paused time);
//! * `concurrency`: many tasks on a multi-thread runtime;
//! * `simulation`: the capacity-drop simulation against a static bulkhead
//!   and no limit (paused time).

mod concurrency;
mod layer;
mod simulation;
