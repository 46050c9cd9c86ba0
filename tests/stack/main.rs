//! The preset stack: order, defaults, switch-offs, config errors and
//! cancellation, on paused time with in-process backends.
#![cfg(feature = "http")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use steadfast::bulkhead::error::BulkheadFull;
use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use steadfast::retry::body::ReplayBody;
use steadfast::retry::RetryConfig;
use steadfast::stack::{HttpResilience, ResilienceLayer};
use steadfast::timeout::error::{DeadlineExceeded, Elapsed};
use steadfast::{is_caused_by, BoxError};
use tokio::time::{self, Instant};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

type Req = Request<ReplayBody<String>>;

/// What the backend saw: one entry per attempt.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<AtomicUsize>,
    keys: Arc<Mutex<Vec<Option<String>>>>,
}

impl Seen {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A backend answering `status` after `delay`.
fn backend(
    seen: &Seen,
    status: StatusCode,
    delay: Duration,
) -> impl Service<Req, Response = Response<String>, Error = BoxError, Future = impl Send> + Clone {
    let seen = seen.clone();
    tower::service_fn(move |req: Req| {
        let seen = seen.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let key = req
                .headers()
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.keys.lock().unwrap().push(key);
            if !delay.is_zero() {
                time::sleep(delay).await;
            }
            let mut res = Response::new(String::from("ok"));
            *res.status_mut() = status;
            Ok::<_, BoxError>(res)
        }
    })
}

fn get(uri: &str) -> Request<String> {
    Request::get(uri).body(String::new()).unwrap()
}

fn post(uri: &str) -> Request<String> {
    Request::post(uri).body(String::from("{}")).unwrap()
}

fn no_jitter() -> RetryConfig {
    RetryConfig::default()
}

#[tokio::test(start_paused = true)]
async fn defaults_are_the_documented_ones() {
    let (_layer, handle) = ResilienceLayer::http().build().unwrap();
    assert_eq!(handle.deadline(), Some(Duration::from_secs(30)));
    assert_eq!(handle.attempt_timeout(), Some(Duration::from_secs(10)));
    assert!(
        handle.bulkhead().is_none(),
        "the bulkhead is off unless set"
    );
    let breaker = handle.circuit_breaker().expect("one breaker by default");
    assert_eq!(breaker.state(), CircuitState::Closed);
    let retry = handle.retry().expect("retries on by default");
    let budget = retry.budget().expect("a retry budget by default");
    let _ = budget;
    let text = handle.to_string();
    for piece in ["deadline", "retry", "bulkhead", "breaker", "timeout"] {
        assert!(text.contains(piece), "{piece} missing from:\n{text}");
    }
    assert!(text.lines().count() <= 6, "one line per piece:\n{text}");
    let _ = no_jitter();
}

#[test]
fn build_names_the_bad_field() {
    let err = ResilienceLayer::http().max_attempts(0).build().unwrap_err();
    assert_eq!(err.field(), "stack.retry.max_attempts");

    let err = ResilienceLayer::grpc()
        .circuit_breaker(CircuitBreakerConfig::builder().failure_rate(150.0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "stack.circuit_breaker.failure_rate");

    let err = ResilienceLayer::http().bulkhead(0).build().unwrap_err();
    assert!(err.field().starts_with("stack.bulkhead."), "{err}");

    let err = ResilienceLayer::http()
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "stack.deadline");

    let err = ResilienceLayer::http()
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "stack.attempt_timeout");

    let err = ResilienceLayer::http()
        .circuit_breaker_per_authority(CircuitBreakerConfig::builder())
        .max_authorities(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "stack.circuit_breaker.max_keys");

    let err = ResilienceLayer::http()
        .circuit_breaker_per_authority(CircuitBreakerConfig::builder())
        .authority_idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "stack.circuit_breaker.idle_timeout");
}

