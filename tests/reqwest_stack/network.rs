//! A plain `reqwest::Client` through the whole chain, against the local
//! Product service.

use std::time::Duration;

use steadfast::circuit_breaker::CircuitState;
use steadfast::timeout::error::DeadlineExceeded;
use steadfast::{is_caused_by, BoxError};
use tower::ServiceExt;

use super::server::{Fault, ProductService};
use super::{bounded, is_quoted_uuid, support, Handles, Stack};

/// A plain-HTTP client that ignores proxies set in the environment: the
/// requests must reach the loopback server directly.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain-HTTP client")
}

/// What one call through the stack left behind.
struct Call {
    server: ProductService,
    handles: Handles,
    result: Result<reqwest::Response, BoxError>,
}

/// The first order's answer.
const ORDER_1: &str = "{\"order_id\":1,\"item\":{\"sku\":42}}";

/// Starts the Product service, lets it fail on command, and sends one
/// request (made by `request`) through `stack` around a plain client.
async fn call(
    stack: Stack,
    fail: impl FnOnce(&ProductService),
    request: impl FnOnce(&reqwest::Client, &ProductService) -> reqwest::RequestBuilder,
) -> Call {
    support::trace_init();
    let server = ProductService::start().await;
    fail(&server);
    let client = client();
    let (svc, handles) = stack.around(client.clone());
    let req = request(&client, &server).build().expect("a valid request");
    let result = bounded(svc.oneshot(req)).await;
    Call {
        server,
        handles,
        result,
    }
}

/// `GET /products/7`, with `faults` queued for it.
async fn get_product(stack: Stack, faults: &[Fault]) -> Call {
    call(
        stack,
        |server| server.fail_products(faults.iter().copied()),
        |client, server| client.get(server.url("/products/7")),
    )
    .await
}

/// `POST /orders`, with `faults` queued for it.
async fn post_order(stack: Stack, faults: &[Fault]) -> Call {
    call(
        stack,
        |server| server.fail_orders(faults.iter().copied()),
        |client, server| {
            client
                .post(server.url("/orders"))
                .header("content-type", "application/json")
                .body("{\"sku\":42}")
        },
    )
    .await
}

#[tokio::test]
async fn a_get_recovers_through_retries() {
    let call = get_product(Stack::default(), &[Fault::Unavailable, Fault::Drop]).await;

    let res = call.result.expect("a response");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "{\"id\":7}");
    let seen = call.server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.method == "GET" && s.path == "/products/7" && s.key.is_none()));
    assert_eq!(call.handles.retry.snapshot().retries, 2);
    let breaker = call.handles.breaker.snapshot();
    assert_eq!((breaker.failures, breaker.successes), (2, 1), "{breaker:?}");
    assert_eq!(breaker.state, CircuitState::Closed);
    assert_eq!(call.handles.bulkhead.in_flight(), 0);
}

#[tokio::test]
async fn a_500_is_returned_as_is_not_retried() {
    let call = get_product(Stack::default(), &[Fault::Internal]).await;

    assert_eq!(call.result.expect("a response").status(), 500);
    assert_eq!(call.server.seen().len(), 1);
    assert_eq!(call.handles.retry.snapshot().retries, 0);
    let breaker = call.handles.breaker.snapshot();
    assert_eq!(breaker.failures, 1, "a 500 is a failure");
}

#[tokio::test]
async fn a_post_without_a_key_is_not_retried_after_a_503() {
    let stack = Stack {
        keys: false,
        ..Stack::default()
    };
    let call = post_order(stack, &[Fault::Unavailable]).await;

    assert_eq!(call.result.expect("a response").status(), 503);
    let seen = call.server.seen();
    assert_eq!(seen.len(), 1, "executed once: {seen:?}");
    assert_eq!(seen[0].key, None);
    assert_eq!(call.server.created(), 0);
    let retry = call.handles.retry.snapshot();
    assert_eq!((retry.retries, retry.skipped_unsafe), (0, 1), "{retry}");
}

#[tokio::test]
async fn a_keyed_post_is_retried_with_one_key_on_every_attempt() {
    let call = post_order(Stack::default(), &[Fault::Unavailable, Fault::Drop]).await;

    let res = call.result.expect("a response");
    assert_eq!(res.status(), 201);
    assert_eq!(res.text().await.unwrap(), ORDER_1);
    let seen = call.server.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let key = seen[0].key.clone().expect("the key layer adds a key");
    assert!(is_quoted_uuid(&key), "{key}");
    assert!(seen.iter().all(|s| s.key.as_deref() == Some(key.as_str())));
    assert_eq!(call.server.created(), 1);
    assert_eq!(call.handles.retry.snapshot().retries, 2);
}

#[tokio::test]
async fn a_keyed_post_whose_answer_was_lost_runs_once() {
    // The order runs and its answer is stored; the connection then drops.
    let call = post_order(Stack::default(), &[Fault::LoseAnswer]).await;

    // The retry, with the same key, gets the stored answer.
    let res = call.result.expect("a response");
    assert_eq!(res.status(), 201);
    let replayed = res.headers().get("idempotent-replayed");
    assert_eq!(replayed.map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(res.text().await.unwrap(), ORDER_1);
    let seen = call.server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].key, seen[1].key);
    assert_eq!(call.server.created(), 1, "the handler ran once");
    assert_eq!(call.handles.retry.snapshot().retries, 1);
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call() {
    let stack = Stack {
        deadline: Duration::from_millis(300),
        max_attempts: 5,
        ..Stack::default()
    };
    let call = get_product(stack, &[Fault::Unavailable, Fault::Hang]).await;

    // Whichever timer the runtime woke first (ours, or reqwest's own
    // timeout, which is the time left), the caller gets DeadlineExceeded.
    let err = call.result.expect_err("the deadline passed");
    assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err:?}");
    assert_eq!(
        call.server.seen().len(),
        2,
        "the hanging attempt was the last"
    );
    let breaker = call.handles.breaker.snapshot();
    assert_eq!(
        breaker.failures, 1,
        "the deadline is not the backend's failure: {breaker:?}"
    );
    assert_eq!(call.handles.bulkhead.in_flight(), 0, "the slot is back");
}
