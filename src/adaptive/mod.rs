//! An adaptive concurrency limit: a bulkhead whose limit follows what the
//! backend can take, as Netflix's `concurrency-limits` and Envoy's adaptive
//! concurrency filter do.
//!
//! A static limit is a guess: too high and an overloaded backend queues
//! every call (latency climbs, timeouts follow); too low and capacity goes
//! unused. [`AdaptiveLimitLayer`] measures each call that the
//! [bulkhead](crate::bulkhead) lets through and moves the bulkhead's limit
//! through its handle's
//! [`set_max_concurrent`](crate::bulkhead::BulkheadHandle::set_max_concurrent):
//! down when calls fail or queue, up while they do not, within
//! `[min_limit, max_limit]`. The bulkhead does the admitting (and the
//! queueing, if it has a `max_wait`); this layer only learns.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::adaptive::{AdaptiveLimitLayer, Aimd};
//! use steadfast::bulkhead::BulkheadLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let bulkhead = BulkheadLayer::new(10)?;
//! let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
//!     .algorithm(Aimd::new().backoff_ratio(0.5))
//!     .min_limit(2)
//!     .max_limit(100)
//!     .build()?; // Err(InvalidConfig) names the bad field
//! let limit = adaptive.handle();
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(bulkhead)
//!     .layer(adaptive)
//!     .service_fn(|fail: bool| async move {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         if fail { Err(std::io::Error::other("overloaded")) } else { Ok("ok") }
//!     });
//!
//! assert_eq!(limit.limit(), 10);
//! // Two drops halve the limit twice; the bulkhead follows.
//! for _ in 0..2 {
//!     assert!(svc.ready().await?.call(true).await.is_err());
//! }
//! assert_eq!(limit.limit(), 2);
//! assert_eq!(limit.bulkhead().max_concurrent(), 2);
//! assert_eq!(limit.drops(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Algorithms
//!
//! - [`Aimd`]: additive increase (about one per limit's worth of
//!   successes, while at least half the limit is in use), multiplicative
//!   decrease on each drop. Reads no clock unless given a timeout; pair it
//!   with a [`TimeoutLayer`](crate::timeout::TimeoutLayer) inside so a
//!   hanging backend produces drops.
//! - [`Gradient`] (the default): compares the short-term RTT with the
//!   long-term one and shrinks the limit as the backend starts to queue,
//!   before anything fails; drops also shrink it. See [`Gradient`] for the
//!   formula and why the long-term RTT is a windowed minimum.
//!
//! A call is a **drop** when its [`Classify`](crate::classify::Classify)
//! says [`Outcome::Failure`](crate::classify::Outcome::Failure) (by default
//! every `Err`; [`AdaptiveLimitLayer::classify`] for HTTP or gRPC), an RTT
//! sample when it says `Success`, and neither when it says `Ignored`. A
//! call whose future is dropped before it finishes is neither: cancelling
//! is not a sign of overload.
//!
//! # Where it goes
//!
//! Directly inside the bulkhead it drives:
//! `Bulkhead → AdaptiveLimit → CircuitBreaker → Timeout → service`. There
//! it sees only admitted calls and times them from the moment they hold a
//! slot, so time spent queueing in the bulkhead is not mistaken for the
//! backend's latency; the per-attempt timeout inside makes a hanging call a
//! drop. Outside the breaker, a fast-failing open breaker would count as
//! drops and push the limit to its minimum: keep the breaker inside.
//!
//! # Hot path
//!
//! `call` adds one `Arc` clone, and for the gradient (or AIMD with a
//! timeout) one clock read. When a call finishes, the estimate is updated
//! under a try-lock that never makes a caller wait: a caller that finds it
//! held leaves its sample out (counted as `skipped`), or, for a drop,
//! leaves the drop for the next holder. The bulkhead's limit is written
//! only when the whole number changes, by the holder of the try-lock (so
//! changes reach the bulkhead in order); that write takes the bulkhead's
//! queue lock for a moment, as any
//! [`set_max_concurrent`](crate::bulkhead::BulkheadHandle::set_max_concurrent)
//! does. Nothing allocates after the layer is built.
//!
//! # Errors
//!
//! The layer adds no error: calls return what the inner service returns,
//! and rejections come from the bulkhead
//! ([`BulkheadFull`](crate::bulkhead::error::BulkheadFull)).
//! [`AdaptiveLimitBuilder::build`] returns an
//! [`InvalidConfig`](crate::InvalidConfig) naming the field for bounds or
//! algorithm settings out of range.
//!
//! # Clone
//!
//! Every service of one layer, and every clone, feeds one estimate and
//! moves one bulkhead's limit. Two layers driving one bulkhead would fight
//! over it; build one per bulkhead.

mod algorithm;
mod collect;
mod core;
pub mod future;
mod handle;
mod layer;
mod service;

pub use self::algorithm::{Aimd, Algorithm, Gradient};
pub use self::handle::{AdaptiveHandle, AdaptiveSnapshot};
pub use self::layer::{AdaptiveLimitBuilder, AdaptiveLimitLayer};
pub use self::service::AdaptiveLimit;
