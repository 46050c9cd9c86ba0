//! The layer and service are `Send + Sync + Clone` and `Debug`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use steadfast::classify::HttpClassifier;
use steadfast::fallback::{Failed, Fallback, FallbackLayer, LastGood, StaticResponse};
use steadfast::BoxError;
use tower::Layer;

fn assert_send_sync_clone<T: Send + Sync + Clone + std::fmt::Debug>(_: &T) {}

#[derive(Debug, Clone)]
struct Inner;

#[test]
fn layers_and_services_are_send_sync_clone() {
    let plain = FallbackLayer::new(|_: Failed<'_, u32>| Ok::<_, BoxError>(0));
    assert_send_sync_clone(&plain);
    let svc: Fallback<Inner, _> = plain.layer(Inner);
    assert_send_sync_clone(&svc);

    let keyed = FallbackLayer::with_key(|r: &u32| *r, |k: u32, _: Failed<'_, u32>| Ok(k))
        .on_failed_responses(HttpClassifier::new());
    assert_send_sync_clone(&keyed);
    assert_send_sync_clone(&keyed.layer(Inner));

    let cloned = FallbackLayer::with_request(|r: u32, _: Failed<'_, u32>| Ok(r));
    assert_send_sync_clone(&cloned);
    assert_send_sync_clone(&cloned.layer(Inner));

    let fixed = FallbackLayer::http_response(StaticResponse::new(StatusCode::OK, "[]").header(
        HeaderName::from_static("warning"),
        HeaderValue::from_static("110 - \"stale\""),
    ));
    assert_send_sync_clone(&fixed);
    assert_send_sync_clone(&fixed.layer(Inner));

    let cache = LastGood::builder()
        .max_age(Duration::from_secs(60))
        .build()
        .unwrap();
    let last_good = FallbackLayer::last_good(cache);
    assert_send_sync_clone(&last_good);
    assert_send_sync_clone(&last_good.layer(Inner));
    let _: Option<Response<Full<Bytes>>> = None;
}

#[test]
fn failed_displays_what_went_wrong() {
    let err: BoxError = steadfast::Elapsed::new(Duration::from_secs(2)).into();
    let failed: Failed<'_, u32> = Failed::Error(err.as_ref());
    assert!(failed.is_rejection());
    assert_eq!(failed.to_string(), err.to_string());
    assert!(format!("{failed:?}").starts_with("Error("));
    assert_eq!(failed.into_response(), None);

    let failed: Failed<'_, u32> = Failed::Response(503);
    assert!(!failed.is_rejection());
    assert!(failed.error().is_none());
    assert_eq!(failed.to_string(), "response classified as a failure");
    assert_eq!(format!("{failed:?}"), "Response(..)");
    assert_eq!(failed.into_response(), Some(503));
}

#[test]
fn debug_names_the_configuration() {
    let layer = FallbackLayer::new(|_: Failed<'_, u32>| Ok::<_, BoxError>(0)).on_errors(false);
    let text = format!("{layer:?}");
    assert!(text.contains("on_rejections: true"), "{text}");
    assert!(text.contains("on_errors: false"), "{text}");
    let text = format!("{:?}", layer.layer(Inner));
    assert!(text.starts_with("Fallback { inner: Inner"), "{text}");
}
