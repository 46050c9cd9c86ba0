//! A fallback that fails is reported, never swallowed.

use std::error::Error;
use std::time::Duration;

use http::{Response, StatusCode};
use steadfast::circuit_breaker::CircuitState;
use steadfast::classify::HttpClassifier;
use steadfast::fallback::error::FallbackFailed;
use steadfast::fallback::{Failed, FallbackLayer};
use steadfast::{BoxError, CircuitOpen, Rejection};
use tower::{service_fn, Layer, ServiceExt};

type Res = Response<&'static str>;

fn open() -> BoxError {
    CircuitOpen::new(CircuitState::Open, Some(Duration::from_secs(5))).into()
}

#[tokio::test]
async fn an_error_of_the_fallback_is_reported_with_the_original() {
    let layer = FallbackLayer::new(|_: Failed<'_, Res>| Err("cache empty".into()));
    let svc = layer.layer(service_fn(|()| async { Err::<Res, _>(open()) }));
    let err = svc.oneshot(()).await.unwrap_err();
    let failed = err
        .downcast_ref::<FallbackFailed>()
        .expect("FallbackFailed");
    assert!(!failed.panicked());
    assert_eq!(failed.source().unwrap().to_string(), "cache empty");
    let original = failed.original().expect("the original error");
    assert!(original.is::<CircuitOpen>());
    assert!(matches!(
        Rejection::of(original),
        Some(Rejection::CircuitOpen { .. })
    ));
    assert_eq!(
        err.to_string(),
        format!("fallback failed: cache empty (after: {})", open())
    );
    let err = *err.downcast::<FallbackFailed>().unwrap();
    assert!(err.into_original().unwrap().is::<CircuitOpen>());
}

#[tokio::test]
async fn a_panic_of_the_fallback_is_reported_with_its_message() {
    let layer = FallbackLayer::new(|_: Failed<'_, Res>| -> Result<Res, BoxError> {
        panic!("no cached product list")
    });
    let svc = layer.layer(service_fn(|()| async {
        Err::<Res, _>(std::io::Error::other("connection refused"))
    }));
    let err = svc.oneshot(()).await.unwrap_err();
    let failed = err
        .downcast_ref::<FallbackFailed>()
        .expect("FallbackFailed");
    assert!(failed.panicked());
    assert_eq!(failed.panic_message(), Some("no cached product list"));
    assert!(failed.source().is_none());
    assert_eq!(failed.original().unwrap().to_string(), "connection refused");
    assert_eq!(
        err.to_string(),
        "fallback panicked: no cached product list (after: connection refused)"
    );
}

#[tokio::test]
async fn a_panic_with_a_formatted_message_or_another_payload() {
    let layer = FallbackLayer::new(|_: Failed<'_, Res>| -> Result<Res, BoxError> {
        panic!("entry {} missing", 7)
    });
    let svc = layer.layer(service_fn(|()| async { Err::<Res, _>(open()) }));
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err
        .to_string()
        .starts_with("fallback panicked: entry 7 missing"));

    let layer = FallbackLayer::new(|_: Failed<'_, Res>| -> Result<Res, BoxError> {
        std::panic::panic_any(42_u32)
    });
    let svc = layer.layer(service_fn(|()| async { Err::<Res, _>(open()) }));
    let err = svc.oneshot(()).await.unwrap_err();
    let failed = err.downcast_ref::<FallbackFailed>().unwrap();
    assert!(failed.panicked());
    assert_eq!(failed.panic_message(), None);
    assert!(err.to_string().starts_with("fallback panicked (after: "));
}

#[tokio::test]
async fn a_fallback_failing_on_a_failed_response() {
    let layer = FallbackLayer::new(|_: Failed<'_, Res>| Err("no stale copy".into()))
        .on_failed_responses(HttpClassifier::new());
    let svc = layer.layer(service_fn(|()| async {
        Ok::<_, BoxError>(
            Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body("bad gateway")
                .unwrap(),
        )
    }));
    let err = svc.oneshot(()).await.unwrap_err();
    let failed = err.downcast_ref::<FallbackFailed>().unwrap();
    assert!(failed.original().is_none(), "the original was a response");
    assert_eq!(
        err.to_string(),
        "fallback failed: no stale copy (after a failed response)"
    );
}
