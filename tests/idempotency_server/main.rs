//! The server idempotency layer: against a real axum app on loopback (real
//! sockets, so real time: every exchange is bounded by [`LIMIT`] and no
//! test asserts a duration), and on a bare `tower::service_fn` with paused
//! time for expiry, cancellation and lock timeouts.
//!
//! The store here is a small `Mutex<HashMap>` test double with the `Store`
//! contract (expiry on tokio time); the crate's memory store can replace it.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
    Claim, ClaimToken, Fingerprint, Store, StoreError, StoreKey, StoredResponse,
};
use steadfast::idempotency::{IdempotencyBody, IdempotencyLayer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

/// How long one test's exchanges may take before it fails.
const LIMIT: Duration = Duration::from_secs(10);

const KEY: &str = "\"5b9f7e1c-2b1a-4d5e-9c43-8f1a2b3c4d5e\"";

// ===== a test store =====

#[derive(Debug)]
struct Entry {
    fingerprint: Fingerprint,
    token: ClaimToken,
    response: Option<StoredResponse>,
    expires: Instant,
}

/// `Mutex<HashMap>` store with expiry on tokio time; counts claims.
#[derive(Debug, Clone, Default)]
struct TestStore {
    map: Arc<Mutex<HashMap<StoreKey, Entry>>>,
    claims: Arc<AtomicUsize>,
}

impl TestStore {
    fn claims(&self) -> usize {
        self.claims.load(Ordering::SeqCst)
    }
}

impl Store for TestStore {
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        self.claims.fetch_add(1, Ordering::SeqCst);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let claim = match map.get(key) {
            Some(e) if e.expires > now => match &e.response {
                Some(r) => Claim::Completed {
                    fingerprint: e.fingerprint,
                    response: r.clone(),
                },
                None => Claim::InProgress {
                    fingerprint: e.fingerprint,
                },
            },
            _ => {
                let token = ClaimToken::random();
                map.insert(
                    key.clone(),
                    Entry {
                        fingerprint,
                        token: token.clone(),
                        response: None,
                        expires: now + lock_timeout,
                    },
                );
                Claim::Claimed(token)
            }
        };
        std::future::ready(Ok(claim))
    }

    fn complete(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let held = matches!(map.get(key), Some(e) if e.token == *token && e.response.is_none() && e.expires > now);
        if held {
            map.insert(
                key.clone(),
                Entry {
                    fingerprint,
                    token: token.clone(),
                    response: Some(response),
                    expires: now + ttl,
                },
            );
        }
        std::future::ready(Ok(held))
    }

    fn release(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let held = matches!(map.get(key), Some(e) if e.token == *token && e.response.is_none());
        if held {
            map.remove(key);
        }
        std::future::ready(Ok(held))
    }

    fn get(&self, _: &StoreKey) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send {
        // The layer never reads without claiming.
        std::future::ready(Err(StoreError::new("get is not used by the layer")))
    }
}

/// A store that is always down.
#[derive(Debug, Clone, Default)]
struct DownStore;

