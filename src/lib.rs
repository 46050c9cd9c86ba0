//! Tower layers that keep calls between services working when the other
//! side fails.
//!
//! `steadfast` wraps any [`tower::Service`] — a `reqwest` client, a tonic
//! `Channel`, a hyper client, your own — in layers that decide what to do
//! when the backend is failing. Each layer works alone; they share one idea
//! of what a failure is ([`classify`]) and one way of counting (lock-free
//! counters striped per thread, read as snapshots from each layer's handle).
//!
//! | module | layer | what it does |
//! |---|---|---|
//! | [`stack`] | [`ResilienceLayer`] | the preset: every layer below in the right order, in one line, for HTTP (`http::Request`, `reqwest::Request`), gRPC or any service |
//! | [`circuit_breaker`] | [`CircuitBreakerLayer`], [`KeyedCircuitBreakerLayer`] | stops calling a failing backend, probes it, resumes |
//! | [`retry`] | [`RetryLayer`] | sends failed calls again: backoff with jitter, a retry budget, server hints, safe replay |
//! | [`timeout`] | [`TimeoutLayer`], [`DeadlineLayer`] | bounds one attempt, and the whole call with its retries |
//! | [`bulkhead`] | [`BulkheadLayer`] | bounds the calls in flight, with a bounded FIFO wait |
//! | [`adaptive`] | [`AdaptiveLimitLayer`](adaptive::AdaptiveLimitLayer) | moves a bulkhead's limit with the backend's latency and failures (AIMD, gradient) |
//! | `idempotency` (feature `http`) | `IdempotencyKeyLayer`, `IdempotencyLayer` | one key per non-idempotent call on the client; each keyed request runs at most once on the server (memory or Redis store) |
//! | [`fallback`] | [`FallbackLayer`](fallback::FallbackLayer) | answers a failed or rejected call with a response of yours: a static value, a cached one, the last good response for the key (feature `http`) |
//! | [`hedge`] | [`HedgeLayer`](hedge::HedgeLayer) | sends a second attempt when the first is slow (after a fixed delay or a latency percentile), first answer wins, within the retry budget, only for requests safe to repeat |
//! | [`chaos`] | [`FaultLayer`] | injects latency, errors, hangs, refused or reset connections and outage windows, seeded and on tokio's clock, for tests and demos |
//! | [`classify`] | — | decides whether a finished call was a success, a failure or neither |
//! | [`deadline`] | — | the [`Deadline`] of a whole call, carried with the request for every layer to read |
//! | [`prelude`] | — | the layers, configs and error types of the common case, in one `use` |
//! | [`stack`] | `GrpcStatusLayer` (feature `tonic`) | where the layers meet the clients they wrap: our errors as a `tonic::Status` with the right code |
//!
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::prelude::*;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .circuit_breaker(
//!         CircuitBreakerConfig::builder()
//!             .failure_rate(50.0)
//!             .minimum_calls(20)
//!             .open_duration(Duration::from_secs(5))
//!             .build()?, // Err(InvalidConfig) names the bad field
//!     )
//!     .service_fn(|id: u32| async move { Ok::<_, std::io::Error>(format!("product {id}")) });
//!
//! match svc.oneshot(1).await {
//!     Ok(product) => println!("{product}"),
//!     Err(e) => match Rejection::of(&e) {
//!         Some(Rejection::CircuitOpen { .. }) => println!("serve the fallback"),
//!         _ => return Err(e.into()), // BreakerError → BoxError
//!     },
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`prelude`] brings in the layers, their configs, the error types and
//! [`ServiceBuilderExt`]'s methods in one line. With tower-http's
//! `ServiceBuilderExt` in the same file, import both as `_`
//! (`use steadfast::ServiceBuilderExt as _; use tower_http::ServiceBuilderExt as _;`):
//! by name they collide (E0252).
//!
//! # Ordering
//!
//! [`ResilienceLayer`] composes them in this order; when you stack layers by
//! hand, outermost first:
//!
//! ```text
//! IdempotencyKey → Deadline → Retry → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! | position | why there |
//! |---|---|
//! | `IdempotencyKey` | outside retry, so every attempt carries the same key (and a keyed POST may be retried) |
//! | `Deadline` | outside retry, so one deadline bounds every attempt and backoff sleep |
//! | `Retry` | outside the breaker and the bulkhead, so it never re-sends their rejections and can wait out a short open period |
//! | `Hedge` | in place of `Retry` (or beside it, sharing its budget), for calls that are slow rather than failing: each hedge is a call the bulkhead, breaker and timeout inside see; see [`hedge`](hedge#ordering) |
//! | `Bulkhead` | inside retry, so it limits attempts in flight and a call backing off holds no slot |
//! | `CircuitBreaker` | outside the timeout, so an attempt that times out counts as a failure |
//! | `Timeout` | innermost, so it bounds one attempt, not the whole call |
//!
//! # Errors
//!
//! Layers that add failures of their own return [`BoxError`], and each
//! failure is a small public struct — [`CircuitOpen`], [`BulkheadFull`],
//! [`RateLimited`], [`DeadlineExceeded`], [`Elapsed`] — to downcast
//! (`err.is::<CircuitOpen>()`) or to find anywhere in a source chain with
//! [`is_caused_by`]. [`Rejection::of`] folds the five into one enum to `match` on. Every
//! `build()` returns [`InvalidConfig`] naming the field instead of
//! panicking.
//!
//! # Time
//!
//! Every layer reads time from [`tokio::time`], so tests run on a paused
//! clock (`#[tokio::test(start_paused = true)]`) and move it with
//! `tokio::time::advance`.
//!
//! The layers that may need tokio's timer — `Timeout`, `WithDeadline`,
//! `Retry`, a `Bulkhead` with a `max_wait`, a `CircuitBreaker` that waits
//! when open — panic when called outside a Tokio runtime with time enabled,
//! from the first call on, with a message naming the layer
//! (`"steadfast::retry::Retry needs a Tokio runtime with time enabled
//! (…)"`): a retry layer does not wait for the backend's first failure to
//! tell you. See each service's `# Panics`. The check runs on the first
//! call in each task; outside tasks (`block_on`'s own future, all of
//! `#[tokio::main]`'s `main`) on every call until a thread has passed it
//! 16 times in a row, then once every 64 calls, so that it costs about
//! nothing on the fast path of a long-lived runtime.
//! The other layers (the breaker that rejects, the keyed breaker, a
//! bulkhead that never waits) work anywhere.
//!
//! # Telemetry
//!
//! Each layer with a handle (circuit breaker, bulkhead, retry, idempotency
//! server) can be named once at build (`.name("inventory")`; a preset built
//! with [`ResilienceBuilder::name`](stack::ResilienceBuilder::name) names
//! its pieces) and gives a snapshot of its counters from its handle.
//!
//! Every state change, rejection, timeout, retry and give-up emits one
//! `tracing` event (target `steadfast::<layer>`) with these stable fields:
//!
//! | field | value |
//! |---|---|
//! | `layer` | `"circuit_breaker"`, `"bulkhead"`, `"adaptive"`, `"retry"`, `"timeout"`, `"deadline"`, `"idempotency"` |
//! | `name` | the instance's name, or `""` |
//! | `event` | `"state_change"` (breaker: `warn` when it opens, else `info`), `"rejected"` (breaker, bulkhead: `debug`), `"timed_out"` (timeout, deadline: `debug`), `"retry"` and `"give_up"` (retry: `debug`), `"limit_changed"` (adaptive: `debug`, with `from` and `to`); idempotency server: `"replay"`, `"conflict"`, `"mismatch"` (`debug`), `"shed"`, `"store_error"`, `"lease_lost"`, `"not_stored"`, `"detached_timed_out"`, `"abandoned"` (`warn`), `"store_write_failure"` (`error`), `"release_deferred"` (`debug`) |
//! | `state` | breaker: the state entered (`state_change`) or rejecting in (`rejected`), as [`CircuitState::as_str`](circuit_breaker::CircuitState::as_str) |
//! | `attempt` | retry: the attempt about to be sent (`retry`), or the last one sent (`give_up`) |
//! | `delay_ms` | retry: the backoff before the attempt |
//! | `reason` | why: the trip rule, the bulkhead's `FullReason`, the retry's cause or why it gave up |
//!
//! The values are primitives and static strings: while an event's level is
//! disabled nothing is formatted or allocated (`tests/alloc` checks it).
//! Per-call spans are opt-in: add
//! [`CallSpanLayer`](metrics::CallSpanLayer) (outermost, around the
//! preset) and every call gets a `resilience.call` span with its `name`, in
//! which the events above nest; no other layer opens a span.
//!
//! Listeners (`on_transition` and `on_rejection` on the breaker,
//! `on_rejection` on the bulkhead, `on_retry` and `on_give_up` on retry,
//! `on_event` on the idempotency server layer)
//! get the same events as typed values, outside any lock; several may be
//! added, and one that panics is caught without stopping the others.
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `http` | yes | `classify::HttpClassifier`, `classify::GrpcClassifier`, `classify::hints`, ready-made keys for `http::Request` (`circuit_breaker::keys`), `RetryLayer::http` / `grpc` with body replay |
//! | `reqwest` | no | `ResilienceLayer::reqwest()`; `reqwest::Request` in every layer, around a plain `reqwest::Client`: `RetryLayer::http` replays it with `try_clone`, `IdempotencyKeyLayer` keys it, and `DeadlineLayer` carries the deadline as its timeout (`deadline` module docs); `reqwest::Response` is classified like `http::Response` |
//! | `redis` | no | `idempotency::store::RedisStore`: claims and stored responses in Redis, shared by server replicas |
//! | `metrics` | no | `metrics::Registry::publish` / `publish_every`: every registered handle's counters, gauges and histograms to the [`metrics`](https://docs.rs/metrics) facade, under OpenTelemetry-style names (`resilience.calls`, …); the Prometheus text needs no feature |
//! | `tonic` | no | tonic's core only (no transport): `ResilienceLayer::grpc()` maps our rejections to a `tonic::Status`; `RetryLayer::tonic`, whose services hand a `Channel` its own `tonic::body::Body`; `stack::GrpcStatusLayer`, our errors as a `tonic::Status` with the right code; tonic's `TimeoutExpired` treated as an attempt timeout |
//! | `serde` | no | `serde::Serialize` on every snapshot (`CircuitBreakerSnapshot`, `BulkheadSnapshot`, `RetrySnapshot`, `BudgetSnapshot`, `IdempotencyStats`, `MemoryStoreStats`, `ResilienceSnapshot`, `MetricsSnapshot`, `HistogramSnapshot`, `FaultSnapshot`) and `CircuitState` (as `"half_open"`, …); names as strings, durations as serde writes a `Duration` (`{"secs": 5, "nanos": 0}`) |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (the `redis` and `tonic` features need 1.88, the `redis` and
//! `tonic` crates'). Raising
//! it is not a breaking change, but is noted in the changelog.
//!
//! [`CircuitBreakerLayer`]: circuit_breaker::CircuitBreakerLayer
//! [`RetryLayer`]: retry::RetryLayer
//! [`TimeoutLayer`]: timeout::TimeoutLayer
//! [`DeadlineLayer`]: timeout::DeadlineLayer
//! [`BulkheadLayer`]: bulkhead::BulkheadLayer
//! [`FaultLayer`]: chaos::FaultLayer
//! [`Deadline`]: deadline::Deadline
//! [`KeyedCircuitBreakerLayer`]: circuit_breaker::KeyedCircuitBreakerLayer
//! [`tower::Service`]: tower_service::Service
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

#[macro_use]
mod macros;

mod builder;
mod error;
#[cfg(feature = "http")]
mod headers;
mod key;
mod mix;
mod rejection;
mod runtime;
mod sync;

pub mod adaptive;
pub mod bulkhead;
pub mod chaos;
pub mod circuit_breaker;
pub mod classify;
pub mod deadline;
pub mod fallback;
pub mod hedge;
#[cfg(feature = "http")]
pub mod idempotency;
pub mod metrics;
pub mod rate_limit;
pub mod retry;
pub mod stack;
pub mod timeout;

pub use crate::builder::ServiceBuilderExt;
pub use crate::error::{cause_ref, is_caused_by, AsError, BoxError, InvalidConfig};
pub use crate::rejection::{
    BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed, RateLimited, Rejection,
};
pub use crate::stack::prelude;
pub use crate::stack::{ResilienceHandle, ResilienceLayer};
