//! The Order service calling the Product service over gRPC: a tonic
//! `Channel` wrapped in the preset stack and handed to a generated-style
//! `ProductServiceClient`, against a local ProductService that fails on
//! command. Prints each call, the attempts the server saw, and the
//! breaker's transitions.
//!
//! - CreateProduct: UNAVAILABLE twice, then an answer: retried, the message
//!   replayed; each attempt's `grpc-timeout` is the smaller of the attempt
//!   timeout and the time left.
//! - an outage (every call UNAVAILABLE): the breaker opens; callers get a
//!   `Status` UNAVAILABLE whose source is our `CircuitOpen`, without a
//!   call sent; the server comes back and a probe closes the breaker.
//! - a slow server: GetProduct (marked idempotent) is cut by the attempt
//!   timeout, retried, and cut by the deadline: DEADLINE_EXCEEDED.
//!
//! No `build.rs` or `protoc`: the messages are prost derives, and the
//! client and server below are written as tonic's codegen writes them.
//! Everything runs on 127.0.0.1 and ends within a few seconds.
//!
//! ```text
//! cargo run -p steadfast-integration --example tonic_client --features tonic
//! ```

use std::convert::Infallible;
use std::error::Error as _;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use steadfast::deadline::grpc_timeout;
use steadfast::retry::{Backoff, RetryConfig};
use steadfast::{BoxError, CircuitOpen, Rejection, ResilienceLayer};
use tokio::time::{sleep, timeout, Instant};
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::Status;
use tower::{service_fn, ServiceBuilder};

const GET_PRODUCT: &str = "/shop.ProductService/GetProduct";
const CREATE_PRODUCT: &str = "/shop.ProductService/CreateProduct";

#[derive(Clone, PartialEq, prost::Message)]
struct GetProductRequest {
    #[prost(uint64, tag = "1")]
    id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CreateProductRequest {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    price_cents: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Product {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(uint32, tag = "3")]
    price_cents: u32,
}

/// The client, as tonic-build generates it: generic over the channel.
struct ProductServiceClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> ProductServiceClient<T>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    fn new(inner: T) -> Self {
        let inner = tonic::client::Grpc::new(inner);
        Self { inner }
    }

    async fn get_product(&mut self, request: GetProductRequest) -> Result<Product, Status> {
        self.unary(request, GET_PRODUCT, "GetProduct").await
    }

    async fn create_product(&mut self, request: CreateProductRequest) -> Result<Product, Status> {
        self.unary(request, CREATE_PRODUCT, "CreateProduct").await
    }

    async fn unary<M>(
        &mut self,
        msg: M,
        path: &'static str,
        method: &'static str,
    ) -> Result<Product, Status>
    where
        M: prost::Message + Send + Sync + 'static,
    {
        let ready = self.inner.ready().await;
        ready.map_err(|e| Status::unknown(format!("not ready: {}", e.into())))?;
        let mut request = tonic::Request::new(msg);
        let method = tonic::GrpcMethod::new("shop.ProductService", method);
        request.extensions_mut().insert(method);
        let path = http::uri::PathAndQuery::from_static(path);
        let codec = tonic_prost::ProstCodec::default();
        Ok(self.inner.unary(request, path, codec).await?.into_inner())
    }
}

/// What the server does with a call.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Unavailable,
    /// Answers after 5 s (the caller gives up well before).
    Slow,
}

