//! What the common case needs, in one `use`.
//!
//! ```
//! use steadfast::prelude::*;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::builder().consecutive_failures(1).build()?);
//! let svc = ServiceBuilder::new()
//!     .retries(RetryConfig::builder().max_attempts(2).build()?)
//!     .layer(breaker)
//!     .service_fn(|()| async { Err::<(), _>(BoxError::from("down")) });
//!
//! // The first attempt fails and trips the breaker; the retry is rejected
//! // by it, and a rejection of ours is never sent again.
//! let err = svc.oneshot(()).await.unwrap_err();
//! match Rejection::of(&err) {
//!     Some(Rejection::CircuitOpen { retry_after, .. }) => assert!(retry_after.is_some()),
//!     other => panic!("expected the open breaker, got {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! It brings in:
//!
//! * the preset stack: [`ResilienceLayer`] and its [`ResilienceHandle`];
//! * the layers: [`CircuitBreakerLayer`], [`KeyedCircuitBreakerLayer`],
//!   [`RetryLayer`], [`TimeoutLayer`], [`DeadlineLayer`], [`BulkheadLayer`],
//!   and with feature `http` `IdempotencyKeyLayer` and `IdempotencyLayer`;
//! * their configuration: [`CircuitBreakerConfig`], [`RetryConfig`],
//!   [`Backoff`], [`Jitter`], [`RetryBudget`], [`Window`];
//! * why a call ended: [`Rejection`], [`CircuitOpen`], [`BulkheadFull`],
//!   [`DeadlineExceeded`], [`Elapsed`], [`CircuitState`], [`FullReason`];
//! * errors: [`BoxError`], [`InvalidConfig`], [`is_caused_by`], [`cause_ref`];
//! * classification: [`Classify`], [`Outcome`], [`ErrorsAsFailures`], and
//!   with feature `http` `HttpClassifier`, `GrpcClassifier`, `GrpcCode`;
//! * [`Deadline`];
//! * [`ServiceBuilderExt`](crate::ServiceBuilderExt) as `_`: its methods,
//!   without its name, which tower-http's trait of the same name also uses.
//!
//! Modules and the rest (handles, snapshots, futures, stores) stay behind
//! their paths: a glob import should not take names a program is likely to
//! use for its own types.

pub use crate::builder::ServiceBuilderExt as _;
pub use crate::bulkhead::error::FullReason;
pub use crate::bulkhead::BulkheadLayer;
pub use crate::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, KeyedCircuitBreakerLayer, Window,
};
pub use crate::classify::{Classify, ErrorsAsFailures, Outcome};
#[cfg(feature = "http")]
pub use crate::classify::{GrpcClassifier, GrpcCode, HttpClassifier};
pub use crate::deadline::Deadline;
pub use crate::error::{cause_ref, is_caused_by, BoxError, InvalidConfig};
#[cfg(feature = "http")]
pub use crate::idempotency::{IdempotencyKeyLayer, IdempotencyLayer};
pub use crate::rejection::{
    BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed, RateLimited, Rejection,
};
pub use crate::retry::{Backoff, Jitter, RetryBudget, RetryConfig, RetryLayer};
pub use crate::timeout::{DeadlineLayer, TimeoutLayer};

// === the preset stack ===
pub use super::{ResilienceHandle, ResilienceLayer};
