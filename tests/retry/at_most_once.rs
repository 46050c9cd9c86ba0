//! A request that is not safe to repeat (a POST without an
//! `Idempotency-Key`, every gRPC call not marked idempotent) is sent again
//! only when the failure proves the server did not process it: never after
//! an attempt timeout or a reset mid-call, unless asked.
//!
//! Each backend counts its *executions* (how often its handler started), the
//! number a duplicated payment would show.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use steadfast::classify::NotSent;
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Idempotent, RetryConfig, RetryLayer};
use steadfast::timeout::error::Elapsed;
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::harness::{ms, quick, Counts};
use crate::http::Body;

/// A backend whose handler takes `ms(300)` and then answers OK (a gRPC OK
/// in the headers, as a unary call's trailers-only answer would be).
fn slow_backend(
    executions: &Arc<AtomicUsize>,
) -> impl Service<
    Request<ReplayBody<Body>>,
    Response = Response<String>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send {
    counting_backend(executions, ms(300), |_| None)
}

/// A backend that fails attempt `n` with `fail(n)` at once, without reading
/// the body (as a refused connection does), or reads the body, takes
/// `delay` and answers OK with the body it read; it counts executions.
fn counting_backend<F>(
    executions: &Arc<AtomicUsize>,
    delay: std::time::Duration,
    fail: F,
) -> impl Service<
    Request<ReplayBody<Body>>,
    Response = Response<String>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send
where
    F: Fn(usize) -> Option<BoxError> + Clone + Send + Sync + 'static,
{
    let executions = executions.clone();
    service_fn(move |req: Request<ReplayBody<Body>>| {
        let n = executions.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = fail.clone();
        async move {
            if let Some(e) = fail(n) {
                return Err(e);
            }
            let body = req.into_body().collect().await?.to_bytes();
            tokio::time::sleep(delay).await;
            Ok(Response::builder()
                .header("grpc-status", "0")
                .body(String::from_utf8_lossy(&body).into_owned())
                .unwrap())
        }
    })
}

fn grpc_call() -> Request<Body> {
    Request::post("http://backend/shop.Payments/Charge")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(Bytes::from_static(b"\0\0\0\0\x03pay")))
        .unwrap()
}

fn post(content_type: &str) -> Request<Body> {
    Request::post("http://backend/payments")
        .header("content-type", content_type)
        .body(Body::new(Bytes::from_static(b"{\"amount\":100}")))
        .unwrap()
}

fn refused() -> BoxError {
    io::Error::from(io::ErrorKind::ConnectionRefused).into()
}

fn reset() -> BoxError {
    io::Error::from(io::ErrorKind::ConnectionReset).into()
}

/// The review's first reproduction: `RetryLayer::grpc(default)` over a
/// 250 ms attempt timeout, a unary call that takes 300 ms. It ran 3 times.
#[tokio::test(start_paused = true)]
async fn grpc_call_cut_by_the_attempt_timeout_runs_once() {
    let executions = Arc::new(AtomicUsize::new(0));
    let retry = RetryLayer::grpc(RetryConfig::default());
    let svc = retry.layer(
        TimeoutLayer::new(ms(250))
            .unwrap()
            .layer(slow_backend(&executions)),
    );

    let err = svc.oneshot(grpc_call()).await.unwrap_err();

    assert!(err.is::<Elapsed>(), "the attempt's own error: {err}");
    assert_eq!(executions.load(Ordering::SeqCst), 1, "the handler ran once");
    assert_eq!(
        Counts::of(&retry.handle()),
        Counts {
            unsafe_: 1,
            ..Counts::call(1)
        }
    );
}

/// The second reproduction: a POST without a key whose content type merely
/// starts with `application/grpc` was sent 3 times; as `application/json`,
/// once. Both are sent once now.
#[tokio::test(start_paused = true)]
async fn post_without_key_runs_once_whatever_its_content_type() {
    for content_type in [
        "application/grpc-web+json",
        "application/json",
        "application/grpc",
    ] {
        let executions = Arc::new(AtomicUsize::new(0));
        let retry = RetryLayer::http(RetryConfig::default());
        let svc = retry.layer(
            TimeoutLayer::new(ms(250))
                .unwrap()
                .layer(slow_backend(&executions)),
        );

        let err = svc.oneshot(post(content_type)).await.unwrap_err();

        assert!(err.is::<Elapsed>(), "{content_type}: {err}");
        assert_eq!(executions.load(Ordering::SeqCst), 1, "{content_type}");
        assert_eq!(Counts::of(&retry.handle()).unsafe_, 1, "{content_type}");
    }
}

