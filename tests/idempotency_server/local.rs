//! On a bare `tower::service_fn` with paused time, without the network:
//! expiry, cancellation, lock timeouts, body caps, on the crate's
//! `MemoryStore`.

use std::convert::Infallible;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use super::*;
use steadfast::idempotency::{IdempotencyBody, IdempotencyLayerBuilder};

type Req = Request<IdempotencyBody<Full<Bytes>>>;

fn keyed(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/orders")
        .header("idempotency-key", KEY)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn body_of<B: http_body::Body<Data = Bytes>>(res: Response<B>) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

/// A handler counting its runs and answering with the run number.
fn counting(
    runs: Arc<AtomicUsize>,
) -> impl tower::Service<
    Req,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    counting_after(runs, Duration::ZERO)
}

/// As [`counting`], answering `delay` after it is called.
fn counting_after(
    runs: Arc<AtomicUsize>,
    delay: Duration,
) -> impl tower::Service<
    Req,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_req: Req| {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(Response::new(Full::new(Bytes::from(format!("run {n}")))))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_stored_response_expires_after_the_ttl() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .ttl(Duration::from_secs(60))
        .build()
        .expect("valid config")
        .layer(counting(runs.clone()));

    let first = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(body_of(first).await, "run 1");
    tokio::time::advance(Duration::from_secs(59)).await;
    let replay = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(body_of(replay).await, "run 1");
    tokio::time::advance(Duration::from_secs(2)).await;
    let fresh = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert!(fresh.headers().get("idempotent-replayed").is_none());
    assert_eq!(body_of(fresh).await, "run 2");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A handler that never answers, counting its runs.
fn hanging(
    runs: Arc<AtomicUsize>,
) -> impl tower::Service<
    Req,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_req: Req| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    })
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_releases_its_claim_with_abandon() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .on_disconnect(OnDisconnect::Abandon)
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));

    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // While it runs, a repeat is turned away.
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    drop(first);
    // Released at once: the next attempt runs the handler.
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(second.poll());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A claim whose request is no longer polled (no renewal runs: a stalled
/// task, a leaked future) frees its key at the lock timeout. (A hung
/// handler that is still polled renews its claim; see the module docs.)
#[tokio::test(start_paused = true)]
async fn an_unpolled_claim_frees_its_key_after_the_lock_timeout() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .lock_timeout(Duration::from_secs(30))
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));

    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    tokio::time::advance(Duration::from_secs(29)).await;
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(second.poll());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_gives_up_with_409_after_its_bound() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Counting::new(MemoryStore::new());
    let svc = IdempotencyLayer::builder(store.clone())
        .wait_for_result(Duration::from_secs(1))
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));

    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    let start = Instant::now();
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // It polled the store with a backoff, not once and not in a busy loop.
    let polls = store.claims() - 1;
    assert!((5..=20).contains(&polls), "{polls} claims");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_response_over_the_cap_is_returned_whole_but_not_stored() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .max_response_body(4)
        .build()
        .expect("valid config")
        .layer(counting(runs.clone()));
    let first = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(body_of(first).await, "run 1");
    let second = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert!(second.headers().get("idempotent-replayed").is_none());
    assert_eq!(body_of(second).await, "run 2");
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_over_the_cap_gets_413() {
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;

    type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = tower::service_fn({
        let runs = runs.clone();
        move |_req: Request<IdempotencyBody<Chunks>>| {
            runs.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        }
    });
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .max_request_body(10)
        .build()
        .expect("valid config")
        .layer(handler);
    // No Content-Length: the cap is found while reading.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"123456"))),
        Ok(Frame::data(Bytes::from_static(b"789012"))),
    ];
    let req = Request::post("/orders")
        .header("idempotency-key", KEY)
        .body(StreamBody::new(stream::iter(chunks)))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn layer_and_service_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<IdempotencyLayer<MemoryStore>>();
    check::<
        steadfast::idempotency::Idempotency<
            tower::util::BoxCloneSyncService<Req, Response<Full<Bytes>>, Infallible>,
            MemoryStore,
        >,
    >();
}

/// A store whose release needs a second poll, as a network store's would.
#[derive(Debug, Clone, Default)]
struct SlowRelease(MemoryStore);

impl Store for SlowRelease {
    fn claim(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        self.0.claim(key, token, fingerprint, lock_timeout)
    }

    fn extend(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.0.extend(key, token, fingerprint, lock_timeout)
    }

    fn complete(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.0.complete(key, token, fingerprint, response, ttl)
    }

    fn release(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let (store, key, token) = (self.0.clone(), key.clone(), token.clone());
        async move {
            tokio::task::yield_now().await;
            store.release(&key, &token).await
        }
    }

    fn get(&self, _: &StoreKey) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send {
        // The layer never reads without claiming.
        std::future::ready(Err(StoreError::new("get is not used by the layer")))
    }
}

