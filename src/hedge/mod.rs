//! Hedged requests: when the first attempt is slow, send another and take
//! the first acceptable answer — within the retry budget, only for requests
//! safe to repeat.
//!
//! [`HedgeLayer`] sends the first attempt at once. If no acceptable answer
//! came after a delay, it sends a second attempt to the inner service while
//! the first is still running, then a third after another delay, up to
//! [`max_attempts`](HedgeConfigBuilder::max_attempts) in flight. The first
//! acceptable answer wins: it is returned and every other attempt is
//! dropped (cancelled) at once. A slow tail — one call in a hundred stuck
//! behind a garbage collection, a cold cache, a bad replica — then costs
//! the delay plus a normal call, not the tail.
//!
//! ```
//! use std::time::Duration;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use steadfast::hedge::{HedgeConfig, HedgeLayer};
//! use tokio::time::Instant;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // The first call to the backend hangs for 2 s; the others take 10 ms.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = calls.clone();
//! let backend = tower::service_fn(move |id: u32| {
//!     let n = seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let took = if n == 0 { 2_000 } else { 10 };
//!         tokio::time::sleep(Duration::from_millis(took)).await;
//!         Ok::<_, std::io::Error>(format!("product {id} (attempt {})", n + 1))
//!     }
//! });
//! let layer = HedgeLayer::new(
//!     HedgeConfig::builder()
//!         .delay(Duration::from_millis(50)) // or delay_percentile(95.0, …)
//!         .build()?, // Err(InvalidConfig) names the bad field
//! );
//! let handle = layer.handle();
//! let svc = layer.layer(backend);
//!
//! let start = Instant::now();
//! assert_eq!(svc.oneshot(7).await?, "product 7 (attempt 2)");
//! // The hedge went at 50 ms and answered at 60 ms; the first attempt,
//! // still hanging, was dropped.
//! assert_eq!(start.elapsed(), Duration::from_millis(60));
//! let snapshot = handle.snapshot();
//! assert_eq!((snapshot.calls, snapshot.hedges, snapshot.hedges_won), (1, 1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # The delay
//!
//! Fixed ([`delay`](HedgeConfigBuilder::delay)), or — the default — a
//! percentile of the latency of recent calls
//! ([`delay_percentile`](HedgeConfigBuilder::delay_percentile), p95 of the
//! last 10 s within 1 ms to 1 s): at p95 about one call in twenty is
//! hedged when the backend is healthy, and only the slow ones. Each call's
//! latency (from the first attempt to the result it returns) goes into a
//! [`Histogram`](crate::metrics::Histogram); every tenth of the window the
//! first call after that time reads the percentile of the calls of the last
//! window (give or take a tenth) and the other calls read that estimate
//! from an atomic. Until the window holds `100 / (100 - p)` calls (20 for
//! p95) the delay is the upper bound. The delay in force is in the
//! [snapshot](HedgeSnapshot::delay).
//!
//! The timer starts at the first poll of the response future that finds
//! the first attempt not finished (a call answered at its first poll never
//! reads the clock or sets a timer), and each hedge's timer runs from the
//! moment the previous attempt was sent. When the timer and an attempt are
//! ready at the same instant, the attempt is polled first: an answer at
//! exactly the delay sends no hedge. tokio's timer counts whole
//! milliseconds: a delay of 10.2 ms fires at 11 ms.
//!
//! # Non-fatal results
//!
//! As in gRPC's hedging design (A6), a result is either the answer or
//! non-fatal. The [`RetryOn`](crate::retry::RetryOn) of the layer decides,
//! as it does for retries: a result it would retry is non-fatal — the
//! other attempts go on, and the next hedge is sent at once, without
//! waiting for its delay (a throttled result, 429 or RESOURCE_EXHAUSTED,
//! waits for the delay; a server's `Retry-After` or
//! `grpc-retry-pushback-ms` sets it; a negative pushback stops the hedges).
//! Anything else is the answer, a non-retryable failure included, and
//! cancels the others. When every attempt ends non-fatal and no more may be
//! sent, the last result is returned.
//!
//! A rejection by one of this crate's layers inside (`CircuitOpen`,
//! `BulkheadFull`, `RateLimited`) means the attempt never reached the
//! backend: the other attempts go on, and when none is left the rejection
//! is returned at once (no hedge is sent early for it). A rejected hedge's
//! budget withdrawal is refunded.
//!
//! # Safety: what is hedged
//!
//! A hedge sends the request a second time *while the first may still be
//! running*, so only requests that are safe to repeat are hedged, by the
//! [safe-method rule](crate::retry#the-safe-method-rule) of the retry
//! layer, through the same [`Replay`](crate::retry::Replay): idempotent
//! HTTP methods, requests with an `Idempotency-Key`, the
//! [`Idempotent`](crate::retry::Idempotent) marker, and gRPC methods named
//! in `HedgeLayer::idempotent_paths` (feature `http`). Any other request
//! (a POST without a key, a gRPC call not marked) is sent once, never
//! hedged — not even after a non-fatal result — and counted
//! ([`HedgeSnapshot::skipped_unsafe`]). [`HedgeLayer::new`] over plain
//! `Clone` requests takes every request as safe.
//!
//! Bodies are replayed as for retries: an `http::Request` body is kept up
//! to [`max_replay_body`](HedgeConfigBuilder::max_replay_body) (64 KiB)
//! and a larger one is sent once. The kept body is read by one attempt at
//! a time: a hedge's body can be read once the earlier attempt has
//! released its own (hyper drops a request body once it is sent). A hedge
//! sent while an earlier attempt is still uploading a large body fails
//! with an error, which is non-fatal.
//!
//! Each hedge carries its number for gRPC (`grpc-previous-rpc-attempts`)
//! and the time left before the deadline (`grpc-timeout`, or a
//! `reqwest::Request`'s timeout), written when it is sent.
//!
//! # The budget
//!
//! Hedges draw on a [`RetryBudget`](crate::retry::RetryBudget), one of its
//! own by default (20 % of the calls plus 10 per second over 10 s), or the
//! retry layer's ([`budget`](HedgeConfigBuilder::budget)): every call
//! deposits, every hedge withdraws. With the budget spent no hedge is sent
//! and the call waits for the attempts already sent, so a backend that
//! slows down under load gets at most 20 % more, not `max_attempts` ×.
//!
//! A withdrawal is spent when the hedge is sent, and stays spent when the
//! hedge then loses to another attempt: the backend did receive it, and a
//! budget that forgot lost hedges would not bound the load when every
//! attempt is slow but the first still answers first. A withdrawal is
//! refunded when the hedge is never sent (the call was answered or dropped
//! while the hedge waited for the inner service to be ready, or the
//! deadline passed meanwhile) or an inner layer rejected it.
//!
//! # Deadlines
//!
//! When the request carries a [`Deadline`](crate::deadline::Deadline), no
//! hedge is sent at or after it (counted as
//! [`deadline_reached`](HedgeSnapshot::deadline_reached)), and a hedge
//! waiting for the inner service to be ready waits no longer than it.
//!
//! # Ordering
//!
//! In place of the retry layer: outside the bulkhead, the circuit breaker
//! and the per-attempt timeout,
//! `Deadline → Hedge → Bulkhead → CircuitBreaker → Timeout → service`. Each
//! hedge is a separate `call` on the inner service, so each takes a
//! bulkhead slot (dropping a loser gives it back), passes the breaker and
//! is bounded by the attempt timeout.
//!
//! Hedge or retry? Retries help when attempts *fail*; hedges when they are
//! *slow*: a retry waits for the failure (or the attempt timeout) and then
//! a backoff, a hedge goes while the slow attempt still runs. Hedge
//! read-mostly, idempotent calls to a replicated backend whose tail is
//! much slower than its median; retry anything that fails fast, and calls
//! that must not run twice concurrently. Both draw on the same kind of
//! budget, which can be one budget.
//!
//! # Cost
//!
//! A call answered before the delay allocates nothing: the first attempt
//! and the timer live in the response future; what hedging needs (the
//! hedges, the next request) is boxed when the first hedge is due. Its
//! overhead is the request's clone, a clone of the inner service, a
//! budget deposit and, once the first attempt is pending, one clock read
//! and a timer (with a percentile delay, a second read when the call ends,
//! for its latency). Measured (`benches/hedge.rs`, workspace member
//! `integration`, one run on a 2-core x86-64): a call made in a task and
//! answered at once costs 9.2 ns against 0.8 ns bare (retry: 7.5 ns); one
//! pending at its first poll 109 ns against 0.8 ns, nearly all of it the
//! tokio timer's registration, as for the timeout layer (104 ns); 153 ns
//! with the p95 delay. The response future around an always-ready
//! `service_fn` over `u32` is 208 bytes on x86-64 (the `tests/hedge` suite
//! prints it).
//!
//! # Errors
//!
//! The layer returns the inner service's errors, boxed ([`BoxError`]); it
//! adds none of its own.
//!
//! # Clone
//!
//! Services made by one layer, and their clones, share the configuration,
//! the budget, the delay estimate and the counters ([`HedgeHandle`]). Each
//! call keeps its own clone of the inner service for its hedges.
//!
//! [`BoxError`]: crate::BoxError

mod collect;
mod config;
mod delay;
pub mod future;
mod handle;
mod layer;
mod policy;
mod service;

pub use self::config::{HedgeConfig, HedgeConfigBuilder, HedgeDelay};
pub use self::handle::{HedgeHandle, HedgeSnapshot};
pub use self::layer::HedgeLayer;
pub use self::service::Hedge;
