//! A plain `reqwest::Client` through the whole chain, against the local
//! Product service.

use std::time::Duration;

use steadfast::circuit_breaker::CircuitState;
use steadfast::timeout::error::DeadlineExceeded;
use steadfast::{is_caused_by, BoxError};
use tower::ServiceExt;

use super::server::{Fault, ProductService};
use super::{bounded, is_quoted_uuid, support, Stack};

/// A plain-HTTP client that ignores proxies set in the environment: the
/// requests must reach the loopback server directly.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain-HTTP client")
}

fn order(client: &reqwest::Client, server: &ProductService) -> reqwest::Request {
    client
        .post(server.url("/orders"))
        .header("content-type", "application/json")
        .body("{\"sku\":42}")
        .build()
        .expect("a valid request")
}

#[tokio::test]
async fn a_get_recovers_through_retries() {
    support::trace_init();
    let server = ProductService::start().await;
    server.fail_products([Fault::Unavailable, Fault::Drop]);
    let client = client();
    let (svc, handles) = Stack::default().around(client.clone());

    let req = client.get(server.url("/products/7")).build().unwrap();
    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "{\"id\":7}");
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.method == "GET" && s.path == "/products/7" && s.key.is_none()));
    assert_eq!(handles.retry.snapshot().retries, 2);
    let breaker = handles.breaker.snapshot();
    assert_eq!((breaker.failures, breaker.successes), (2, 1), "{breaker:?}");
    assert_eq!(breaker.state, CircuitState::Closed);
    assert_eq!(handles.bulkhead.in_flight(), 0);
}

#[tokio::test]
async fn a_500_is_returned_as_is_not_retried() {
    support::trace_init();
    let server = ProductService::start().await;
    server.fail_products([Fault::Internal]);
    let client = client();
    let (svc, handles) = Stack::default().around(client.clone());

    let req = client.get(server.url("/products/7")).build().unwrap();
    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 500);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(handles.retry.snapshot().retries, 0);
    assert_eq!(handles.breaker.snapshot().failures, 1, "a 500 is a failure");
}

#[tokio::test]
async fn a_post_without_a_key_is_not_retried_after_a_503() {
    support::trace_init();
    let server = ProductService::start().await;
    server.fail_orders([Fault::Unavailable]);
    let client = client();
    let stack = Stack {
        keys: false,
        ..Stack::default()
    };
    let (svc, handles) = stack.around(client.clone());

    let res = bounded(svc.oneshot(order(&client, &server)))
        .await
        .expect("a response");

    assert_eq!(res.status(), 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "executed once: {seen:?}");
    assert_eq!(seen[0].key, None);
    assert_eq!(server.created(), 0);
    let retry = handles.retry.snapshot();
    assert_eq!((retry.retries, retry.skipped_unsafe), (0, 1), "{retry}");
}

#[tokio::test]
async fn a_keyed_post_is_retried_with_one_key_on_every_attempt() {
    support::trace_init();
    let server = ProductService::start().await;
    server.fail_orders([Fault::Unavailable, Fault::Drop]);
    let client = client();
    let (svc, handles) = Stack::default().around(client.clone());

    let res = bounded(svc.oneshot(order(&client, &server)))
        .await
        .expect("a response");

    assert_eq!(res.status(), 201);
    assert_eq!(
        res.text().await.unwrap(),
        "{\"order_id\":1,\"item\":{\"sku\":42}}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let key = seen[0].key.clone().expect("the key layer adds a key");
    assert!(is_quoted_uuid(&key), "{key}");
    assert!(seen.iter().all(|s| s.key.as_deref() == Some(key.as_str())));
    assert_eq!(server.created(), 1);
    assert_eq!(handles.retry.snapshot().retries, 2);
}

#[tokio::test]
async fn a_keyed_post_whose_answer_was_lost_runs_once() {
    support::trace_init();
    let server = ProductService::start().await;
    // The order runs and its answer is stored; the connection then drops.
    server.fail_orders([Fault::LoseAnswer]);
    let client = client();
    let (svc, handles) = Stack::default().around(client.clone());

    let res = bounded(svc.oneshot(order(&client, &server)))
        .await
        .expect("a response");

    // The retry, with the same key, gets the stored answer.
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(
        res.text().await.unwrap(),
        "{\"order_id\":1,\"item\":{\"sku\":42}}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].key, seen[1].key);
    assert_eq!(server.created(), 1, "the handler ran once");
    assert_eq!(handles.retry.snapshot().retries, 1);
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call() {
    support::trace_init();
    let server = ProductService::start().await;
    server.fail_products([Fault::Unavailable, Fault::Hang]);
    let client = client();
    let stack = Stack {
        deadline: Duration::from_millis(300),
        max_attempts: 5,
        ..Stack::default()
    };
    let (svc, handles) = stack.around(client.clone());

    let req = client.get(server.url("/products/7")).build().unwrap();
    let err: BoxError = bounded(svc.oneshot(req)).await.unwrap_err();

    // Whichever timer the runtime woke first (ours, or reqwest's own
    // timeout, which is the time left), the caller gets DeadlineExceeded.
    assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err:?}");
    assert_eq!(server.seen().len(), 2, "the hanging attempt was the last");
    let breaker = handles.breaker.snapshot();
    assert_eq!(
        breaker.failures, 1,
        "the deadline is not the backend's failure: {breaker:?}"
    );
    assert_eq!(handles.bulkhead.in_flight(), 0, "the slot is back");
}