/// Whether a request with key "a" runs the handler now (the key is free)
/// rather than getting 409.
async fn key_is_free<S, B>(svc: &S, runs: &AtomicUsize) -> bool
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let before = runs.load(Ordering::SeqCst);
    let mut next = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    match next.poll() {
        std::task::Poll::Ready(res) => {
            assert_eq!(res.unwrap().status(), StatusCode::CONFLICT);
            false
        }
        std::task::Poll::Pending => {
            assert_eq!(runs.load(Ordering::SeqCst), before + 1, "the handler runs");
            true
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_release_that_cannot_finish_in_drop_goes_to_the_spawner() {
    // Without a spawner the pending release goes to the current runtime.
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(SlowRelease::default())
        .on_disconnect(OnDisconnect::Abandon)
        .lock_timeout(Duration::from_secs(30))
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    drop(first);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(key_is_free(&svc, &runs).await, "the key was released");

    // With one, the release runs to the end on the runtime.
    let spawned = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(SlowRelease::default())
        .on_disconnect(OnDisconnect::Abandon)
        .spawn_release_with({
            let spawned = spawned.clone();
            move |release| {
                spawned.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(release);
            }
        })
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    drop(first);
    assert_eq!(spawned.load(Ordering::SeqCst), 1);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    assert!(key_is_free(&svc, &runs).await, "the key was released");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_releases_its_claim() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = tower::service_fn({
        let runs = runs.clone();
        move |_req: Req| {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("handler bug");
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }
    });
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handle = layer.handle();
    let svc = layer.layer(handler);
    let err = tokio::spawn(svc.clone().oneshot(keyed("a")))
        .await
        .unwrap_err();
    assert!(err.is_panic());
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_of(res).await, "ok");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // The panicked flow cannot be resumed: it is dropped, not detached.
    assert_eq!(handle.snapshot().detached, 0);
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_is_returned_and_releases_the_claim() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = tower::service_fn({
        let runs = runs.clone();
        move |_req: Req| {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }
    });
    let svc = IdempotencyLayer::new(MemoryStore::new()).layer(handler);
    let err = svc.clone().oneshot(keyed("a")).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(body_of(res).await, "ok");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_different_request_while_the_first_runs_gets_422() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .wait_for_result(Duration::from_secs(5))
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    let start = Instant::now();
    let res = svc.clone().oneshot(keyed("b")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(start.elapsed(), Duration::ZERO, "no waiting for a mismatch");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn methods_can_be_chosen() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .methods([Method::PUT])
        .build()
        .expect("valid config")
        .layer(counting(runs.clone()));
    let put = || {
        Request::put("/orders/1")
            .header("idempotency-key", KEY)
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap()
    };
    svc.clone().oneshot(put()).await.unwrap();
    let again = svc.clone().oneshot(put()).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    // POST is no longer handled: both run.
    svc.clone().oneshot(keyed("a")).await.unwrap();
    svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

type Frames = http_body_util::StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

/// A handler answering with `frames`, counting its runs.
fn streaming(
    runs: Arc<AtomicUsize>,
    frames: fn() -> Vec<http_body::Frame<Bytes>>,
) -> impl tower::Service<
    Req,
    Response = Response<Frames>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Frames>, Infallible>> + Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |_req: Req| {
        runs.fetch_add(1, Ordering::SeqCst);
        let frames: Vec<Result<_, Infallible>> = frames().into_iter().map(Ok).collect();
        async move {
            Ok(Response::new(http_body_util::StreamBody::new(
                futures_util::stream::iter(frames),
            )))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_streamed_response_past_the_cap_comes_through_in_order_and_is_not_stored() {
    use http_body::Frame;
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .max_response_body(4)
        .build()
        .expect("valid config")
        .layer(streaming(runs.clone(), || {
            vec![
                Frame::data(Bytes::from_static(b"abc")),
                Frame::data(Bytes::from_static(b"def")),
                Frame::data(Bytes::from_static(b"ghi")),
            ]
        }));
    for _ in 0..2 {
        let res = svc.clone().oneshot(keyed("a")).await.unwrap();
        assert!(res.headers().get("idempotent-replayed").is_none());
        assert_eq!(body_of(res).await, "abcdefghi");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_response_with_trailers_keeps_them_and_is_not_stored() {
    use http_body::Frame;
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(MemoryStore::new()).layer(streaming(runs.clone(), || {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("42"));
        vec![
            Frame::data(Bytes::from_static(b"body")),
            Frame::trailers(trailers),
        ]
    }));
    for _ in 0..2 {
        let res = svc.clone().oneshot(keyed("a")).await.unwrap();
        let collected = res.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-checksum"], "42");
        assert_eq!(collected.to_bytes(), "body");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unbounded_wait_does_not_overflow() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::builder(MemoryStore::new())
        .wait_for_result(Duration::MAX)
        .build()
        .expect("valid config")
        .layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    // The repeat waits (it does not overflow into "no wait" and a 409).
    let mut again = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(again.poll());
    tokio::time::advance(Duration::from_secs(50)).await;
    tokio_test::assert_pending!(again.poll());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_config_is_an_error_naming_the_field() {
    let build =
        |f: fn(IdempotencyLayerBuilder<MemoryStore>) -> IdempotencyLayerBuilder<MemoryStore>| {
            f(IdempotencyLayer::builder(MemoryStore::new()))
                .build()
                .map(|_| ())
                .map_err(|e| e.field().to_owned())
        };
    assert_eq!(
        build(|b| b.lock_timeout(Duration::ZERO)),
        Err("idempotency.lock_timeout".into())
    );
    assert_eq!(
        build(|b| b.ttl(Duration::ZERO)),
        Err("idempotency.ttl".into())
    );
    assert_eq!(
        build(|b| b.wait_for_result(Duration::ZERO)),
        Err("idempotency.wait_for_result".into())
    );
    assert_eq!(build(|b| b.methods([])), Err("idempotency.methods".into()));
    // The smallest valid values, and the defaults, build.
    assert_eq!(
        build(|b| b
            .lock_timeout(Duration::from_nanos(1))
            .ttl(Duration::from_nanos(1))
            .wait_for_result(Duration::from_nanos(1))
            .methods([Method::PUT])),
        Ok(())
    );
    assert_eq!(build(|b| b), Ok(()));
}

// ===== issue 10 =====

fn post_with_key(key: &str, path: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("idempotency-key", format!("\"{key}\""))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// Issue 10 part 2: an attacker floods a small store with slow requests.
/// Before, each new claim evicted a running one, whose retry ran the
/// handler again; now no running claim is lost and new ones get 503 with
/// `Retry-After`, counted as shed.
#[tokio::test(start_paused = true)]
async fn a_flood_of_slow_requests_is_shed_and_loses_no_running_claim() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = MemoryStore::builder()
        .max_entries(16)
        .shards(1)
        .build()
        .expect("valid config");
    let layer = IdempotencyLayer::new(store.clone());
    let handle = layer.handle();
    let svc = layer.layer(hanging(runs.clone()));

    let mut running = Vec::new();
    for i in 0..16 {
        let mut fut =
            tokio_test::task::spawn(svc.clone().oneshot(post_with_key(&i.to_string(), "/")));
        tokio_test::assert_pending!(fut.poll());
        running.push(fut);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 16);
    for i in 16..116 {
        let res = svc
            .clone()
            .oneshot(post_with_key(&i.to_string(), "/"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[http::header::RETRY_AFTER], "1");
    }
    assert_eq!(handle.snapshot().shed, 100);
    assert_eq!(store.stats().refused_claims, 100);
    // Every running request still holds its key: its retry gets 409.
    for i in 0..16 {
        let res = svc
            .clone()
            .oneshot(post_with_key(&i.to_string(), "/"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CONFLICT, "key {i}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 16, "no handler ran twice");
    drop(running);
}

/// Issue 10 part 2, through the layer: one shard with a 1 MiB byte share,
/// A's request running, B's 1 MiB response. Before, B's response evicted
/// A's claim and A's retry ran the handler again.
#[tokio::test(start_paused = true)]
async fn a_large_response_does_not_evict_a_running_request() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = MemoryStore::builder()
        .shards(1)
        .max_bytes(1 << 20)
        .build()
        .expect("valid config");
    let handler = tower::service_fn({
        let runs = runs.clone();
        move |req: Req| {
            runs.fetch_add(1, Ordering::SeqCst);
            let slow = req.uri().path() == "/slow";
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![7; 1 << 20]))))
            }
        }
    });
    let svc = IdempotencyLayer::new(store.clone()).layer(handler);
    let mut a = tokio_test::task::spawn(svc.clone().oneshot(post_with_key("a", "/slow")));
    tokio_test::assert_pending!(a.poll());
    let b = svc
        .clone()
        .oneshot(post_with_key("b", "/big"))
        .await
        .unwrap();
    assert_eq!(b.status(), StatusCode::OK);
    let retry = svc
        .clone()
        .oneshot(post_with_key("a", "/slow"))
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::CONFLICT);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "A ran once, B once");
    assert_eq!(store.stats().unstored_responses, 1);
}

/// Issue 10 part 4 on paused time: a 10 s handler under a 3 s lock timeout
/// keeps its key (renewed every second); before, 3 requests ran it 3 times
/// and nothing was stored.
#[tokio::test(start_paused = true)]
async fn a_handler_three_times_longer_than_its_lock_runs_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = counting_after(runs.clone(), Duration::from_secs(10));
    let layer = IdempotencyLayer::builder(MemoryStore::new())
        .lock_timeout(Duration::from_secs(3))
        .build()
        .expect("valid config");
    let handle = layer.handle();
    let svc = layer.layer(handler);
    let first = tokio::spawn(svc.clone().oneshot(keyed("a")));
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let res = svc.clone().oneshot(keyed("a")).await.unwrap();
        assert_eq!(res.status(), StatusCode::CONFLICT);
    }
    let first = first.await.unwrap().unwrap();
    assert_eq!(body_of(first).await, "run 1");
    let replay = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(body_of(replay).await, "run 1");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(
        handle.snapshot().lease_renewals >= 9,
        "{:?}",
        handle.snapshot()
    );
}

/// A request dropped after its handler began is finished in a task, at
/// most for the lock timeout: then it is cut off, counted, and its key
/// released.
#[tokio::test(start_paused = true)]
async fn a_detached_request_is_cut_off_at_the_lock_timeout() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = IdempotencyLayer::builder(MemoryStore::new())
        .lock_timeout(Duration::from_secs(3))
        .build()
        .expect("valid config");
    let handle = layer.handle();
    let svc = layer.layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    drop(first);
    assert_eq!(handle.snapshot().detached, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!key_is_free(&svc, &runs).await, "still running, detached");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.snapshot().detached_timed_out, 1);
    assert!(key_is_free(&svc, &runs).await, "released once cut off");
}

