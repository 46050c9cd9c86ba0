//! `StaticResponse`: a fixed `http::Response` with a header of the user's.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use steadfast::fallback::{FallbackLayer, StaticResponse};
use steadfast::BoxError;
use tower::{service_fn, Layer, ServiceExt};

const WARNING: HeaderName = HeaderName::from_static("warning");

fn stale() -> StaticResponse {
    StaticResponse::new(StatusCode::OK, r#"[{"id":1,"name":"cached"}]"#)
        .header(
            WARNING,
            HeaderValue::from_static(r#"110 - "Response is Stale""#),
        )
        .header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
}

#[tokio::test]
async fn serves_the_response_with_the_warning() {
    let layer = FallbackLayer::http_response(stale());
    let svc = layer.layer(service_fn(|()| async {
        Err::<Response<Full<Bytes>>, BoxError>(std::io::Error::other("connection refused").into())
    }));
    for _ in 0..2 {
        // A fresh response each time.
        let res = svc.clone().oneshot(()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[WARNING], r#"110 - "Response is Stale""#);
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, r#"[{"id":1,"name":"cached"}]"#);
    }
}

#[tokio::test]
async fn the_happy_path_is_untouched() {
    let layer = FallbackLayer::http_response(stale());
    let svc = layer.layer(service_fn(|()| async {
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"fresh"))))
    }));
    let res = svc.oneshot(()).await.unwrap();
    assert!(res.headers().get(WARNING).is_none());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "fresh");
}

#[test]
fn accessors_and_to_response() {
    let fixed = stale();
    assert_eq!(fixed.status(), StatusCode::OK);
    assert_eq!(fixed.headers().len(), 2);
    assert!(fixed.body().starts_with(b"[{"));
    let res: Response<Full<Bytes>> = fixed.to_response();
    assert_eq!(res.headers()[WARNING], r#"110 - "Response is Stale""#);
    assert!(format!("{fixed:?}").contains("StaticResponse"));
}