#[tokio::test(start_paused = true)]
async fn get_recovers_through_retries_and_post_keeps_one_key() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http().build().unwrap();
    let svc = layer.layer(backend(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::ZERO,
    ));

    let res = svc.clone().oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.calls(), 3, "a GET is tried three times");

    let res = svc.oneshot(post("http://products/orders")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        seen.calls(),
        6,
        "a POST with the stack's key is retried too"
    );
    let keys = seen.keys.lock().unwrap().clone();
    assert_eq!(&keys[..3], &[None, None, None], "no key on a GET");
    let key = keys[3].clone().expect("the POST carries a key");
    assert!(
        keys[3..].iter().all(|k| k.as_deref() == Some(key.as_str())),
        "{keys:?}"
    );
    assert_eq!(handle.retry().unwrap().snapshot().retries, 4);
}

#[tokio::test(start_paused = true)]
async fn post_without_the_key_layer_is_sent_once() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .no_idempotency_key()
        .build()
        .unwrap();
    let svc = layer.layer(backend(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::ZERO,
    ));
    let res = svc.oneshot(post("http://products/orders")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.calls(), 1);
    assert_eq!(seen.keys.lock().unwrap()[0], None);
    assert_eq!(handle.retry().unwrap().snapshot().skipped_unsafe, 1);
}

