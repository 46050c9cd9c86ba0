//! `RestoreBody` (`RetryLayer::tonic`, `restore_body`): the inner service
//! receives `http::Request<tonic::body::Body>` — the caller's body type, not
//! `ReplayBody<_>` — and every attempt carries the whole message again,
//! with HttpReplay's rules kept: the cap, idempotent paths,
//! `grpc-previous-rpc-attempts`, the time left as `grpc-timeout`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

use crate::harness::{ms, quick};

/// What the inner service saw of one attempt.
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    body: Bytes,
    previous: Option<String>,
    grpc_timeout: Option<String>,
}

/// A `Channel`-shaped service: takes `http::Request<tonic::body::Body>`
/// only, reads the whole body, answers `code(n)` (n from 0) trailers-only.
fn channel(
    seen: &Arc<Mutex<Vec<Attempt>>>,
    code: fn(usize) -> &'static str,
) -> impl tower::Service<
    Request<tonic::body::Body>,
    Response = Response<()>,
    Error = steadfast::BoxError,
    Future: Send,
> + Clone {
    let seen = seen.clone();
    service_fn(move |req: Request<tonic::body::Body>| {
        let seen = seen.clone();
        async move {
            let (previous, grpc_timeout) = {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_owned())
                };
                (header("grpc-previous-rpc-attempts"), header("grpc-timeout"))
            };
            let body = req.into_body().collect().await?.to_bytes();
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(Attempt {
                    body,
                    previous,
                    grpc_timeout,
                });
                seen.len() - 1
            };
            Ok(Response::builder()
                .header("grpc-status", code(n))
                .body(())
                .unwrap())
        }
    })
}

/// A gRPC call whose message is `len` bytes, sent by tonic in 3 frames.
fn call(path: &str, len: usize) -> (Request<tonic::body::Body>, Bytes) {
    let message = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let frames = futures_util::stream::iter(
        message
            .chunks(len.div_ceil(3).max(1))
            .map(|c| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::copy_from_slice(c)))
            })
            .collect::<Vec<_>>(),
    );
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
    let req = Request::post(format!("http://backend{path}"))
        .header("content-type", "application/grpc")
        .body(body)
        .unwrap();
    (req, message)
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_the_whole_message_in_the_callers_body_type() {
    let seen = Arc::default();
    let layer = RetryLayer::tonic(quick().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(channel(&seen, |n| if n < 2 { "14" } else { "0" }));

    let (req, message) = call("/shop.Products/Create", 10_000);
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|a| a.body == message),
        "the same bytes each time"
    );
    let previous: Vec<_> = seen.iter().map(|a| a.previous.as_deref()).collect();
    assert_eq!(previous, [None, Some("1"), Some("2")]);
    assert_eq!(handle.snapshot().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_cap_is_sent_once() {
    let seen = Arc::default();
    let config = quick().max_replay_body(1_000).build().unwrap();
    let layer = RetryLayer::tonic(config);
    let handle = layer.handle();
    let svc = layer.layer(channel(&seen, |_| "14"));

    let (req, message) = call("/shop.Products/Create", 3_000);
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, message, "streamed through intact");
    assert_eq!(handle.snapshot().skipped_unreplayable, 1);
}

#[tokio::test(start_paused = true)]
async fn idempotent_paths_and_the_time_left_carry_over() {
    // A reset after the message was read proves nothing: only a path
    // declared idempotent is repeated. Each retry is told the time left.
    let seen: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let reset = {
        let inner = channel(&seen, |_| "0");
        service_fn(move |req: Request<tonic::body::Body>| {
            let inner = inner.clone();
            async move {
                inner.oneshot(req).await?;
                Err::<Response<()>, steadfast::BoxError>(
                    std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
                )
            }
        })
    };
    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff(Backoff::fixed(ms(100)))
        .no_budget()
        .build()
        .unwrap();
    let layer = RetryLayer::tonic(config).idempotent_paths(["/shop.Products/Get"]);
    let svc = layer.layer(reset);
    let start = Instant::now();

    let (mut req, _) = call("/shop.Products/Get", 10);
    req.set_deadline(Deadline::at(start + Duration::from_secs(1)));
    svc.clone().oneshot(req).await.unwrap_err();
    let (req, _) = call("/shop.Products/Create", 10);
    svc.oneshot(req).await.unwrap_err();

    let seen = seen.lock().unwrap().clone();
    let timeouts: Vec<_> = seen.iter().map(|a| a.grpc_timeout.as_deref()).collect();
    // Get: three attempts, 100 ms apart; Create: one.
    assert_eq!(timeouts, [None, Some("900000u"), Some("800000u"), None]);
}
