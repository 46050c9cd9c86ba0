//! Circuit breaker: stop calling a backend that is failing, probe it now and
//! then, and resume when it answers again.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::{
//!     error::CircuitOpen, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
//! };
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CircuitBreakerConfig::builder()
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(5))
//!     .build()?;
//! let layer = CircuitBreakerLayer::new(config);
//! let handle = layer.handle();
//! let svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>("refused") }));
//!
//! for _ in 0..3 {
//!     assert!(svc.clone().oneshot(()).await.is_err()); // reaches the backend
//! }
//! assert_eq!(handle.state(), CircuitState::Open);
//! let err = svc.clone().oneshot(()).await.unwrap_err(); // does not
//! let open = err.downcast_ref::<CircuitOpen>().expect("rejected by the breaker");
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(5)); // jitter only shortens
//! # Ok(())
//! # }
//! ```
//!
//! For HTTP and gRPC, pass a classifier so that statuses count, not just
//! transport errors:
//!
//! ```
//! # #[cfg(feature = "http")] {
//! use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//! use steadfast::classify::HttpClassifier;
//!
//! let layer = CircuitBreakerLayer::with_classifier(
//!     CircuitBreakerConfig::default(),
//!     HttpClassifier::new(), // 5xx, 408, 429 and transport errors fail
//! );
//! # let _ = layer; }
//! ```
//!
//! # States
//!
//! | state | calls | leaves when |
//! |---|---|---|
//! | [`Closed`](CircuitState::Closed) | pass; outcomes counted | a trip rule fires → `Open` |
//! | [`Open`](CircuitState::Open) | rejected with [`CircuitOpen`](error::CircuitOpen) | the open duration passed and a call arrives → `HalfOpen` (that call is the first probe) |
//! | [`HalfOpen`](CircuitState::HalfOpen) | up to `half_open_max_calls` probes pass, the rest are rejected | `success_threshold` probes succeed → `Closed`; a probe fails, or every slot stays taken for `probe_timeout` → `Open` |
//! | [`ForcedOpen`](CircuitState::ForcedOpen) | rejected | [`reset`](CircuitBreakerHandle::reset) |
//! | [`Disabled`](CircuitState::Disabled) | pass; counted; nothing trips | [`reset`](CircuitBreakerHandle::reset) |
//!
//! Open → half-open happens lazily, on the first call after the open
//! duration: no timer task runs in the background.
//!
//! # Trip rules
//!
//! Any combination; the first that fires opens the breaker.
//!
//! * **Failure rate** over a sliding [`Window`]: the last `n` calls
//!   ([`Window::count`], a true ring — the oldest call falls out as each new
//!   one comes in) or the last `d` ([`Window::time`], in buckets; a bucket
//!   that has aged out drops from the sum). Nothing counts before the window
//!   holds [`minimum_calls`](CircuitBreakerBuilder::minimum_calls).
//! * **Slow-call rate** over the same window: calls that took at least
//!   [`slow_call_duration`](CircuitBreakerBuilder::slow_call_duration).
//! * **Consecutive failures**: `n` failures in a row.
//!
//! Ignored outcomes (a 404, a rejection by another layer of this crate) count
//! in the snapshot but not in the window and do not break a run.
//!
//! ## Why both rules by default
//!
//! The default trips on 50 % failures over 10 s (at least 20 calls) **or** 20
//! failures in a row. Against a hard outage at 1,000 calls/s, a 10 s rate
//! window needs about 5 s of failures to reach 50 %, while 20 consecutive
//! failures trip within milliseconds. The rate rule still catches a partial
//! degradation that never produces a long run.
//!
//! # Open duration
//!
//! How long the breaker stays open depends on whether the backend is *down*
//! or *flapping*:
//!
//! * **Down.** A trip from closed opens for
//!   [`open_duration`](CircuitBreakerBuilder::open_duration) (default 5 s),
//!   and each failed probe (or [probe timeout](#half-open-probes)) re-opens
//!   for the same duration: probes that find the backend still down do not
//!   grow it. So after an outage of any length — 30 s or 300 s — the
//!   breaker probes, and closes, at most one open duration after the
//!   backend came back (plus the time until the next call arrives).
//! * **Flapping.** A trip from closed less than
//!   [`flap_window`](CircuitBreakerBuilder::flap_window) (30 s) after probes
//!   closed the breaker means the backend recovered and fell over again,
//!   often under the load that came back with it. Each such flap multiplies
//!   the open duration by
//!   [`open_duration_multiplier`](CircuitBreakerBuilder::open_duration_multiplier)
//!   (2), up to [`max_open_duration`](CircuitBreakerBuilder::max_open_duration)
//!   (60 s): 5, 10, 20, 40, 60, 60 s… Failed probes in between keep the
//!   grown duration.
//! * **Reset.** A trip after the breaker stayed closed for the whole flap
//!   window opens for the base duration again, as does the first trip after
//!   a manual [`reset`](CircuitBreakerHandle::reset),
//!   [`force_open`](CircuitBreakerHandle::force_open) or
//!   [`disable`](CircuitBreakerHandle::disable).
//!
//! Each open duration is then shortened by a random fraction of up to
//! [`open_jitter`](CircuitBreakerBuilder::open_jitter) (20 %: a 5 s open
//! lasts 4 to 5 s), so a fleet that tripped together probes out of step.
//! Jitter never lengthens it: the configured durations are upper bounds,
//! which is what makes the recovery bound above hold. The
//! [`Transition`]'s [`open_for`](Transition::open_for) and
//! [`CircuitOpen::retry_after`](error::CircuitOpen::retry_after) report the
//! jittered duration.
//!
//! Why not grow on failed probes, as many breakers do: growth there saves
//! little — a probe is one call — and it keeps a backend that was simply
//! down shut long after it came back: with doubling from 5 s, a 30 s outage
//! ends in the middle of a 20 s open period, and a long one in a period at
//! the cap. A flapping backend is different: every close lets the full load
//! through, and backing off keeps that from knocking it over again and
//! again.
//!
//! # Half-open probes
//!
//! At most `half_open_max_calls` probes are in flight at once, across all
//! clones. A probe whose future is dropped frees its slot and counts as
//! nothing. When every slot has stayed taken for `probe_timeout` (30 s)
//! since the phase began or the last probe was admitted, the phase counts as
//! a failed probe: the next call re-opens the breaker, so a hung probe cannot
//! wedge it. A slow probe (when
//! the slow-call rule is on) counts as a failed one.
//!
//! # Late results
//!
//! Every state change starts a new *generation*. A result from a call
//! admitted in an earlier generation — say a slow failure that arrives after
//! the breaker already opened and closed again — is counted in the snapshot
//! ([`late`](CircuitBreakerSnapshot::late)) but moves nothing.
//!
//! # Telemetry
//!
//! Every state change emits one `tracing` event (target
//! `steadfast::circuit_breaker`, `WARN` when it opens, `INFO` otherwise)
//! and every rejection one at `DEBUG`, with the crate's stable fields
//! (`layer = "circuit_breaker"`, `name`, `event`, `state`; see
//! [the crate docs](crate#telemetry)). Listeners added with
//! [`on_transition`](CircuitBreakerBuilder::on_transition) and
//! [`on_rejection`](CircuitBreakerBuilder::on_rejection) get the same
//! events, outside any lock; a listener that panics is caught. The
//! [snapshot](CircuitBreakerHandle::snapshot) adds the counters and the
//! time in the current state.
//!
//! # Errors
//!
//! The service's error type is [`BreakerError`](error::BreakerError): the
//! inner service's error (converted with `Into` to a
//! [`BoxError`](crate::BoxError)), or a [`CircuitOpen`](error::CircuitOpen)
//! rejection, which carries the state and, while open, the time until the
//! next probe. The rejection is held in place, so an open breaker refuses a
//! call without a heap allocation.
//!
//! `BreakerError` reads like a `BoxError`: it dereferences to
//! `dyn Error + Send + Sync` (`err.downcast_ref::<CircuitOpen>()`,
//! [`is_caused_by`](crate::is_caused_by)`(&*err)`), and converts into a
//! `BoxError` with `From`/`?`, unwrapping the inner error, so it fits every
//! layer and client that asks for `Error: Into<BoxError>`. In the
//! [preset stack](crate::stack) the error is a `BoxError` as for every
//! other piece.
//!
//! # Ordering
//!
//! Put the breaker **inside** retry, so a retry can wait out a short open
//! period without re-sending rejections, and **outside** the per-attempt
//! timeout, so timeouts count as failures:
//!
//! ```text
//! IdempotencyKey → Deadline → Retry → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! # Clone
//!
//! One [`CircuitBreakerLayer`] is one breaker: every service it makes, and
//! every clone of those, counts against the same state. Build one layer per
//! backend (or use [`KeyedCircuitBreakerLayer`] for one breaker per host or
//! method).
//!
//! # Backpressure
//!
//! Two modes; rejecting in the response future is the default.
//!
//! * **Reject** (default): `poll_ready` passes straight through to the inner
//!   service and never waits for the breaker; a call the breaker refuses is
//!   answered at once by its response future with
//!   [`CircuitOpen`](error::CircuitOpen). `poll_ready` never returns an
//!   error for an open circuit — a `poll_ready` error is final in tower.
//!   This is the mode for axum and hyper servers, which call a service
//!   without waiting on `poll_ready`: map `CircuitOpen` to a `503` with
//!   `HandleErrorLayer`, or serve a fallback.
//! * **Wait** ([`CircuitBreakerLayer::wait_when_open`]): `poll_ready` stays
//!   pending until the breaker admits a call, and reserves that admission
//!   for the next `call` (a half-open probe slot included). The task is
//!   woken when the open duration has passed, on every state change, and
//!   whenever a probe slot frees up. This is the mode for a balancer such as
//!   `tower::balance::p2c`, which skips endpoints that are not ready, or for
//!   callers that would rather queue than fail. Calling without a ready
//!   `poll_ready` panics, as with tower's `ConcurrencyLimit`; a clone starts
//!   without its original's reservation, and dropping a service that holds
//!   one frees it. A reservation made while closed may be spent after the
//!   breaker opened: its result is then late. Needs a tokio runtime with the
//!   timer enabled: every `call` outside one panics, the first included,
//!   not only when the breaker first opens (see [`CircuitBreaker`]'s
//!   `# Panics`). The reject mode needs no runtime.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
//! use tower::{service_fn, Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let config = CircuitBreakerConfig::builder()
//!     .consecutive_failures(1)
//!     .open_duration(Duration::from_secs(5))
//!     .open_jitter(0.0)
//!     .build()?;
//! let layer = CircuitBreakerLayer::new(config).wait_when_open();
//! let handle = layer.handle();
//! let mut svc = layer.layer(service_fn(|fail: bool| async move {
//!     if fail { Err("down") } else { Ok("up") }
//! }));
//!
//! assert!(svc.ready().await?.call(true).await.is_err());
//! assert_eq!(handle.state(), CircuitState::Open);
//! // `ready()` waits out the open duration (on the paused clock, at once)
//! // and reserves the half-open probe for this call.
//! assert_eq!(svc.ready().await?.call(false).await?, "up");
//! assert_eq!(handle.state(), CircuitState::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! [`KeyedCircuitBreakerLayer`] has only the reject mode: the key is known
//! only in `call`.
//!
//! # Cost
//!
//! The closed path takes no lock and allocates nothing: one atomic load to
//! admit, one to check the generation on completion, one reference count on
//! the way in and out (the response future must own its way back to the
//! breaker), and counters on a stripe the calling thread owns, bumped with
//! plain loads and stores. A time window reads tokio's clock once per call,
//! and an open breaker once per rejection. `BENCHMARKS.md` has the measurements.
//!
//! A [`KeyedCircuitBreakerLayer`] adds a hash of the key (two, for its
//! 128-bit fingerprint) and a shard lock per call. Each key's breaker is
//! compact — one set of counters bumped with atomic adds, one set of window
//! buckets — so a key costs about 2 KB on any number of cores, and keys are
//! not stored at all, only their fingerprints; see its `# Memory` docs.

pub(crate) mod collect;
mod config;
mod handle;
mod keyed;
mod layer;
mod service;
mod state;
mod window;

pub mod error;
pub mod future;

pub use self::config::{CircuitBreakerBuilder, CircuitBreakerConfig, Window};
pub use self::handle::{CircuitBreakerHandle, CircuitBreakerSnapshot};

#[cfg(feature = "http")]
pub use self::keyed::keys;
pub use self::keyed::{
    KeyOf, KeyedCircuitBreaker, KeyedCircuitBreakerBuilder, KeyedCircuitBreakerHandle,
    KeyedCircuitBreakerLayer,
};
pub use self::layer::CircuitBreakerLayer;
pub use self::service::CircuitBreaker;
pub use self::state::{CircuitState, Rejected, Transition, TransitionReason};
