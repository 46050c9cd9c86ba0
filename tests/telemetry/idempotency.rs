//! The idempotency server layer counts claims, replays, conflicts,
//! mismatches and store errors.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreError, StoreKey, StoredResponse,
};
use steadfast::idempotency::{IdempotencyBody, IdempotencyLayer};
use tower::{Layer, Service, ServiceExt};

type Req = Request<IdempotencyBody<Full<Bytes>>>;

fn keyed(key: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/orders")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn handler(
    delay: Duration,
) -> impl Service<
    Req,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_req: Req| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

#[tokio::test(start_paused = true)]
async fn claims_replays_conflicts_and_mismatches_are_counted() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handle = layer.handle();
    let svc = layer.layer(handler(Duration::from_secs(1)));

    // A first request claims; a repeat while it runs is a conflict.
    let first = tokio::spawn(svc.clone().oneshot(keyed("\"a\"", "one")));
    tokio::task::yield_now().await;
    let busy = svc.clone().oneshot(keyed("\"a\"", "one")).await.unwrap();
    assert_eq!(busy.status(), StatusCode::CONFLICT);
    // A different request with the same key is a mismatch, running or done.
    let other = svc.clone().oneshot(keyed("\"a\"", "two")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let other = svc.clone().oneshot(keyed("\"a\"", "two")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The same request again is a replay.
    let again = svc.clone().oneshot(keyed("\"a\"", "one")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.headers().contains_key("idempotent-replayed"));

    let s = handle.snapshot();
    assert_eq!(
        (
            s.claims,
            s.replays,
            s.conflicts,
            s.mismatches,
            s.store_errors
        ),
        (1, 1, 1, 2, 0),
        "{s:?}"
    );
}

/// A store that is down.
#[derive(Clone)]
struct Down;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::new("down"))
}

impl Store for Down {
    async fn claim(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
        _: Fingerprint,
        _: Duration,
    ) -> Result<Claim, StoreError> {
        down()
    }
    async fn extend(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
        _: Fingerprint,
        _: Duration,
    ) -> Result<bool, StoreError> {
        down()
    }
    async fn complete(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
        _: Fingerprint,
        _: StoredResponse,
        _: Duration,
    ) -> Result<bool, StoreError> {
        down()
    }
    async fn release(&self, _: &StoreKey, _: &ClaimToken) -> Result<bool, StoreError> {
        down()
    }
    async fn get(&self, _: &StoreKey) -> Result<Option<Claim>, StoreError> {
        down()
    }
}

#[tokio::test(start_paused = true)]
async fn store_errors_are_counted() {
    let layer = IdempotencyLayer::new(Down);
    let handle = layer.handle();
    let svc = layer.layer(handler(Duration::ZERO));
    let res = svc.oneshot(keyed("\"b\"", "one")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let s = handle.snapshot();
    assert_eq!(s.claims, 0);
    assert_eq!(s.store_errors, 1, "{s:?}");
}
