//! Fault injection: latency, errors, hangs and outage windows, drawn from a
//! seeded sequence on tokio's clock, for tests, demos and benchmarks.
//!
//! [`FaultLayer`] sits right around the service a resilience stack
//! protects and makes it misbehave on purpose, reproducibly: the same seed,
//! with the same calls made at the same virtual instants, gives the same
//! faults, so a test can assert exactly what the breaker, retry and timeout
//! layers outside did about them.
//!
//! # Example
//!
//! "A 2 % error rate and a latency tail; from 10 s to 40 s the backend
//! refuses every connection":
//!
//! ```
//! use std::time::Duration;
//! use steadfast::chaos::{error::InjectedRefused, Fault, FaultLayer, Latency};
//! use steadfast::classify::is_not_sent;
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[derive(Debug)] struct Oops;
//! # impl std::fmt::Display for Oops {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("oops") }
//! # }
//! # impl std::error::Error for Oops {}
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let secs = Duration::from_secs;
//! let faults = FaultLayer::builder()
//!     .seed(42)
//!     .latency(Latency::exponential(Duration::from_millis(20), Duration::from_millis(500)))
//!     .fault(0.02, Fault::error(|| Oops))
//!     .window(secs(10), secs(40), Fault::refused())
//!     .build()?; // Err(InvalidConfig) names the bad field
//! let handle = faults.handle();
//! let mut svc = faults.layer(service_fn(|id: u32| async move {
//!     Ok::<_, std::io::Error>(format!("product {id}"))
//! }));
//!
//! tokio::time::sleep(secs(10)).await; // paused time: the clock jumps
//! let err = svc.ready().await?.call(1).await.unwrap_err();
//! assert!(err.is::<InjectedRefused>());
//! assert!(is_not_sent(err.as_ref())); // safe to send again
//!
//! tokio::time::sleep(secs(30)).await; // 40 s: the window has closed
//! let _ = svc.ready().await?.call(2).await; // passes, or one of the 2 %
//! let snapshot = handle.snapshot();
//! assert_eq!((snapshot.calls, snapshot.refused, snapshot.windows[0]), (2, 1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # What each call gets
//!
//! Each call is decided in `call`, in this order:
//!
//! 1. **Latency.** With probability [`latency_rate`](FaultBuilder::latency_rate)
//!    (default 1) the call is delayed by a value drawn from
//!    [`latency`](FaultBuilder::latency): [`Latency::fixed`],
//!    [`Latency::uniform`], or [`Latency::exponential`] with a cap. The
//!    delay comes before anything else: before an injected error, before
//!    the inner call.
//! 2. **A window's fault.** A call made in a [window](FaultBuilder::window)
//!    `[from, to)` after the layer's start gets the window's fault: at
//!    exactly `from` it is in, at exactly `to` it is out. The window is
//!    judged by the clock at `call`, before any delay. A
//!    [window with a rate](FaultBuilder::window_with_rate) gives its fault
//!    to that fraction of its calls only (a brownout).
//! 3. **Otherwise a rated fault.** Each [`fault(rate, …)`](FaultBuilder::fault)
//!    takes its share of the calls; the faults are exclusive, their rates
//!    add up to at most 1, and the rest pass through.
//!
//! | fault | the inner service | the caller gets |
//! |---|---|---|
//! | none | called | its result, errors boxed |
//! | [`Fault::delay`] | called after the extra delay | its result |
//! | [`Fault::error`] | not called | your error, boxed |
//! | [`Fault::refused`] | not called | [`InjectedRefused`](error::InjectedRefused): [`is_not_sent`](crate::classify::is_not_sent), so retry may resend even a POST |
//! | [`Fault::reset`] | called, run to its end, result dropped | [`InjectedReset`](error::InjectedReset): maybe processed, never resent unless safe |
//! | [`Fault::hang`] | not called | nothing, ever: only a timeout or dropping the future ends it |
//! | [`Fault::respond`] | not called | your response |
//! | `Fault::http_status` (feature `http`) | not called | an empty `http::Response` of that status, with `Retry-After` if asked |
//! | `Fault::grpc_status` (feature `http`) | not called | a trailers-only gRPC answer: HTTP 200 with `grpc-status` (and `grpc-message`, `grpc-retry-pushback-ms` if asked) in the headers, as `classify::GrpcClassifier` reads them |
//!
//! The inner service's future is made in `call` and polled once the delay
//! has passed: for the usual service, whose future does nothing until it
//! is polled, the request leaves after the delay. (A service that sends in
//! `call` itself, such as tower's `Buffer`, sends at once; only its answer
//! is delayed.)
//!
//! # Determinism
//!
//! The layer numbers its calls with one shared atomic counter, and call
//! number `n` draws its random values from its own stream, a SplitMix64
//! hash of the seed and `n` — no lock, no generator state shared between
//! threads. So:
//!
//! - the same [seed](FaultBuilder::seed), with calls made in the same order
//!   and (for windows) at the same virtual instants, gives the same faults
//!   and the same delays, call by call, with every version of `rand` (the
//!   layer does not use its generators, whose output may change between
//!   versions);
//! - calls made concurrently take their numbers in whatever order they
//!   reach `call`: the *set* of draws is the same, which call gets which may
//!   differ between runs. Drive calls one after another (or from one task)
//!   for an exact replay;
//! - a call's draws do not depend on one another: whether it falls in a
//!   window does not shift its own other draws or those of later calls;
//! - the rates are exact to 2^-53; the latency values are computed in
//!   `f64` (the exponential one with the platform's `ln`, whose last bit
//!   may differ between platforms: a delay may then differ by a
//!   nanosecond).
//!
//! The windows are measured from the layer's start: tokio's
//! [`Instant::now`](tokio::time::Instant::now) when `build` runs, or the
//! instant given to [`start_at`](FaultBuilder::start_at). With paused time
//! (`#[tokio::test(start_paused = true)]`) a schedule runs in no real time
//! and exactly.
//!
//! # Where it goes
//!
//! Innermost, around the service it stands in for:
//!
//! ```text
//! Retry → Bulkhead → CircuitBreaker → Timeout → FaultLayer → service
//! ```
//!
//! Then every layer outside sees the faults as the backend's: the timeout
//! cuts a hang, the breaker counts errors and 5xx as failures, retry
//! resends refused calls and honours an injected `Retry-After`.
//!
//! # Errors
//!
//! The service boxes errors ([`BoxError`](crate::BoxError)): the inner
//! service's pass through as they are, a [`Fault::error`] comes back as
//! the error you made (downcast it), and the layer's own are
//! [`InjectedRefused`](error::InjectedRefused) and
//! [`InjectedReset`](error::InjectedReset), whose `source()` is an
//! `io::Error` of kind `ConnectionRefused` or `ConnectionReset`. They are
//! not rejections of this crate's (they stand for the backend's failures),
//! so the breaker counts them.
//!
//! [`FaultBuilder::build`] returns [`InvalidConfig`](crate::InvalidConfig)
//! naming the field for a rate outside `[0, 1]` or not finite, rates that
//! add up to more than 1, a uniform latency with `min > max`, an empty
//! window, or `retry_after`/`grpc_message` on a fault they do not apply to.
//!
//! # Counting
//!
//! [`FaultHandle::snapshot`] counts the calls by what the layer decided for
//! them — passed, delayed, errors, responses, hangs, refused, reset — and
//! the calls in each window. A call is counted in `call`, when its fault
//! is chosen, even if its future is later dropped.
//!
//! # Clone
//!
//! Every service the layer makes, and every clone of those, shares the
//! layer's counter of calls (so one sequence of faults), its schedule and
//! its counters.
//!
//! # Cancellation
//!
//! Dropping the response future at any point — during the delay, a hang,
//! or the inner call — drops the timer and the inner future with it.
//!
//! # Time
//!
//! Only a call that draws a delay needs tokio's timer (see
//! [`FaultService`]'s `# Panics`); everything else works anywhere.

pub mod error;
pub mod future;

mod collect;
mod draw;
mod fault;
mod handle;
mod layer;
mod service;

pub use self::fault::{Fault, Latency};
pub use self::handle::{FaultHandle, FaultSnapshot};
pub use self::layer::{FaultBuilder, FaultLayer};
pub use self::service::FaultService;
