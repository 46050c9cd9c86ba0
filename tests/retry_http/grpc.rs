//! gRPC-shaped calls through `RetryLayer::grpc`, over HTTP/1 (the crate's
//! dev-dependencies have no HTTP/2; the retry rule reads only headers).

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use steadfast::retry::RetryLayer;
use tower::{Layer, ServiceExt};

use super::hyper_client::client;
use super::server::{Reply, TestServer};
use super::{bounded, config, support};

/// A trailers-only gRPC answer: status 200, the code in the headers, no body.
fn grpc_reply(code: &'static str) -> Reply {
    Reply::status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", code)
}

/// A length-prefixed gRPC message: uncompressed, 5 bytes.
const MESSAGE: &[u8] = b"\x00\x00\x00\x00\x05hello";

fn grpc_request(server: &TestServer) -> Request<Full<Bytes>> {
    Request::post(server.url("/shop.Products/Get"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(MESSAGE)))
        .unwrap()
}

/// Test 7: UNAVAILABLE twice, then OK; the retries say how many attempts
/// came before them.
#[tokio::test]
async fn unavailable_is_retried_with_previous_attempts_header() {
    support::trace_init();
    let server = TestServer::start(vec![grpc_reply("14"), grpc_reply("14"), grpc_reply("0")]).await;
    let layer = RetryLayer::grpc(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());

    let res = bounded(svc.oneshot(grpc_request(&server)))
        .await
        .expect("a response");

    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["grpc-status"],
        "0",
        "the OK answer is returned"
    );
    let seen = server.seen();
    let previous: Vec<_> = seen
        .iter()
        .map(|req| req.header("grpc-previous-rpc-attempts"))
        .collect();
    assert_eq!(previous, [None, Some("1"), Some("2")]);
    for (i, req) in seen.iter().enumerate() {
        assert_eq!(req.method, "POST", "attempt {i}");
        assert_eq!(req.path, "/shop.Products/Get", "attempt {i}");
        assert_eq!(req.header("content-type"), Some("application/grpc"));
        assert_eq!(req.body().as_ref(), MESSAGE, "attempt {i}");
    }
    assert_eq!(handle.snapshot().retries, 2);
}

/// A code outside the retry set (INTERNAL) is returned at once, and a
/// negative pushback ends the retries even for UNAVAILABLE.
#[tokio::test]
async fn other_codes_and_negative_pushback_are_not_retried() {
    support::trace_init();
    let server = TestServer::start(vec![grpc_reply("13"), grpc_reply("0")]).await;
    let svc = RetryLayer::grpc(config().build().unwrap()).layer(client::<Full<Bytes>>());
    let res = bounded(svc.oneshot(grpc_request(&server)))
        .await
        .expect("a response");
    assert_eq!(res.headers()["grpc-status"], "13");
    assert_eq!(server.seen().len(), 1, "INTERNAL is not retried");

    let server = TestServer::start(vec![
        grpc_reply("14").header("grpc-retry-pushback-ms", "-1"),
        grpc_reply("0"),
    ])
    .await;
    let layer = RetryLayer::grpc(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let res = bounded(svc.oneshot(grpc_request(&server)))
        .await
        .expect("a response");
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(server.seen().len(), 1, "the server asked for no retry");
    assert_eq!(handle.snapshot().server_hint, 1);
}
