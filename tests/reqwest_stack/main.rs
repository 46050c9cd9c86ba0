//! `reqwest::Request` in, `reqwest::Response` out, through every layer:
//!
//! ```text
//! IdempotencyKey → Deadline → Retry::http → Bulkhead (deadline-aware)
//!     → CircuitBreaker (HttpClassifier) → Timeout (deadline-aware) → reqwest::Client
//! ```
//!
//! * `network`: a plain `reqwest::Client` against a local axum Product
//!   service ([`server`]) that fails on command; exact counts of what the
//!   server saw. Real sockets need real time, so these tests cannot pause
//!   the clock: each call is bounded by [`bounded`], backoffs are 1 ms, and
//!   no test asserts a duration.
//! * `paused`: a `tower::service_fn` stands in for the client, on a paused
//!   clock, to check each attempt's reqwest timeout (the time left before
//!   the deadline) to the nanosecond.
#![cfg(feature = "reqwest")]

#[path = "../support/mod.rs"]
mod support;

mod network;
mod paused;
mod preset;
mod server;

use std::future::Future;
use std::time::Duration;

use steadfast::bulkhead::{BulkheadHandle, BulkheadLayer};
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer};
use steadfast::classify::HttpClassifier;
use steadfast::idempotency::IdempotencyKeyLayer;
use steadfast::retry::{Backoff, RetryConfig, RetryHandle, RetryLayer};
use steadfast::timeout::{DeadlineLayer, TimeoutLayer};
use steadfast::BoxError;
use tower::{Service, ServiceBuilder};

/// How long one whole call may take before the test fails: generous, since
/// the machine may be busy; the calls themselves take milliseconds.
const LIMIT: Duration = Duration::from_secs(10);

/// Runs `call`, failing the test if it has not finished within [`LIMIT`].
async fn bounded<F: Future>(call: F) -> F::Output {
    tokio::time::timeout(LIMIT, call)
        .await
        .expect("the call finished in time")
}

/// The knobs the tests turn.
struct Stack {
    /// Whether POST and PATCH get an `Idempotency-Key`.
    keys: bool,
    deadline: Duration,
    max_attempts: u32,
    backoff: Duration,
    /// Bulkhead slots, and how long a call may wait for one.
    slots: usize,
    max_wait: Duration,
}

impl Default for Stack {
    fn default() -> Self {
        Self {
            keys: true,
            deadline: Duration::from_secs(5),
            max_attempts: 3,
            backoff: Duration::from_millis(1),
            slots: 8,
            max_wait: Duration::ZERO,
        }
    }
}

/// The handles of a built stack.
struct Handles {
    retry: RetryHandle,
    breaker: CircuitBreakerHandle,
    bulkhead: BulkheadHandle,
}

impl Stack {
    /// The chain around `inner`, with the handles of its layers.
    fn around<S>(
        self,
        inner: S,
    ) -> (
        impl Service<reqwest::Request, Response = reqwest::Response, Error = BoxError> + Clone,
        Handles,
    )
    where
        S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
        S::Error: Into<BoxError>,
    {
        let keys = if self.keys {
            IdempotencyKeyLayer::new()
        } else {
            IdempotencyKeyLayer::new().methods([])
        };
        let retry = RetryLayer::http(
            RetryConfig::builder()
                .max_attempts(self.max_attempts)
                .backoff(Backoff::fixed(self.backoff))
                // Every retry the policy allows must reach the server.
                .no_budget()
                .build()
                .expect("a valid retry config"),
        );
        let bulkhead = BulkheadLayer::builder(self.slots)
            .max_wait(self.max_wait)
            .build()
            .expect("a valid bulkhead")
            .deadline_aware();
        let breaker = CircuitBreakerLayer::with_classifier(
            CircuitBreakerConfig::builder()
                .consecutive_failures(3)
                .without_failure_rate()
                .open_duration(Duration::from_secs(30))
                .build()
                .expect("a valid breaker config"),
            HttpClassifier::new(),
        );
        let handles = Handles {
            retry: retry.handle(),
            breaker: breaker.handle(),
            bulkhead: bulkhead.handle(),
        };
        let svc = ServiceBuilder::new()
            .layer(keys)
            .layer(DeadlineLayer::new(self.deadline).expect("a valid deadline"))
            .layer(retry)
            .layer(bulkhead)
            .layer(breaker)
            .layer(
                TimeoutLayer::new(Duration::from_secs(10))
                    .expect("a valid timeout")
                    .deadline_aware(),
            )
            .service(inner);
        (svc, handles)
    }
}

/// `true` for a quoted UUIDv4, as the key layer writes them.
fn is_quoted_uuid(key: &str) -> bool {
    key.len() == 38 && key.starts_with('"') && key.ends_with('"') && &key[15..16] == "4"
}