/// A request dropped before its handler began (while its body is read)
/// is not detached: nothing ran, the key is free at once.
#[tokio::test(start_paused = true)]
async fn a_request_dropped_before_its_handler_is_not_detached() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Counting::new(MemoryStore::new());
    let layer = IdempotencyLayer::new(store.clone());
    let handle = layer.handle();
    let svc = layer.layer(hanging(runs.clone()));
    store.stall_claims(true);
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    assert_eq!(store.claims(), 1);
    drop(first);
    store.stall_claims(false);
    assert_eq!(handle.snapshot().detached, 0);
    assert!(key_is_free(&svc, &runs).await);
}

/// What `# Guarantees` says is not covered: a store that cannot renew a
/// lease for longer than the lock timeout lets a retry claim the key and
/// run the handler again. The first handler then finds its lease taken
/// (counted), and its late response does not overwrite the retry's.
#[tokio::test(start_paused = true)]
async fn renewals_failing_past_the_lock_timeout_lose_the_lease() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = counting_after(runs.clone(), Duration::from_secs(10));
    let store = Counting::new(MemoryStore::new());
    let layer = IdempotencyLayer::builder(store.clone())
        .lock_timeout(Duration::from_secs(3))
        .build()
        .expect("valid config");
    let handle = layer.handle();
    let svc = layer.layer(handler);

    store.fail_extends(true);
    let first = tokio::spawn(svc.clone().oneshot(keyed("a")));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let second = tokio::spawn(svc.clone().oneshot(keyed("a")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the lease lapsed: a second run"
    );
    store.fail_extends(false);

    let first = first.await.unwrap().unwrap();
    assert_eq!(body_of(first).await, "run 1");
    assert_eq!(handle.snapshot().leases_lost, 1);
    let second = second.await.unwrap().unwrap();
    assert_eq!(body_of(second).await, "run 2");
    let replay = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(body_of(replay).await, "run 2");
}

