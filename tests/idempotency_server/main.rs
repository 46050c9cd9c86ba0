//! The server idempotency layer.
//!
//! - [`suite`]: against a real axum app on loopback, once per store: the
//!   crate's `MemoryStore` and (feature `redis`) `RedisStore` on the Redis
//!   named by `REDIS_URL`. Real sockets, so real time: every exchange is
//!   bounded by [`LIMIT`] and no test asserts a duration. The exception is
//!   TTL expiry on the memory store, which runs on paused time.
//! - [`redis_layer`] (feature `redis`): a private `redis-server` killed and
//!   restarted under the layer, and Redis round trips per request.
//! - [`local`]: on a bare `tower::service_fn` with paused time: expiry,
//!   cancellation, lock timeouts, body caps.
//!
//! Redis tests print a note and pass when `REDIS_URL` is not set, except
//! under CI (`CI` set), where they fail.
#![cfg(feature = "http")]

#[cfg(feature = "redis")]
#[path = "../support/redis_server.rs"]
mod redis_server;
#[path = "../support/mod.rs"]
mod support;

mod local;
#[cfg(feature = "redis")]
mod redis_layer;
mod suite;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap as AxumHeaders;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreError, StoreKey, StoredResponse,
};
use steadfast::idempotency::{ExtractPrincipal, IdempotencyHandle, IdempotencyLayer, OnDisconnect};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long one exchange (or one wait of a test) may take before it fails.
const LIMIT: Duration = Duration::from_secs(10);

const KEY: &str = "\"5b9f7e1c-2b1a-4d5e-9c43-8f1a2b3c4d5e\"";

// ===== stores =====

/// Where a suite test gets its stores: each call gives a store with a
/// namespace of its own (a fresh memory store, or a fresh Redis key prefix).
trait Backend: Clone + Send + Sync + 'static {
    type Store: Store + std::fmt::Debug;

    fn store(&self) -> Self::Store;
}

/// The crate's memory store.
#[derive(Debug, Clone, Copy)]
struct Memory;

impl Backend for Memory {
    type Store = MemoryStore;

    fn store(&self) -> MemoryStore {
        MemoryStore::new()
    }
}

/// Wraps a store, counting claims answered (to know when requests reached
/// it), and injects the faults of issue 10 on demand.
#[derive(Debug, Clone, Default)]
struct Counting<St> {
    inner: St,
    claims: Arc<AtomicUsize>,
    extends: Arc<AtomicUsize>,
    /// Claims apply in the store, then never answer (the caller's round
    /// trip is cut off after the store applied the claim).
    stall_claims: Arc<AtomicBool>,
    /// How many of the next completes fail (without reaching the store).
    failing_completes: Arc<AtomicUsize>,
    /// Renewals fail (without reaching the store) while set.
    failing_extends: Arc<AtomicBool>,
}

impl<St> Counting<St> {
    fn new(inner: St) -> Self {
        Self {
            inner,
            claims: Arc::default(),
            extends: Arc::default(),
            stall_claims: Arc::default(),
            failing_completes: Arc::default(),
            failing_extends: Arc::default(),
        }
    }

    fn claims(&self) -> usize {
        self.claims.load(Ordering::SeqCst)
    }

    fn extends(&self) -> usize {
        self.extends.load(Ordering::SeqCst)
    }

    fn stall_claims(&self, stall: bool) {
        self.stall_claims.store(stall, Ordering::SeqCst);
    }

    fn fail_completes(&self, n: usize) {
        self.failing_completes.store(n, Ordering::SeqCst);
    }

    fn fail_extends(&self, fail: bool) {
        self.failing_extends.store(fail, Ordering::SeqCst);
    }
}

impl<St: Store> Store for Counting<St> {
    fn claim(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        let claim = self.inner.claim(key, token, fingerprint, lock_timeout);
        let claims = self.claims.clone();
        let stall = self.stall_claims.load(Ordering::SeqCst);
        async move {
            let answer = claim.await;
            claims.fetch_add(1, Ordering::SeqCst);
            if stall {
                std::future::pending::<()>().await;
            }
            answer
        }
    }

