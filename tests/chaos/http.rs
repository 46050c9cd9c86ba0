//! HTTP and gRPC answers, read back by this crate's own classifiers, hint
//! parsers and retry layer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use steadfast::chaos::error::{InjectedRefused, InjectedReset};
use steadfast::chaos::{Fault, FaultLayer};
use steadfast::classify::hints::{grpc_retry_pushback, retry_after, Pushback};
use steadfast::classify::{Classify, GrpcClassifier, GrpcCode, HttpClassifier, Outcome};
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use steadfast::BoxError;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

type Res = Response<String>;

fn ok_backend<B: Send + 'static>(
    started: &Arc<AtomicUsize>,
) -> impl Service<Request<B>, Response = Res, Error = BoxError, Future: Send> + Clone + Send {
    let started = started.clone();
    service_fn(move |_: Request<B>| {
        let started = started.clone();
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(Response::new("ok".to_owned()))
        }
    })
}

fn answer(fault: Fault<Res>) -> (Res, usize) {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder().fault(1.0, fault).build().unwrap();
    let res = layer
        .layer(ok_backend::<()>(&started))
        .oneshot(Request::new(()))
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(layer.handle().snapshot().responses, 1);
    (res, started.load(Ordering::SeqCst))
}

/// A 503 with `Retry-After`, without calling the inner service; our
/// classifier calls it a failure and our hint parser reads the delay.
#[test]
// `retry_after` reads an HTTP-date against the wall clock; delta-seconds
// ignore it.
#[allow(clippy::disallowed_types)]
fn http_status_with_retry_after() {
    let (res, started) = answer(
        Fault::http_status(StatusCode::SERVICE_UNAVAILABLE).retry_after(Duration::from_secs(2)),
    );
    assert_eq!(started, 0);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body(), "");
    assert_eq!(
        retry_after(res.headers(), std::time::SystemTime::UNIX_EPOCH),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        HttpClassifier::new().classify(&Ok::<_, BoxError>(res)),
        Outcome::Failure
    );

    let (res, _) = answer(Fault::http_status(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get(http::header::RETRY_AFTER).is_none());
}

/// A gRPC trailers-only answer: HTTP 200, `grpc-status` and
/// `grpc-message` in the headers, read as that code by our classifier.
#[test]
fn grpc_status_is_trailers_only() {
    let (res, started) = answer(
        Fault::grpc_status(GrpcCode::Unavailable)
            .grpc_message("backend 100% down")
            .retry_after(Duration::from_millis(250)),
    );
    assert_eq!(started, 0);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(res.headers()["grpc-message"], "backend 100%25 down");
    assert_eq!(
        GrpcCode::from_response_head(res.status(), res.headers()),
        Some(GrpcCode::Unavailable)
    );
    assert_eq!(
        grpc_retry_pushback(res.headers()),
        Some(Pushback::RetryAfter(Duration::from_millis(250)))
    );
    assert_eq!(
        GrpcClassifier::new().classify(&Ok::<_, BoxError>(res)),
        Outcome::Failure
    );

    let (res, _) = answer(Fault::grpc_status(GrpcCode::NotFound));
    assert_eq!(res.headers()["grpc-status"], "5");
    assert!(res.headers().get("grpc-message").is_none());
    assert_eq!(
        GrpcClassifier::new().classify(&Ok::<_, BoxError>(res)),
        Outcome::Ignored
    );
}

type Body = Full<Bytes>;

fn retry() -> RetryLayer<steadfast::retry::HttpRetryOn, steadfast::retry::HttpReplay> {
    RetryLayer::http(
        RetryConfig::builder()
            .no_budget()
            .backoff(Backoff::fixed(Duration::from_millis(100)))
            .build()
            .unwrap(),
    )
}

/// Our retry layer waits for the injected `Retry-After` before the second
/// attempt, which passes once the window has closed.
#[tokio::test(start_paused = true)]
async fn retry_layer_honours_the_injected_retry_after() {
    let started = Arc::new(AtomicUsize::new(0));
    let faults = FaultLayer::builder()
        .window(
            Duration::ZERO,
            Duration::from_secs(1),
            Fault::http_status(StatusCode::SERVICE_UNAVAILABLE).retry_after(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    let svc = retry().layer(faults.layer(ok_backend::<ReplayBody<Body>>(&started)));
    let start = Instant::now();
    let res = svc
        .oneshot(
            Request::get("http://products/1")
                .body(Body::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(started.load(Ordering::SeqCst), 1);
    assert_eq!(faults.handle().snapshot().windows, vec![1]);
}

/// A POST (not safe to repeat) is sent again after a refused connection,
/// which proves it never left, and not after a reset, which does not.
#[tokio::test(start_paused = true)]
async fn retry_layer_resends_refused_posts_but_not_reset_ones() {
    for (fault, attempts, executions) in [(Fault::refused(), 2, 1), (Fault::reset(), 1, 1)] {
        let started = Arc::new(AtomicUsize::new(0));
        let faults = FaultLayer::builder()
            .window(Duration::ZERO, Duration::from_millis(50), fault)
            .build()
            .unwrap();
        let svc = retry().layer(faults.layer(ok_backend::<ReplayBody<Body>>(&started)));
        let post = Request::post("http://orders")
            .body(Body::from("{}"))
            .unwrap();
        let result = svc.oneshot(post).await;
        let snap = faults.handle().snapshot();
        assert_eq!(snap.calls, attempts);
        assert_eq!(started.load(Ordering::SeqCst), executions);
        match attempts {
            2 => {
                assert_eq!(result.unwrap().status(), StatusCode::OK);
                assert_eq!(snap.refused, 1);
            }
            _ => {
                let err = result.unwrap_err();
                assert!(err.is::<InjectedReset>(), "{err}");
                assert!(!err.is::<InjectedRefused>());
            }
        }
    }
}
