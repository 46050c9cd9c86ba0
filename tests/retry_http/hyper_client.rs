//! hyper-util's legacy client inside `RetryLayer::http`, against a real
//! server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::Request;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::TokioExecutor;
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Backoff, RetryLayer};
use steadfast::BoxError;
use tower::{Layer, ServiceExt};

use super::server::{Reply, TestServer};
use super::{bounded, config, payload, streamed, support};

/// A plain-HTTP client for requests whose body the retry layer wrapped.
pub(crate) fn client<B>() -> Client<HttpConnector, ReplayBody<B>>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

fn put<B>(server: &TestServer, body: B) -> Request<B> {
    Request::put(server.url("/items/7"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("a valid request")
}

fn unavailable_twice() -> Vec<Reply> {
    vec![Reply::status(503), Reply::status(503), Reply::status(200)]
}

/// Test 1: a 10 KB PUT under the cap is replayed byte for byte.
#[tokio::test]
async fn put_under_the_cap_is_replayed_byte_for_byte() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let sent = payload(10 * 1024);

    let res = bounded(svc.oneshot(put(&server, Full::new(sent.clone()))))
        .await
        .expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "503, 503, then 200");
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(req.method, "PUT", "attempt {i}");
        assert_eq!(req.path, "/items/7", "attempt {i}");
        assert_eq!(req.header("content-type"), Some("application/octet-stream"));
        assert_eq!(req.header("content-length"), Some("10240"), "attempt {i}");
        assert_eq!(req.body(), &sent, "attempt {i} carried the body intact");
    }
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.retries, snap.attempts), (1, 2, 3));
}

/// Test 1, streamed: a chunked body of unknown size under the cap is
/// replayed too, each attempt chunked again with the same bytes.
#[tokio::test]
async fn streamed_put_under_the_cap_is_replayed_byte_for_byte() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client());
    let sent = payload(10 * 1024);

    let res = bounded(svc.oneshot(put(&server, streamed(&sent, 1000))))
        .await
        .expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(
            req.header("transfer-encoding"),
            Some("chunked"),
            "attempt {i}"
        );
        assert_eq!(req.body(), &sent, "attempt {i} carried the body intact");
    }
    assert_eq!(handle.snapshot().retries, 2);
}

/// Many calls at once through clones of one service, on a multi-thread
/// runtime (where the client's connection tasks run beside the retries):
/// each call's retries carry its own body, intact, and the counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_each_replay_their_own_body() {
    support::trace_init();
    const CALLS: usize = 8;
    let server = TestServer::start(unavailable_twice()).await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let bodies: Vec<Bytes> = (0..CALLS)
        .map(|i| payload(8 * 1024 + i).slice(i..))
        .collect();

    bounded(async {
        let mut calls = tokio::task::JoinSet::new();
        for (i, body) in bodies.iter().enumerate() {
            let req = Request::put(server.url(&format!("/items/{i}")))
                .body(Full::new(body.clone()))
                .unwrap();
            calls.spawn(svc.clone().oneshot(req));
        }
        while let Some(res) = calls.join_next().await {
            let res = res.expect("the call did not panic").expect("a response");
            assert_eq!(res.status(), 200);
        }
    })
    .await;

    for (i, body) in bodies.iter().enumerate() {
        let seen = server.seen_at(&format!("/items/{i}"));
        assert_eq!(seen.len(), 3, "call {i}: 503, 503, then 200");
        for (n, req) in seen.iter().enumerate() {
            assert_eq!(req.body(), body, "call {i}, attempt {n}");
        }
    }
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.retries), (CALLS as u64, 2 * CALLS as u64));
}

/// Test 2: a body over the cap whose size is known up front (`Full`)
/// goes out once, intact, and the 503 is returned.
#[tokio::test]
async fn put_over_the_cap_with_known_size_is_sent_once() {
    support::trace_init();
    let server = TestServer::start(vec![Reply::status(503)]).await;
    let layer = RetryLayer::http(config().max_replay_body(1024).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let sent = payload(4 * 1024);

    let res = bounded(svc.oneshot(put(&server, Full::new(sent.clone()))))
        .await
        .expect("a response");

    assert_eq!(res.status(), 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "not retried");
    assert_eq!(seen[0].header("content-length"), Some("4096"));
    assert_eq!(seen[0].body(), &sent, "the body went through intact");
    let snap = handle.snapshot();
    assert_eq!(snap.skipped_unreplayable, 1);
    assert_eq!((snap.retries, snap.attempts), (0, 1));
}

/// Test 2, streamed: the body outgrows the cap while it is sent; that
/// attempt still carries it whole, and it is not retried.
#[tokio::test]
async fn streamed_put_over_the_cap_is_sent_once() {
    support::trace_init();
    let server = TestServer::start(vec![Reply::status(503)]).await;
    let layer = RetryLayer::http(config().max_replay_body(1024).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client());
    let sent = payload(4 * 1024);

    let res = bounded(svc.oneshot(put(&server, streamed(&sent, 512))))
        .await
        .expect("a response");

    assert_eq!(res.status(), 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "not retried");
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[0].body(), &sent, "the body went through intact");
    let snap = handle.snapshot();
    assert_eq!(snap.skipped_unreplayable, 1);
    assert_eq!((snap.retries, snap.attempts), (0, 1));
}