    fn extend(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.extends.fetch_add(1, Ordering::SeqCst);
        let fail = self.failing_extends.load(Ordering::SeqCst);
        let (inner, key, token) = (self.inner.clone(), key.clone(), token.clone());
        async move {
            if fail {
                return Err(StoreError::new("injected renewal failure"));
            }
            inner.extend(&key, &token, fingerprint, lock_timeout).await
        }
    }

    fn complete(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let fail = self
            .failing_completes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        // A memory store writes when called: call it only when not failing.
        let (inner, key, token) = (self.inner.clone(), key.clone(), token.clone());
        async move {
            if fail {
                return Err(StoreError::new("injected write failure"));
            }
            inner
                .complete(&key, &token, fingerprint, response, ttl)
                .await
        }
    }

    fn release(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.inner.release(key, token)
    }

    fn get(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send {
        self.inner.get(key)
    }
}

/// A store that is always down: the one failure no real store shows on
/// demand (the Redis one is in [`redis_layer`]).
#[derive(Debug, Clone, Default)]
struct DownStore;

impl Store for DownStore {
    fn claim(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
        _: Fingerprint,
        _: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        std::future::ready(Err(StoreError::new("connection refused")))
    }

    fn extend(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
        _: Fingerprint,
        _: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        std::future::ready(Err(StoreError::new("connection refused")))
    }

    fn complete(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
        _: Fingerprint,
        _: StoredResponse,
        _: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        std::future::ready(Err(StoreError::new("connection refused")))
    }

    fn release(
        &self,
        _: &StoreKey,
        _: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        std::future::ready(Err(StoreError::new("connection refused")))
    }

    fn get(&self, _: &StoreKey) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send {
        // The layer never reads without claiming.
        std::future::ready(Err(StoreError::new("get is not used by the layer")))
    }
}

#[cfg(feature = "redis")]
mod redis_env {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use steadfast::idempotency::store::RedisStore;

    use super::{Backend, LIMIT};

    /// `REDIS_URL`, or `None` (after a note) when the test should be
    /// skipped; under CI a missing `REDIS_URL` fails the test.
    pub(super) fn redis_url() -> Option<String> {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "REDIS_URL is not set under CI: .ci/run must start redis-server"
                );
                eprintln!("note: REDIS_URL is not set, skipping this Redis test");
                None
            }
        }
    }

    /// A prefix no other test or run shares.
    pub(super) fn unique_prefix(test: &str) -> String {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        format!("steadfast-test:server:{:016x}:{test}:", h.finish())
    }

    /// `RedisStore`s on `REDIS_URL`, each under a prefix of its own.
    #[derive(Debug, Clone)]
    pub(super) struct Redis {
        url: String,
        prefix: String,
        made: Arc<AtomicUsize>,
    }

    impl Redis {
        /// `None` when the test is skipped; panics when `REDIS_URL` is set
        /// but Redis does not answer.
        pub(super) async fn from_env(test: &str) -> Option<Self> {
            let url = redis_url()?;
            tokio::time::timeout(LIMIT, RedisStore::connect(url.as_str()))
                .await
                .expect("connecting to REDIS_URL took too long")
                .expect("REDIS_URL is set but Redis does not answer");
            Some(Self {
                url,
                prefix: unique_prefix(test),
                made: Arc::default(),
            })
        }
    }

    impl Backend for Redis {
        type Store = RedisStore;

        fn store(&self) -> RedisStore {
            let n = self.made.fetch_add(1, Ordering::SeqCst);
            RedisStore::new(self.url.as_str())
                .expect("a valid REDIS_URL")
                .key_prefix(format!("{}{n}:", self.prefix))
        }
    }
}

// ===== the app =====

/// What the handlers share: how often each ran, and a gate `/orders` waits
/// on when closed.
#[derive(Debug, Default)]
struct App {
    orders: AtomicUsize,
    flaky: AtomicUsize,
    lists: AtomicUsize,
    /// `/orders` runs dropped before they answered.
    cancelled: AtomicUsize,
    gated: AtomicBool,
    gate: Notify,
}

impl App {
    fn gated() -> Arc<Self> {
        let app = Self::default();
        app.gated.store(true, Ordering::SeqCst);
        Arc::new(app)
    }

