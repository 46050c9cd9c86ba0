//! An axum server that runs each keyed `POST /orders` at most once, and a
//! client in the same process showing what a retry of that POST gets.
//!
//! - The server: `IdempotencyLayer` on an axum router, over a `MemoryStore`;
//!   over a `RedisStore` instead when the crate is built with the `redis`
//!   feature and `REDIS_URL` is set (many replicas then share one Redis).
//! - The client: a `reqwest::Client`, with `reqwest::Request`s going
//!   through the client's `IdempotencyKeyLayer`, which gives each POST a
//!   fresh random key.
//!
//! It then sends, to 127.0.0.1 only:
//!
//! 1. a POST, which gets a key from the layer and creates order 1;
//! 2. the same POST with the same key, as a retry would after losing the
//!    answer: the stored response, marked `Idempotent-Replayed: true`, with
//!    the same order id (the handler does not run again);
//! 3. a different body under that key: 422;
//! 4. a POST with no key, sent past the key layer: it passes straight
//!    through, unprotected, and creates order 2.
//!
//! ```text
//! cargo run -p steadfast-integration --example idempotent_server --features reqwest
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p steadfast-integration --example idempotent_server --features reqwest,redis
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use http::HeaderValue;
use steadfast::idempotency::store::{MemoryStore, Store};
use steadfast::idempotency::{IdempotencyKeyLayer, IdempotencyLayer};
use steadfast::BoxError;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

/// The handler's state: the next order id.
#[derive(Debug, Default)]
struct Shop {
    orders: AtomicU64,
}

/// Creates an order: a side effect that must not happen twice for one call.
async fn create_order(State(shop): State<Arc<Shop>>, body: String) -> (StatusCode, String) {
    let id = shop.orders.fetch_add(1, Ordering::SeqCst) + 1;
    println!("  [server] handler runs: order {id} for {body}");
    (
        StatusCode::CREATED,
        format!("{{\"order_id\":{id},\"item\":{body}}}"),
    )
}

/// What the client saw of one exchange.
#[derive(Debug)]
struct Exchange {
    key: Option<HeaderValue>,
    status: reqwest::StatusCode,
    replayed: bool,
    body: String,
}

impl Exchange {
    fn print(&self, what: &str) {
        let key = self
            .key
            .as_ref()
            .and_then(|k| k.to_str().ok())
            .unwrap_or("(none)");
        println!("{what}");
        println!("  Idempotency-Key: {key}");
        println!(
            "  -> {} Idempotent-Replayed: {} body: {}",
            self.status,
            if self.replayed { "true" } else { "(absent)" },
            self.body
        );
    }
}

/// Fails the example (exit code 1) when the server did not do as described.
fn ensure(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected: {what}").into())
    }
}

/// Serves `POST /orders` behind the idempotency layer on a free loopback
/// port; returns the base URL.
async fn serve<St: Store>(store: St) -> Result<String, BoxError> {
    let layer = IdempotencyLayer::builder(store)
        // Keep replays for 10 minutes (default 24 h) so a shared Redis is
        // not left holding the example's responses for a day.
        .ttl(Duration::from_secs(600))
        // A dropped request's release may need a round trip (Redis).
        .spawn_release_with(|release| {
            tokio::spawn(release);
        })
        .build()?;
    // The default principal scopes keys by a hash of `Authorization`: this
    // client sends none, so it uses the shared anonymous scope. A real
    // service authenticates first or passes `.principal(..)`.
    let app = Router::new()
        .route("/orders", post(create_order))
        .layer(layer)
        .with_state(Arc::new(Shop::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("server: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

/// The client's transport: sends a `reqwest::Request` with `reqwest`,
/// noting the key it carried, and reads the whole answer.
fn transport(
    client: reqwest::Client,
) -> impl Service<reqwest::Request, Response = Exchange, Error = BoxError, Future: Send> + Clone {
    tower::service_fn(move |req: reqwest::Request| {
        let client = client.clone();
        async move {
            let key = req.headers().get("idempotency-key").cloned();
            let res = client.execute(req).await?;
            let status = res.status();
            let replayed = res
                .headers()
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true");
            let body = res.text().await?;
            Ok::<_, BoxError>(Exchange {
                key,
                status,
                replayed,
                body,
            })
        }
    })
}

fn order(
    client: &reqwest::Client,
    base: &str,
    item: &str,
    key: Option<&HeaderValue>,
) -> Result<reqwest::Request, BoxError> {
    let mut req = client
        .post(format!("{base}/orders"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    Ok(req.body(item.to_owned()).build()?)
}

fn order_id(body: &str) -> Option<&str> {
    let rest = body.split("\"order_id\":").nth(1)?;
    rest.split(',').next()
}

async fn demo<St: Store>(store: St, name: &str) -> Result<(), BoxError> {
    let base = serve(store).await?;
    println!("server on {base}, store: {name}\n");

    // No proxy lookups: the example talks to 127.0.0.1 only.
    let reqwest = reqwest::Client::builder().no_proxy().build()?;
    let http = transport(reqwest.clone());
    // One key per call; it would sit outside a retry layer, so every retry
    // of the call carries the same key.
    let mut client = IdempotencyKeyLayer::new().layer(http.clone());

    let first = client
        .ready()
        .await?
        .call(order(&reqwest, &base, "{\"sku\":42}", None)?)
        .await?;
    first.print("1. POST /orders {\"sku\":42}; the key layer adds a key");
    let key = first.key.clone().ok_or("the key layer adds a key")?;
    ensure(
        first.status == 201 && !first.replayed,
        "the first POST runs",
    )?;

    // The answer was lost on the way (say): send the same POST again with
    // the same key. The key layer keeps a key the request already has.
    let again = client
        .ready()
        .await?
        .call(order(&reqwest, &base, "{\"sku\":42}", Some(&key))?)
        .await?;
    again.print("\n2. the same POST again, same key (a retry)");
    ensure(
        again.status == 201 && again.replayed && again.body == first.body,
        "the repeat is the stored response, marked replayed",
    )?;
    println!("  same order id: {}", order_id(&again.body).unwrap_or("?"));

    let other = client
        .ready()
        .await?
        .call(order(&reqwest, &base, "{\"sku\":7}", Some(&key))?)
        .await?;
    other.print("\n3. a different body under the same key");
    ensure(other.status == 422, "a reused key with another body is 422")?;

    // Past the key layer: a request without a key passes straight through.
    let mut bare = http;
    let unkeyed = bare
        .ready()
        .await?
        .call(order(&reqwest, &base, "{\"sku\":42}", None)?)
        .await?;
    unkeyed.print("\n4. POST /orders with no key (not through the key layer)");
    ensure(
        unkeyed.status == 201 && !unkeyed.replayed && order_id(&unkeyed.body) == Some("2"),
        "a request without a key runs the handler",
    )?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let store = steadfast::idempotency::store::RedisStore::connect(url.as_str()).await?;
        return demo(store, "RedisStore").await;
    }
    demo(MemoryStore::new(), "MemoryStore").await
}
