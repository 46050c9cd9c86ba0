//! Only requests safe to repeat are hedged; gRPC hedges carry their number
//! and their body.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use steadfast::hedge::{HedgeConfig, HedgeLayer};
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{HttpReplay, Idempotent, RetryOn};
use steadfast::BoxError;
use tower::{Layer, Service, ServiceExt};

use crate::harness::{counts, fixed, Backend, Step};

pub(crate) type Req = http::Request<ReplayBody<Full<Bytes>>>;

/// What the backend saw of each attempt: its headers and its body.
pub(crate) type Seen = Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>;

/// An HTTP backend over `backend`'s script: reads the whole body, then
/// answers 200 with the attempt's number in an `x-attempt` header.
pub(crate) fn http_backend(
    backend: &Backend,
    seen: &Seen,
) -> impl Service<Req, Response = http::Response<()>, Error = BoxError, Future = impl Send> + Clone
{
    let (backend, seen) = (backend.clone(), seen.clone());
    tower::service_fn(move |req: Req| {
        let (parts, body) = req.into_parts();
        let (backend, seen) = (backend.clone(), seen.clone());
        async move {
            let body = body.collect().await?.to_bytes();
            seen.lock().unwrap().push((parts.headers, body));
            let n = backend.attempt().await?;
            Ok::<_, BoxError>(
                http::Response::builder()
                    .header("x-attempt", n)
                    .body(())
                    .unwrap(),
            )
        }
    })
}

fn request(method: &str, uri: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(uri)
}

fn body() -> Full<Bytes> {
    Full::new(Bytes::from_static(b"{\"sku\":42}"))
}

/// Makes one call through `layer` to a backend following `script`: the
/// attempt that answered, the backend, what it saw.
pub(crate) async fn call<On>(
    layer: &HedgeLayer<On, HttpReplay>,
    script: &[Step],
    req: http::Request<Full<Bytes>>,
) -> (u64, Backend, Seen)
where
    On: RetryOn<http::Response<()>>,
{
    let backend = Backend::new(script);
    let seen = Seen::default();
    let res = layer
        .layer(http_backend(&backend, &seen))
        .oneshot(req)
        .await
        .unwrap();
    let n = res.headers()["x-attempt"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (n, backend, seen)
}

const SLOW_FIRST: &[Step] = &[Step::Hang, Step::Ok(10)];

#[tokio::test(start_paused = true)]
async fn a_post_without_a_key_is_never_hedged() {
    let layer = HedgeLayer::http(fixed(100, 3).build().unwrap());
    let handle = layer.handle();
    let req = request("POST", "http://shop/orders").body(body()).unwrap();
    let (n, backend, _) = call(&layer, &[Step::Ok(500)], req).await;
    assert_eq!(n, 0);
    assert_eq!(backend.sent_ms(), [0]);
    assert_eq!(counts(&handle.snapshot()), (1, 0, 0, 0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_post_that_fails_non_fatally_is_not_sent_again() {
    let layer = HedgeLayer::http(fixed(100, 3).build().unwrap());
    let req = request("POST", "http://shop/orders").body(body()).unwrap();
    let backend = Backend::new(&[Step::Err(5), Step::Ok(1)]);
    let seen = Seen::default();
    let err = layer
        .layer(http_backend(&backend, &seen))
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "attempt 0 failed");
    assert_eq!(backend.sent_ms(), [0]);
}

#[tokio::test(start_paused = true)]
async fn safe_requests_are_hedged_with_their_body() {
    let layer = HedgeLayer::http(fixed(100, 2).build().unwrap());
    let handle = layer.handle();
    let get = request("GET", "http://shop/orders/1").body(body()).unwrap();
    let keyed = request("POST", "http://shop/orders")
        .header("idempotency-key", "\"k-1\"")
        .body(body())
        .unwrap();
    let mut marked = request("POST", "http://shop/search").body(body()).unwrap();
    marked.extensions_mut().insert(Idempotent);
    for req in [get, keyed, marked] {
        let (n, backend, seen) = call(&layer, SLOW_FIRST, req).await;
        assert_eq!(n, 1, "the hedge answered");
        assert_eq!(backend.sent_ms(), [0, 100]);
        let seen = seen.lock().unwrap();
        assert_eq!(seen[1].1, seen[0].1, "the hedge carries the same body");
        assert_eq!(&seen[1].1[..], b"{\"sku\":42}");
    }
    assert_eq!(counts(&handle.snapshot()), (3, 3, 3, 0, 0, 0));
}

fn grpc(path: &str) -> http::Request<Full<Bytes>> {
    request("POST", format!("http://shop{path}").as_str())
        .header("content-type", "application/grpc")
        .body(body())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn grpc_calls_are_hedged_only_when_marked_idempotent() {
    let layer =
        HedgeLayer::grpc(fixed(100, 3).build().unwrap()).idempotent_paths(["/shop.Products/Get"]);
    let handle = layer.handle();
    let (n, backend, _) = call(&layer, &[Step::Ok(150)], grpc("/shop.Orders/Create")).await;
    assert_eq!((n, backend.sent_ms()), (0, vec![0]));
    assert_eq!(handle.snapshot().skipped_unsafe, 1);

    let script = [Step::Hang, Step::Hang, Step::Ok(10)];
    let (n, backend, seen) = call(&layer, &script, grpc("/shop.Products/Get")).await;
    assert_eq!((n, backend.sent_ms()), (2, vec![0, 100, 200]));
    let previous: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| {
            h.get("grpc-previous-rpc-attempts")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(previous, [None, Some("1".into()), Some("2".into())]);
}

#[tokio::test(start_paused = true)]
async fn unavailable_sends_the_next_grpc_hedge_at_once() {
    let layer = HedgeLayer::grpc(
        HedgeConfig::builder()
            .delay(crate::harness::ms(100))
            .no_budget()
            .build()
            .unwrap(),
    )
    .idempotent_paths(["/shop.Products/Get"]);
    let backend = Backend::new(&[Step::Ok(20), Step::Ok(10)]);
    let seen = Seen::default();
    // The first answer is UNAVAILABLE (a trailers-only response).
    let inner = http_backend(&backend, &seen).map_response(|res: http::Response<()>| {
        let (mut parts, body) = res.into_parts();
        if parts.headers["x-attempt"] == "0" {
            parts
                .headers
                .insert("grpc-status", http::HeaderValue::from_static("14"));
        }
        http::Response::from_parts(parts, body)
    });
    let res = layer
        .layer(inner)
        .oneshot(grpc("/shop.Products/Get"))
        .await
        .unwrap();
    assert_eq!(res.headers()["x-attempt"], "1");
    assert_eq!(backend.sent_ms(), [0, 20]);
}
