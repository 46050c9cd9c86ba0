//! `RetryLayer::reqwest` around a `reqwest::Client`, against a real server.
#![cfg(feature = "reqwest")]

use steadfast::retry::{NotReplayable, Replay, ReqwestReplay, RetryLayer};
use tower::{Layer, ServiceExt};

use super::server::{Reply, TestServer};
use super::{bounded, config, payload, streamed, support};

/// A plain-HTTP client that ignores proxies set in the environment: the
/// requests must reach the loopback server directly.
fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain-HTTP client")
}

fn unavailable_twice() -> Vec<Reply> {
    vec![Reply::status(503), Reply::status(503), Reply::status(200)]
}

/// Test 4: a GET is retried through reqwest until the 200.
#[tokio::test]
async fn get_is_retried_until_ok() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let client = reqwest_client();
    let layer = RetryLayer::reqwest(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client.clone());
    let req = client.get(server.url("/items/7")).build().unwrap();

    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|r| r.method == "GET" && r.path == "/items/7"));
    assert_eq!(handle.snapshot().retries, 2);
}

/// Test 4: a PUT with a clonable body is retried with the same bytes.
#[tokio::test]
async fn put_with_clonable_body_is_retried_with_identical_body() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let client = reqwest_client();
    let layer = RetryLayer::reqwest(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client.clone());
    let sent = payload(10 * 1024);
    let req = client
        .put(server.url("/items/7"))
        .header("x-request", "put-7")
        .body(sent.to_vec())
        .build()
        .unwrap();

    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(req.method, "PUT", "attempt {i}");
        assert_eq!(req.header("x-request"), Some("put-7"), "attempt {i}");
        assert_eq!(req.body(), &sent, "attempt {i} carried the body intact");
    }
    assert_eq!(handle.snapshot().retries, 2);
}

/// A streaming body without reqwest's `stream` feature: `Body::wrap` takes
/// any `http_body::Body`, and `try_clone` cannot copy it.
fn streaming_put(client: &reqwest::Client, server: &TestServer) -> reqwest::Request {
    client
        .put(server.url("/items/7"))
        .body(reqwest::Body::wrap(streamed(&payload(4 * 1024), 512)))
        .build()
        .unwrap()
}

/// Test 4: `ReqwestReplay` cannot stash a streaming request.
#[test]
fn streaming_body_is_unreplayable() {
    let client = reqwest_client();
    let server_url = "http://127.0.0.1:9/items/7";
    let req = client
        .put(server_url)
        .body(reqwest::Body::wrap(streamed(&payload(64), 16)))
        .build()
        .unwrap();
    assert!(req.try_clone().is_none(), "a streaming body does not clone");

    let (first, stash) = ReqwestReplay::new().prepare(req);
    assert_eq!(stash.err(), Some(NotReplayable::Unreplayable));
    assert_eq!(
        first.url().as_str(),
        server_url,
        "the first attempt is intact"
    );
    assert!(first.body().is_some());

    // A clonable one can.
    let req = client.put(server_url).body("7").build().unwrap();
    let (_, stash) = ReqwestReplay::new().prepare(req);
    let mut stash = stash.expect("a clonable body is stashed");
    let again = ReqwestReplay::new()
        .replay(&mut stash, 2)
        .expect("a replay");
    assert_eq!(again.body().and_then(|b| b.as_bytes()), Some(&b"7"[..]));
}

/// Test 4: a PUT with a streaming body goes out once, whole, and the 503
/// is returned.
#[tokio::test]
async fn put_with_streaming_body_is_sent_once() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let client = reqwest_client();
    let layer = RetryLayer::reqwest(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client.clone());

    let res = bounded(svc.oneshot(streaming_put(&client, &server)))
        .await
        .expect("a response");

    assert_eq!(res.status(), 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "not retried");
    assert_eq!(seen[0].body(), &payload(4 * 1024), "sent whole");
    let snap = handle.snapshot();
    assert_eq!(snap.skipped_unreplayable, 1);
    assert_eq!(snap.retries, 0);
}

/// The safe-method rule holds for reqwest too: a POST without a key is
/// sent once, one with a key is retried carrying it.
#[tokio::test]
async fn post_needs_an_idempotency_key() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let client = reqwest_client();
    let layer = RetryLayer::reqwest(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client.clone());

    let req = client
        .post(server.url("/orders"))
        .body("{}")
        .build()
        .unwrap();
    let res = bounded(svc.clone().oneshot(req)).await.expect("a response");
    assert_eq!(res.status(), 503);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(handle.snapshot().skipped_unsafe, 1);

    let req = client
        .post(server.url("/orders"))
        .header("idempotency-key", "abc")
        .body("{}")
        .build()
        .unwrap();
    let res = bounded(svc.oneshot(req)).await.expect("a response");
    assert_eq!(res.status(), 200, "503 then 200");
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("idempotency-key"), Some("abc"));
    assert_eq!(seen[2].header("idempotency-key"), Some("abc"));
    assert_eq!(handle.snapshot().retries, 1);
}

/// A POST without a key to a port nobody listens on: reqwest reports a
/// connect error, which proves the request never left, so it is retried
/// (the body is cloned for each attempt); the connect error is returned.
#[tokio::test]
async fn post_refused_at_connect_is_retried() {
    support::trace_init();
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client = reqwest_client();
    let layer = RetryLayer::reqwest(config().build().unwrap());
    let handle = layer.handle();
    let req = client
        .post(format!("http://{addr}/orders"))
        .body("{}")
        .build()
        .unwrap();

    let err = bounded(layer.layer(client).oneshot(req))
        .await
        .expect_err("nobody listens");

    let err = err
        .downcast_ref::<reqwest::Error>()
        .expect("reqwest's error");
    assert!(err.is_connect(), "{err:?}");
    let snap = handle.snapshot();
    assert_eq!(
        (snap.attempts, snap.retries, snap.skipped_unsafe),
        (3, 2, 0)
    );
}
