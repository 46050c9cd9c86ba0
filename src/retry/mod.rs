//! Retries with backoff, a retry budget, server hints and safe request replay.
//!
//! [`RetryLayer`] sends a failed call again — after a backoff sleep, within
//! a budget, only when repeating it is safe — and returns the first result
//! that is not retried. It adds no error of its own: a call that is not
//! retried (attempts exhausted, budget spent, unsafe to repeat, deadline
//! reached) returns the last real response or error.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::retry::{Backoff, Jitter, RetryConfig};
//! use steadfast::ServiceBuilderExt;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let seen = calls.clone();
//! let svc = ServiceBuilder::new()
//!     .retries(
//!         RetryConfig::builder()
//!             .max_attempts(3)
//!             .backoff(Backoff::exponential(Duration::from_millis(50), 2.0).jitter(Jitter::Full))
//!             .build()?, // Err(InvalidConfig) names the bad field
//!     )
//!     .service_fn(move |id: u32| {
//!         let n = seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         async move {
//!             if n == 0 {
//!                 Err::<String, _>(std::io::Error::other("connection reset"))
//!             } else {
//!                 Ok(format!("product {id}"))
//!             }
//!         }
//!     });
//!
//! assert_eq!(svc.oneshot(7).await?, "product 7"); // the second attempt succeeded
//! assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # What is retried
//!
//! A [`RetryOn`] gives each finished attempt a [`Verdict`]; a [`Replay`]
//! says whether and how the request can be sent again. The constructors of
//! [`RetryLayer`] pair them:
//!
//! - [`RetryLayer::new`]: any `Req: Clone`, every `Err` retried (or a
//!   predicate: [`RetryLayer::retry_if`]);
//! - `RetryLayer::http` (feature `http`): `http::Request<B>`; transport
//!   errors, 408, 429, 502, 503 and 504 are retried (500 only when asked,
//!   through `HttpRetryOn`), for requests that are safe to repeat (see
//!   below);
//! - `RetryLayer::grpc` (feature `http`): gRPC calls; UNAVAILABLE (more
//!   codes through `GrpcRetryOn`) and errors that prove the call was never
//!   sent are retried, and for calls marked idempotent any transport error
//!   or timeout; each retry carries `grpc-previous-rpc-attempts`;
//! - `RetryLayer::http` serves `reqwest::Request` too (feature `reqwest`),
//!   through a `reqwest::Client`, by the same rule; `RetryLayer::reqwest`
//!   is the same without idempotent paths.
//! - `RetryLayer::tonic` (feature `tonic`): gRPC calls through a tonic
//!   `Channel`, by the gRPC rule; the channel receives its own
//!   `http::Request<tonic::body::Body>` (`RestoreBody`), so a generated
//!   client takes the wrapped channel as it is.
//!
//! Never retried: a call the caller dropped, and rejections by this crate's
//! own layers — [`CircuitOpen`] fails fast, so does a full bulkhead. With
//! [`wait_for_open_circuit`](RetryConfigBuilder::wait_for_open_circuit), a
//! `CircuitOpen` is waited out once, for its `retry_after`, when that fits
//! the deadline: a short open period is bridged, a long one is not hammered.
//!
//! ## The safe-method rule
//!
//! Sending a request twice is only harmless when doing its work twice is.
//! A request is **safe to repeat** ([`Replay::idempotent`]) when its HTTP
//! method is idempotent by RFC 9110 (GET, HEAD, OPTIONS, PUT, DELETE,
//! TRACE), when it carries an `Idempotency-Key` header (the server
//! recognises the repeat), when its extensions hold [`Idempotent`], or when
//! its path is declared idempotent (`RetryLayer::idempotent_paths`, for
//! gRPC methods). Such a request is retried after any retryable failure,
//! an attempt timeout included.
//!
//! Any other request — a POST without a key, and every gRPC call (they are
//! all POSTs) not marked — is retried **only when the failure proves the
//! server did not process it**, as gRPC's retry design and Envoy's
//! `retry_on` have it ([`RetryOn::not_processed`]):
//!
//! - an error that proves the request was never sent
//!   ([`classify::is_not_sent`](crate::classify::is_not_sent)): connection
//!   refused, a connector failure (hyper-util's and reqwest's
//!   `is_connect()`), HTTP/2 `REFUSED_STREAM`, or an error wrapped in
//!   [`NotSent`](crate::classify::NotSent);
//! - for gRPC, a status in the retry codes (UNAVAILABLE by default): a
//!   service lists as retryable the codes it answers without acting.
//!
//! Never after an attempt timeout (`Elapsed`, or a tonic `Channel`'s own
//! `TimeoutExpired`, feature `tonic`), a reset or closed connection
//! or any other error that may come after the server ran the call — unless
//! you opt in with [`retry_timeouts`](RetryConfigBuilder::retry_timeouts)
//! (timeouts only) or mark the call idempotent. A skipped retry is counted
//! ([`RetrySnapshot::skipped_unsafe`]).
//!
//! ```
//! use std::time::Duration;
//! use steadfast::retry::{RetryConfig, RetryLayer};
//! use steadfast::timeout::TimeoutLayer;
//! use tower::{Layer, ServiceExt};
//!
//! # #[cfg(not(feature = "http"))] fn main() {}
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! # type Body = http_body_util::Full<bytes::Bytes>;
//! let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let seen = runs.clone();
//! // A payment service that takes 300 ms, behind a 250 ms attempt timeout.
//! let backend = tower::service_fn(move |_req: http::Request<steadfast::retry::body::ReplayBody<Body>>| {
//!     seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async {
//!         tokio::time::sleep(Duration::from_millis(300)).await;
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     }
//! });
//! let svc = RetryLayer::grpc(RetryConfig::default())
//!     .layer(TimeoutLayer::new(Duration::from_millis(250))?.layer(backend));
//!
//! let charge = http::Request::post("http://payments/shop.Payments/Charge")
//!     .header("content-type", "application/grpc")
//!     .body(Body::default())?;
//! // The attempt timed out, but it may have charged the card: not repeated.
//! assert!(svc.oneshot(charge).await.is_err());
//! assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
//! # Ok(())
//! # }
//! ```
//!
//! ## Guarantees
//!
//! For a request that is not safe to repeat, the layer sends a second
//! attempt only after one of the failures above, so the backend runs it
//! more than once only if one of these lies:
//!
//! - a **gRPC retry code** answered by something that had already passed
//!   the call on (a proxy that forwarded it, then answered UNAVAILABLE):
//!   the code is trusted, as gRPC's retry design trusts it. Remove a code
//!   with `GrpcRetryOn::no_retry_code` if your proxies do that;
//! - an **error that claims the request was not sent** when it was: an
//!   `io::Error` of kind `ConnectionRefused` or a [`NotSent`] raised by a
//!   transport after it wrote the request, or an error that displays as
//!   hyper-util's connect error or h2's `REFUSED_STREAM` text without being
//!   one;
//! - your own [`RetryOn::not_processed`], [`Replay::idempotent`], an
//!   [`Idempotent`] extension or an idempotent path on a call that is not,
//!   or [`retry_timeouts`](RetryConfigBuilder::retry_timeouts).
//!
//! Requests that are safe to repeat may run several times by design: that
//! is what makes them safe. [`RetryLayer::new`] over plain `Clone` requests
//! knows nothing of methods and takes every request as safe; its predicate
//! decides.
//!
//! [`NotSent`]: crate::classify::NotSent
//!
//! ## Replay and its cap
//!
//! A request is consumed by the call, so each attempt needs a fresh one.
//! `Req: Clone` is cloned before the first attempt. `reqwest::Request` is
//! copied with `try_clone`; a streaming body cannot be, so such a request is
//! sent once. An `http::Request<B>` body is buffered *as it is sent* — up to
//! [`max_replay_body`](RetryConfigBuilder::max_replay_body), 64 KiB by
//! default — and replayed from the buffer (`body::ReplayBody`); this is
//! what makes hyper and tonic requests retryable without `B: Clone`. A body
//! larger than the cap streams through once and the request is not retried:
//! memory per call stays bounded whatever the client uploads. A plain HTTP
//! request that is not safe to repeat keeps no copy: it can go again only
//! after a refused connection, when its body was never read.
//!
//! # The budget
//!
//! `max_attempts` alone bounds the retries of one call, not the load on the
//! backend: in an outage every call makes all of its attempts, and layers
//! multiply — three services that each try three times send 27 requests to
//! the bottom one for every user request, just when it is least able to take
//! them. A [`RetryBudget`] bounds the total instead: retries may add at most
//! a percentage of recent requests (20 %) plus a small floor (10 per second)
//! over a window (10 s), and at most a tenth of that in any tenth of the
//! window, so that an outage never gets the window's allowance in one
//! burst. In an outage the extra load stays at 20 %; during a short blip
//! there is budget to spare. It is on by default, shared by every
//! service of the layer (and by any other layer given the same budget); a
//! refused retry returns the last real result and is counted
//! ([`RetrySnapshot::refused_by_budget`]).
//!
//! # Backoff and server hints
//!
//! Between attempts the call sleeps for the [`Backoff`]'s next delay —
//! exponential, linear or fixed, capped, with jitter so that clients that
//! failed together do not retry together. A server may say when to come
//! back: `Retry-After` (seconds or an HTTP-date) and
//! `grpc-retry-pushback-ms` set the next delay instead, clamped by
//! [`max_server_delay`](RetryConfigBuilder::max_server_delay) — a longer
//! hint ends the retries and returns the response, and a negative pushback
//! means "do not retry". A 429 or RESOURCE_EXHAUSTED without a hint waits
//! the slower [`throttled_backoff`](RetryConfigBuilder::throttled_backoff).
//!
//! # Deadlines
//!
//! When the request carries a [`Deadline`](crate::deadline::Deadline)
//! (`http::Request` extensions, a `reqwest::Request`'s timeout, or
//! [`CloneWithDeadline`] for request types that implement
//! [`CarriesDeadline`](crate::deadline::CarriesDeadline)), no backoff sleep
//! runs past it and no attempt starts after it: the call returns the last
//! result instead. A retry that finds the inner service not ready waits
//! for it no longer than the deadline either: it then fails with
//! [`DeadlineExceeded`](crate::timeout::error::DeadlineExceeded), counted
//! as a deadline give-up, the budget token given back. Each retry tells the next hop the time left when it is
//! sent: gRPC requests as `grpc-timeout`, a `reqwest::Request` as its
//! timeout, so reqwest stops at the deadline too. The built-in replays also
//! read the deadline in scope
//! ([`Deadline::current`](crate::deadline::Deadline::current), how the
//! preset stack carries it) and take the earlier of the two; each retry is
//! called with that deadline back in scope, so the layers inside see it on
//! every attempt, not only the first.
//!
//! The happy path's future holds the attempt, a clone of the inner service
//! and the replay's stash; what only a retry needs (its RNG, the budget
//! withdrawal, the next request) is boxed on the first retry.
//!
//! # HTTP
//!
//! See `RetryLayer::http` (feature `http`) for a runnable example with
//! `http::Request`.
//!
//! # Ordering
//!
//! Put the retry layer outside the circuit breaker and the per-attempt
//! timeout, inside the overall deadline:
//! `Deadline → Retry → Bulkhead → CircuitBreaker → Timeout → service`. Each
//! attempt then passes the breaker (an open breaker is not hammered), a
//! timed-out attempt is a failure the breaker counts and retry may repeat,
//! and the deadline bounds all attempts and sleeps together.
//!
//! # Telemetry
//!
//! Each retry and each give-up emits one `tracing` event at `DEBUG`
//! (target `steadfast::retry`, `event = "retry"` with `attempt`, `delay_ms`
//! and `reason`, or `event = "give_up"` with `attempt` and `reason`; see
//! [the crate docs](crate#telemetry)). [`on_retry`](RetryConfigBuilder::on_retry)
//! and [`on_give_up`](RetryConfigBuilder::on_give_up) listeners get each
//! retry and give-up; the [snapshot](RetryHandle::snapshot) counts
//! retries, budget refusals, skips and give-ups by reason.
//!
//! # Errors
//!
//! The layer returns the inner service's errors, boxed ([`BoxError`]); it
//! adds none of its own.
//!
//! # Clone
//!
//! Services made by one layer, and their clones, share the configuration,
//! the budget and the counters ([`RetryHandle`]). Each call keeps its own
//! clone of the inner service, readied again before every retry.
//!
//! [`CircuitOpen`]: crate::CircuitOpen
//! [`BoxError`]: crate::BoxError

pub mod backoff;
#[cfg(feature = "http")]
pub mod body;
pub mod budget;
mod collect;
mod config;
pub mod future;
mod handle;
mod layer;
mod policy;
mod replay;
#[cfg(feature = "http")]
mod restore;
mod service;

pub use self::backoff::{Backoff, Delays, Jitter};
pub use self::budget::{BudgetSnapshot, RetryBudget, Withdrawal};
pub use self::config::{GaveUp, Retried, RetryConfig, RetryConfigBuilder};
pub use self::handle::{RetryHandle, RetrySnapshot};
pub use self::layer::RetryLayer;
#[cfg(feature = "http")]
pub use self::policy::{GrpcRetryOn, HttpRetryOn};
pub use self::policy::{RetryFailures, RetryIf, RetryOn, Verdict};
#[cfg(feature = "reqwest")]
pub use self::replay::ReqwestReplay;
pub use self::replay::{CloneRequest, CloneWithDeadline, Idempotent, NotReplayable, Replay};
#[cfg(feature = "http")]
pub use self::replay::{HttpReplay, HttpStash};
#[cfg(feature = "http")]
pub use self::restore::{FromReplayBody, RestoreBody};
pub use self::service::Retry;
