//! Rate limit: at most `n` calls per period, shared by every clone of the
//! service, with a burst.
//!
//! A rate limit protects a dependency from more calls than it agreed to
//! take (client side), or a service from a caller who sends too many
//! (server side, usually one limit per caller: see [`KeyedRateLimitLayer`]). The limiter
//! is GCRA, the generic cell rate algorithm, on one atomic word — the same
//! algorithm as `governor`: an idle limiter admits `burst` calls at once,
//! then one every `period / n`. Over any window of length `w`, whoever
//! calls and however many threads they run on, at most
//! `burst + floor(w * n / period)` calls are admitted.
//!
//! A call over the limit either fails at once with
//! [`RateLimited`](error::RateLimited), which says how long until a call
//! would be admitted (the default), or waits for its turn, for up to
//! [`max_wait`](RateLimitBuilder::max_wait).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::rate_limit::{error::RateLimited, RateLimitLayer};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // 10 calls a second, at most 2 at once.
//! let layer = RateLimitLayer::builder(10, Duration::from_secs(1))
//!     .burst(2)
//!     .build()?; // Err(InvalidConfig) names the bad field
//! let svc = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
//!
//! // Clones share the limit: two calls pass, the third is rejected.
//! assert_eq!(svc.clone().oneshot(1).await?, 1);
//! assert_eq!(svc.clone().oneshot(2).await?, 2);
//! let err = svc.clone().oneshot(3).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().expect("over the limit");
//! assert_eq!(limited.retry_after(), Duration::from_millis(100));
//!
//! // One call every 100 ms after that.
//! tokio::time::advance(Duration::from_millis(100)).await;
//! assert_eq!(svc.clone().oneshot(4).await?, 4);
//! assert_eq!(layer.handle().snapshot().rejected, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Waiting
//!
//! With a [`max_wait`](RateLimitBuilder::max_wait), a call over the limit
//! joins a first-in, first-out queue in `call`, and its response future
//! waits for its turn: the oldest waiter takes the next cell the rate
//! allows, and while anyone waits, a newcomer queues behind them. A call
//! whose turn, with the queue ahead of it, would come after its wait —
//! `max_wait`, or the request's [`Deadline`](crate::deadline::Deadline) if
//! that is sooner: a call never waits past its deadline — is rejected at
//! once instead of waiting in vain. A waiter whose future is dropped leaves
//! the queue, and the callers behind it move up: it never took a cell, so
//! none is lost. The queue holds at most
//! [`max_waiting`](RateLimitBuilder::max_waiting) calls (default 1,024).
//!
//! Waiters wake on tokio's timer, which fires up to a millisecond late.
//! With a burst of 1 the schedule starts again from each late admission,
//! so a waiting caller sees a little less than the full rate; a burst that
//! spans a millisecond or more absorbs the lateness.
//!
//! The deadline read is the one in scope ([`Deadline::current`](crate::deadline::Deadline::current),
//! set by the preset's deadline piece); [`deadline_aware`](RateLimitLayer::deadline_aware)
//! also reads the request's own and tells the next hop the time left after
//! the wait.
//!
//! # Ordering
//!
//! In the preset, the limiter sits **outside** retry:
//!
//! ```text
//! Fallback → Metrics → IdempotencyKey → Deadline → RateLimit → Retry → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! so a call takes one cell however many attempts it makes: retries are
//! paced by the retry budget and backoff, and a limit agreed with a
//! dependency is never exceeded by the calls themselves. Put a limiter
//! *inside* retry (below it) instead to count every attempt against the
//! limit; a [`RateLimited`](error::RateLimited) rejection there is never
//! retried, since it was never sent.
//!
//! On a server, put it near the top, after whatever identifies the caller,
//! and turn rejections into `429 Too Many Requests` with
//! `http::TooManyRequestsLayer` (feature `http`).
//!
//! # Errors
//!
//! The service fails with [`BoxError`](crate::BoxError): the inner
//! service's error, or [`RateLimited`](error::RateLimited) for a call the
//! limiter refused. A rejection is not a failure of the backend: the
//! circuit breaker counts it as [`Ignored`](crate::classify::Outcome::Ignored),
//! retry never repeats it, and the metrics layer counts it under
//! `rejected_rate_limited`.
//!
//! # Clone
//!
//! One limit for everything a layer makes: every clone of the layer and
//! of its services draws from the same word. (tower's `RateLimit` is per
//! service clone, so a service cloned per request — as axum and tonic do —
//! is not limited at all.)
//!
//! # Cost
//!
//! An admitted call reads the clock (unless a layer outside read it in the
//! same call) and makes one compare-and-swap; it takes no lock, allocates
//! nothing, and its response future is the inner future plus a tag. A
//! rejection allocates its boxed error. Waiting takes a lock and boxes the
//! request with the service.

mod collect;
pub mod error;
pub mod future;
pub(crate) mod gcra;
mod handle;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod keyed;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod keys;
mod layer;
mod service;
mod shared;

pub use self::handle::{RateLimitHandle, RateLimitSnapshot};
pub use self::keyed::{
    KeyedRateLimit, KeyedRateLimitBuilder, KeyedRateLimitHandle, KeyedRateLimitLayer,
    KeyedRateLimitSnapshot,
};
pub use self::layer::{RateLimitBuilder, RateLimitLayer};
pub use self::service::RateLimit;
pub use self::shared::Rejected;
pub use crate::key::KeyOf;
