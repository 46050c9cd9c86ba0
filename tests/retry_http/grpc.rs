//! gRPC-shaped calls through `RetryLayer::grpc`, over HTTP/1 (the crate's
//! dev-dependencies have no HTTP/2; the retry rule reads only headers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use steadfast::retry::body::ReplayBody;
use steadfast::retry::RetryLayer;
use steadfast::BoxError;
use tokio::net::TcpListener;
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

/// A unary call to a port nobody listens on yet: the connection is refused
/// twice (the call never left), and the third attempt reaches the server
/// that has started meanwhile. A call not marked idempotent is retried,
/// because a refused connection proves the server never saw it.
#[tokio::test]
async fn connect_refused_call_is_retried_until_the_server_is_up() {
    support::trace_init();
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let server: Arc<Mutex<Option<TestServer>>> = Arc::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    // Between retry and client: counts attempts, and starts the server on
    // the reserved port just before the third.
    let client = client::<Full<Bytes>>();
    let starting = {
        let server = server.clone();
        let attempts = attempts.clone();
        tower::service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
            let client = client.clone();
            let server = server.clone();
            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 3 {
                    let listener = TcpListener::bind(addr).await?;
                    let started = TestServer::start_on(listener, vec![grpc_reply("0")]);
                    *server.lock().unwrap() = Some(started);
                }
                client.oneshot(req).await.map_err(BoxError::from)
            }
        })
    };
    let layer = RetryLayer::grpc(config().build().unwrap());
    let handle = layer.handle();
    let req = Request::post(format!("http://{addr}/shop.Payments/Charge"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(MESSAGE)))
        .unwrap();

    let res = bounded(layer.layer(starting).oneshot(req))
        .await
        .expect("the third attempt is answered");

    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let seen = server.lock().unwrap().as_ref().unwrap().seen();
    assert_eq!(seen.len(), 1, "only the third attempt reached a server");
    assert_eq!(seen[0].body().as_ref(), MESSAGE, "with the whole message");
    assert_eq!(seen[0].header("grpc-previous-rpc-attempts"), Some("2"));
    let snap = handle.snapshot();
    assert_eq!((snap.retries, snap.skipped_unsafe), (2, 0));
}

/// A server that reads each whole request and then resets the connection
/// (`SO_LINGER` 0): the call was sent and may have run, so it is not sent
/// again. Counts the connections it accepted.
async fn resetting_server() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                // The head, then `content-length` bytes of body.
                while !request_is_complete(&request) {
                    if stream.readable().await.is_err() {
                        return;
                    }
                    match stream.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                let _ = stream.set_zero_linger();
                drop(stream);
            });
        }
    });
    (addr, accepted, task)
}

fn request_is_complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// The call reached the server, which reset the connection before
/// answering: not retried (it may have been processed), the reset is
/// returned, and the server accepted exactly one connection.
#[tokio::test]
async fn reset_after_the_call_was_sent_is_not_retried() {
    support::trace_init();
    let (addr, accepted, task) = resetting_server().await;
    let layer = RetryLayer::grpc(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(client::<Full<Bytes>>());
    let req = Request::post(format!("http://{addr}/shop.Payments/Charge"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(MESSAGE)))
        .unwrap();

    let err = bounded(svc.oneshot(req))
        .await
        .expect_err("the server reset");

    assert!(!steadfast::classify::is_not_sent(err.as_ref()), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "sent once");
    let snap = handle.snapshot();
    assert_eq!((snap.retries, snap.skipped_unsafe), (0, 1));

    // The same call marked idempotent is retried after the same reset.
    let layer =
        RetryLayer::grpc(config().build().unwrap()).idempotent_paths(["/shop.Payments/Charge"]);
    let svc = layer.layer(client::<Full<Bytes>>());
    let req = Request::post(format!("http://{addr}/shop.Payments/Charge"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(MESSAGE)))
        .unwrap();
    bounded(svc.oneshot(req))
        .await
        .expect_err("reset every time");
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "three more attempts");
    task.abort();
}
