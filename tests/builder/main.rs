//! `ServiceBuilderExt`: each method adds the layer it names, with the
//! classifier that fits the request type, and never panics on a bad value.
//!
//! Each test counts the calls that reached the backend, so a method that
//! added the wrong layer, the wrong classifier or none at all fails it.

#[path = "../support/mod.rs"]
mod support;

use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::retry::{Backoff, RetryConfig};
use steadfast::{BoxError, Rejection, ServiceBuilderExt as _};
use tokio_test::{assert_pending, assert_ready_err, task};
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// Counts the calls that reached the backend.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// `f` as a service that counts its calls in `calls`.
fn counted<Req, F, Fut>(calls: &Calls, f: F) -> tower::util::ServiceFn<impl Fn(Req) -> Fut + Clone>
where
    F: Fn(Req) -> Fut + Clone,
{
    let calls = calls.clone();
    service_fn(move |req| {
        calls.hit();
        f(req)
    })
}

/// Trips after `n` consecutive failures, stays open 5 s.
fn consecutive(n: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(n)
        .open_duration(Duration::from_secs(5))
        .open_jitter(0.0)
        .build()
        .unwrap()
}

/// Three attempts, 1 ms apart, no budget.
fn three_attempts() -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .no_budget()
        .build()
        .unwrap()
}

fn is_circuit_open<E: steadfast::AsError + ?Sized>(err: &E) -> bool {
    matches!(Rejection::of(err), Some(Rejection::CircuitOpen { .. }))
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_counts_errors_and_opens() {
    support::trace_init();
    let calls = Calls::default();
    let svc = ServiceBuilder::new()
        .circuit_breaker(consecutive(3))
        .service(counted(&calls, |()| async {
            Err::<(), _>(BoxError::from("down"))
        }));
    for _ in 0..3 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(!is_circuit_open(&err), "{err}");
    }
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(is_circuit_open(&err), "{err}");
    assert_eq!(calls.get(), 3, "the fourth call never reached the backend");
}

/// The plain breaker is for services whose failures are `Err`: a 503
/// `Ok(response)` is a success to it. This is why the `http_` method exists.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn circuit_breaker_sees_503_responses_as_successes() {
    let calls = Calls::default();
    let svc = ServiceBuilder::new()
        .circuit_breaker(consecutive(3))
        .service(counted(&calls, |()| async {
            Ok::<_, BoxError>(status(503))
        }));
    for _ in 0..10 {
        assert_eq!(svc.clone().oneshot(()).await.unwrap().status(), 503);
    }
    assert_eq!(calls.get(), 10);
}

#[cfg(feature = "http")]
fn status(code: u16) -> http::Response<()> {
    http::Response::builder().status(code).body(()).unwrap()
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_circuit_breaker_opens_on_503_and_ignores_404() {
    let calls = Calls::default();
    let svc = ServiceBuilder::new()
        .http_circuit_breaker(consecutive(3))
        .service(counted(&calls, |code: u16| async move {
            Ok::<_, BoxError>(status(code))
        }));
    // 404s are the caller's mistake, not the backend's failure: they do
    // not break the run of 503s.
    for code in [503, 404, 503, 404, 404] {
        assert_eq!(svc.clone().oneshot(code).await.unwrap().status(), code);
    }
    assert_eq!(svc.clone().oneshot(503).await.unwrap().status(), 503);
    let err = svc.clone().oneshot(200).await.unwrap_err();
    assert!(is_circuit_open(&err), "{err}");
    assert_eq!(calls.get(), 6);
}

#[cfg(feature = "http")]
fn grpc_status(code: i32) -> http::Response<()> {
    http::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .body(())
        .unwrap()
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn grpc_circuit_breaker_opens_on_unavailable_not_on_invalid_argument() {
    const UNAVAILABLE: i32 = 14;
    const INVALID_ARGUMENT: i32 = 3;
    let calls = Calls::default();
    let svc = ServiceBuilder::new()
        .grpc_circuit_breaker(consecutive(2))
        .service(counted(&calls, |code: i32| async move {
            Ok::<_, BoxError>(grpc_status(code))
        }));
    // HTTP 200 every time: only grpc-status tells the failures apart.
    for _ in 0..5 {
        svc.clone().oneshot(INVALID_ARGUMENT).await.unwrap();
    }
    svc.clone().oneshot(UNAVAILABLE).await.unwrap();
    svc.clone().oneshot(UNAVAILABLE).await.unwrap();
    let err = svc.clone().oneshot(0).await.unwrap_err();
    assert!(is_circuit_open(&err), "{err}");
    assert_eq!(calls.get(), 7);
}

#[tokio::test(start_paused = true)]
async fn retries_repeats_errors_up_to_max_attempts() {
    let calls = Calls::default();
    let c = calls.clone();
    let svc = ServiceBuilder::new()
        .retries(three_attempts())
        .service_fn(move |id: u32| {
            let n = c.hit();
            async move {
                if n < 3 {
                    Err(BoxError::from("flaky"))
                } else {
                    Ok(id)
                }
            }
        });
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), 7);
    assert_eq!(calls.get(), 3);
    // Always failing: three attempts, then the last error.
    let failing = ServiceBuilder::new()
        .retries(three_attempts())
        .service_fn(|()| async { Err::<(), _>(BoxError::from("down")) });
    assert_eq!(failing.oneshot(()).await.unwrap_err().to_string(), "down");
}

