//! The timeout and deadline layers on paused virtual time: every test asserts
//! the exact virtual instant at which a call finishes, and that it was still
//! pending one millisecond (one tick of tokio's timer) before.
//!
//! * `timer`: [`Timeout`](steadfast::timeout::Timeout) alone — when the timer
//!   fires, who wins a tie, the inner future dropped at once, the timer
//!   started in `call`;
//! * `config`: zero durations are refused, huge ones do not panic;
//! * `deadline_aware`: a per-attempt timeout shrunk to the request's deadline;
//! * `deadline_layer`: the deadline written into the request, nested
//!   deadlines, expired deadlines, `grpc-timeout` out and in;
//! * `retry`: a deadline over retries, attempt by attempt;
//! * `attempt_grpc_timeout`: a deadline-aware timeout writes
//!   `min(time left, attempt timeout)` as each attempt's `grpc-timeout`;
//! * `breaker`: which of the two errors the circuit breaker counts;
//! * `grpc_timeout`: the header's parser and formatter (property tests);
//! * `alloc`: the per-attempt timeout allocates nothing on the success path;
//! * `harness`: the time-driving helpers below catch a finish one tick early
//!   or late and a missing wakeup.

#[path = "../support/mod.rs"]
mod support;

#[path = "../alloc/cases.rs"]
#[allow(dead_code)]
mod cases;
#[allow(dead_code)]
mod pending_once;

mod alloc;
#[cfg(feature = "http")]
mod attempt_grpc_timeout;
#[cfg(feature = "http")]
mod breaker;
mod config;
#[cfg(feature = "http")]
mod deadline_aware;
#[cfg(feature = "http")]
mod deadline_layer;
#[cfg(feature = "http")]
mod grpc_timeout;
mod harness;
#[cfg(feature = "http")]
mod retry;
mod timer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(feature = "http")]
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_test::task::Spawn;

/// One tick of tokio's timer.
const TICK: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Drives `task` on virtual time up to `until`, one tick at a time, polling
/// it first and then only when it was woken (so a missing wakeup fails the
/// test instead of being papered over by extra polls).
///
/// Returns the output as soon as the task is ready — the clock then reads
/// the instant it became ready — or `Pending` once the clock reads `until`.
async fn poll_until<F: Future>(task: &mut Spawn<F>, until: Instant) -> Poll<F::Output> {
    let mut poll = true;
    loop {
        if poll || task.is_woken() {
            if let Poll::Ready(output) = task.poll() {
                return Poll::Ready(output);
            }
        }
        poll = false;
        let now = Instant::now();
        if now >= until {
            return Poll::Pending;
        }
        tokio::time::advance((until - now).min(TICK)).await;
    }
}

/// Asserts that `task` is still pending one tick before `at`, then finishes
/// exactly at `at`; returns its output.
async fn finishes_at<F: Future>(task: &mut Spawn<F>, at: Instant) -> F::Output {
    assert!(
        poll_until(task, at - TICK).await.is_pending(),
        "finished before {:?}",
        at - TICK
    );
    match poll_until(task, at).await {
        Poll::Ready(output) => {
            assert_eq!(Instant::now(), at);
            output
        }
        Poll::Pending => panic!("still pending at {at:?}"),
    }
}

/// Set when the [`DropGuard`] it made is dropped: tells whether an inner
/// future is still alive.
#[derive(Debug, Clone, Default)]
struct DropFlag(Arc<AtomicBool>);

impl DropFlag {
    fn guard(&self) -> DropGuard {
        DropGuard(self.clone())
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct DropGuard(DropFlag);

impl Drop for DropGuard {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::SeqCst);
    }
}

/// What the inner service saw of one request.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
struct Seen {
    /// When the request reached the inner service.
    at: Instant,
    deadline: Option<steadfast::deadline::Deadline>,
    grpc_timeout: Option<http::HeaderValue>,
    /// Set once the future of this call is dropped.
    dropped: DropFlag,
}

/// The requests an inner service received, in order.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
struct Log<T>(Arc<Mutex<Vec<T>>>);

#[cfg(feature = "http")]
impl<T> Default for Log<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

#[cfg(feature = "http")]
impl<T: Clone> Log<T> {
    fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }

    fn get(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

#[cfg(feature = "http")]
impl Log<Seen> {
    /// Records `req`; returns a guard to keep in the call's future.
    fn record<B>(&self, req: &http::Request<B>) -> DropGuard {
        use steadfast::deadline::{grpc_timeout::GRPC_TIMEOUT, CarriesDeadline};
        let dropped = DropFlag::default();
        let guard = dropped.guard();
        self.push(Seen {
            at: Instant::now(),
            deadline: req.deadline(),
            grpc_timeout: req.headers().get(GRPC_TIMEOUT).cloned(),
            dropped,
        });
        guard
    }

    /// The instants at which the requests arrived, as offsets from `start`.
    fn arrivals(&self, start: Instant) -> Vec<Duration> {
        self.get().iter().map(|s| s.at - start).collect()
    }
}

/// A service that records each request and never answers.
#[cfg(feature = "http")]
fn hanging<B>(
    log: &Log<Seen>,
) -> impl tower_service::Service<
    http::Request<B>,
    Response = &'static str,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<&'static str, std::convert::Infallible>>,
> + Clone {
    let log = log.clone();
    tower::service_fn(move |req: http::Request<B>| {
        let guard = log.record(&req);
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok("unreachable")
        }
    })
}

/// A service that records each request and answers at once.
#[cfg(feature = "http")]
fn answering<B>(
    log: &Log<Seen>,
) -> impl tower_service::Service<
    http::Request<B>,
    Response = &'static str,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<&'static str, std::convert::Infallible>>,
> + Clone {
    let log = log.clone();
    tower::service_fn(move |req: http::Request<B>| {
        drop(log.record(&req));
        std::future::ready(Ok("answered"))
    })
}

/// A gRPC-shaped request (only the content type matters here).
#[cfg(feature = "http")]
fn grpc_request() -> http::Request<()> {
    http::Request::post("http://svc/pkg.Service/Method")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(())
        .unwrap()
}