/// Test 3: a POST without an `Idempotency-Key` is sent once.
#[tokio::test]
async fn post_without_idempotency_key_is_sent_once() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let req = Request::post(server.url("/orders"))
        .body(Full::new(Bytes::from_static(b"{\"item\":42}")))
        .unwrap();

    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 503);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "not retried");
    assert_eq!(seen[0].body().as_ref(), b"{\"item\":42}");
    let snap = handle.snapshot();
    assert_eq!(snap.skipped_unsafe, 1);
    assert_eq!(snap.retries, 0);
}

/// Test 3: a POST with an `Idempotency-Key` is retried, and every attempt
/// carries the same key and body.
#[tokio::test]
async fn post_with_idempotency_key_is_retried_with_the_same_key() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let req = Request::post(server.url("/orders"))
        .header("idempotency-key", "\"abc\"")
        .body(Full::new(Bytes::from_static(b"{\"item\":42}")))
        .unwrap();

    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(req.method, "POST", "attempt {i}");
        let keys: Vec<_> = req.headers.get_all("idempotency-key").iter().collect();
        assert_eq!(keys, ["\"abc\""], "attempt {i} carries the key once");
        assert_eq!(req.body().as_ref(), b"{\"item\":42}", "attempt {i}");
    }
    let snap = handle.snapshot();
    assert_eq!((snap.retries, snap.skipped_unsafe), (2, 0));
}

/// Test 5: `Retry-After: 0` is retried at once, and so is an HTTP-date in
/// the past. The backoff is an hour, so were the hint ignored the exchange
/// would not finish within the bound.
#[tokio::test]
async fn retry_after_zero_is_retried_at_once() {
    support::trace_init();
    for hint in ["0", "Thu, 01 Jan 1970 00:00:00 GMT"] {
        let server = TestServer::start(vec![
            Reply::status(503).header("retry-after", hint),
            Reply::status(200),
        ])
        .await;
        let layer = RetryLayer::http(
            config()
                .backoff(Backoff::fixed(Duration::from_secs(3600)))
                .build()
                .unwrap(),
        );
        let handle = layer.handle();
        let svc = layer.layer(client::<Empty<Bytes>>());
        let req = Request::get(server.url("/items/7"))
            .body(Empty::new())
            .unwrap();

        let res = bounded(svc.oneshot(req)).await.expect("a response");

        assert_eq!(res.status(), 200, "Retry-After: {hint}");
        assert_eq!(server.seen().len(), 2, "Retry-After: {hint}");
        let snap = handle.snapshot();
        assert_eq!(
            (snap.retries, snap.server_hint),
            (1, 0),
            "Retry-After: {hint}"
        );
    }
}

/// Test 5: `Retry-After: 3600` is above the 30 s clamp: the 503 is
/// returned at once, counted as a server-hint give-up.
#[tokio::test]
async fn retry_after_above_the_clamp_returns_the_response() {
    support::trace_init();
    let server = TestServer::start(vec![
        Reply::status(503).header("retry-after", "3600"),
        Reply::status(200),
    ])
    .await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Empty<Bytes>>());
    let req = Request::get(server.url("/items/7"))
        .body(Empty::new())
        .unwrap();

    let res = bounded(svc.oneshot(req)).await.expect("a response");

    assert_eq!(res.status(), 503);
    assert_eq!(
        res.headers()["retry-after"],
        "3600",
        "the server's own answer"
    );
    assert_eq!(server.seen().len(), 1, "not retried");
    let snap = handle.snapshot();
    assert_eq!(snap.server_hint, 1);
    assert_eq!((snap.retries, snap.give_ups), (0, 1));
}

