//! The retry layer against real HTTP servers on loopback: what goes over the
//! wire on each attempt, as the server saw it.
//!
//! * `hyper_client`: hyper-util's legacy client inside `RetryLayer::http`:
//!   bodies replayed byte for byte under the cap (also concurrently, and
//!   after the server answered before the upload ended), sent once over it,
//!   the safe-method rule, `Retry-After`, connection refused;
//! * `grpc`: `RetryLayer::grpc` and `grpc-previous-rpc-attempts`;
//! * `reqwest_client` (feature `reqwest`): `RetryLayer::reqwest` around a
//!   `reqwest::Client`, clonable and streaming bodies.
//!
//! Real sockets need real time, so these tests cannot pause the clock: each
//! exchange is bounded by [`bounded`] and backoffs are 1 ms. No test
//! asserts a duration.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

mod server;

mod grpc;
mod hyper_client;
#[cfg(feature = "reqwest")]
mod reqwest_client;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::StreamBody;
use steadfast::retry::{Backoff, RetryConfig, RetryConfigBuilder};

/// How long one whole exchange (every attempt) may take before the test
/// fails: generous, since the machine may be busy; the exchanges themselves
/// take milliseconds.
const LIMIT: Duration = Duration::from_secs(5);

/// Runs `exchange`, failing the test if it has not finished within [`LIMIT`].
async fn bounded<F: Future>(exchange: F) -> F::Output {
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("the exchange finished in time")
}

/// Three attempts, 1 ms apart, no budget (the budget has its own tests;
/// here every retry the policy allows must reach the wire).
fn config() -> RetryConfigBuilder {
    RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .no_budget()
}

/// `len` bytes that are not all alike, so a shifted or truncated copy
/// cannot compare equal.
fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The frames of a [`streamed`] body.
type Chunks = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// `payload` as a body of several chunks of `chunk` bytes whose size is not
/// known up front (size hint `(0, None)`): it goes over the wire chunked.
fn streamed(payload: &Bytes, chunk: usize) -> StreamBody<Chunks> {
    let frames: Vec<_> = payload
        .chunks(chunk)
        .map(|c| Ok(Frame::data(payload.slice_ref(c))))
        .collect();
    assert!(frames.len() > 1, "several chunks");
    StreamBody::new(stream::iter(frames))
}
