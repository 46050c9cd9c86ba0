//! The client `IdempotencyKeyLayer`: which requests get a key, its format,
//! pluggable makers, and the layer together with `RetryLayer::http`.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use steadfast::idempotency::client::{
    IdempotencyKeyLayer, KeyedRequest, MakeKey, SetIdempotencyKey, UuidV4,
};
use steadfast::idempotency::key::{self, IDEMPOTENCY_KEY};
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use tower::{Layer, Service, ServiceExt};

/// What the inner service saw: the `Idempotency-Key` values of each request
/// (`None` for a request without one).
type Seen = Arc<Mutex<Vec<Vec<HeaderValue>>>>;

/// An inner service that records every request's key values and answers 200.
fn recorder<B>() -> (
    impl Service<Request<B>, Response = Response<()>, Error = Infallible> + Clone,
    Seen,
) {
    let seen = Seen::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: Request<B>| {
        let values = req
            .headers()
            .get_all(IDEMPOTENCY_KEY)
            .iter()
            .cloned()
            .collect();
        log.lock().unwrap().push(values);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    (svc, seen)
}

fn request(method: Method) -> Request<()> {
    Request::builder()
        .method(method)
        .uri("http://shop/orders")
        .body(())
        .unwrap()
}

/// The bare UUID of a quoted or bare key, checked to be a UUIDv4:
/// lowercase hex in 8-4-4-4-12, version nibble 4, variant bits `10`.
fn assert_uuid_v4(uuid: &str) {
    assert_eq!(uuid.len(), 36, "{uuid}");
    for (i, c) in uuid.char_indices() {
        if matches!(i, 8 | 13 | 18 | 23) {
            assert_eq!(c, '-', "{uuid}");
        } else {
            assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{uuid}");
        }
    }
    assert_eq!(&uuid[14..15], "4", "version nibble of {uuid}");
    let variant = u8::from_str_radix(&uuid[19..20], 16).unwrap();
    assert_eq!(variant & 0b1100, 0b1000, "variant bits of {uuid}");
}

#[tokio::test(start_paused = true)]
async fn post_and_patch_get_one_key() {
    support::trace_init();
    let (inner, seen) = recorder();
    let mut svc = IdempotencyKeyLayer::new().layer(inner);
    for method in [Method::POST, Method::PATCH] {
        svc.ready()
            .await
            .unwrap()
            .call(request(method))
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for values in seen.iter() {
        assert_eq!(values.len(), 1, "exactly one key: {values:?}");
        let parsed = key::IdempotencyKey::parse(values[0].as_bytes()).unwrap();
        assert_uuid_v4(parsed.as_str());
    }
    assert_ne!(seen[0], seen[1], "each call gets a fresh key");
}

#[tokio::test(start_paused = true)]
async fn idempotent_methods_get_no_key() {
    let (inner, seen) = recorder();
    let mut svc = IdempotencyKeyLayer::new().layer(inner);
    for method in [
        Method::GET,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ] {
        svc.ready()
            .await
            .unwrap()
            .call(request(method))
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(Vec::is_empty), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn an_existing_key_is_kept() {
    let (inner, seen) = recorder();
    let mut svc = IdempotencyKeyLayer::new().layer(inner);
    for given in ["\"mine-1\"", "bare-2", "not a valid key\t"] {
        let mut req = request(Method::POST);
        req.headers_mut()
            .insert(IDEMPOTENCY_KEY, HeaderValue::from_str(given).unwrap());
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![
            vec![HeaderValue::from_static("\"mine-1\"")],
            vec![HeaderValue::from_static("bare-2")],
            vec![HeaderValue::from_static("not a valid key\t")],
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn quoted_by_default_unquoted_on_request() {
    let (inner, seen) = recorder();
    let mut quoted = IdempotencyKeyLayer::new().layer(inner.clone());
    let mut unquoted = IdempotencyKeyLayer::new().unquoted().layer(inner);
    quoted
        .ready()
        .await
        .unwrap()
        .call(request(Method::POST))
        .await
        .unwrap();
    unquoted
        .ready()
        .await
        .unwrap()
        .call(request(Method::POST))
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    let q = seen[0][0].to_str().unwrap();
    assert_eq!(q.len(), 38);
    assert!(q.starts_with('"') && q.ends_with('"'), "{q}");
    assert_uuid_v4(&q[1..37]);

    let u = seen[1][0].to_str().unwrap();
    assert!(!u.contains('"'), "{u}");
    assert_uuid_v4(u);
    // Both forms parse, to the bare UUID.
    assert_eq!(
        key::IdempotencyKey::parse(u.as_bytes()).unwrap().as_str(),
        u
    );
}

#[tokio::test(start_paused = true)]
async fn the_method_set_is_configurable() {
    let (inner, seen) = recorder();
    let mut svc = IdempotencyKeyLayer::new()
        .methods([Method::PUT])
        .layer(inner);
    for method in [Method::PUT, Method::POST] {
        svc.ready()
            .await
            .unwrap()
            .call(request(method))
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].len(), 1, "PUT is in the set");
    assert!(seen[1].is_empty(), "POST is not any more");
}

#[tokio::test(start_paused = true)]
async fn a_custom_maker_sees_the_request() {
    let (inner, seen) = recorder();
    let maker = |req: &dyn KeyedRequest| {
        HeaderValue::try_from(format!("\"{}{}\"", req.method(), req.path())).unwrap()
    };
    let mut svc = IdempotencyKeyLayer::with_maker(maker).layer(inner);
    svc.ready()
        .await
        .unwrap()
        .call(request(Method::POST))
        .await
        .unwrap();
    svc.ready()
        .await
        .unwrap()
        .call(request(Method::GET))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], vec![HeaderValue::from_static("\"POST/orders\"")]);
    assert!(seen[1].is_empty(), "the maker is not asked for a GET");
}

/// A [`MakeKey`] with state: counts the keys it made.
#[derive(Clone, Default)]
struct Counter(u32);

impl MakeKey for Counter {
    fn make_key(&mut self, _: &dyn KeyedRequest) -> HeaderValue {
        self.0 += 1;
        HeaderValue::from(self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn a_stateful_maker_is_called_once_per_keyed_call() {
    let (inner, seen) = recorder();
    let mut svc = IdempotencyKeyLayer::with_maker(Counter::default()).layer(inner);
    for method in [Method::POST, Method::GET, Method::PATCH, Method::POST] {
        svc.ready()
            .await
            .unwrap()
            .call(request(method))
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap();
    let keys: Vec<_> = seen
        .iter()
        .map(|v| v.first().map(|k| k.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        keys,
        [Some("1".into()), None, Some("2".into()), Some("3".into())]
    );
}

#[test]
fn layers_and_services_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<IdempotencyKeyLayer>();
    check::<SetIdempotencyKey<tower::util::BoxCloneSyncService<Request<()>, (), Infallible>>>();
    check::<UuidV4>();
}

/// The backend of the retry tests: 503 for the first two attempts, then
/// 200; records each attempt's key values.
fn flaky_backend() -> (
    impl Service<
            Request<ReplayBody<Full<Bytes>>>,
            Response = Response<()>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + 'static,
    Seen,
) {
    let seen = Seen::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
        let mut log = log.lock().unwrap();
        log.push(
            req.headers()
                .get_all(IDEMPOTENCY_KEY)
                .iter()
                .cloned()
                .collect(),
        );
        let status = if log.len() <= 2 { 503 } else { 200 };
        async move { Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap()) }
    });
    (svc, seen)
}

fn retry_config() -> RetryConfig {
    RetryConfig::builder()
        .backoff(Backoff::fixed(Duration::from_millis(1)))
        .no_budget()
        .build()
        .unwrap()
}

fn post() -> Request<Full<Bytes>> {
    Request::post("http://shop/orders")
        .body(Full::new(Bytes::from_static(b"{\"sku\":1}")))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn with_retry_every_attempt_carries_the_same_key() {
    let (backend, seen) = flaky_backend();
    let retry = RetryLayer::http(retry_config());
    let handle = retry.handle();
    let svc = IdempotencyKeyLayer::new().layer(retry.layer(backend));

    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 200);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "503, 503, 200: three attempts");
    assert_eq!(seen[0].len(), 1);
    assert!(
        seen.iter().all(|values| *values == seen[0]),
        "one key for every attempt: {seen:?}"
    );
    assert_eq!(handle.snapshot().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn without_the_key_layer_a_post_is_not_retried() {
    let (backend, seen) = flaky_backend();
    let retry = RetryLayer::http(retry_config());
    let handle = retry.handle();
    let svc = retry.layer(backend);

    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503, "the first answer is returned");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one attempt");
    assert!(seen[0].is_empty(), "and no key");
    assert_eq!(handle.snapshot().retries, 0);
    assert_eq!(handle.snapshot().skipped_unsafe, 1);
}

#[tokio::test(start_paused = true)]
async fn with_retry_each_call_gets_its_own_key() {
    let (backend, seen) = flaky_backend();
    let svc = IdempotencyKeyLayer::new().layer(RetryLayer::http(retry_config()).layer(backend));
    // The first call takes the two 503s and one 200; the second gets 200 at once.
    assert_eq!(svc.clone().oneshot(post()).await.unwrap().status(), 200);
    assert_eq!(svc.oneshot(post()).await.unwrap().status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0], seen[2]);
    assert_ne!(seen[2], seen[3], "a new call, a new key");
}
