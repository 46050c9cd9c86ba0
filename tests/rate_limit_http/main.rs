//! A steadfast server that limits its callers and a steadfast client that
//! honours its answer, on loopback: the server's rate limiter rejects a
//! call over the limit, `TooManyRequestsLayer` answers `429` with
//! `Retry-After`, and the client's `RetryLayer::reqwest` waits that long and
//! sends the call again.
//!
//! Real sockets need real time: each exchange is bounded by [`bounded`],
//! and no test asserts a duration. The server's limit lets a call through
//! again after 50 ms; `Retry-After` rounds that up to one second, which is
//! what the client waits.
#![cfg(feature = "reqwest")]

#[path = "../support/mod.rs"]
mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use steadfast::rate_limit::http::{RateLimitPolicy, TooManyRequestsLayer};
use steadfast::rate_limit::keys::ByHeader;
use steadfast::rate_limit::{KeyedRateLimitLayer, RateLimitLayer};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use steadfast::BoxError;
use tokio::net::TcpListener;
use tower::{Layer, ServiceBuilder, ServiceExt};

/// How long one whole exchange may take before the test fails.
const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(exchange: F) -> F::Output {
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("the exchange finished in time")
}

/// Whatever error is left after the 429 mapping: a 500 with its text.
async fn internal(err: BoxError) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

/// Serves `app` on a free loopback port; returns its address.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the server runs");
    });
    addr
}

/// The Product service: one call per 50 ms, no burst, shared by every
/// request (axum clones the route's service for each one). Counts the
/// calls that reached the handler.
async fn limited_server(reached: Arc<AtomicU64>) -> SocketAddr {
    let policy = RateLimitPolicy::new("products", 20, Duration::from_secs(1)).unwrap();
    let limit = RateLimitLayer::builder(1, Duration::from_millis(50))
        .burst(1)
        .build()
        .unwrap();
    let app = Router::new().route(
        "/products",
        get(move || {
            reached.fetch_add(1, Ordering::Relaxed);
            async { "[1, 2, 3]" }
        })
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(internal))
                .layer(TooManyRequestsLayer::new().policy(policy))
                .layer(limit),
        ),
    );
    serve(app).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain-HTTP client")
}

/// Without a retry layer, the second call within 50 ms is answered 429 with
/// `Retry-After: 1` and the IETF headers, and never reaches the handler.
#[tokio::test]
async fn a_call_over_the_limit_is_answered_429_with_retry_after() {
    support::trace_init();
    let reached = Arc::new(AtomicU64::new(0));
    let addr = limited_server(reached.clone()).await;
    let client = client();
    let url = format!("http://{addr}/products");

    let first = bounded(client.get(&url).send()).await.unwrap();
    let second = bounded(client.get(&url).send()).await.unwrap();

    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 429);
    let h = second.headers();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["ratelimit-policy"], r#""products";q=20;w=1"#);
    assert_eq!(h["ratelimit"], r#""products";r=0;t=1"#);
    assert_eq!(reached.load(Ordering::Relaxed), 1);
}

/// With `RetryLayer::reqwest`, the client waits the server's `Retry-After`
/// and the retry gets through: the caller sees only the 200.
#[tokio::test]
async fn a_steadfast_client_waits_out_the_servers_retry_after() {
    support::trace_init();
    let reached = Arc::new(AtomicU64::new(0));
    let addr = limited_server(reached.clone()).await;
    let client = client();
    let url = format!("http://{addr}/products");
    // A backoff far below the server's hint: only `Retry-After` can make the
    // retry wait long enough.
    let retry = RetryLayer::reqwest(
        RetryConfig::builder()
            .max_attempts(2)
            .backoff(Backoff::fixed(Duration::from_millis(1)))
            .throttled_backoff(Backoff::fixed(Duration::from_millis(1)))
            .no_budget()
            .build()
            .unwrap(),
    );
    let handle = retry.handle();
    let svc = retry.layer(client.clone());

    let first = bounded(svc.clone().oneshot(client.get(&url).build().unwrap()))
        .await
        .unwrap();
    let second = bounded(svc.clone().oneshot(client.get(&url).build().unwrap()))
        .await
        .unwrap();

    assert_eq!(first.status(), 200);
    assert_eq!(
        second.status(),
        200,
        "the retry after Retry-After got through"
    );
    assert_eq!(second.text().await.unwrap(), "[1, 2, 3]");
    let retries = handle.snapshot();
    assert_eq!(retries.retries, 1);
    assert_eq!(reached.load(Ordering::Relaxed), 2);
}

/// A keyed limit per API key: one caller over its limit does not slow
/// another down.
#[tokio::test]
async fn callers_are_limited_apart_by_api_key() {
    support::trace_init();
    let limit =
        KeyedRateLimitLayer::builder(1, Duration::from_secs(60), ByHeader::new("x-api-key"))
            .build()
            .unwrap();
    let keys = limit.handle();
    let app = Router::new().route(
        "/products",
        get(|| async { "[1, 2, 3]" }).layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(internal))
                .layer(TooManyRequestsLayer::new())
                .layer(limit),
        ),
    );
    let addr = serve(app).await;
    let client = client();
    let url = format!("http://{addr}/products");
    let call = |key: &'static str| {
        let req = client.get(&url).header("x-api-key", key).send();
        async move { bounded(req).await.unwrap().status() }
    };

    assert_eq!(call("ann").await, 200);
    assert_eq!(call("ann").await, 429);
    assert_eq!(call("bob").await, 200);
    assert_eq!(call("bob").await, 429);
    assert_eq!(keys.keys(), 2);
    assert_eq!(keys.snapshot().rejected, 2);
}