#[cfg(feature = "http")]
mod http_requests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use steadfast::retry::body::ReplayBody;

    type Req = http::Request<ReplayBody<Empty<Bytes>>>;

    fn backend(
        calls: &Calls,
        answer: fn(&Req) -> http::Response<()>,
    ) -> impl tower::Service<Req, Response = http::Response<()>, Error = BoxError> + Clone {
        let calls = calls.clone();
        service_fn(move |req: Req| {
            calls.hit();
            let res = answer(&req);
            async move { Ok::<_, BoxError>(res) }
        })
    }

    fn request(method: http::Method) -> http::Request<Empty<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri("http://products/api/1")
            .body(Empty::new())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_get_answered_503_is_sent_three_times_a_post_once() {
        let calls = Calls::default();
        let svc = ServiceBuilder::new()
            .http_retries(three_attempts())
            .service(backend(&calls, |_| status(503)));
        let res = svc.clone().oneshot(request(http::Method::GET)).await;
        assert_eq!(res.unwrap().status(), 503);
        assert_eq!(calls.get(), 3);

        let res = svc.oneshot(request(http::Method::POST)).await;
        assert_eq!(res.unwrap().status(), 503);
        assert_eq!(calls.get(), 4, "a POST without a key is not repeated");
    }

    #[tokio::test(start_paused = true)]
    async fn with_idempotency_key_a_post_is_retried_with_the_same_key() {
        static KEYS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let calls = Calls::default();
        let svc = ServiceBuilder::new()
            .idempotency_key()
            .http_retries(three_attempts())
            .service(backend(&calls, |req| {
                let key = req
                    .headers()
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_owned());
                KEYS.lock()
                    .unwrap()
                    .push(key.expect("every attempt carries the key"));
                status(503)
            }));
        let res = svc.clone().oneshot(request(http::Method::POST)).await;
        assert_eq!(res.unwrap().status(), 503);
        assert_eq!(calls.get(), 3);
        let keys = KEYS.lock().unwrap().clone();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");

        // A GET is idempotent by its method: no key added.
        let calls = Calls::default();
        let get = ServiceBuilder::new().idempotency_key().service(service_fn({
            let calls = calls.clone();
            move |req: http::Request<Empty<Bytes>>| {
                assert!(req.headers().get("idempotency-key").is_none());
                calls.hit();
                async { Ok::<_, BoxError>(status(200)) }
            }
        }));
        get.oneshot(request(http::Method::GET)).await.unwrap();
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_retries_repeats_unavailable_not_invalid_argument() {
        fn call() -> http::Request<Empty<Bytes>> {
            http::Request::post("http://products/shop.Products/Get")
                .header("content-type", "application/grpc")
                .body(Empty::new())
                .unwrap()
        }
        let calls = Calls::default();
        let svc = ServiceBuilder::new()
            .grpc_retries(three_attempts())
            .service(backend(&calls, |_| grpc_status(14)));
        svc.oneshot(call()).await.unwrap();
        assert_eq!(calls.get(), 3);

        let calls = Calls::default();
        let svc = ServiceBuilder::new()
            .grpc_retries(three_attempts())
            .service(backend(&calls, |_| grpc_status(3)));
        svc.oneshot(call()).await.unwrap();
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_ends_the_whole_call_and_zero_is_refused() {
        let budget = Duration::from_secs(2);
        let calls = Calls::default();
        let svc = ServiceBuilder::new()
            .deadline(budget)
            .unwrap()
            .service(counted(&calls, |_req: http::Request<Empty<Bytes>>| {
                pending::<Result<http::Response<()>, BoxError>>()
            }));
        let mut call = task::spawn(svc.oneshot(request(http::Method::GET)));
        assert_pending!(call.poll());
        tokio::time::advance(budget - Duration::from_millis(1)).await;
        assert_pending!(call.poll());
        tokio::time::advance(Duration::from_millis(1)).await;
        let err = assert_ready_err!(call.poll());
        assert!(
            matches!(Rejection::of(&err), Some(Rejection::DeadlineExceeded { budget: Some(b), .. }) if b == budget),
            "{err}"
        );
        assert_eq!(calls.get(), 1);

        let err = ServiceBuilder::new().deadline(Duration::ZERO).unwrap_err();
        assert_eq!(err.field(), "deadline.timeout");
    }
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_fails_a_slow_attempt_and_zero_is_refused() {
    let timeout = Duration::from_millis(300);
    let svc = ServiceBuilder::new()
        .attempt_timeout(timeout)
        .unwrap()
        .service_fn(|()| pending::<Result<(), BoxError>>());
    let mut call = task::spawn(svc.oneshot(()));
    assert_pending!(call.poll());
    tokio::time::advance(timeout - Duration::from_millis(1)).await;
    assert_pending!(call.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = assert_ready_err!(call.poll());
    assert_eq!(
        Rejection::of(&err).map(|r| (r.as_str(), r.is_backend_failure())),
        Some(("timed_out", true))
    );

    let err = ServiceBuilder::new()
        .attempt_timeout(Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.field(), "timeout.timeout");
}

/// A timeout added with `attempt_timeout` inside `circuit_breaker` counts
/// as a failure: two slow attempts open the breaker.
#[tokio::test(start_paused = true)]
async fn attempt_timeout_inside_the_breaker_counts_as_a_failure() {
    let calls = Calls::default();
    let breaker = CircuitBreakerLayer::new(consecutive(2));
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .layer(breaker)
        .attempt_timeout(Duration::from_millis(100))
        .unwrap()
        .service(counted(&calls, |()| pending::<Result<(), BoxError>>()));
    for _ in 0..2 {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    assert_eq!(
        handle.state(),
        steadfast::circuit_breaker::CircuitState::Open
    );
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(is_circuit_open(&err), "{err}");
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn bulkhead_rejects_past_its_limit_and_zero_is_refused() {
    let calls = Calls::default();
    let svc = ServiceBuilder::new()
        .bulkhead(2)
        .unwrap()
        .service(counted(&calls, |()| pending::<Result<(), BoxError>>()));
    let mut a = task::spawn(svc.clone().oneshot(()));
    let mut b = task::spawn(svc.clone().oneshot(()));
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(
        matches!(
            Rejection::of(&err),
            Some(Rejection::BulkheadFull {
                max_concurrent: 2,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(calls.get(), 2);
    drop(a);
    // A slot came free.
    let mut c = task::spawn(svc.oneshot(()));
    assert_pending!(c.poll());
    assert_eq!(calls.get(), 3);

    let err = ServiceBuilder::new().bulkhead(0).unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
}

#[cfg(feature = "reqwest")]
#[tokio::test(start_paused = true)]
async fn reqwest_retries_repeats_a_get_answered_503() {
    let calls = Calls::default();
    let svc = ServiceBuilder::new()
        .reqwest_retries(three_attempts())
        .service(counted(&calls, |_req: reqwest::Request| async {
            let res = http::Response::builder().status(503).body("").unwrap();
            Ok::<_, BoxError>(reqwest::Response::from(res))
        }));
    let get = reqwest::Request::new(
        reqwest::Method::GET,
        "http://products/api/1".parse().unwrap(),
    );
    assert_eq!(svc.oneshot(get).await.unwrap().status(), 503);
    assert_eq!(calls.get(), 3);
}
