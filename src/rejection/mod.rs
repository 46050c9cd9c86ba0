//! The rejection types of the shared core: each layer that adds a failure
//! of its own re-exports its type from its `error` module, and any layer
//! (or the stack) can recognise another's without reaching into it.
//!
//! | type | re-exported by | a failure of the backend? |
//! |---|---|---|
//! | [`CircuitOpen`] (and [`CircuitState`]) | `circuit_breaker::error` (`circuit_breaker`) | no: never sent |
//! | [`BulkheadFull`] (and [`FullReason`]) | `bulkhead::error` | no: never sent |
//! | [`Elapsed`] | `timeout::error` | yes: the attempt took too long |
//! | [`DeadlineExceeded`] | `timeout::error` | no: the caller's time ran out |
//! | [`RateLimited`] | `rate_limit::error` | no: never sent |
//!
//! [`Rejection`] folds all five into one enum to `match` on, found anywhere
//! in an error's `source()` chain by [`Rejection::of`]. The crate root
//! re-exports it and the five error types.

mod bulkhead;
mod circuit;
mod of;
mod rate_limit;
mod timeout;

pub use self::bulkhead::{BulkheadFull, FullReason};
pub use self::circuit::{CircuitOpen, CircuitState};
pub use self::of::Rejection;
pub use self::rate_limit::RateLimited;
pub use self::timeout::{DeadlineExceeded, Elapsed};
