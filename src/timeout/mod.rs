//! Time limits: a per-attempt [`Timeout`] and an overall deadline
//! ([`WithDeadline`]).
//!
//! - [`TimeoutLayer`] bounds **one attempt**: when the inner call takes
//!   longer, it is dropped and the caller gets [`Elapsed`]. The breaker
//!   counts it as a failure and retry may send the call again.
//! - [`DeadlineLayer`] bounds **the whole call**: every attempt and every
//!   backoff sleep of the layers inside. When it passes, the caller gets
//!   [`DeadlineExceeded`]. It writes the deadline into the request (a
//!   [`Deadline`](crate::deadline::Deadline) in `http::Request` extensions,
//!   or through [`CarriesDeadline`](crate::deadline::CarriesDeadline)) so
//!   the layers inside shrink to what is left: retry never sleeps past it,
//!   and a deadline-aware [`Timeout`] waits at most until it.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::timeout::{error::Elapsed, TimeoutLayer};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let slow = tower::service_fn(|_: ()| async {
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//!     Ok::<_, std::io::Error>("late")
//! });
//! let svc = TimeoutLayer::new(Duration::from_secs(2))?.layer(slow);
//!
//! let err = svc.oneshot(()).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Elapsed>().unwrap().timeout(), Duration::from_secs(2));
//! # Ok(())
//! # }
//! ```
//!
//! A deadline over retries:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::retry::{Backoff, CloneWithDeadline, RetryConfig, RetryLayer};
//! use steadfast::timeout::{error::DeadlineExceeded, DeadlineLayer};
//! use tower::{Layer, ServiceExt};
//!
//! # #[cfg(not(feature = "http"))] fn main() {}
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let down = tower::service_fn(|_: http::Request<()>| async {
//!     tokio::time::sleep(Duration::from_millis(400)).await;
//!     Err::<(), _>(std::io::Error::other("connection reset"))
//! });
//! // Retry every error; the requests carry their deadline.
//! let retry = RetryLayer::new(
//!     RetryConfig::builder()
//!         .max_attempts(10)
//!         .backoff(Backoff::fixed(Duration::from_millis(100)))
//!         .build()?,
//! )
//! .with_replay(CloneWithDeadline);
//! let svc = DeadlineLayer::new(Duration::from_secs(1))?.layer(retry.layer(down));
//!
//! let start = tokio::time::Instant::now();
//! let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! // Attempts end at 0.4 s and 0.9 s; a third would start at 1.0 s, at the
//! // deadline, so retry stops and returns the last error at 0.9 s.
//! assert!(err.to_string().contains("connection reset"));
//! assert_eq!(start.elapsed(), Duration::from_millis(900));
//! # let _ = DeadlineExceeded::new(None);
//! # Ok(())
//! # }
//! ```
//!
//! # Where they go
//!
//! `Deadline → Retry → Bulkhead → CircuitBreaker → Timeout → service`: the
//! deadline outside retry, so it bounds all attempts together; the
//! per-attempt timeout inside the breaker, so a timed-out attempt counts as
//! a failure of the backend and the breaker can trip on a backend that
//! hangs.
//!
//! # Timers
//!
//! The timer starts in `call`, not in `poll_ready`: time spent waiting for
//! readiness (a full bulkhead) is not charged to the attempt — put the
//! deadline outside to bound that too. The response future polls the inner
//! future first and the timer second, so a response that is ready when the
//! timer also fires wins. An error that arrives once the timer is due is
//! reported as the timer's ([`Elapsed`] or [`DeadlineExceeded`]): the
//! inner service's own timer for the same instant fired first (a
//! `reqwest::Request` gets the time left as its timeout, see
//! [`deadline`](crate::deadline#reqwestrequest-feature-reqwest); tonic
//! enforces `grpc-timeout`): one cause gives the caller, retry and the
//! breaker one error, whichever timer the runtime woke first. When the
//! timer wins, the inner future is dropped at once. A timer is only registered with tokio's timer when the inner
//! future is not ready on its first poll.
//!
//! # gRPC
//!
//! On gRPC requests (`content-type: application/grpc*`) the deadline layer
//! writes the time left as `grpc-timeout`, so the server can stop working
//! for a caller that has gone. A `grpc-timeout` already on the request —
//! on a server, the caller's; on a client, one tonic's `set_timeout` wrote —
//! is honoured when it is shorter
//! ([`DeadlineLayer::ignore_incoming_timeout`] turns that off); malformed
//! values are ignored and long ones never extend the layer's own timeout. See
//! `deadline::grpc_timeout` (feature `http`).
//!
//! A deadline-aware [`Timeout`] ([`TimeoutLayer::deadline_aware`]) writes
//! what *its* timer allows into each gRPC request it passes on: the shorter
//! of the time left and the attempt timeout. With a 2 s deadline and 300 ms
//! per attempt the server sees `300000u` on every attempt, and less once
//! fewer than 300 ms are left, never the 2 s the call has in all. A shorter
//! `grpc-timeout` already on the request is kept.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::timeout::{DeadlineLayer, TimeoutLayer};
//! use tower::{Layer, ServiceExt};
//!
//! # #[cfg(not(feature = "http"))] fn main() {}
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let backend = tower::service_fn(|req: http::Request<()>| async move {
//!     Ok::<_, std::io::Error>(req.headers()["grpc-timeout"].clone())
//! });
//! let attempt = TimeoutLayer::new(Duration::from_millis(300))?.deadline_aware();
//! let svc = DeadlineLayer::new(Duration::from_secs(2))?.layer(attempt.layer(backend));
//!
//! let call = http::Request::post("http://products/shop.Products/Get")
//!     .header("content-type", "application/grpc")
//!     .body(())?;
//! assert_eq!(svc.oneshot(call).await?, "300000u");
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Both layers box errors ([`BoxError`](crate::BoxError)); downcast to
//! [`Elapsed`] or [`DeadlineExceeded`]. The breaker ignores
//! `DeadlineExceeded` (the caller's budget ran out, not necessarily the
//! backend) and retry never repeats it; `Elapsed` is an ordinary failure.
//!
//! # Clone
//!
//! Both services are plain values: clones share nothing but the inner
//! service's own sharing.
//!
//! [`Elapsed`]: error::Elapsed
//! [`DeadlineExceeded`]: error::DeadlineExceeded

pub mod error;
pub mod future;
mod layer;
mod service;

pub use self::layer::{DeadlineLayer, TimeoutLayer};
pub use self::service::{Timeout, WithDeadline};
