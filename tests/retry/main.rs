//! Retry layer behaviour on paused virtual time.
//!
//! * `decisions`: what is retried (`max_attempts`, `retry_if`, custom
//!   [`RetryOn`](steadfast::retry::RetryOn) closures, `ServiceBuilderExt`) and
//!   what is returned when retries end;
//! * `schedule`: the backoff slept between attempts, at exact instants;
//!   seeded jitter;
//! * `http`: the HTTP rule (statuses, safe methods, `Retry-After`, the
//!   throttled backoff) around `http::Request<B>` (feature `http`);
//! * `at_most_once`: a request not safe to repeat is repeated only after a
//!   failure that proves it was not processed (feature `http`);
//! * `grpc`: the gRPC rule (codes, pushback, `grpc-previous-rpc-attempts`)
//!   (feature `http`);
//! * `circuit`: `CircuitOpen` from an inner breaker, and
//!   `wait_for_open_circuit`;
//! * `deadline`: a request's [`Deadline`](steadfast::deadline::Deadline)
//!   bounds the retries;
//! * `cancel`: dropping the response future stops the call;
//! * `budget`: the retry budget bounds retries across calls, also under
//!   concurrency;
//! * `readiness`: `poll_ready` errors, one readied clone of the inner
//!   service per call;
//! * `config`: build-time validation names the bad field;
//! * `timeout`: a per-attempt `Elapsed` is retried, `DeadlineExceeded`
//!   never is;
//! * `events`: the `tracing` event of each retry;
//! * `hint_clamp`: any bytes in a server hint: no panic, no wait beyond
//!   `max_server_delay` (property tests).

#[path = "../support/mod.rs"]
mod support;

mod harness;

#[cfg(feature = "http")]
mod at_most_once;
mod budget;
mod cancel;
mod circuit;
mod config;
mod deadline;
mod decisions;
mod events;
#[cfg(feature = "http")]
mod grpc;
#[cfg(feature = "http")]
mod hint_clamp;
#[cfg(feature = "http")]
mod http;
mod readiness;
#[cfg(feature = "tonic")]
mod restore_body;
mod schedule;
mod timeout;
