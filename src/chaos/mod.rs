//! Fault injection: latency, errors, hangs and outage windows, drawn from a
//! seeded sequence on tokio's clock, for tests, demos and benchmarks.

pub mod error;
pub mod future;

mod draw;
mod fault;
mod handle;
mod layer;
mod service;

pub use self::fault::{Fault, Latency};
pub use self::handle::{FaultHandle, FaultSnapshot};
pub use self::layer::{FaultBuilder, FaultLayer};
pub use self::service::FaultService;