    fn open(&self) {
        self.gated.store(false, Ordering::SeqCst);
        self.gate.notify_waiters();
    }

    fn orders(&self) -> usize {
        self.orders.load(Ordering::SeqCst)
    }
}

async fn create_order(
    State(app): State<Arc<App>>,
    headers: AxumHeaders,
    body: Bytes,
) -> Response<Body> {
    /// Counts the run as cancelled if dropped before it answers.
    struct Running<'a>(&'a App, bool);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            if !self.1 {
                self.0.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    let n = app.orders.fetch_add(1, Ordering::SeqCst) + 1;
    let mut running = Running(&app, false);
    while app.gated.load(Ordering::SeqCst) {
        let notified = app.gate.notified();
        if !app.gated.load(Ordering::SeqCst) {
            break;
        }
        notified.await;
    }
    running.1 = true;
    let who = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("nobody");
    Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/json")
        .header("x-order", n.to_string())
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .body(Body::from(format!(
            "{{\"order\":{n},\"for\":\"{who}\",\"echo\":{}}}",
            body.len()
        )))
        .unwrap()
}

/// 500 on its first run, 201 after.
async fn flaky(State(app): State<Arc<App>>) -> (StatusCode, String) {
    match app.flaky.fetch_add(1, Ordering::SeqCst) {
        0 => (StatusCode::INTERNAL_SERVER_ERROR, "try again".into()),
        n => (StatusCode::CREATED, format!("run {}", n + 1)),
    }
}

async fn list(State(app): State<Arc<App>>) -> String {
    format!("list {}", app.lists.fetch_add(1, Ordering::SeqCst) + 1)
}

/// The app's routes, `/orders` and `/flaky`, without the layer.
fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/orders", post(create_order).get(list))
        .route("/flaky", post(flaky))
}

/// Serves the app behind `layer` on 127.0.0.1.
async fn serve<St, P>(app: Arc<App>, layer: IdempotencyLayer<St, P>) -> SocketAddr
where
    St: Store,
    P: ExtractPrincipal,
{
    serve_router(routes().layer(layer).with_state(app)).await
}

/// Serves `router` on a free port of 127.0.0.1.
async fn serve_router(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Debug, Clone)]
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Got {
    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{self:?}"
        );
        assert!(
            self.text().contains(&format!("\"status\":{status}")),
            "{self:?}"
        );
    }
}

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from_static(body))).unwrap();
    let exchange = async {
        let res = client.request(req).await.expect("the exchange");
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("the body").to_bytes();
        Got {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("the exchange took too long")
}

async fn post_order(client: &HttpClient, addr: SocketAddr, key: &str, body: &'static [u8]) -> Got {
    send(
        client,
        addr,
        Method::POST,
        "/orders",
        &[("idempotency-key", key)],
        body,
    )
    .await
}

/// Headers without the ones the connection adds (`date`) and the replay mark.
/// Waits (at most [`LIMIT`]) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Posts `KEY` in a task of its own.
fn send_in_background(client: &HttpClient, addr: SocketAddr) -> tokio::task::JoinHandle<Got> {
    let client = client.clone();
    tokio::spawn(async move { post_order(&client, addr, KEY, b"{}").await })
}

/// Serves the gated app over `store` with `lock_timeout`, and sends a
/// first request, returned once it waits in the handler.
async fn serve_one_running<St: Store>(
    store: St,
    lock_timeout: Duration,
) -> (
    Arc<App>,
    IdempotencyHandle,
    SocketAddr,
    HttpClient,
    tokio::task::JoinHandle<Got>,
) {
    let app = App::gated();
    let layer = IdempotencyLayer::builder(store)
        .lock_timeout(lock_timeout)
        .build()
        .expect("valid config");
    let handle = layer.handle();
    let addr = serve(app.clone(), layer).await;
    let client = client();
    let first = send_in_background(&client, addr);
    until("the handler runs", || app.orders() >= 1).await;
    (app, handle, addr, client, first)
}

fn app_headers(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(n, _)| *n != "date" && *n != "idempotent-replayed")
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}
