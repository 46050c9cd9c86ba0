//! A Product service on loopback (axum): `GET /products/{id}` and
//! `POST /orders`, failing on command and counting what it sees.
//!
//! Each request takes the next [`Fault`] queued for its route, if any, and
//! otherwise succeeds. `POST /orders` sits behind the server's own
//! `IdempotencyLayer` (memory store), so a keyed order runs at most once;
//! [`Fault::LoseAnswer`] is injected *outside* it, after the order ran and
//! its answer was stored.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use steadfast::idempotency::store::MemoryStore;
use steadfast::idempotency::IdempotencyLayer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the next request to a route gets instead of a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 503 with `Retry-After: 0`.
    Unavailable,
    /// 500.
    Internal,
    /// No answer, ever: the request hangs until the caller gives up.
    Hang,
    /// The connection is dropped before any answer.
    Drop,
    /// (`POST /orders`) the order runs and its answer is stored, then the
    /// connection is dropped: the client does not know it went through.
    LoseAnswer,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// The `Idempotency-Key` header, as text.
    pub(crate) key: Option<String>,
}

#[derive(Default)]
struct Inner {
    products: Mutex<VecDeque<Fault>>,
    orders: Mutex<VecDeque<Fault>>,
    seen: Mutex<Vec<Seen>>,
    /// Orders created: handler runs that did their work.
    created: AtomicU64,
}

/// The server; it stops when dropped.
pub(crate) struct ProductService {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl ProductService {
    /// Listens on `127.0.0.1:0`.
    pub(crate) async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let orders = Router::new().route("/orders", post(create_order)).layer(
            IdempotencyLayer::builder(MemoryStore::new())
                .build()
                .expect("a valid idempotency layer"),
        );
        let app = Router::new()
            .route("/products/{id}", get(product))
            .merge(orders)
            // Outermost: sees every request first, and every answer last.
            .layer(middleware::from_fn_with_state(inner.clone(), faults))
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the product service runs");
        });
        Self { addr, inner, task }
    }

    /// An absolute URL on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues faults for the next requests to `GET /products/{id}`.
    pub(crate) fn fail_products(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.products).extend(faults);
    }

    /// Queues faults for the next requests to `POST /orders`.
    pub(crate) fn fail_orders(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.orders).extend(faults);
    }

    /// Every request that arrived, in order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        lock(&self.inner.seen).clone()
    }

    /// How many orders the handler created.
    pub(crate) fn created(&self) -> u64 {
        self.inner.created.load(Ordering::SeqCst)
    }
}

impl Drop for ProductService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ends the connection without an answer: unwinding out of the connection's
/// task drops its socket. (`resume_unwind` skips the panic hook, so nothing
/// is printed.)
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("connection dropped on command"))
}

/// Records the request, then applies the next fault queued for its route.
async fn faults(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    lock(&inner.seen).push(Seen {
        method: req.method().clone(),
        key: key_of(req.headers()),
        path: path.clone(),
    });
    let queue = if path.starts_with("/products/") {
        &inner.products
    } else {
        &inner.orders
    };
    let fault = lock(queue).pop_front();
    match fault {
        None => next.run(req).await,
        Some(Fault::Unavailable) => {
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response()
        }
        Some(Fault::Internal) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Drop) => drop_connection(),
        Some(Fault::LoseAnswer) => {
            let answer = next.run(req).await;
            drop(answer);
            drop_connection()
        }
    }
}

fn key_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .map(|v| v.to_str().expect("an ASCII key").to_owned())
}

async fn product(Path(id): Path<u32>) -> String {
    format!("{{\"id\":{id}}}")
}

async fn create_order(State(inner): State<Arc<Inner>>, body: String) -> (StatusCode, String) {
    let id = inner.created.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::CREATED,
        format!("{{\"order_id\":{id},\"item\":{body}}}"),
    )
}