/// What makes a timed-out call repeatable: a key, an idempotent method, the
/// `Idempotent` extension, a path declared idempotent, or `retry_timeouts`.
#[tokio::test(start_paused = true)]
async fn timed_out_calls_are_repeated_when_marked_or_asked() {
    type Make = fn() -> (
        RetryLayer<steadfast::retry::GrpcRetryOn, steadfast::retry::HttpReplay>,
        Request<Body>,
    );
    let cases: [(&str, Make); 5] = [
        ("idempotency key", || {
            let mut req = grpc_call();
            req.headers_mut()
                .insert("idempotency-key", "\"k-1\"".parse().unwrap());
            (RetryLayer::grpc(RetryConfig::default()), req)
        }),
        ("GET", || {
            let mut req = grpc_call();
            *req.method_mut() = http::Method::GET;
            (RetryLayer::grpc(RetryConfig::default()), req)
        }),
        ("extension", || {
            let mut req = grpc_call();
            req.extensions_mut().insert(Idempotent);
            (RetryLayer::grpc(RetryConfig::default()), req)
        }),
        ("idempotent path", || {
            let layer = RetryLayer::grpc(RetryConfig::default())
                .idempotent_paths(["/shop.Payments/Get", "/shop.Payments/Charge"]);
            (layer, grpc_call())
        }),
        ("retry_timeouts", || {
            let config = RetryConfig::builder().retry_timeouts(true).build().unwrap();
            (RetryLayer::grpc(config), grpc_call())
        }),
    ];
    for (name, make) in cases {
        let executions = Arc::new(AtomicUsize::new(0));
        let (retry, req) = make();
        let svc = retry.layer(
            TimeoutLayer::new(ms(250))
                .unwrap()
                .layer(slow_backend(&executions)),
        );
        let err = svc.oneshot(req).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{name}: {err}");
        assert_eq!(executions.load(Ordering::SeqCst), 3, "{name}");
        assert_eq!(Counts::of(&retry.handle()).unsafe_, 0, "{name}");
    }
}

