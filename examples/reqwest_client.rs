//! The Order service calling the Product service over REST: a plain
//! `reqwest::Client` wrapped in the preset stack, against a local axum
//! Product service that fails on command. Prints each call, the attempts
//! the server saw, and the breaker's transitions.
//!
//! - `GET /products/7`: a 503 (`Retry-After: 0`), then a dropped
//!   connection, then the product: retries absorb both.
//! - `POST /orders`: the stack gives it an `Idempotency-Key`, the same on
//!   every attempt. A 503, then the order runs but its answer is lost on
//!   the way back; the server's `IdempotencyLayer` answers the third attempt
//!   from its store: one order created.
//! - an outage (every request 503): the breaker opens and rejects calls
//!   without sending them; the server comes back, a probe goes through and
//!   the breaker closes.
//! - the product list with a fallback (`FallbackLayer::last_good` outside
//!   the preset): while the Product service is up the list is fresh and
//!   recorded; while it is down (503s, then the open breaker's rejections)
//!   the caller gets the last good list, marked by a `Warning` header.
//!
//! Everything runs on 127.0.0.1 and ends within a few seconds.
//!
//! ```text
//! cargo run -p steadfast-integration --example reqwest_client --features reqwest
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use steadfast::classify::HttpClassifier;
use steadfast::fallback::{FallbackLayer, LastGood};
use steadfast::idempotency::store::MemoryStore;
use steadfast::idempotency::IdempotencyLayer;
use steadfast::retry::{Backoff, RetryConfig};
use steadfast::stack::ReqwestResilience;
use steadfast::{BoxError, Rejection, ResilienceLayer};
use tokio::time::{sleep, Instant};
use tower::{ServiceBuilder, ServiceExt};

/// What the next request gets instead of a success.
#[derive(Clone, Copy)]
enum Fault {
    /// 503 with `Retry-After: 0`.
    Unavailable,
    /// The connection is dropped before any answer.
    Drop,
    /// The request runs (the order is created and stored), then the
    /// connection is dropped: the client never hears the answer.
    LoseAnswer,
}

/// The Product service's state: faults to apply, and what it saw.
#[derive(Default)]
struct ProductService {
    faults: Mutex<VecDeque<Fault>>,
    /// An outage: every request gets a 503.
    down: AtomicBool,
    /// The attempts of the current call: (what happened, `Idempotency-Key`).
    seen: Mutex<Vec<(String, Option<String>)>>,
    created: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Outermost middleware: records each request and applies the next fault.
async fn faults(State(p): State<Arc<ProductService>>, req: Request, next: Next) -> Response {
    let key = req.headers().get("idempotency-key");
    let key = key.and_then(|k| k.to_str().ok()).map(str::to_owned);
    let see = |what: String| lock(&p.seen).push((what, key.clone()));
    let fault = if p.down.load(Ordering::SeqCst) {
        Some(Fault::Unavailable)
    } else {
        lock(&p.faults).pop_front()
    };
    match fault {
        Some(Fault::Unavailable) => {
            see("503".into());
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response()
        }
        Some(Fault::Drop) => {
            see("dropped".into());
            drop_connection()
        }
        Some(Fault::LoseAnswer) => {
            let answer = next.run(req).await;
            see(format!("{} (answer lost)", answer.status().as_u16()));
            drop_connection()
        }
        None => {
            let answer = next.run(req).await;
            let replayed = answer.headers().contains_key("idempotent-replayed");
            let replayed = if replayed { " replayed" } else { "" };
            see(format!("{}{replayed}", answer.status().as_u16()));
            answer
        }
    }
}

/// Ends the connection without an answer: unwinding out of the connection's
/// task drops its socket (`resume_unwind` prints nothing).
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("connection dropped on command"))
}

async fn product(Path(id): Path<u32>) -> String {
    format!("{{\"id\":{id}}}")
}

async fn product_list() -> &'static str {
    r#"[{"id":7,"name":"tea"},{"id":8,"name":"cake"}]"#
}

async fn create_order(State(p): State<Arc<ProductService>>, body: String) -> (StatusCode, String) {
    let id = p.created.fetch_add(1, Ordering::SeqCst) + 1;
    (
        StatusCode::CREATED,
        format!("{{\"order\":{id},\"item\":{body}}}"),
    )
}

