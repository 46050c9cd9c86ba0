//! The one-line preset over a tonic `Channel`, as the issue writes it:
//! `ProductServiceClient::new(ServiceBuilder::new().layer(ResilienceLayer::grpc().build()?).service(channel))`.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState};
use steadfast::retry::{Backoff, RetryConfig};
use steadfast::stack::GrpcResilience;
use steadfast::{is_caused_by, CircuitOpen, Rejection, ResilienceLayer};
use tonic::transport::Channel;
use tonic::Code;
use tower::ServiceBuilder;

use super::{bounded, channel, create, get, ms, parsed};
use crate::product::{ProductServer, ProductServiceClient, GET_PRODUCT};

#[tokio::test]
async fn the_one_line_preset_wraps_a_channel() {
    let server = ProductServer::failing_first(2, Code::Unavailable).await;
    let channel = channel(&server, None).await;
    // No `map_request`, no glue: the generated client takes the stack.
    let mut products = ProductServiceClient::new(
        ServiceBuilder::new()
            .layer(
                ResilienceLayer::grpc()
                    .retry(RetryConfig::builder().backoff(Backoff::fixed(ms(5))))
                    .build()
                    .unwrap(),
            )
            .service(channel),
    );
    // UNAVAILABLE twice, then an answer: the message replayed each time.
    let product = bounded(products.create_product(create()))
        .await
        .expect("the third attempt succeeds")
        .into_inner();
    assert_eq!(product.price_cents, 4_250);
    assert_eq!(server.calls().len(), 3);
    // Every attempt was told at most the preset's 10 s attempt timeout.
    for timeout in parsed(
        &server
            .calls()
            .into_iter()
            .map(|c| c.grpc_timeout)
            .collect::<Vec<_>>(),
    ) {
        assert!(timeout <= Duration::from_secs(10), "{timeout:?}");
    }
}

#[tokio::test]
async fn our_rejections_reach_the_caller_as_a_status_with_the_right_code() {
    let server = ProductServer::failing_first(usize::MAX, Code::Unavailable).await;
    let channel = channel(&server, None).await;
    let (layer, handle) = ResilienceLayer::grpc()
        .no_retry()
        .circuit_breaker(CircuitBreakerConfig::builder().consecutive_failures(2))
        .idempotent_paths([GET_PRODUCT])
        .build()
        .unwrap();
    let products: GrpcResilience<Channel> = ServiceBuilder::new().layer(layer).service(channel);
    let mut products = ProductServiceClient::new(products);

    for _ in 0..2 {
        let status = bounded(products.get_product(get(1))).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "the server's own answer");
    }
    assert_eq!(
        handle.circuit_breaker().unwrap().state(),
        CircuitState::Open
    );
    let status = bounded(products.get_product(get(1))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        is_caused_by::<CircuitOpen>(&status),
        "our error is the source"
    );
    assert!(matches!(
        Rejection::of(&status),
        Some(Rejection::CircuitOpen { .. })
    ));
    assert_eq!(
        server.calls().len(),
        2,
        "the rejected call never reached the server"
    );
}

#[tokio::test]
async fn a_slow_server_gives_deadline_exceeded_through_the_preset() {
    let server = ProductServer::always(crate::product::Answer::Hang).await;
    let channel = channel(&server, None).await;
    let mut products = ProductServiceClient::new(
        ServiceBuilder::new()
            .layer(
                ResilienceLayer::grpc()
                    .deadline(ms(300))
                    .attempt_timeout(ms(100))
                    .build()
                    .unwrap(),
            )
            .service(channel),
    );
    let status = bounded(products.create_product(create()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        server.calls().len(),
        1,
        "an unsafe call cut by its timeout is not resent"
    );
}