/// A path that is not on the list stays unsafe.
#[tokio::test(start_paused = true)]
async fn other_paths_stay_unsafe() {
    let executions = Arc::new(AtomicUsize::new(0));
    let retry = RetryLayer::grpc(RetryConfig::default()).idempotent_paths(["/shop.Payments/Get"]);
    let svc = retry.layer(
        TimeoutLayer::new(ms(250))
            .unwrap()
            .layer(slow_backend(&executions)),
    );
    svc.oneshot(grpc_call()).await.unwrap_err();
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

/// `retry_timeouts` is about timeouts only: a reset still ends the call.
#[tokio::test(start_paused = true)]
async fn retry_timeouts_does_not_repeat_a_reset() {
    let executions = Arc::new(AtomicUsize::new(0));
    let config = quick().retry_timeouts(true).build().unwrap();
    let retry = RetryLayer::grpc(config);
    let svc = retry.layer(counting_backend(&executions, ms(0), |_| Some(reset())));
    let err = svc.oneshot(grpc_call()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(executions.load(Ordering::SeqCst), 1);
}

/// A tonic `Channel` enforces the request's `grpc-timeout` itself and fails
/// the call with `TimeoutExpired` (inside its transport error), which can
/// beat our own attempt timer: it is an attempt timeout like `Elapsed`, so
/// an unsafe call is not repeated after it, unless `retry_timeouts` asks.
#[cfg(feature = "tonic")]
#[tokio::test(start_paused = true)]
async fn tonics_timeout_expired_is_an_attempt_timeout() {
    /// Stands in for `tonic::transport::Error`: the expiry is its source.
    #[derive(Debug)]
    struct Transport(tonic::TimeoutExpired);
    impl std::fmt::Display for Transport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }
    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let expired = |_| Some(Box::new(Transport(tonic::TimeoutExpired(()))) as BoxError);

    for (retry_timeouts, runs, unsafe_) in [(false, 1, 1), (true, 3, 0)] {
        let executions = Arc::new(AtomicUsize::new(0));
        let config = quick().retry_timeouts(retry_timeouts).build().unwrap();
        let retry = RetryLayer::grpc(config);
        let svc = retry.layer(counting_backend(&executions, ms(0), expired));
        let err = svc.oneshot(grpc_call()).await.unwrap_err();
        assert!(err.is::<Transport>(), "{err}");
        assert_eq!(executions.load(Ordering::SeqCst), runs, "{retry_timeouts}");
        assert_eq!(Counts::of(&retry.handle()).unsafe_, unsafe_);
    }
}

/// Errors that prove the request was never sent repeat it, errors that
/// prove nothing do not: for a gRPC call and for a POST without a key.
#[tokio::test(start_paused = true)]
async fn only_errors_that_prove_nothing_was_sent_repeat_an_unsafe_call() {
    type Fail = fn() -> BoxError;
    let proving: [(&str, Fail); 3] = [
        ("connection refused", refused),
        ("NotSent", || {
            NotSent::new("no connection to the shard").into()
        }),
        ("refused, wrapped", || {
            Box::new(io::Error::other(NotSent::new(io::Error::from(
                io::ErrorKind::ConnectionRefused,
            ))))
        }),
    ];
    let unproving: [(&str, Fail); 4] = [
        ("reset", reset),
        ("broken pipe", || {
            io::Error::from(io::ErrorKind::BrokenPipe).into()
        }),
        ("a message", || "connection refused".into()),
        ("elapsed", || Elapsed::new(ms(250)).into()),
    ];
    for make_request in [grpc_call as fn() -> Request<Body>, || {
        post("application/json")
    }] {
        for (name, fail) in proving {
            let executions = Arc::new(AtomicUsize::new(0));
            let retry = RetryLayer::grpc(quick().build().unwrap());
            let svc = retry.layer(counting_backend(&executions, ms(0), move |n| {
                (n < 3).then(fail)
            }));
            let res = svc.oneshot(make_request()).await.unwrap();
            assert_eq!(executions.load(Ordering::SeqCst), 3, "{name}");
            // The whole body went again.
            let sent = make_request()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(res.body().as_bytes(), sent, "{name}");
            assert_eq!(Counts::of(&retry.handle()), Counts::call(3), "{name}");
        }
        for (name, fail) in unproving {
            let executions = Arc::new(AtomicUsize::new(0));
            let retry = RetryLayer::http(quick().build().unwrap());
            let svc = retry.layer(counting_backend(&executions, ms(0), move |_| Some(fail())));
            svc.oneshot(make_request()).await.unwrap_err();
            assert_eq!(executions.load(Ordering::SeqCst), 1, "{name}");
            assert_eq!(
                Counts::of(&retry.handle()),
                Counts {
                    unsafe_: 1,
                    ..Counts::call(1)
                },
                "{name}"
            );
        }
    }
}

/// gRPC's retry codes prove the call was not processed (the service says
/// so by listing them): an unmarked call is retried on UNAVAILABLE, but
/// not on an HTTP 503 through the HTTP rule.
#[tokio::test(start_paused = true)]
async fn retry_codes_repeat_a_grpc_call_but_http_statuses_do_not_repeat_a_post() {
    let executions = Arc::new(AtomicUsize::new(0));
    let unavailable = {
        let executions = executions.clone();
        service_fn(move |_req: Request<ReplayBody<Body>>| {
            let n = executions.fetch_add(1, Ordering::SeqCst) + 1;
            let code = if n < 3 { "14" } else { "0" };
            async move {
                Ok::<_, BoxError>(
                    Response::builder()
                        .header("grpc-status", code)
                        .body(String::new())
                        .unwrap(),
                )
            }
        })
    };
    let retry = RetryLayer::grpc(quick().build().unwrap());
    let res = retry
        .layer(unavailable.clone())
        .oneshot(grpc_call())
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(executions.load(Ordering::SeqCst), 3);

    let executions = Arc::new(AtomicUsize::new(0));
    let busy = {
        let executions = executions.clone();
        service_fn(move |_req: Request<ReplayBody<Body>>| {
            executions.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, BoxError>(Response::builder().status(503).body(String::new()).unwrap())
            }
        })
    };
    let retry = RetryLayer::http(quick().build().unwrap());
    let res = retry
        .layer(busy)
        .oneshot(post("application/json"))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(executions.load(Ordering::SeqCst), 1);
    assert_eq!(Counts::of(&retry.handle()).unsafe_, 1);
}

/// A generic retry predicate gets the default rule for `not_processed`;
/// plain `Clone` requests (no HTTP) are all taken as safe, as before.
#[tokio::test(start_paused = true)]
async fn clone_requests_keep_the_predicate_rule() {
    let executions = Arc::new(AtomicUsize::new(0));
    let seen = executions.clone();
    let retry = RetryLayer::new(quick().build().unwrap());
    let svc = retry.layer(service_fn(move |_: u32| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, BoxError>(reset()) }
    }));
    svc.oneshot(1).await.unwrap_err();
    assert_eq!(executions.load(Ordering::SeqCst), 3);
}
