//! The seed's fallback client, for real: a product-list client
//! (`reqwest::Client` through our layers) against a local axum Product
//! service on 127.0.0.1. While the service is up the client gets the fresh
//! list; when it answers 503s, and then when it is gone (connection
//! refused), the client gets the last good list, marked with a `Warning`
//! header of the test's choosing.
//!
//! Real sockets need real time, so the clock is not paused: each call is
//! bounded by [`bounded`], and no test asserts a duration.
#![cfg(feature = "reqwest")]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use steadfast::classify::HttpClassifier;
use steadfast::fallback::{FallbackLayer, LastGood};
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tower::{Service, ServiceBuilder, ServiceExt};

const WARNING: HeaderName = HeaderName::from_static("warning");
const STALE: &str = r#"110 steadfast "cached product list""#;

/// Generous: the calls take milliseconds, the machine may be busy.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(call: F) -> F::Output {
    tokio::time::timeout(LIMIT, call)
        .await
        .expect("the call finished in time")
}

#[derive(Default)]
struct Products {
    down: AtomicBool,
    served: AtomicUsize,
}

async fn list(State(p): State<Arc<Products>>) -> Response {
    if p.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let n = p.served.fetch_add(1, Ordering::SeqCst) + 1;
    (
        [("content-type", "application/json")],
        format!(r#"[{{"id":1,"name":"tea"}},{{"id":2,"name":"cake"}}] // list {n}"#),
    )
        .into_response()
}

/// Serves the Product service on a free loopback port.
async fn serve(state: Arc<Products>) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/products", get(list))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

/// Status, warning header, body.
async fn fetch<S, B>(
    svc: &mut S,
    client: &reqwest::Client,
    url: &str,
) -> (u16, Option<String>, String)
where
    S: Service<reqwest::Request, Response = http::Response<B>, Error = BoxError>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = client.get(url).build().unwrap();
    let res = bounded(svc.ready().await.unwrap().call(req))
        .await
        .expect("an answer");
    let warning = res
        .headers()
        .get(WARNING)
        .map(|v| v.to_str().unwrap().to_owned());
    let status = res.status().as_u16();
    let body = bounded(res.into_body().collect()).await.unwrap().to_bytes();
    (status, warning, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn serves_the_last_good_product_list_when_the_service_is_down() {
    let products = Arc::new(Products::default());
    let (base, server) = serve(products.clone()).await;
    let url = format!("{base}/products");
    // A new connection per call, so that a stopped server refuses the next.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let cache = LastGood::builder()
        .max_entries(16)
        .max_body_bytes(16 * 1024)
        .max_age(Duration::from_secs(600))
        .header(WARNING, HeaderValue::from_static(STALE))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::last_good(cache.clone()).on_failed_responses(HttpClassifier::new()))
        .map_response(http::Response::<reqwest::Body>::from)
        .layer(TimeoutLayer::new(Duration::from_secs(5)).unwrap())
        .service(client.clone());

    // Up: the fresh list, recorded once its body has been read.
    let (status, warning, body) = fetch(&mut svc, &client, &url).await;
    assert_eq!((status, warning), (200, None));
    assert!(body.ends_with("// list 1"), "{body}");
    assert_eq!(cache.len(), 1);
    let (_, _, body) = fetch(&mut svc, &client, &url).await;
    assert!(body.ends_with("// list 2"), "{body}");

    // 503s: the last good list, with the warning.
    products.down.store(true, Ordering::SeqCst);
    let (status, warning, body) = fetch(&mut svc, &client, &url).await;
    assert_eq!(status, 200);
    assert_eq!(warning.as_deref(), Some(STALE));
    assert!(body.ends_with("// list 2"), "{body}");

    // Gone (connection refused): the same.
    server.abort();
    let _ = server.await;
    let err = bounded(client.get(&url).send()).await.unwrap_err();
    assert!(err.is_connect(), "the server is gone: {err}");
    let (status, warning, body) = fetch(&mut svc, &client, &url).await;
    assert_eq!(status, 200);
    assert_eq!(warning.as_deref(), Some(STALE));
    assert!(body.ends_with("// list 2"), "{body}");

    // Another page was never fetched: the caller gets the connect error.
    let other = client
        .get(format!("{base}/products?page=2"))
        .build()
        .unwrap();
    let err = bounded(svc.ready().await.unwrap().call(other))
        .await
        .unwrap_err();
    assert!(
        steadfast::is_caused_by::<reqwest::Error>(err.as_ref()),
        "{err}"
    );
    assert_eq!(products.served.load(Ordering::SeqCst), 2);
}
