//! Bulkhead: a limit on the calls in flight to one backend, so that a slow
//! backend ties up a bounded share of the caller, not all of it.
//!
//! A bulkhead has `max_concurrent` slots. A call takes one before it reaches
//! the inner service and holds it until its response future finishes or is
//! dropped. A call that finds every slot taken either fails at once with
//! [`BulkheadFull`](error::BulkheadFull) (the default), or waits in a
//! first-in, first-out queue for up to
//! [`max_wait`](BulkheadBuilder::max_wait), with at most
//! [`max_waiting`](BulkheadBuilder::max_waiting) callers in it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::bulkhead::{error::{BulkheadFull, FullReason}, BulkheadLayer};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let layer = BulkheadLayer::builder(2)
//!     .max_wait(Duration::from_millis(100))
//!     .max_waiting(1)
//!     .build()?; // Err(InvalidConfig) names the bad field
//! let handle = layer.handle();
//! let mut svc = layer.layer(service_fn(|ms: u64| async move {
//!     tokio::time::sleep(Duration::from_millis(ms)).await;
//!     Ok::<_, std::io::Error>(ms)
//! }));
//!
//! // Two slow calls take both slots; a third waits, a fourth finds the queue full.
//! let a = svc.ready().await?.call(1_000);
//! let b = svc.ready().await?.call(1_000);
//! let c = svc.ready().await?.call(10);
//! let d = svc.ready().await?.call(10);
//! assert_eq!((handle.in_flight(), handle.waiting()), (2, 1));
//!
//! let full = d.await.unwrap_err();
//! let full = full.downcast_ref::<BulkheadFull>().expect("rejected by the bulkhead");
//! assert_eq!(full.reason(), FullReason::QueueFull);
//!
//! // No slot frees within 100 ms: the waiting call gives up.
//! let timed_out = c.await.unwrap_err();
//! assert_eq!(timed_out.downcast_ref::<BulkheadFull>().unwrap().reason(), FullReason::WaitTimedOut);
//! assert_eq!(a.await?, 1_000);
//! # drop(b);
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering
//!
//! Put the bulkhead **inside** retry and **outside** the circuit breaker and
//! the per-attempt timeout:
//!
//! ```text
//! IdempotencyKey → Deadline → Retry → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! It then limits *attempts* in flight: each retry takes a slot of its own
//! and frees it when the attempt ends, so a call backing off between
//! attempts holds none. A rejection by the bulkhead is never retried, and
//! the breaker below never sees it (and would count it as
//! [`Ignored`](crate::classify::Outcome::Ignored) if it did). With a
//! [`Deadline`](crate::deadline::Deadline) layer outside, make the bulkhead
//! [`deadline_aware`](BulkheadLayer::deadline_aware) so a queued attempt
//! never waits past the call's deadline.
//!
//! # Waiting
//!
//! Waiters are served strictly in arrival order: a freed slot goes straight
//! to the oldest waiter, and while anyone waits, a newly arrived call joins
//! the back of the queue even if it catches a slot free for an instant. A
//! call joins the queue in `call` (its place is kept from then on, before
//! its future is first polled) and leaves it when:
//!
//! * a slot is handed to it: it calls the inner service (a deadline-aware
//!   bulkhead makes that call with the deadline it read back in scope,
//!   [`Deadline::scope`](crate::deadline::Deadline::scope), so the layers
//!   inside see it although the call is made from the future);
//! * `max_wait` has passed since it joined, or the request's deadline has
//!   passed ([`deadline_aware`](BulkheadLayer::deadline_aware)):
//!   [`FullReason::WaitTimedOut`](error::FullReason::WaitTimedOut). The queue
//!   is looked at before the timer, so a slot handed over in the same
//!   instant is used. The timer is tokio's (millisecond resolution) and
//!   needs a runtime with time enabled;
//! * its future is dropped: its place frees at once, and a slot it had been
//!   handed but not yet used passes to the next waiter. No slot is ever lost.
//!
//! # Holding the slot
//!
//! The slot is held while the inner service's response future runs, and
//! freed when it finishes or is dropped. For HTTP responses that stream,
//! `BulkheadLayer::hold_until_body_end` (feature `http`) holds it until the
//! response body has been read to the end or dropped (see the `body`
//! module); [`HoldPermit`] lets you do the same for a response type of your
//! own.
//!
//! # Errors
//!
//! The service's error type is [`BoxError`](crate::BoxError): the inner
//! service's errors pass through (converted with `Into`), and a rejected
//! call fails with [`BulkheadFull`](error::BulkheadFull), whose
//! [`reason`](error::BulkheadFull::reason) says whether the call could not
//! wait ([`QueueFull`](error::FullReason::QueueFull): the queue held
//! `max_waiting` callers, or `max_wait` is zero) or waited in vain
//! ([`WaitTimedOut`](error::FullReason::WaitTimedOut)). A rejected call never
//! reaches the inner service. Each rejection emits one `tracing` event at
//! `DEBUG` level, target `steadfast::bulkhead`, with the crate's stable
//! fields (`layer = "bulkhead"`, `name`, `event = "rejected"`, `reason`; see
//! [the crate docs](crate#telemetry)), and is handed to the
//! [`on_rejection`](BulkheadBuilder::on_rejection) listeners.
//!
//! # Clone
//!
//! One [`BulkheadLayer`] is one limit: every service it makes, and every
//! clone of those, takes slots from the same pool. Build one layer per
//! backend you want to isolate. (tower's `ConcurrencyLimitLayer` gives each
//! service made by the layer a limit of its own; this layer shares one, as
//! tower's `GlobalConcurrencyLimitLayer` does.)
//!
//! # Backpressure
//!
//! Two modes; waiting in the response future is the default.
//!
//! * **In the future** (default): `poll_ready` passes straight through to
//!   the inner service and never waits for a slot, and never returns an
//!   error for a full bulkhead — a `poll_ready` error is final in tower. The
//!   slot is taken in `call`: at once if one is free, otherwise the response
//!   future waits in the queue for up to `max_wait`, or fails at once with
//!   `BulkheadFull`. No caller is left pending for longer than `max_wait`.
//!   This is the mode for axum and hyper servers: axum treats every service
//!   as always ready — its router reports ready and drives each request
//!   through a clone of the service — so a layer that waited in
//!   `poll_ready` would get no say over when calls are made, and tower's
//!   own `ConcurrencyLimit` ends up with an unbounded wait per request.
//!   Here, map `BulkheadFull` to a `503` with `HandleErrorLayer`, or serve
//!   a fallback.
//! * **In `poll_ready`** ([`BulkheadLayer::wait_in_poll_ready`]):
//!   `poll_ready` waits for a slot, for up to `max_wait`, and reserves it
//!   for the next `call`; when the wait runs out (or the queue is full)
//!   `poll_ready` still returns `Ready(Ok)` and that `call` fails with
//!   `BulkheadFull`. The waiting then happens before the request is handed
//!   over, and a balancer such as `tower::balance::p2c` sees a full
//!   endpoint as not ready (give it a long `max_wait`). Calling without a
//!   ready `poll_ready` panics, as with tower's `ConcurrencyLimit`; a clone
//!   starts without its original's reservation, and dropping a service that
//!   holds one frees it. The request is unknown while waiting, so a
//!   deadline cannot shorten the wait.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::bulkhead::BulkheadLayer;
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let layer = BulkheadLayer::builder(1)
//!     .max_wait(Duration::from_secs(1))
//!     .build()?
//!     .wait_in_poll_ready();
//! let handle = layer.handle();
//! let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//!
//! let mut first = svc.clone();
//! first.ready().await?; // reserves the only slot
//! assert_eq!(handle.in_flight(), 1);
//!
//! let mut second = svc.clone();
//! let waiting = tokio::spawn(async move { second.ready().await?.call(2).await });
//! tokio::task::yield_now().await;
//! assert_eq!(handle.waiting(), 1); // pending in `poll_ready`
//!
//! assert_eq!(first.call(1).await?, 1); // frees the slot for the waiter
//! assert_eq!(waiting.await??, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Cost
//!
//! Taking a free slot is one compare-and-swap on a word of its own, and
//! freeing it one atomic add: no lock and no allocation. The response future
//! owns one reference count on the bulkhead (from a per-thread copy, so two
//! cores do not share it) and the admission counter lives on a stripe the
//! calling thread owns. The queue is a mutex-guarded list, touched only
//! while calls wait or a slot is owed to a waiter; rejecting a call
//! allocates its boxed error. `benches/bulkhead.rs` measures the fast path
//! next to tower's `ConcurrencyLimit`, on one thread and on two.

#[cfg(feature = "http")]
pub mod body;
mod collect;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod permit;
mod policy;
mod semaphore;
mod service;

pub use self::handle::{BulkheadHandle, BulkheadSnapshot};
pub use self::layer::{BulkheadBuilder, BulkheadLayer};
pub use self::permit::{Permit, Rejected};
#[cfg(feature = "http")]
pub use self::policy::ReleaseOnBodyEnd;
pub use self::policy::{HoldPermit, ReleaseOnResponse};
pub use self::service::Bulkhead;
