//! The preset around a plain `reqwest::Client`, as a user writes it:
//! `ServiceBuilder::new().layer(ResilienceLayer::http().build()?).service(client)`.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use steadfast::retry::{Backoff, RetryConfig};
use steadfast::{is_caused_by, CircuitOpen, ResilienceLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::server::{Fault, ProductService};
use super::{bounded, is_quoted_uuid, support};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain-HTTP client")
}

/// Backoff of 1 ms: real sockets need real time, and the tests wait for
/// nothing but the server.
fn quick_retries() -> steadfast::retry::RetryConfigBuilder {
    RetryConfig::builder().backoff(Backoff::fixed(Duration::from_millis(1)))
}

/// POST /orders with a JSON body, no key.
fn order(client: &reqwest::Client, server: &ProductService) -> reqwest::Request {
    client
        .post(server.url("/orders"))
        .header("content-type", "application/json")
        .body("{\"sku\":42}")
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_one_line_preset_recovers_a_get() {
    support::trace_init();
    let server = ProductService::start().await;
    server.fail_products([Fault::Unavailable, Fault::Drop]);
    let client = client();
    let products = ServiceBuilder::new()
        .layer(
            ResilienceLayer::http()
                .retry(quick_retries())
                .build()
                .unwrap(),
        )
        .service(client.clone());

    let req = client.get(server.url("/products/7")).build().unwrap();
    let res = bounded(products.oneshot(req)).await.expect("a response");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "{\"id\":7}");
    assert_eq!(server.seen().len(), 3, "{:?}", server.seen());
}

#[tokio::test]
async fn the_reqwest_preset_infers_the_request_type_in_ready() {
    let server = ProductService::start().await;
    server.fail_products([Fault::Unavailable]);
    let client = client();
    let mut products = ServiceBuilder::new()
        .layer(
            ResilienceLayer::reqwest()
                .retry(quick_retries())
                .build()
                .unwrap(),
        )
        .service(client.clone());

    // The tower idiom: `ready().await?.call(..)`, no type named.
    let req = client.get(server.url("/products/7")).build().unwrap();
    let res = bounded(async { products.ready().await?.call(req).await })
        .await
        .expect("a response");
    assert_eq!(res.status(), 200);
    assert_eq!(server.seen().len(), 2, "{:?}", server.seen());
}

#[tokio::test]
async fn a_post_through_the_preset_runs_once_on_the_server() {
    let server = ProductService::start().await;
    // The order runs and its answer is stored, then the connection drops.
    server.fail_orders([Fault::LoseAnswer]);
    let client = client();
    let (layer, handle) = ResilienceLayer::http()
        .retry(quick_retries())
        .build()
        .unwrap();
    let orders = ServiceBuilder::new().layer(layer).service(client.clone());

    let req = order(&client, &server);
    let res = bounded(orders.oneshot(req)).await.expect("a response");
    assert_eq!(res.status(), 201);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let key = seen[0]
        .key
        .clone()
        .expect("the preset sets a key on a POST");
    assert!(is_quoted_uuid(&key), "{key}");
    assert_eq!(
        seen[1].key.as_deref(),
        Some(key.as_str()),
        "one key for both attempts"
    );
    assert_eq!(server.created(), 1, "the handler ran once");
    assert_eq!(handle.retry().unwrap().snapshot().retries, 1);
}

#[tokio::test]
async fn a_post_to_an_idempotent_path_is_retried_without_a_key() {
    // A 503 proves nothing about whether the order ran: only a path marked
    // safe to repeat lets a POST without a key go again.
    let client = client();
    for (paths, attempts, status) in [(vec![], 1, 503), (vec!["/orders"], 2, 201)] {
        let server = ProductService::start().await;
        server.fail_orders([Fault::Unavailable]);
        let (layer, handle) = ResilienceLayer::reqwest()
            .no_idempotency_key()
            .idempotent_paths(paths.clone())
            .retry(quick_retries())
            .build()
            .unwrap();
        let orders = ServiceBuilder::new().layer(layer).service(client.clone());
        let req = order(&client, &server);
        let res = bounded(orders.oneshot(req)).await.expect("a response");
        assert_eq!(res.status(), status, "idempotent paths {paths:?}");
        assert_eq!(server.seen().len(), attempts, "idempotent paths {paths:?}");
        assert!(server.seen().iter().all(|s| s.key.is_none()));
        assert_eq!(
            handle.retry().unwrap().snapshot().skipped_unsafe,
            u64::from(paths.is_empty())
        );
    }
}

#[tokio::test]
async fn the_breaker_opens_on_an_outage_and_closes_after_it() {
    let server = ProductService::start().await;
    let client = client();
    let (layer, handle) = ResilienceLayer::http()
        .no_retry()
        .circuit_breaker(
            CircuitBreakerConfig::builder()
                .consecutive_failures(3)
                .open_duration(Duration::from_millis(20))
                .open_jitter(0.0),
        )
        .build()
        .unwrap();
    let products = ServiceBuilder::new().layer(layer).service(client.clone());
    let get = || client.get(server.url("/products/7")).build().unwrap();

    // A sustained outage: three 503s open the breaker; the next call is
    // rejected without reaching the server.
    server.fail_products([Fault::Unavailable; 3]);
    for _ in 0..3 {
        let res = bounded(products.clone().oneshot(get())).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let breaker = handle.circuit_breaker().unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
    let err = bounded(products.clone().oneshot(get())).await.unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(err.as_ref()), "{err}");
    assert_eq!(server.seen().len(), 3);

    // The server is back. Calls are rejected until the open time is over;
    // then a probe goes through and closes the breaker.
    let closed = bounded(async {
        loop {
            match products.clone().oneshot(get()).await {
                Ok(res) => break res,
                Err(e) => assert!(is_caused_by::<CircuitOpen>(e.as_ref()), "{e}"),
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(closed.status(), 200);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(server.seen().len(), 4, "only the probe reached the server");
}