/// The server's state: what to answer, and the calls it saw.
struct Backend {
    /// Fail this many next calls with UNAVAILABLE, then answer by `mode`.
    unavailable_next: AtomicU32,
    mode: Mutex<Answer>,
    seen: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Backend {
    /// Records the call (its message and `grpc-timeout`) and answers by
    /// plan; `reply` makes the product from the message.
    async fn answer<M: Debug>(
        &self,
        req: tonic::Request<M>,
        reply: fn(M) -> Product,
    ) -> Result<tonic::Response<Product>, Status> {
        let header = req.metadata().get("grpc-timeout");
        let budget = header.and_then(|v| grpc_timeout::parse(v.as_bytes()));
        let budget = budget.map_or("none".into(), |d| format!("{:.0}ms", d.as_secs_f64() * 1e3));
        let fail = self
            .unavailable_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        let answer = if fail.is_ok() {
            Answer::Unavailable
        } else {
            *lock(&self.mode)
        };
        let msg = req.into_inner();
        lock(&self.seen).push(format!("{msg:?}, grpc-timeout {budget} -> {answer:?}"));
        let product = tonic::Response::new(reply(msg));
        match answer {
            Answer::Ok => Ok(product),
            Answer::Unavailable => Err(Status::unavailable("product service down")),
            Answer::Slow => {
                sleep(Duration::from_secs(5)).await;
                Ok(product)
            }
        }
    }
}

/// Serves one unary method, as a generated server does.
async fn unary<M>(
    backend: Arc<Backend>,
    req: http::Request<Body>,
    reply: fn(M) -> Product,
) -> http::Response<Body>
where
    M: prost::Message + Default + Debug + Send + 'static,
{
    let method = service_fn(move |req: tonic::Request<M>| {
        let backend = backend.clone();
        async move { backend.answer(req, reply).await }
    });
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
    grpc.unary(method, req).await
}

/// Serves the ProductService on a free loopback port; returns its URL.
async fn serve(backend: Arc<Backend>) -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    // Routes by path, as a generated `ProductServiceServer` does.
    let router = service_fn(move |req: http::Request<Body>| {
        let backend = backend.clone();
        async move {
            let res = match req.uri().path() {
                GET_PRODUCT => {
                    unary(backend, req, |m: GetProductRequest| Product {
                        id: m.id,
                        name: format!("product {}", m.id),
                        price_cents: 1999,
                    })
                    .await
                }
                CREATE_PRODUCT => {
                    unary(backend, req, |m: CreateProductRequest| Product {
                        id: 42,
                        name: m.name,
                        price_cents: m.price_cents,
                    })
                    .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok::<_, Infallible>(res)
        }
    });
    let incoming = TcpIncoming::from(listener);
    tokio::spawn(Server::builder().serve_with_incoming(router, incoming));
    Ok(url)
}

/// Prints a call's outcome and the attempts the server saw; `true` when
/// the call got an answer.
fn report(start: Instant, what: &str, result: &Result<Product, Status>, backend: &Backend) -> bool {
    let ms = start.elapsed().as_millis();
    match result {
        Ok(p) => println!("{ms:>5} ms  {what} -> OK: product {} {:?}", p.id, p.name),
        Err(status) => {
            let ours = match Rejection::of(status) {
                Some(r) => format!("ours: {r}"),
                None => "from the server".into(),
            };
            println!(
                "{ms:>5} ms  {what} -> {:?} \"{}\" ({ours})",
                status.code(),
                status.message()
            );
        }
    }
    let seen = std::mem::take(&mut *lock(&backend.seen));
    println!("           server saw {} call(s)", seen.len());
    for call in seen {
        println!("             {call}");
    }
    result.is_ok()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let backend = Arc::new(Backend {
        unavailable_next: AtomicU32::new(0),
        mode: Mutex::new(Answer::Ok),
        seen: Mutex::new(Vec::new()),
    });
    let url = serve(backend.clone()).await?;
    let channel = timeout(
        Duration::from_secs(5),
        Endpoint::from_shared(url.clone())?.connect(),
    )
    .await??;

    // The preset, with short timers so the run takes a second or two:
    // 500 ms per call, 300 ms per attempt, 3 attempts 150 ms apart,
    // GetProduct safe to repeat, and a breaker that opens on 3 failures in
    // a row for 300 ms.
    let (resilience, handle) = ResilienceLayer::grpc()
        .deadline(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(300))
        .retry(RetryConfig::builder().backoff(Backoff::fixed(Duration::from_millis(150))))
        .idempotent_paths([GET_PRODUCT])
        .circuit_breaker(
            CircuitBreakerConfig::builder()
                .name("products")
                .consecutive_failures(3)
                .open_duration(Duration::from_millis(300))
                .open_jitter(0.0)
                .on_transition(move |t| println!("{:>5} ms  ** {t}", start.elapsed().as_millis())),
        )
        .build()?; // Err(InvalidConfig) would name the bad field
    let mut products =
        ProductServiceClient::new(ServiceBuilder::new().layer(resilience).service(channel));
    let lamp = || CreateProductRequest {
        name: "desk lamp".into(),
        price_cents: 4250,
    };

    println!("ProductService on {url}\n");
    println!("-- CreateProduct: UNAVAILABLE twice, then an answer");
    backend.unavailable_next.store(2, Ordering::SeqCst);
    let result = products.create_product(lamp()).await;
    report(start, "CreateProduct", &result, &backend);

    println!("\n-- an outage: every call UNAVAILABLE");
    *lock(&backend.mode) = Answer::Unavailable;
    for _ in 0..2 {
        let result = products.get_product(GetProductRequest { id: 7 }).await;
        report(start, "GetProduct", &result, &backend);
        let source = result
            .err()
            .and_then(|s| s.source()?.downcast_ref::<CircuitOpen>().cloned());
        if let Some(open) = source {
            println!("           Status::source() is our {open:?}");
        }
    }
    println!("\n-- the ProductService is back");
    *lock(&backend.mode) = Answer::Ok;
    let breaker = handle.circuit_breaker().expect("the breaker is on");
    // Rejected until the open time is over; then a probe closes the
    // breaker. 30 tries, 100 ms apart: 10 times the open time.
    for _ in 0..30 {
        let result = products.get_product(GetProductRequest { id: 7 }).await;
        if report(start, "GetProduct", &result, &backend) && breaker.state() == CircuitState::Closed
        {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }

    println!("\n-- a slow server: every answer takes 5 s");
    *lock(&backend.mode) = Answer::Slow;
    let result = products.get_product(GetProductRequest { id: 7 }).await;
    report(start, "GetProduct", &result, &backend);

    println!("\n{handle}");
    Ok(())
}
