//! A real tonic `Channel` to a real ProductService on 127.0.0.1, wrapped in
//! `GrpcStatusLayer → DeadlineLayer → RetryLayer::tonic →
//! CircuitBreakerLayer(GrpcClassifier) → TimeoutLayer::deadline_aware` and
//! handed to a generated-style `ProductServiceClient::new(..)` with no
//! `map_request`. Each test asserts what the server saw, call by call.
//!
//! The clock is real here: a paused tokio clock jumps to the next timer
//! whenever the runtime waits on the network, so attempt timers would fire
//! before loopback answers. No test sleeps: the timers are the layers' own,
//! every exchange is bounded by [`LIMIT`], and time-dependent assertions are
//! bounds derived from the layers' timers (a backoff of 300 ms means at least
//! 300 ms less time left), never wall-clock durations.
#![cfg(feature = "tonic")]

#[path = "../support/mod.rs"]
mod support;

mod preset;
mod product;

use std::future::Future;
use std::time::Duration;

use steadfast::bulkhead::error::BulkheadFull;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
};
use steadfast::classify::GrpcClassifier;
use steadfast::deadline::grpc_timeout;
use steadfast::deadline::RequestDeadline;
use steadfast::is_caused_by;
use steadfast::retry::{
    Backoff, GrpcRetryOn, RestoreBody, Retry, RetryConfig, RetryHandle, RetryLayer,
};
use steadfast::stack::{GrpcStatus, GrpcStatusLayer};
use steadfast::timeout::error::{DeadlineExceeded, Elapsed};
use steadfast::timeout::{DeadlineLayer, Timeout, TimeoutLayer, WithDeadline};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, TimeoutExpired};
use tower::ServiceBuilder;

use crate::product::{
    Answer, CreateProductRequest, GetProductRequest, Message, ProductServer, ProductServiceClient,
    GET_PRODUCT,
};

/// Every exchange must finish within this, or the test fails.
const LIMIT: Duration = Duration::from_secs(10);

/// Runs `exchange`, failing the test if it has not finished within [`LIMIT`].
async fn bounded<F: Future>(exchange: F) -> F::Output {
    tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("the exchange finished in time")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The whole stack over a `Channel`: every type stays nameable.
type Stack = GrpcStatus<
    WithDeadline<
        Retry<
            CircuitBreaker<Timeout<Channel, RequestDeadline>, GrpcClassifier>,
            GrpcRetryOn,
            RestoreBody,
        >,
    >,
>;

/// What the tests tune; the rest is the preset's shape.
struct Setup {
    deadline: Duration,
    attempt: Duration,
    max_attempts: u32,
    backoff: Duration,
    retry_timeouts: bool,
    breaker: CircuitBreakerConfig,
    /// tonic's own client-side timeout (`Endpoint::timeout`).
    endpoint_timeout: Option<Duration>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            attempt: Duration::from_secs(2),
            max_attempts: 3,
            backoff: ms(5),
            retry_timeouts: false,
            breaker: CircuitBreakerConfig::default(),
            endpoint_timeout: None,
        }
    }
}

struct Client {
    products: ProductServiceClient<Stack>,
    retry: RetryHandle,
    breaker: CircuitBreakerHandle,
}

impl Client {
    /// GetProduct `id`, which must fail: its status.
    async fn get_fails(&mut self, id: u64) -> Status {
        bounded(self.products.get_product(get(id)))
            .await
            .expect_err("GetProduct fails")
    }

    /// CreateProduct [`create`], which must fail: its status.
    async fn create_fails(&mut self) -> Status {
        bounded(self.products.create_product(create()))
            .await
            .expect_err("CreateProduct fails")
    }
}

async fn channel(server: &ProductServer, timeout: Option<Duration>) -> Channel {
    let mut endpoint = Endpoint::from_shared(server.url()).unwrap();
    if let Some(timeout) = timeout {
        endpoint = endpoint.timeout(timeout);
    }
    bounded(endpoint.connect()).await.expect("connected")
}

