//! Auto traits, clones, accessors, and use through `ServiceBuilder`.

use steadfast::bulkhead::{BulkheadHandle, BulkheadSnapshot, ReleaseOnResponse};
use steadfast::deadline::NoDeadline;
use tower::{service_fn, ServiceBuilder};

use super::*;

fn assert_send_sync<T: Send + Sync>() {}
fn assert_clone<T: Clone>() {}
fn assert_send<T: Send>() {}

#[test]
fn layers_services_futures_and_handles_are_send_and_sync() {
    assert_send_sync::<BulkheadLayer>();
    assert_clone::<BulkheadLayer>();
    assert_send_sync::<Bulkhead<Mock>>();
    assert_clone::<Bulkhead<Mock>>();
    assert_send_sync::<Bulkhead<Mock, NoDeadline, ReleaseOnResponse>>();
    assert_send::<ResponseFuture<Mock, u32>>();
    assert_send_sync::<BulkheadHandle>();
    assert_clone::<BulkheadHandle>();
    assert_send_sync::<BulkheadSnapshot>();
    assert_send_sync::<BulkheadFull>();
    #[cfg(feature = "http")]
    {
        use steadfast::bulkhead::body::ResponseBody;
        assert_send_sync::<ResponseBody<http_body_util::Full<bytes::Bytes>>>();
        assert_send_sync::<
            BulkheadLayer<
                steadfast::deadline::RequestDeadline,
                steadfast::bulkhead::ReleaseOnBodyEnd,
            >,
        >();
    }
}

#[tokio::test(start_paused = true)]
async fn accessors_reach_the_inner_service() {
    let layer = BulkheadLayer::new(1).unwrap();
    let mut svc = layer.layer(7u8);
    assert_eq!(*svc.get_ref(), 7);
    *svc.get_mut() = 8;
    assert_eq!(svc.into_inner(), 8);
}

#[tokio::test(start_paused = true)]
async fn debug_output_names_the_parts() {
    let layer = BulkheadLayer::builder(2)
        .max_wait(MS)
        .name("db")
        .build()
        .unwrap()
        .wait_in_poll_ready();
    let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    let s = format!("{layer:?} {svc:?} {:?}", layer.handle());
    for part in [
        "BulkheadLayer",
        "Bulkhead",
        "BulkheadHandle",
        "\"db\"",
        "max_concurrent: 2",
        "wait_in_poll_ready: true",
    ] {
        assert!(s.contains(part), "{part} missing from {s}");
    }
    let mut svc = svc;
    let fut = svc.ready().await.unwrap().call(1);
    assert_eq!(format!("{fut:?}"), "ResponseFuture { kind: \"called\" }");
}

#[tokio::test(start_paused = true)]
async fn works_in_a_service_builder_stack() {
    let layer = BulkheadLayer::new(2).unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .map_response(|x: u32| x + 1)
        .service_fn(|x: u32| async move { Ok::<_, BoxError>(x * 10) });
    assert_eq!(svc.oneshot(4).await.unwrap(), 41);
    assert_eq!(handle.snapshot().admitted, 1);
}