impl Store for DownStore {
    fn claim(
        &self,
        _: &StoreKey,
        _: Fingerprint,
        _: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
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

// ===== the app =====

/// What the handlers share: how often each ran, and a gate `/orders` waits
/// on when closed.
#[derive(Debug, Default)]
struct App {
    orders: AtomicUsize,
    flaky: AtomicUsize,
    lists: AtomicUsize,
    gated: std::sync::atomic::AtomicBool,
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
}

async fn create_order(
    State(app): State<Arc<App>>,
    headers: AxumHeaders,
    body: Bytes,
) -> Response<Body> {
    let n = app.orders.fetch_add(1, Ordering::SeqCst) + 1;
    while app.gated.load(Ordering::SeqCst) {
        let notified = app.gate.notified();
        if !app.gated.load(Ordering::SeqCst) {
            break;
        }
        notified.await;
    }
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

async fn serve<St: Store>(app: Arc<App>, layer: IdempotencyLayer<St>) -> SocketAddr {
    serve_router(app, |r| r.layer(layer)).await
}

async fn serve_router(
    app: Arc<App>,
    wrap: impl FnOnce(Router<Arc<App>>) -> Router<Arc<App>>,
) -> SocketAddr {
    let router = Router::new()
        .route("/orders", post(create_order).get(list))
        .route("/flaky", post(flaky));
    let router = wrap(router).with_state(app);
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
fn app_headers(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(n, _)| *n != "date" && *n != "idempotent-replayed")
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

// ===== over the network =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_posts_run_the_handler_once_the_rest_get_409() {
    support::trace_init();
    let app = App::gated();
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move { post_order(&client, addr, KEY, b"{\"sku\":1}").await });
    }
    let mut conflicts = 0;
    let mut created = Vec::new();
    let all = async {
        while let Some(got) = tasks.join_next().await {
            let got = got.unwrap();
            match got.status {
                StatusCode::CONFLICT => {
                    got.assert_problem(409);
                    assert_eq!(got.headers["retry-after"], "1");
                    conflicts += 1;
                    if conflicts == 99 {
                        // Everyone else has been turned away: let the one
                        // running handler finish.
                        app.open();
                    }
                }
                _ => created.push(got),
            }
        }
    };
    tokio::time::timeout(LIMIT, all)
        .await
        .expect("all 100 answered");
    assert_eq!(conflicts, 99);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].status, StatusCode::CREATED);
    assert!(!created[0].replayed());
    assert_eq!(app.orders.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_posts_in_wait_mode_all_get_the_one_response() {
    let app = App::gated();
    let store = TestStore::default();
    let layer = IdempotencyLayer::new(store.clone()).wait_for_result(LIMIT);
    let addr = serve(app.clone(), layer).await;
    let client = client();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move { post_order(&client, addr, KEY, b"{\"sku\":1}").await });
    }
    // Open the gate once every request has reached the store (one claimed,
    // 99 waiting on it).
    let reached = async {
        while store.claims() < 100 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(LIMIT, reached)
        .await
        .expect("all requests reached the store");
    assert_eq!(app.orders.load(Ordering::SeqCst), 1);
    app.open();

    let mut answers = Vec::new();
    let all = async {
        while let Some(got) = tasks.join_next().await {
            answers.push(got.unwrap());
        }
    };
    tokio::time::timeout(LIMIT, all)
        .await
        .expect("all 100 answered");
    assert_eq!(answers.len(), 100);
    assert_eq!(app.orders.load(Ordering::SeqCst), 1);
    let original: Vec<_> = answers.iter().filter(|g| !g.replayed()).collect();
    assert_eq!(original.len(), 1, "one answer is the original");
    for got in &answers {
        assert_eq!(got.status, StatusCode::CREATED, "{got:?}");
        assert_eq!(got.body, original[0].body);
        assert_eq!(app_headers(&got.headers), app_headers(&original[0].headers));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_gets_the_stored_response_byte_for_byte_marked() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();

    let first = post_order(&client, addr, KEY, b"{\"sku\":7}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    let again = post_order(&client, addr, KEY, b"{\"sku\":7}").await;
    let third = post_order(&client, addr, KEY, b"{\"sku\":7}").await;

    assert_eq!(app.orders.load(Ordering::SeqCst), 1);
    for got in [&again, &third] {
        assert!(got.replayed(), "{got:?}");
        assert_eq!(got.status, first.status);
        assert_eq!(got.body, first.body);
        // Every header the app wrote, in order, both cookies included.
        assert_eq!(app_headers(&got.headers), app_headers(&first.headers));
    }
    assert_eq!(first.headers.get_all("set-cookie").iter().count(), 2);
    assert_eq!(first.text(), "{\"order\":1,\"for\":\"nobody\",\"echo\":9}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_a_different_request_gets_422() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();

    assert_eq!(
        post_order(&client, addr, KEY, b"{\"sku\":1}").await.status,
        StatusCode::CREATED
    );
    post_order(&client, addr, KEY, b"{\"sku\":2}")
        .await
        .assert_problem(422);
    // A different path with the same key and body is a different request too.
    send(
        &client,
        addr,
        Method::POST,
        "/orders?express=1",
        &[("idempotency-key", KEY)],
        b"{\"sku\":1}",
    )
    .await
    .assert_problem(422);
    assert_eq!(app.orders.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_400_when_required_and_passes_through_when_not() {
    let app = Arc::new(App::default());
    let required = serve(
        app.clone(),
        IdempotencyLayer::new(TestStore::default()).require_key(),
    )
    .await;
    let client = client();
    send(&client, required, Method::POST, "/orders", &[], b"{}")
        .await
        .assert_problem(400);
    assert_eq!(app.orders.load(Ordering::SeqCst), 0);

    let optional = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    for _ in 0..2 {
        let got = send(&client, optional, Method::POST, "/orders", &[], b"{}").await;
        assert_eq!(got.status, StatusCode::CREATED);
        assert!(!got.replayed());
    }
    assert_eq!(
        app.orders.load(Ordering::SeqCst),
        2,
        "unkeyed requests all run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_keys_get_400_and_never_run() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();
    let too_long = format!("\"{}\"", "k".repeat(256));
    let bad: Vec<Vec<(&str, &str)>> = vec![
        vec![("idempotency-key", "\"\"")],
        vec![("idempotency-key", "\"unterminated")],
        vec![("idempotency-key", "two words")],
        vec![("idempotency-key", "\"bad \\escape\"")],
        vec![("idempotency-key", "\"tab\there\"")],
        vec![("idempotency-key", &too_long)],
        vec![("idempotency-key", "\"a\""), ("idempotency-key", "\"b\"")],
    ];
    for headers in &bad {
        let got = send(&client, addr, Method::POST, "/orders", headers, b"{}").await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{headers:?}");
        got.assert_problem(400);
    }
    // Non-ASCII bytes (obs-text) are not a key either.
    let req = Request::post(format!("http://{addr}/orders"))
        .header(
            "idempotency-key",
            http::HeaderValue::from_bytes(b"\"caf\xc3\xa9\"").unwrap(),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(LIMIT, client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.orders.load(Ordering::SeqCst), 0);

    // The longest valid key works.
    let longest = format!("\"{}\"", "k".repeat(255));
    let got = post_order(&client, addr, &longest, b"{}").await;
    assert_eq!(got.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_and_never_runs() {
    let app = Arc::new(App::default());
    let layer = IdempotencyLayer::new(TestStore::default()).max_request_body(16);
    let addr = serve(app.clone(), layer).await;
    let client = client();
    post_order(&client, addr, KEY, b"seventeen bytes!!")
        .await
        .assert_problem(413);
    assert_eq!(app.orders.load(Ordering::SeqCst), 0);
    // At the cap is fine.
    let got = post_order(&client, addr, KEY, b"sixteen bytes!!!").await;
    assert_eq!(got.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_releases_the_key_so_a_retry_runs_the_handler() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();
    let post = || {
        send(
            &client,
            addr,
            Method::POST,
            "/flaky",
            &[("idempotency-key", KEY)],
            b"x",
        )
    };
    let first = post().await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(first.text(), "try again");
    assert!(!first.replayed());
    let second = post().await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.text(), "run 2");
    assert!(!second.replayed());
    let third = post().await;
    assert!(third.replayed());
    assert_eq!(third.text(), "run 2");
    assert_eq!(app.flaky.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_isolate_two_clients_using_the_same_key() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();
    let as_ = |who: &'static str| {
        let client = client.clone();
        async move {
            send(
                &client,
                addr,
                Method::POST,
                "/orders",
                &[("idempotency-key", KEY), ("authorization", who)],
                b"{}",
            )
            .await
        }
    };
    let alice = as_("Bearer alice").await;
    let bob = as_("Bearer bob").await;
    assert_eq!(
        app.orders.load(Ordering::SeqCst),
        2,
        "each client's request ran"
    );
    assert!(!bob.replayed());
    assert!(bob.text().contains("Bearer bob"), "{bob:?}");
    let alice_again = as_("Bearer alice").await;
    let bob_again = as_("Bearer bob").await;
    assert!(alice_again.replayed() && bob_again.replayed());
    assert_eq!(alice_again.body, alice.body);
    assert_eq!(bob_again.body, bob.body);
    assert_eq!(app.orders.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_principal_scopes_keys() {
    let app = Arc::new(App::default());
    let layer =
        IdempotencyLayer::new(TestStore::default()).principal(|parts: &http::request::Parts| {
            parts
                .headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let addr = serve_router(app.clone(), |r| r.layer(layer)).await;
    let client = client();
    for tenant in ["a", "b", "a"] {
        send(
            &client,
            addr,
            Method::POST,
            "/orders",
            &[("idempotency-key", KEY), ("x-tenant", tenant)],
            b"{}",
        )
        .await;
    }
    assert_eq!(app.orders.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_passes_through_untouched_even_with_a_key() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(TestStore::default())).await;
    let client = client();
    for n in 1..=2 {
        let got = send(
            &client,
            addr,
            Method::GET,
            "/orders",
            &[("idempotency-key", KEY)],
            b"",
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.text(), format!("list {n}"));
        assert!(!got.replayed());
    }
    // Even a malformed key is not looked at on GET.
    let got = send(
        &client,
        addr,
        Method::GET,
        "/orders",
        &[("idempotency-key", "\"\"")],
        b"",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_answers_503_and_never_runs_the_handler() {
    let app = Arc::new(App::default());
    let addr = serve(app.clone(), IdempotencyLayer::new(DownStore)).await;
    let client = client();
    let got = post_order(&client, addr, KEY, b"{}").await;
    got.assert_problem(503);
    assert_eq!(got.headers["retry-after"], "1");
    assert_eq!(app.orders.load(Ordering::SeqCst), 0);
}

// ===== on virtual time, without the network =====

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
    tower::service_fn(move |_req: Req| {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Response::new(Full::new(Bytes::from(format!("run {n}"))))) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_stored_response_expires_after_the_ttl() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(TestStore::default())
        .ttl(Duration::from_secs(60))
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
async fn a_dropped_request_releases_its_claim() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(TestStore::default()).layer(hanging(runs.clone()));

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

#[tokio::test(start_paused = true)]
async fn a_hung_handler_frees_its_key_after_the_lock_timeout() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(TestStore::default())
        .lock_timeout(Duration::from_secs(30))
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
    let store = TestStore::default();
    let svc = IdempotencyLayer::new(store.clone())
        .wait_for_result(Duration::from_secs(1))
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
    let svc = IdempotencyLayer::new(TestStore::default())
        .max_response_body(4)
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
    let svc = IdempotencyLayer::new(TestStore::default())
        .max_request_body(10)
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
    check::<IdempotencyLayer<TestStore>>();
    check::<
        steadfast::idempotency::Idempotency<
            tower::util::BoxCloneSyncService<Req, Response<Full<Bytes>>, Infallible>,
            TestStore,
        >,
    >();
}

/// A store whose release needs a second poll, as a network store's would.
#[derive(Debug, Clone, Default)]
struct SlowRelease(TestStore);

impl Store for SlowRelease {
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        self.0.claim(key, fingerprint, lock_timeout)
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

#[tokio::test(start_paused = true)]
async fn a_release_that_cannot_finish_in_drop_goes_to_the_spawner() {
    // Without a spawner the pending release is abandoned: the key stays
    // claimed until the lock timeout.
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(SlowRelease::default())
        .lock_timeout(Duration::from_secs(30))
        .layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    drop(first);
    tokio::task::yield_now().await;
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // With one, the release runs to the end on the runtime.
    let spawned = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(SlowRelease::default())
        .spawn_release_with({
            let spawned = spawned.clone();
            move |release| {
                spawned.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(release);
            }
        })
        .layer(hanging(runs.clone()));
    let mut first = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(first.poll());
    drop(first);
    assert_eq!(spawned.load(Ordering::SeqCst), 1);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let before = runs.load(Ordering::SeqCst);
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(keyed("a")));
    tokio_test::assert_pending!(second.poll());
    assert_eq!(runs.load(Ordering::SeqCst), before + 1, "the key was free");
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
    let svc = IdempotencyLayer::new(TestStore::default()).layer(handler);
    let err = tokio::spawn(svc.clone().oneshot(keyed("a")))
        .await
        .unwrap_err();
    assert!(err.is_panic());
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_of(res).await, "ok");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
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
    let svc = IdempotencyLayer::new(TestStore::default()).layer(handler);
    let err = svc.clone().oneshot(keyed("a")).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    let res = svc.clone().oneshot(keyed("a")).await.unwrap();
    assert_eq!(body_of(res).await, "ok");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_different_request_while_the_first_runs_gets_422() {
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = IdempotencyLayer::new(TestStore::default())
        .wait_for_result(Duration::from_secs(5))
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
    let svc = IdempotencyLayer::new(TestStore::default())
        .methods([Method::PUT])
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
    let svc = IdempotencyLayer::new(TestStore::default())
        .max_response_body(4)
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
    let svc = IdempotencyLayer::new(TestStore::default()).layer(streaming(runs.clone(), || {
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
    let svc = IdempotencyLayer::new(TestStore::default())
        .wait_for_result(Duration::MAX)
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
