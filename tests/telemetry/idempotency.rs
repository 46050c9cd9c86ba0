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

/// With key "a": a first request that claims, a repeat while it runs (a
/// conflict), a different request with the key while it runs and once it
/// is done (two mismatches), the same request again (a replay).
async fn conflict_mismatches_replay<S>(svc: &S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<IdempotencyBody<Full<Bytes>>>>
        + Clone
        + Send
        + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
{
    let first = tokio::spawn(svc.clone().oneshot(keyed("\"a\"", "one")));
    tokio::task::yield_now().await;
    let busy = svc.clone().oneshot(keyed("\"a\"", "one")).await.unwrap();
    assert_eq!(busy.status(), StatusCode::CONFLICT);
    let other = svc.clone().oneshot(keyed("\"a\"", "two")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let other = svc.clone().oneshot(keyed("\"a\"", "two")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let again = svc.clone().oneshot(keyed("\"a\"", "one")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.headers().contains_key("idempotent-replayed"));
}

#[tokio::test(start_paused = true)]
async fn claims_replays_conflicts_and_mismatches_are_counted() {
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handle = layer.handle();
    let svc = layer.layer(handler(Duration::from_secs(1)));

    conflict_mismatches_replay(&svc).await;

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

/// Every event the layer counts reaches its listeners, in order, with the
/// layer's name; a listener that panics neither stops the layer nor the
/// listeners after it.
#[tokio::test(start_paused = true)]
async fn listeners_get_every_event_and_survive_a_panicking_one() {
    use std::sync::{Arc, Mutex};
    use steadfast::idempotency::IdempotencyEventKind as Kind;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let layer = IdempotencyLayer::builder(MemoryStore::new())
        .name("orders")
        .on_event(|_| panic!("a listener that panics"))
        .on_event(move |e| {
            assert_eq!(e.name(), Some("orders"));
            log.lock().unwrap().push(e.kind());
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(handler(Duration::from_secs(1)));

    conflict_mismatches_replay(&svc).await;

    assert_eq!(
        *seen.lock().unwrap(),
        [Kind::Conflict, Kind::Mismatch, Kind::Mismatch, Kind::Replay]
    );
    let s = handle.snapshot();
    assert_eq!((s.conflicts, s.mismatches, s.replays), (1, 2, 1));

    // A store that is down: the claim's failure is an event too.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let layer = IdempotencyLayer::builder(Down)
        .on_event(move |e| log.lock().unwrap().push((e.kind(), e.name().is_none())))
        .build()
        .unwrap();
    let res = layer
        .layer(handler(Duration::ZERO))
        .oneshot(keyed("\"b\"", "one"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(*seen.lock().unwrap(), [(Kind::StoreError, true)]);
}