async fn connect(server: &ProductServer, setup: Setup) -> Client {
    support::trace_init();
    let channel = channel(server, setup.endpoint_timeout).await;
    let retry = RetryLayer::tonic(
        RetryConfig::builder()
            .max_attempts(setup.max_attempts)
            .backoff(Backoff::fixed(setup.backoff))
            .retry_timeouts(setup.retry_timeouts)
            .no_budget()
            .build()
            .unwrap(),
    )
    .idempotent_paths([GET_PRODUCT]);
    let breaker = CircuitBreakerLayer::with_classifier(setup.breaker, GrpcClassifier::new());
    let (retry_handle, breaker_handle) = (retry.handle(), breaker.handle());

    let stack: Stack = ServiceBuilder::new()
        .layer(GrpcStatusLayer::new())
        .layer(DeadlineLayer::new(setup.deadline).unwrap())
        .layer(retry)
        .layer(breaker)
        .layer(TimeoutLayer::new(setup.attempt).unwrap().deadline_aware())
        .service(channel);
    Client {
        // What the issue asks for: the generated client takes the stack as it is.
        products: ProductServiceClient::new(stack),
        retry: retry_handle,
        breaker: breaker_handle,
    }
}

fn get(id: u64) -> GetProductRequest {
    GetProductRequest { id }
}

fn create() -> CreateProductRequest {
    // Larger than one HTTP/2 frame and than one replay segment, so the
    // replay is of a body that was streamed in pieces.
    CreateProductRequest {
        name: "lamp ".repeat(4_000),
        price_cents: 4_250,
    }
}

/// `grpc-timeout` values, parsed.
fn parsed(values: &[Option<String>]) -> Vec<Duration> {
    values
        .iter()
        .map(|v| grpc_timeout::parse(v.as_deref().expect("a grpc-timeout").as_bytes()).unwrap())
        .collect()
}

#[tokio::test]
async fn the_client_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let server = ProductServer::always(Answer::Ok).await;
    let mut client = connect(&server, Setup::default()).await;
    let call = client.products.get_product(get(1));
    send(&call);
    bounded(call).await.unwrap();
}

#[tokio::test]
async fn unavailable_is_retried_and_the_message_replayed_each_time() {
    // CreateProduct is not idempotent, but UNAVAILABLE proves the server
    // did not act on it: it is retried, with the whole message sent again.
    let server = ProductServer::failing_first(2, Code::Unavailable).await;
    let mut client = connect(&server, Setup::default()).await;

    let product = bounded(client.products.create_product(create()))
        .await
        .expect("the third attempt succeeds")
        .into_inner();
    assert_eq!(product.name, create().name);
    assert_eq!(product.price_cents, 4_250);

    let calls = server.calls();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        assert_eq!(call.message, Message::Create(create()), "the same message");
    }
    let previous: Vec<_> = calls.iter().map(|c| c.previous_attempts.clone()).collect();
    assert_eq!(previous, [None, Some("1".into()), Some("2".into())]);
    assert_eq!(client.retry.snapshot().retries, 2);
    let breaker = client.breaker.snapshot();
    assert_eq!((breaker.failures, breaker.successes), (2, 1));
}

