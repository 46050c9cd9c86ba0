//! A ProductService written as tonic's codegen writes it — prost messages,
//! a client generic over `GrpcService<tonic::body::Body>` on
//! `tonic::client::Grpc`, a server on `tonic::server::Grpc` — without a
//! `build.rs` or `protoc`:
//!
//! ```proto
//! package shop;
//! service ProductService {
//!   rpc GetProduct(GetProductRequest) returns (Product);
//!   rpc CreateProduct(CreateProductRequest) returns (Product);
//! }
//! ```
//!
//! The server does what [`Plan`] says for each call and records what it
//! saw ([`Call`]): the message as decoded, and the `grpc-timeout` and
//! `grpc-previous-rpc-attempts` headers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::body::Body;
use tonic::{Code, Status};

pub const GET_PRODUCT: &str = "/shop.ProductService/GetProduct";
pub const CREATE_PRODUCT: &str = "/shop.ProductService/CreateProduct";

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetProductRequest {
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateProductRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub price_cents: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Product {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(uint32, tag = "3")]
    pub price_cents: u32,
}

// === the client, as tonic-build generates it ===

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Clone)]
pub struct ProductServiceClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> ProductServiceClient<T>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<StdError> + Send,
{
    pub fn new(inner: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    pub async fn get_product(
        &mut self,
        request: impl tonic::IntoRequest<GetProductRequest>,
    ) -> Result<tonic::Response<Product>, Status> {
        self.unary(request.into_request(), GET_PRODUCT, "GetProduct")
            .await
    }

    pub async fn create_product(
        &mut self,
        request: impl tonic::IntoRequest<CreateProductRequest>,
    ) -> Result<tonic::Response<Product>, Status> {
        self.unary(request.into_request(), CREATE_PRODUCT, "CreateProduct")
            .await
    }

    /// The body of each generated method.
    async fn unary<M1, M2>(
        &mut self,
        mut request: tonic::Request<M1>,
        path: &'static str,
        method: &'static str,
    ) -> Result<tonic::Response<M2>, Status>
    where
        M1: prost::Message + Send + Sync + 'static,
        M2: prost::Message + Default + Send + Sync + 'static,
    {
        self.inner.ready().await.map_err(|e| {
            Status::unknown(format!(
                "Service was not ready: {}",
                Into::<StdError>::into(e)
            ))
        })?;
        let codec = tonic_prost::ProstCodec::<M1, M2>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new("shop.ProductService", method));
        self.inner.unary(request, path, codec).await
    }
}

// === the server ===

/// What the server does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The product.
    Ok,
    /// A trailers-only error with this code.
    Fail(Code),
    /// Never answers (until the call is cancelled or its `grpc-timeout`,
    /// which tonic's server enforces, passes).
    Hang,
}

/// The message of one call, as the server decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Get(GetProductRequest),
    Create(CreateProductRequest),
}

/// One call the server received.
#[derive(Debug, Clone)]
pub struct Call {
    pub message: Message,
    pub grpc_timeout: Option<String>,
    pub previous_attempts: Option<String>,
}

/// Decides each call's [`Answer`] from its path and its number (0 for the
/// first call the server received).
pub type Plan = Arc<dyn Fn(&'static str, usize) -> Answer + Send + Sync>;

#[derive(Clone)]
struct Backend {
    plan: Plan,
    calls: Arc<Mutex<Vec<Call>>>,
    /// The number of calls received, for tests that wait for one.
    count: Arc<watch::Sender<usize>>,
}

impl Backend {
    /// Records the call and decides what to do with it.
    fn record(
        &self,
        path: &'static str,
        message: Message,
        meta: &tonic::metadata::MetadataMap,
    ) -> Answer {
        let header = |name: &str| meta.get(name).map(|v| v.to_str().unwrap().to_owned());
        let mut calls = self.calls.lock().unwrap();
        let n = calls.len();
        calls.push(Call {
            message,
            grpc_timeout: header("grpc-timeout"),
            previous_attempts: header("grpc-previous-rpc-attempts"),
        });
        drop(calls);
        self.count.send_replace(n + 1);
        (self.plan)(path, n)
    }

    async fn answer(answer: Answer, product: Product) -> Result<tonic::Response<Product>, Status> {
        match answer {
            Answer::Ok => Ok(tonic::Response::new(product)),
            Answer::Fail(code) => Err(Status::new(code, "as planned")),
            Answer::Hang => std::future::pending().await,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct GetProductSvc(Backend);

impl tonic::server::UnaryService<GetProductRequest> for GetProductSvc {
    type Response = Product;
    type Future = BoxFuture<Result<tonic::Response<Product>, Status>>;

    fn call(&mut self, request: tonic::Request<GetProductRequest>) -> Self::Future {
        let msg = request.get_ref().clone();
        let answer = self
            .0
            .record(GET_PRODUCT, Message::Get(msg.clone()), request.metadata());
        let product = Product {
            id: msg.id,
            name: format!("product {}", msg.id),
            price_cents: 1999,
        };
        Box::pin(Backend::answer(answer, product))
    }
}

struct CreateProductSvc(Backend);

impl tonic::server::UnaryService<CreateProductRequest> for CreateProductSvc {
    type Response = Product;
    type Future = BoxFuture<Result<tonic::Response<Product>, Status>>;

    fn call(&mut self, request: tonic::Request<CreateProductRequest>) -> Self::Future {
        let msg = request.get_ref().clone();
        let answer = self.0.record(
            CREATE_PRODUCT,
            Message::Create(msg.clone()),
            request.metadata(),
        );
        let product = Product {
            id: 42,
            name: msg.name,
            price_cents: msg.price_cents,
        };
        Box::pin(Backend::answer(answer, product))
    }
}

/// The server's `http` service, routing by path as a generated
/// `ProductServiceServer` does.
#[derive(Clone)]
struct ProductServiceServer(Backend);

impl tower_service::Service<http::Request<Body>> for ProductServiceServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let backend = self.0.clone();
        match req.uri().path() {
            GET_PRODUCT => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(GetProductSvc(backend), req).await)
            }),
            CREATE_PRODUCT => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(CreateProductSvc(backend), req).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// A ProductService on 127.0.0.1, port chosen by the system; stopped when
/// dropped.
pub struct ProductServer {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    count: watch::Receiver<usize>,
    _stop: oneshot::Sender<()>,
}

impl ProductServer {
    /// Starts a server that answers by `plan`.
    pub async fn start(
        plan: impl Fn(&'static str, usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (count, counted) = watch::channel(0);
        let backend = Backend {
            plan: Arc::new(plan),
            calls: calls.clone(),
            count: Arc::new(count),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(ProductServiceServer(backend), incoming, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            calls,
            count: counted,
            _stop: stop,
        }
    }

    /// A server that fails the first `n` calls with `code`, then answers.
    pub async fn failing_first(n: usize, code: Code) -> Self {
        Self::start(move |_, i| {
            if i < n {
                Answer::Fail(code)
            } else {
                Answer::Ok
            }
        })
        .await
    }

    /// A server that answers every call by `answer`.
    pub async fn always(answer: Answer) -> Self {
        Self::start(move |_, _| answer).await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server has received `n` calls.
    pub async fn received(&self, n: usize) {
        let mut count = self.count.clone();
        count.wait_for(|c| *c >= n).await.unwrap();
    }

    /// The calls received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}