/// Serves the Product service on a free loopback port; returns its URL.
async fn serve(state: Arc<ProductService>) -> Result<String, BoxError> {
    let orders = Router::new()
        .route("/orders", post(create_order))
        .layer(IdempotencyLayer::builder(MemoryStore::new()).build()?);
    let app = Router::new()
        .route("/products/{id}", get(product))
        .route("/products", get(product_list))
        .merge(orders)
        .layer(middleware::from_fn_with_state(state.clone(), faults))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// Sends `req` through the stack and prints the outcome and the attempts
/// the server saw; `true` when the call got an answer.
async fn send(
    products: &ReqwestResilience<reqwest::Client>,
    server: &ProductService,
    start: Instant,
    req: reqwest::Request,
) -> bool {
    let what = format!("{} {}", req.method(), req.url().path());
    let result = products.clone().oneshot(req).await;
    let seen = std::mem::take(&mut *lock(&server.seen));
    let ms = start.elapsed().as_millis();
    let ok = result.is_ok();
    let outcome = match result {
        Ok(res) => {
            let status = res.status();
            format!("{status} {}", res.text().await.unwrap_or_default())
        }
        Err(e) => match Rejection::of(&e) {
            Some(Rejection::CircuitOpen { .. }) => format!("rejected, not sent: {e}"),
            _ => format!("failed: {e}"),
        },
    };
    println!("{ms:>5} ms  {what:<15} -> {}", outcome.trim_end());
    let attempts: Vec<&str> = seen.iter().map(|(what, _)| what.as_str()).collect();
    println!("           server saw: [{}]", attempts.join(", "));
    let keys: Vec<&str> = seen.iter().filter_map(|(_, k)| k.as_deref()).collect();
    if let Some(first) = keys.first() {
        let same = keys.iter().all(|k| k == first) && keys.len() == seen.len();
        let same = if same {
            "the same on every attempt"
        } else {
            "NOT the same"
        };
        println!("           Idempotency-Key {first}: {same}");
    }
    ok
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let server = Arc::new(ProductService::default());
    let base = serve(server.clone()).await?;

    // The preset, with short timers so the run takes a second or two:
    // 2 s per call, 500 ms per attempt, 3 attempts 10 ms apart, and a
    // breaker that opens on 3 failures in a row for 200 ms.
    let (resilience, handle) = ResilienceLayer::reqwest()
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(500))
        .retry(RetryConfig::builder().backoff(Backoff::fixed(Duration::from_millis(10))))
        .circuit_breaker(
            CircuitBreakerConfig::builder()
                .name("products")
                .consecutive_failures(3)
                .open_duration(Duration::from_millis(200))
                .open_jitter(0.0)
                .on_transition(move |t| println!("{:>5} ms  ** {t}", start.elapsed().as_millis())),
        )
        .build()?; // Err(InvalidConfig) would name the bad field
    let client = reqwest::Client::builder().no_proxy().build()?;
    let products = ServiceBuilder::new()
        .layer(resilience)
        .service(client.clone());
    let get_7 = || client.get(format!("{base}/products/7")).build();

    println!("Product service on {base}\n");
    println!("-- a 503, then a dropped connection");
    lock(&server.faults).extend([Fault::Unavailable, Fault::Drop]);
    send(&products, &server, start, get_7()?).await;

    println!("\n-- an order: a 503, then the answer lost after the order ran");
    lock(&server.faults).extend([Fault::Unavailable, Fault::LoseAnswer]);
    let order = client
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .body("{\"sku\":42}")
        .build()?;
    send(&products, &server, start, order).await;
    let created = server.created.load(Ordering::SeqCst);
    println!("           orders created by the server: {created}");

    println!("\n-- an outage: every request gets a 503");
    server.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        send(&products, &server, start, get_7()?).await;
        sleep(Duration::from_millis(50)).await;
    }
    println!("\n-- the Product service is back");
    server.down.store(false, Ordering::SeqCst);
    let breaker = handle.circuit_breaker().expect("the breaker is on");
    // Calls are rejected until the open time is over; then a probe closes
    // the breaker. 40 tries, 50 ms apart: 10 times the open time.
    for _ in 0..40 {
        let ok = send(&products, &server, start, get_7()?).await;
        if ok && breaker.state() == CircuitState::Closed {
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }

    println!("\n-- the product list, with the last good list as the fallback");
    // Outside the preset, so it sees the final result: after retries, and
    // the breaker's rejections. 2xx lists are recorded as their bodies are
    // read; a 503 or one of our rejections gets the last good one.
    let cache = LastGood::builder()
        .max_entries(64)
        .max_body_bytes(64 * 1024)
        .max_age(Duration::from_secs(300))
        .header(
            HeaderName::from_static("warning"),
            HeaderValue::from_static("110 products \"cached product list\""),
        )
        .build()?;
    let list = ServiceBuilder::new()
        .layer(FallbackLayer::last_good(cache).on_failed_responses(HttpClassifier::new()))
        .map_response(http::Response::<reqwest::Body>::from)
        .service(products.clone());
    let get_list = || client.get(format!("{base}/products")).build();
    let mut served_stale = 0;
    for down in [false, true, true] {
        server.down.store(down, Ordering::SeqCst);
        let res = list.clone().oneshot(get_list()?).await?;
        let seen = std::mem::take(&mut *lock(&server.seen));
        let warning = res.headers().get("warning").cloned();
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body);
        let ms = start.elapsed().as_millis();
        let state = if down { "down" } else { "up" };
        println!("{ms:>5} ms  GET /products ({state}) -> {status} {body}");
        let attempts: Vec<&str> = seen.iter().map(|(what, _)| what.as_str()).collect();
        println!("           server saw: [{}]", attempts.join(", "));
        if let Some(warning) = warning {
            println!("           warning: {}", warning.to_str().unwrap_or("?"));
            served_stale += 1;
        }
    }
    server.down.store(false, Ordering::SeqCst);

    println!("\n{handle}");
    if served_stale != 2 {
        return Err(format!("expected 2 cached lists, got {served_stale}").into());
    }
    if created != 1 {
        return Err(format!("expected one order, the server created {created}").into());
    }
    Ok(())
}