/// Outside a Tokio runtime (another executor) a keyed request still runs
/// and is stored; only the lease renewals, which need Tokio's timer, are
/// left out.
#[test]
fn a_keyed_request_runs_outside_a_runtime() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = IdempotencyLayer::new(MemoryStore::new());
    let handle = layer.handle();
    let mut svc = layer.layer(counting(runs.clone()));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..2 {
        let mut fut = std::pin::pin!(tower::Service::call(&mut svc, keyed("a")));
        let std::task::Poll::Ready(res) = fut.as_mut().poll(&mut cx) else {
            panic!("a ready handler over a memory store answers at once");
        };
        assert!(res.unwrap().status().is_success());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the repeat was a replay");
    assert_eq!(handle.snapshot().lease_renewals, 0);
}

/// Issue 10 part 4: a handler whose claim lapsed (every renewal failed)
/// while nobody else took the key still stores its response; before, its
/// completion was refused and the retry ran the handler again.
#[tokio::test(start_paused = true)]
async fn a_lapsed_claim_nobody_took_still_stores_the_response() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Counting::new(MemoryStore::new());
    let svc = IdempotencyLayer::builder(store.clone())
        .lock_timeout(Duration::from_secs(3))
        .build()
        .expect("valid config")
        .layer(counting_after(runs.clone(), Duration::from_secs(10)));
    store.fail_extends(true);
    let first = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(body_of(first).await, "run 1");
    let replay = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(body_of(replay).await, "run 1");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
