//! The fault-injection layer, on paused virtual time.
//!
//! * `rates`: over 100,000 calls with a fixed seed, each fault's share is
//!   within 5σ of its rate, and the snapshot counts exactly what the calls
//!   returned; latency distributions;
//! * `windows`: a window starts and ends at its exact virtual instants;
//! * `determinism`: the same seed and schedule give the same sequence, a
//!   different seed another, and clones share one sequence;
//! * `faults`: what each fault does to the call and the inner service —
//!   refused is not sent, reset is, a hang is cut by our `TimeoutLayer`,
//!   and dropping the future at any point releases everything;
//! * `http`: status and gRPC responses, read back by our own classifiers,
//!   hint parsers and retry layer (feature `http`);
//! * `outage`: the outage simulation — a breaker and a timeout around a
//!   backend that hangs, then refuses, for 30 s;
//! * `config`: bad values are errors that name the field.

#[path = "../support/mod.rs"]
mod support;

mod config;
mod determinism;
mod faults;
#[cfg(feature = "http")]
mod http;
mod outage;
mod rates;
mod windows;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use steadfast::BoxError;
use tower::{service_fn, Service};

/// The error a `Fault::error` in these tests injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// A backend that answers its request's number and counts how often its
/// handler *started* (the request reached it), not how often it was called.
pub(crate) fn counting(
    started: &Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    let started = started.clone();
    service_fn(move |n: u32| {
        let started = started.clone();
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(n)
        }
    })
}

/// What `Fault::respond` answers in these tests (the backend answers the
/// request's number, always smaller).
pub(crate) const RESPONDED: u32 = u32::MAX;

/// A test's own outcome of one call, for comparing sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Seen {
    Ok,
    Responded,
    Error,
    Refused,
    Reset,
    Hang,
}

impl Seen {
    pub(crate) fn of(result: Option<Result<u32, BoxError>>) -> Self {
        use steadfast::chaos::error::{InjectedRefused, InjectedReset};
        match result {
            None => Seen::Hang,
            Some(Ok(RESPONDED)) => Seen::Responded,
            Some(Ok(_)) => Seen::Ok,
            Some(Err(e)) if e.is::<Boom>() => Seen::Error,
            Some(Err(e)) if e.is::<InjectedRefused>() => Seen::Refused,
            Some(Err(e)) if e.is::<InjectedReset>() => Seen::Reset,
            Some(Err(e)) => panic!("unexpected error {e}"),
        }
    }
}