#[tokio::test]
async fn each_attempt_carries_the_attempt_timeout_when_more_time_is_left() {
    // The case: 2 s for the call, 300 ms per attempt. The server
    // must be told 300 ms on every attempt, not the 2 s the call has.
    let server = ProductServer::failing_first(2, Code::Unavailable).await;
    let setup = Setup {
        deadline: ms(2_000),
        attempt: ms(300),
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;

    bounded(client.products.get_product(get(7))).await.unwrap();
    let sent: Vec<_> = server.calls().into_iter().map(|c| c.grpc_timeout).collect();
    assert_eq!(sent, vec![Some("300000u".to_owned()); 3]);
}

#[tokio::test]
async fn grpc_timeout_shrinks_with_the_time_left_and_never_exceeds_the_attempt_timeout() {
    // 2 s for the call, 1.6 s per attempt, attempts at least 600 ms apart:
    // the first is told 1.6 s (less than the time left), the next ones at
    // most what is left, at least 600 ms less each time.
    let server = ProductServer::always(Answer::Fail(Code::Unavailable)).await;
    let setup = Setup {
        deadline: ms(2_000),
        attempt: ms(1_600),
        backoff: ms(600),
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;

    let status = client.get_fails(7).await;
    assert_eq!(status.code(), Code::Unavailable, "the server's last answer");
    assert_eq!(status.message(), "as planned");

    let calls = server.calls();
    assert_eq!(calls.len(), 3);
    let sent: Vec<_> = calls.into_iter().map(|c| c.grpc_timeout).collect();
    assert_eq!(sent[0].as_deref(), Some("1600000u"));
    let t = parsed(&sent);
    assert!(t[1] <= ms(1_400), "{t:?}");
    assert!(t[2] <= t[1] - ms(600), "{t:?}");
    assert!(t.iter().all(|t| *t <= ms(1_600) && !t.is_zero()), "{t:?}");
}

#[tokio::test]
async fn invalid_argument_is_not_retried() {
    let server = ProductServer::always(Answer::Fail(Code::InvalidArgument)).await;
    let mut client = connect(&server, Setup::default()).await;

    // GetProduct is marked idempotent: only the code keeps it from a retry.
    let status = client.get_fails(0).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(server.calls().len(), 1);
    assert_eq!(client.retry.snapshot().retries, 0);
    let breaker = client.breaker.snapshot();
    assert_eq!(
        (breaker.failures, breaker.ignored),
        (0, 1),
        "the caller's mistake"
    );
}

#[tokio::test]
async fn the_breaker_trips_on_sustained_unavailable_and_rejects_with_unavailable() {
    let server = ProductServer::always(Answer::Fail(Code::Unavailable)).await;
    let setup = Setup {
        max_attempts: 2,
        breaker: CircuitBreakerConfig::builder()
            .consecutive_failures(4)
            .open_duration(Duration::from_secs(60))
            .build()
            .unwrap(),
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;

    // Two calls of two attempts each: four failures in a row trip it.
    for _ in 0..2 {
        let status = client.get_fails(1).await;
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "as planned", "the server's own answer");
    }
    assert_eq!(server.calls().len(), 4);
    assert_eq!(client.breaker.state(), CircuitState::Open);

    // Now the breaker answers: UNAVAILABLE, with our error as the source.
    let status = client.get_fails(1).await;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().starts_with("circuit open; next probe in"),
        "{:?}",
        status.message()
    );
    assert!(is_caused_by::<CircuitOpen>(&status));
    assert!(std::error::Error::source(&status)
        .unwrap()
        .is::<CircuitOpen>());
    assert_eq!(server.calls().len(), 4, "the server saw no more calls");
    let breaker = client.breaker.snapshot();
    assert_eq!((breaker.failures, breaker.rejected), (4, 1));
    assert_eq!(
        client.retry.snapshot().retries,
        2,
        "the rejection is not retried"
    );
}

#[tokio::test]
async fn a_slow_server_gives_deadline_exceeded_and_an_unsafe_call_is_not_resent() {
    let server = ProductServer::always(Answer::Hang).await;
    let setup = Setup {
        attempt: ms(500),
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;

    let status = client.create_fails().await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    // Our attempt timer and the Channel's (the same 500 ms, written as
    // `grpc-timeout`) race; either error means the same.
    assert!(
        is_caused_by::<Elapsed>(&status) || is_caused_by::<TimeoutExpired>(&status),
        "{status:?}"
    );
    assert_eq!(
        server.calls().len(),
        1,
        "it may have been processed: not resent"
    );
    assert_eq!(client.retry.snapshot().skipped_unsafe, 1);
    assert_eq!(client.breaker.snapshot().failures, 1);
}

#[tokio::test]
async fn the_deadline_cuts_a_slow_call_with_deadline_exceeded() {
    // The call has 600 ms, each attempt up to 5 s: the deadline is what
    // runs out, during the first attempt.
    let server = ProductServer::always(Answer::Hang).await;
    let setup = Setup {
        deadline: ms(600),
        attempt: Duration::from_secs(5),
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;

    let status = client.get_fails(3).await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(
        is_caused_by::<DeadlineExceeded>(&status) || is_caused_by::<TimeoutExpired>(&status),
        "{status:?}"
    );
    let calls = server.calls();
    assert_eq!(calls.len(), 1, "no time left for another attempt");
    assert!(parsed(&[calls[0].grpc_timeout.clone()])[0] <= ms(600));
}

#[tokio::test]
async fn tonics_own_timeout_is_an_attempt_timeout() {
    // tonic's `Endpoint::timeout` fires long before our 5 s attempt timer:
    // the Channel fails the call with `TimeoutExpired`.
    let server = ProductServer::always(Answer::Hang).await;

    // Bare tonic calls that CANCELLED.
    let mut bare = ProductServiceClient::new(channel(&server, Some(ms(300))).await);
    let status = bounded(bare.create_product(create())).await.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);

    // Through the stack it is an attempt timeout: DEADLINE_EXCEEDED for the
    // caller, a failure for the breaker, and an unsafe call is not resent.
    let setup = Setup {
        attempt: Duration::from_secs(5),
        endpoint_timeout: Some(ms(300)),
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;
    let status = client.create_fails().await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "Timeout expired");
    assert!(is_caused_by::<TimeoutExpired>(&status));
    assert!(!is_caused_by::<Elapsed>(&status));
    assert_eq!(
        server.calls().len(),
        2,
        "one bare call, one through the stack"
    );
    assert_eq!(client.retry.snapshot().skipped_unsafe, 1);
    assert_eq!(client.breaker.snapshot().failures, 1);

    // With `retry_timeouts`, it is retried like `Elapsed` would be.
    let setup = Setup {
        attempt: Duration::from_secs(5),
        endpoint_timeout: Some(ms(300)),
        max_attempts: 2,
        retry_timeouts: true,
        ..Setup::default()
    };
    let mut client = connect(&server, setup).await;
    let status = client.create_fails().await;
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(server.calls().len(), 4, "two attempts more");
    assert_eq!(client.retry.snapshot().retries, 1);
    assert_eq!(client.breaker.snapshot().failures, 2);
}

#[tokio::test]
async fn a_call_dropped_by_its_caller_records_nothing() {
    let server = ProductServer::always(Answer::Hang).await;
    let mut client = connect(&server, Setup::default()).await;

    // The caller gives up after 400 ms, long before any of our timers.
    let gave_up = tokio::time::timeout(ms(400), client.products.create_product(create())).await;
    assert!(gave_up.is_err());
    assert_eq!(server.calls().len(), 1);
    let breaker = client.breaker.snapshot();
    assert_eq!(
        (breaker.failures, breaker.successes, breaker.cancelled),
        (0, 0, 1)
    );
    let retry = client.retry.snapshot();
    assert_eq!((retry.calls, retry.retries), (1, 0));

    // The stack is whole again: the next call goes through.
    drop(server);
    let server = ProductServer::always(Answer::Ok).await;
    let mut client = connect(&server, Setup::default()).await;
    bounded(client.products.create_product(create()))
        .await
        .unwrap();
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test]
async fn a_full_bulkhead_rejects_with_unavailable() {
    let server = ProductServer::always(Answer::Hang).await;
    let stack = ServiceBuilder::new()
        .layer(GrpcStatusLayer::new())
        .layer(BulkheadLayer::new(1).unwrap())
        .service(channel(&server, None).await);
    let mut first = ProductServiceClient::new(stack);
    let mut second = first.clone();

    // One call holds the only slot, hanging on the server.
    let in_flight = tokio::spawn(async move { first.get_product(get(1)).await });
    bounded(server.received(1)).await;

    let status = bounded(second.get_product(get(2))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "bulkhead full; all 1 slots taken and no room to wait"
    );
    assert!(is_caused_by::<BulkheadFull>(&status));
    assert_eq!(server.calls().len(), 1, "the rejected call was never sent");
    in_flight.abort();
}

/// Without the status layer a rejection of ours reaches a tonic caller as
/// UNKNOWN; with it, as UNAVAILABLE. (Why [`GrpcStatusLayer`] exists.)
#[tokio::test]
async fn without_the_status_layer_a_rejection_is_unknown() {
    let server = ProductServer::always(Answer::Ok).await;
    let breaker = CircuitBreakerLayer::with_classifier(
        CircuitBreakerConfig::default(),
        GrpcClassifier::new(),
    );
    breaker.handle().force_open();
    let channel = channel(&server, None).await;

    let bare = ServiceBuilder::new()
        .layer(breaker.clone())
        .service(channel.clone());
    let status: Status = bounded(ProductServiceClient::new(bare).get_product(get(1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown);

    let mapped = ServiceBuilder::new()
        .layer(GrpcStatusLayer::new())
        .layer(breaker)
        .service(channel);
    let status = bounded(ProductServiceClient::new(mapped).get_product(get(1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "circuit forced open");
    assert!(server.calls().is_empty());
}

#[tokio::test]
async fn get_product_answers_through_the_stack() {
    let server = ProductServer::always(Answer::Ok).await;
    let mut client = connect(&server, Setup::default()).await;
    let product = bounded(client.products.get_product(get(9)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(product.name, "product 9");
    let calls = server.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].message, Message::Get(get(9)));
    assert_eq!(calls[0].previous_attempts, None);
    assert_eq!(calls[0].grpc_timeout.as_deref(), Some("2000000u"));
}