#[tokio::test(start_paused = true)]
async fn no_retry_means_one_attempt_and_no_retry_handle() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http().no_retry().build().unwrap();
    let svc = layer.layer(backend(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::ZERO,
    ));
    let res = svc.oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.calls(), 1);
    assert!(handle.retry().is_none());
    assert!(handle.to_string().contains("retry     off"));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_the_breaker_is_a_failure() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .no_retry()
        .attempt_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::from_secs(1)));
    let start = Instant::now();
    let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
    assert!(is_caused_by::<Elapsed>(err.as_ref()), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(
        breaker.failures, 1,
        "a timed-out attempt is a backend failure"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_retries() {
    let seen = Seen::default();
    let (layer, _handle) = ResilienceLayer::http()
        .deadline(Duration::from_millis(1_000))
        .attempt_timeout(Duration::from_millis(400))
        .retry(RetryConfig::builder().max_attempts(10))
        .build()
        .unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::from_secs(5)));
    let start = Instant::now();
    let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_millis(1_000),
        "{:?}",
        start.elapsed()
    );
    assert!(
        is_caused_by::<DeadlineExceeded>(err.as_ref()) || is_caused_by::<Elapsed>(err.as_ref()),
        "{err}"
    );
    assert!(
        seen.calls() >= 2 && seen.calls() <= 3,
        "{} attempts",
        seen.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_and_retries_do_not_hammer_it() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .circuit_breaker(CircuitBreakerConfig::builder().consecutive_failures(3))
        .build()
        .unwrap();
    let svc = layer.layer(backend(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::ZERO,
    ));
    // Three attempts fail: the breaker opens on the third.
    let res = svc.clone().oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.calls(), 3);
    assert_eq!(
        handle.circuit_breaker().unwrap().state(),
        CircuitState::Open
    );
    // The next call is rejected without reaching the backend, and the
    // rejection is not retried.
    let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(err.as_ref()), "{err}");
    assert_eq!(seen.calls(), 3);
    let snap = handle.snapshot();
    assert_eq!(snap.circuit_breaker.as_ref().unwrap().rejected, 1);
    assert_eq!(snap.circuit_breaker.as_ref().unwrap().failures, 3);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejections_are_not_backend_failures() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .bulkhead(1)
        .no_retry()
        .build()
        .unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::from_secs(1)));
    let first = tokio::spawn(svc.clone().oneshot(get("http://products/1")));
    tokio::task::yield_now().await;
    let err = svc
        .clone()
        .oneshot(get("http://products/2"))
        .await
        .unwrap_err();
    assert!(is_caused_by::<BulkheadFull>(err.as_ref()), "{err}");
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let snap = handle.snapshot();
    let breaker = snap.circuit_breaker.unwrap();
    assert_eq!((breaker.successes, breaker.failures), (1, 0));
    assert_eq!(snap.bulkhead.unwrap().rejected_queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_anywhere_gives_everything_back() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .bulkhead(2)
        .circuit_breaker(CircuitBreakerConfig::builder().consecutive_failures(100))
        .build()
        .unwrap();
    let svc = layer.layer(backend(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_millis(30),
    ));
    // Drop the call at many points: during an attempt, during a backoff.
    for at_ms in [0u64, 1, 10, 29, 30, 31, 45, 60, 90, 120, 200] {
        let fut = svc.clone().oneshot(get("http://products/1"));
        let _ = time::timeout(Duration::from_millis(at_ms), fut).await;
        let bulkhead = handle.bulkhead().unwrap();
        assert_eq!(
            bulkhead.in_flight(),
            0,
            "slot kept after a drop at {at_ms} ms"
        );
        assert_eq!(bulkhead.waiting(), 0);
    }
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(breaker.state, CircuitState::Closed);
    assert!(breaker.cancelled > 0, "drops are counted as cancelled");
    // Every budget token taken for a retry that the drop cancelled came back.
    let retry = handle.retry().unwrap().snapshot();
    let budget = retry.budget.expect("the preset has a budget");
    assert!(
        budget.refunded > 0,
        "a drop during a backoff refunds its token: {budget:?}"
    );
    assert_eq!(
        budget.retries, retry.retries,
        "tokens kept (withdrawn less refunded) = retries sent: {budget:?} {retry:?}"
    );
    // Every slot is free: two calls run at once.
    let a = tokio::spawn(svc.clone().oneshot(get("http://products/1")));
    let b = tokio::spawn(svc.clone().oneshot(get("http://products/2")));
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_breaker_per_authority() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .no_retry()
        .circuit_breaker_per_authority(CircuitBreakerConfig::builder().consecutive_failures(2))
        .build()
        .unwrap();
    let seen2 = seen.clone();
    let inner = tower::service_fn(move |req: Req| {
        let seen = seen2.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let status = if req.uri().host() == Some("down") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            let mut res = Response::new(String::new());
            *res.status_mut() = status;
            Ok::<_, BoxError>(res)
        }
    });
    let svc = layer.layer(inner);
    for _ in 0..2 {
        let _ = svc.clone().oneshot(get("http://down/x")).await.unwrap();
    }
    let err = svc.clone().oneshot(get("http://down/x")).await.unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(err.as_ref()));
    let res = svc.clone().oneshot(get("http://up/x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the other host is unaffected");
    let keyed = handle.keyed_circuit_breakers().expect("keyed breakers");
    assert_eq!(keyed.len(), 2);
    assert!(handle.circuit_breaker().is_none());
    assert_eq!(seen.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn past_max_authorities_the_other_hosts_share_the_overflow_breaker() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .no_retry()
        .circuit_breaker_per_authority(CircuitBreakerConfig::builder().consecutive_failures(2))
        // One: the keyed breaker spreads its cap over shards by hash, so
        // with a cap above one, which hosts get a breaker depends on it.
        .max_authorities(1)
        .authority_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::ZERO));
    for host in ["a", "b", "c", "d"] {
        let res = svc
            .clone()
            .oneshot(get(&format!("http://{host}/x")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let keyed = handle.keyed_circuit_breakers().expect("keyed breakers");
    assert_eq!(keyed.len(), 1, "the first host keeps a breaker of its own");
    assert_eq!(keyed.overflowed(), 3, "the other three share the overflow");
    assert_eq!(seen.calls(), 4);
}

/// The pair `build()` returns is a layer, and the service type is nameable.
#[tokio::test(start_paused = true)]
async fn the_pair_is_a_layer_and_the_type_has_a_name() {
    struct Client<S> {
        products: HttpResilience<S>,
    }
    let seen = Seen::default();
    let products = ServiceBuilder::new()
        .layer(ResilienceLayer::http().build().unwrap())
        .service(backend(&seen, StatusCode::OK, Duration::ZERO));
    let client = Client { products };
    let res = client
        .products
        .oneshot(get("http://products/1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_stack() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http().bulkhead(8).build().unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::ZERO));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                let res = svc
                    .clone()
                    .oneshot(get(&format!("http://products/{i}/{j}")))
                    .await;
                match res {
                    Ok(res) => assert_eq!(res.status(), StatusCode::OK),
                    Err(e) => assert!(is_caused_by::<BulkheadFull>(e.as_ref()), "{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let snap = handle.snapshot();
    let bulkhead = snap.bulkhead.unwrap();
    assert_eq!(bulkhead.in_flight, 0);
    assert_eq!(
        bulkhead.admitted + bulkhead.rejected(),
        64 * 20,
        "every call either ran or was rejected"
    );
    assert_eq!(seen.calls() as u64, bulkhead.admitted);
}

// --- The deadline in scope (see `steadfast::deadline`, "Carried in a scope") ---

mod hedge;
mod hot_path;
mod metrics;
mod rate_limit_fallback;

mod deadline_in_scope {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::task::{Context, Poll};

    use steadfast::bulkhead::BulkheadLayer;
    use steadfast::deadline::Deadline;
    use steadfast::retry::Backoff;
    use steadfast::timeout::TimeoutLayer;

    /// One call as the backend saw it: the deadline in scope, and whether
    /// the request carried one in its extensions.
    type Sighting = (Option<Deadline>, bool);

    /// What the backend saw in each `call`.
    #[derive(Clone, Default)]
    struct Probe {
        seen: Arc<Mutex<Vec<Sighting>>>,
        /// Answers `503` to this many calls first.
        fail_first: usize,
        /// Each answer takes this long.
        delay: Duration,
    }

    impl Probe {
        fn seen(&self) -> Vec<Sighting> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl<B> Service<Request<B>> for Probe {
        type Response = Response<String>;
        type Error = BoxError;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Response<String>, BoxError>> + Send>,
        >;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<B>) -> Self::Future {
            let mut seen = self.seen.lock().unwrap();
            seen.push((
                Deadline::current(),
                req.extensions().get::<Deadline>().is_some(),
            ));
            let fail = seen.len() <= self.fail_first;
            let delay = self.delay;
            Box::pin(async move {
                if !delay.is_zero() {
                    time::sleep(delay).await;
                }
                let mut res = Response::new(String::from("ok"));
                if fail {
                    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok(res)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_sees_the_deadline_in_scope_and_no_extension() {
        let probe = Probe {
            fail_first: 2,
            ..Probe::default()
        };
        let (layer, _) = ResilienceLayer::http()
            .deadline(Duration::from_secs(1))
            .retry(
                RetryConfig::builder()
                    .max_attempts(3)
                    .backoff(Backoff::fixed(Duration::from_millis(100))),
            )
            .build()
            .unwrap();
        let svc = layer.layer(probe.clone());
        let start = Instant::now();
        let res = svc.oneshot(get("http://products/1")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let expected = Deadline::at(start + Duration::from_secs(1));
        // The first attempt and both retries (made from the retry's future,
        // after a backoff) see the call's deadline; no request carries it.
        assert_eq!(probe.seen(), vec![(Some(expected), false); 3]);
        assert_eq!(Deadline::current(), None, "the scope ends with the call");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_deadline_in_scope() {
        // Attempts at 0 and 0.6 s; a third would start at 1.2 s, past the
        // 1 s deadline: retry returns the last answer at 0.6 s.
        let probe = Probe {
            fail_first: 10,
            ..Probe::default()
        };
        let (layer, handle) = ResilienceLayer::http()
            .deadline(Duration::from_secs(1))
            .retry(
                RetryConfig::builder()
                    .max_attempts(5)
                    .backoff(Backoff::fixed(Duration::from_millis(600))),
            )
            .build()
            .unwrap();
        let svc = layer.layer(probe.clone());
        let start = Instant::now();
        let res = svc.oneshot(get("http://products/1")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(start.elapsed(), Duration::from_millis(600));
        assert_eq!(probe.seen().len(), 2);
        assert_eq!(handle.retry().unwrap().snapshot().deadline_reached, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_aware_timeout_reads_the_deadline_in_scope() {
        // 10 s per attempt, 1 s left in scope: the timer fires at 1 s, as
        // the deadline's (`DeadlineExceeded`, not `Elapsed`).
        let hang = tower::service_fn(|_: Request<()>| async {
            time::sleep(Duration::from_secs(60)).await;
            Ok::<_, BoxError>(())
        });
        let mut svc = TimeoutLayer::new(Duration::from_secs(10))
            .unwrap()
            .deadline_aware()
            .layer(hang);
        let start = Instant::now();
        let call = Deadline::after(Duration::from_secs(1)).scope(|| svc.call(Request::new(())));
        let err = call.await.unwrap_err();
        assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err}");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Outside any scope the request's own deadline, or none, counts.
        let start = Instant::now();
        let err = svc.call(Request::new(())).await.unwrap_err();
        assert!(is_caused_by::<Elapsed>(err.as_ref()), "{err}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_waits_no_longer_than_the_deadline_in_scope() {
        let probe = Probe {
            delay: Duration::from_secs(5),
            ..Probe::default()
        };
        let (layer, handle) = ResilienceLayer::http()
            .deadline(Duration::from_secs(2))
            .bulkhead_with(BulkheadLayer::builder(1).max_wait(Duration::from_secs(10)))
            .no_retry()
            .build()
            .unwrap();
        let svc = layer.layer(probe.clone());
        // The first call holds the only slot until its deadline (2 s).
        let first = tokio::spawn(svc.clone().oneshot(get("http://products/1")));
        tokio::task::yield_now().await;
        // The second is made in a caller's scope of 300 ms: its wait for
        // the slot ends then, not at the stack's 2 s nor the 10 s max_wait.
        let mut second = svc.clone();
        ServiceExt::<Request<String>>::ready(&mut second)
            .await
            .unwrap();
        let start = Instant::now();
        let call = Deadline::after(Duration::from_millis(300))
            .scope(|| second.call(get("http://products/2")));
        let err = call.await.unwrap_err();
        // The caller's own deadline piece reports its deadline; the
        // bulkhead gave up waiting at the same instant.
        assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err}");
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        let bulkhead = handle.bulkhead().unwrap().snapshot();
        assert_eq!(bulkhead.rejected_wait_timed_out, 1, "{bulkhead:?}");
        // A third call waits, gets the slot when the first ends (2 s), and
        // its deferred call still sees its deadline (1 s + 2 s).
        time::sleep(Duration::from_millis(700)).await;
        let third_start = Instant::now();
        let third = tokio::spawn(svc.clone().oneshot(get("http://products/3")));
        assert!(first.await.unwrap().is_err(), "cut at its deadline");
        let _ = third.await.unwrap();
        let seen = probe.seen();
        assert_eq!(seen.len(), 2, "the second call never reached the backend");
        assert_eq!(
            seen[1],
            (
                Some(Deadline::at(third_start + Duration::from_secs(2))),
                false
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nested_deadlines_take_the_earliest() {
        // A stack inside another is called within the outer one's scope:
        // the same as a caller's scope around the stack's `call`.
        for (outer, inner) in [(1, 5), (5, 1)] {
            let probe = Probe::default();
            let (layer, _) = ResilienceLayer::http()
                .deadline(Duration::from_secs(inner))
                .build()
                .unwrap();
            let mut svc = layer.layer(probe.clone());
            ServiceExt::<Request<String>>::ready(&mut svc)
                .await
                .unwrap();
            let start = Instant::now();
            let call = Deadline::after(Duration::from_secs(outer))
                .scope(|| svc.call(get("http://products/1")));
            call.await.unwrap();
            let earliest = Deadline::at(start + Duration::from_secs(1));
            assert_eq!(
                probe.seen(),
                vec![(Some(earliest), false)],
                "{outer} s around {inner} s"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_in_call_ends_the_scope() {
        let (layer, _) = ResilienceLayer::http().no_retry().build().unwrap();
        let mut svc = layer.layer(tower::service_fn(
            |_: Req| -> std::future::Ready<Result<Response<String>, BoxError>> {
                assert!(Deadline::current().is_some());
                panic!("backend bug")
            },
        ));
        ServiceExt::<Request<String>>::ready(&mut svc)
            .await
            .unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            drop(svc.call(get("http://products/1")))
        }));
        assert!(caught.is_err());
        assert_eq!(Deadline::current(), None, "restored on unwind");
        // An outer scope is restored, not cleared.
        let outer = Deadline::after(Duration::from_secs(3));
        outer.scope(|| {
            let caught = catch_unwind(AssertUnwindSafe(|| {
                drop(svc.call(get("http://products/1")))
            }));
            assert!(caught.is_err());
            assert_eq!(Deadline::current(), Some(outer));
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_task_sees_only_its_own_deadline() {
        let probe = Probe::default();
        let mut tasks = Vec::new();
        for i in 0..32u64 {
            let probe = probe.clone();
            tasks.push(tokio::spawn(async move {
                let (layer, _) = ResilienceLayer::http()
                    .deadline(Duration::from_secs(100 + i))
                    .bulkhead(4)
                    .build()
                    .unwrap();
                let svc = layer.layer(probe);
                for _ in 0..20 {
                    assert_eq!(Deadline::current(), None);
                    let res = svc.clone().oneshot(get("http://products/1")).await;
                    if let Err(e) = res {
                        assert!(is_caused_by::<BulkheadFull>(e.as_ref()), "{e}");
                    }
                    assert_eq!(Deadline::current(), None);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let seen = probe.seen();
        assert!(!seen.is_empty());
        for (deadline, in_extensions) in seen {
            let left = deadline.expect("every call in scope").remaining();
            assert!(
                left > Duration::from_secs(90) && left <= Duration::from_secs(132),
                "{left:?}"
            );
            assert!(!in_extensions);
        }
    }
}

/// `grpc()` over a hyper-style client whose requests carry
/// `BoxBody<Bytes, BoxError>`: the inner service gets that type back, and
/// a retry resends the whole message.
#[tokio::test(start_paused = true)]
async fn the_grpc_preset_hands_a_boxed_body_back_to_the_inner_service() {
    use bytes::Bytes;
    use http_body_util::combinators::BoxBody;
    use http_body_util::{BodyExt, Full};
    use steadfast::retry::Backoff;

    type Boxed = BoxBody<Bytes, BoxError>;
    let seen: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |req: Request<Boxed>| {
            let seen = seen.clone();
            async move {
                let body = req.into_body().collect().await?.to_bytes();
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(body);
                    seen.len()
                };
                let status = if n == 1 { "14" } else { "0" };
                Ok::<_, BoxError>(
                    Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", status)
                        .body(String::new())
                        .unwrap(),
                )
            }
        })
    };
    let (layer, handle) = ResilienceLayer::grpc()
        .idempotent_paths(["/shop.Products/Get"])
        .retry(RetryConfig::builder().backoff(Backoff::fixed(Duration::from_millis(1))))
        .build()
        .unwrap();
    let svc = layer.layer(inner);
    let message = Bytes::from_static(b"\0\0\0\0\x03abc");
    let body: Boxed = Full::new(message.clone()).map_err(|e| match e {}).boxed();
    let req = Request::post("http://products/shop.Products/Get")
        .header("content-type", "application/grpc")
        .body(body)
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(*seen.lock().unwrap(), [message.clone(), message]);
    assert_eq!(handle.retry().unwrap().snapshot().retries, 1);
}

/// Every piece on, metrics included, in whatever build the tests run in
/// (debug included): one call, a retry, a timeout and a POST with its key
/// fit in a quarter of the 2 MiB a tokio worker or test thread gets. A
/// forced inline of every piece's `call` once made a single 2 MiB frame
/// in debug builds.
#[test]
fn a_call_through_every_piece_fits_a_small_stack() {
    let run = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let seen = Seen::default();
            let (layer, handle) = ResilienceLayer::http()
                .metrics("small-stack")
                .bulkhead(4)
                .attempt_timeout(Duration::from_millis(100))
                .retry(RetryConfig::builder().max_attempts(2))
                .build()
                .unwrap();
            let slow = layer.layer(backend(&seen, StatusCode::OK, Duration::from_secs(1)));
            let err = slow.oneshot(get("http://products/1")).await.unwrap_err();
            assert!(is_caused_by::<Elapsed>(err.as_ref()), "{err}");
            let fine = layer.layer(backend(&seen, StatusCode::OK, Duration::ZERO));
            let res = fine.oneshot(post("http://products/1")).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(seen.calls(), 3, "two timed-out attempts, then the POST");
            assert_eq!(handle.metrics().unwrap().snapshot().calls, 2);
        });
    };
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .expect("the call ran to its end on a 512 KiB stack");
}