/// Test 6: a refused connection is a transport error, retried until the
/// attempts run out; the client's own error is returned. A POST without a
/// key too: a refused connection proves it was never sent, and its body,
/// never read, goes again whole.
#[tokio::test]
async fn connection_refused_is_retried_then_returned() {
    support::trace_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    for method in [http::Method::GET, http::Method::POST] {
        let layer = RetryLayer::http(config().build().unwrap());
        let handle = layer.handle();
        let svc = layer.layer(client::<Full<Bytes>>());
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}/items/7"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();

        let err: BoxError = bounded(svc.oneshot(req)).await.expect_err("nobody listens");

        let err = err
            .downcast_ref::<ClientError>()
            .unwrap_or_else(|| panic!("the client's error, got {err:?}"));
        assert!(err.is_connect(), "a connect error, got {err:?}");
        let snap = handle.snapshot();
        assert_eq!(snap.attempts, 3, "{method}");
        assert_eq!((snap.retries, snap.exhausted), (2, 1), "{method}");
        assert_eq!(
            (snap.skipped_unsafe, snap.skipped_unreplayable),
            (0, 0),
            "{method}"
        );
    }
}

/// The caller reads the response of the attempt that succeeded, body and
/// all; the failed attempts' bodies are dropped unread.
#[tokio::test]
async fn response_of_the_successful_attempt_is_returned() {
    support::trace_init();
    let server = TestServer::start(vec![
        Reply::status(503).body("down"),
        Reply::status(502).body("bad gateway"),
        Reply::status(200).body("product 7"),
    ])
    .await;
    let svc = RetryLayer::http(config().build().unwrap()).layer(client::<Empty<Bytes>>());
    let req = Request::get(server.url("/items/7"))
        .body(Empty::new())
        .unwrap();

    let body = bounded(async {
        let res = svc.oneshot(req).await.expect("a response");
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.map(|b| b.to_bytes())
    })
    .await
    .expect("the body is read");

    assert_eq!(body.as_ref(), b"product 7");
    assert_eq!(server.seen().len(), 3);
}

/// The server answers 503 before the upload has ended (it does not read the
/// body); the last part of the body only becomes available once the retry
/// has reached the server. The retry still sends the whole body: what the
/// first attempt read, then the rest of the original, which the first
/// attempt's connection must have let go of (one body reads at a time). On
/// a multi-thread runtime, where that connection task runs beside the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answer_before_the_upload_ended_is_retried_with_the_whole_body() {
    support::trace_init();
    let gate = Arc::new(tokio::sync::Notify::new());
    let opener = gate.clone();
    let server = TestServer::start_with(
        vec![Reply::status(503).without_reading(), Reply::status(200)],
        Some(Box::new(move |_, n| {
            if n >= 1 {
                opener.notify_one();
            }
        })),
    )
    .await;
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let sent = payload(3 * 1000);
    let head = stream::iter(vec![
        Ok::<_, Infallible>(Frame::data(sent.slice(..1000))),
        Ok(Frame::data(sent.slice(1000..2000))),
    ]);
    let tail_bytes = sent.slice(2000..);
    let tail = stream::once(async move {
        gate.notified().await;
        Ok(Frame::data(tail_bytes))
    });
    let body = StreamBody::new(head.chain(tail));
    let svc = layer.layer(client());

    let res = bounded(svc.oneshot(put(&server, body)))
        .await
        .expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "the early 503, then the 200");
    assert!(
        seen[0].body.is_err(),
        "the first attempt was answered unread"
    );
    assert_eq!(seen[1].body(), &sent, "the retry carried the whole body");
    let snap = handle.snapshot();
    assert_eq!((snap.retries, snap.attempts), (1, 2));
}

/// The preset stack wraps hyper-util's client as it is: the client's body
/// type is inferred as the replay body, and a PUT is retried through the
/// whole stack.
#[tokio::test]
async fn the_preset_stack_wraps_hyper_utils_client() {
    support::trace_init();
    let server = TestServer::start(unavailable_twice()).await;
    let (layer, handle) = steadfast::ResilienceLayer::http()
        .retry(
            steadfast::retry::RetryConfig::builder()
                .backoff(Backoff::fixed(Duration::from_millis(1))),
        )
        .bulkhead(8)
        .build()
        .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http());
    let sent = payload(2 * 1024);

    let res = bounded(svc.oneshot(put(&server, Full::new(sent.clone()))))
        .await
        .expect("a response");

    assert_eq!(res.status(), 200);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "503, 503, then 200");
    assert!(
        seen.iter().all(|s| s.body.as_ref() == Ok(&sent)),
        "the body each time"
    );
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.retry.unwrap().retries, 2);
    assert_eq!(snapshot.bulkhead.unwrap().in_flight, 0);
    let breaker = snapshot.circuit_breaker.unwrap();
    assert_eq!((breaker.failures, breaker.successes), (2, 1));
}
