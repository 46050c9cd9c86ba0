//! Rate limiter behaviour on paused (virtual) time.
//!
//! * `exactness`: over every window, at most `burst + floor(w * rate / period)` admitted;
//! * `model`: a property test against a reference GCRA on integer nanoseconds;
//! * `clones`: every clone of the service and the layer draws from one limit;
//! * `errors`: `RateLimited`, `Rejection`, and how the breaker, retry and metrics treat it;
//! * `waiting`: the FIFO queue, `max_wait`, `max_waiting`, deadlines, cancellation;
//! * `config`: build-time validation;
//! * `handle`: snapshots, counters, Display, auto traits;
//! * `keyed`: `KeyedRateLimitLayer`, a limit per key, the key cap and the ready-made keys.
//!
//! The inner service, [`Recorder`], is always ready and answers at once; it
//! logs each request it receives with the (virtual) instant, so a request
//! in the log reached the inner service, and one not in it did not.

#[path = "../support/mod.rs"]
mod support;

mod clones;
mod config;
mod errors;
mod exactness;
mod handle;
mod keyed;
mod model;
mod waiting;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::rate_limit::error::RateLimited;
use steadfast::rate_limit::future::ResponseFuture;
use steadfast::rate_limit::{RateLimit, RateLimitLayer};
use steadfast::BoxError;
use tokio::time::Instant;
use tokio_test::task;
use tower::{Layer, Service};

const MS: Duration = Duration::from_millis(1);

/// An always-ready inner service that logs every request it receives, with
/// the instant, and answers with the request.
#[derive(Clone, Debug, Default)]
struct Recorder {
    log: Arc<Mutex<Vec<(u32, Instant)>>>,
}

impl Recorder {
    /// The requests received so far, in order.
    fn requests(&self) -> Vec<u32> {
        self.log.lock().unwrap().iter().map(|&(r, _)| r).collect()
    }

    /// When each request was received, since `start`.
    fn times_since(&self, start: Instant) -> Vec<(u32, Duration)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|&(r, t)| (r, t - start))
            .collect()
    }
}

impl Service<u32> for Recorder {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.log.lock().unwrap().push((req, Instant::now()));
        ready(Ok(req))
    }
}

type Limited = RateLimit<Recorder>;
type Call = task::Spawn<ResponseFuture<Recorder, u32>>;

/// `rate` per `period` with a burst of `burst`, rejecting at once.
fn layer(rate: u64, period: Duration, burst: u64) -> RateLimitLayer {
    RateLimitLayer::builder(rate, period)
        .burst(burst)
        .build()
        .expect("valid config")
}

/// 10 calls a second (one every 100 ms), burst `burst`, waiting up to
/// `max_wait`.
fn waiting_layer(burst: u64, max_wait: Duration) -> RateLimitLayer {
    RateLimitLayer::builder(10, Duration::from_secs(1))
        .burst(burst)
        .max_wait(max_wait)
        .build()
        .expect("valid config")
}

/// A service behind `layer` and its recorder.
fn service(layer: &RateLimitLayer) -> (Limited, Recorder) {
    let rec = Recorder::default();
    (layer.layer(rec.clone()), rec)
}

/// Calls `svc` (always ready); the call has not been polled.
fn call(svc: &mut Limited, req: u32) -> Call {
    task::spawn(svc.call(req))
}

/// Calls and polls once: `Some(Ok)` admitted, `Some(Err)` rejected, `None`
/// waiting (the call is dropped).
fn try_call(svc: &mut Limited, req: u32) -> Option<Result<u32, RateLimited>> {
    match call(svc, req).poll() {
        Poll::Ready(Ok(n)) => Some(Ok(n)),
        Poll::Ready(Err(e)) => Some(Err(limited(e))),
        Poll::Pending => None,
    }
}

/// The rejection inside `err`.
#[track_caller]
fn limited(err: BoxError) -> RateLimited {
    match err.downcast::<RateLimited>() {
        Ok(l) => *l,
        Err(other) => panic!("expected RateLimited, got {other}"),
    }
}

/// Polls a call that must be rejected at once; returns the rejection.
#[track_caller]
fn rejected(c: &mut Call) -> RateLimited {
    limited(tokio_test::assert_ready_err!(c.poll()))
}

/// Nanoseconds of `d`.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap()
}

/// A small seeded generator (splitmix64), so runs repeat exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
