//! Dropping the response future never runs the fallback and leaks nothing.

use std::sync::Arc;

use http::Response;
use steadfast::fallback::{Failed, FallbackLayer};
use steadfast::BoxError;
use tokio_test::{assert_pending, task};
use tower::Service;
use tower_test::mock;

use crate::Runs;

type Res = Response<&'static str>;

#[tokio::test]
async fn a_dropped_call_never_runs_the_fallback() {
    let runs = Runs::default();
    // Captured by the fallback: its count shows every clone was dropped.
    let tracker = Arc::new(());
    let layer = FallbackLayer::new({
        let runs = runs.clone();
        let tracker = tracker.clone();
        move |_: Failed<'_, Res>| -> Result<Res, BoxError> {
            let _ = &tracker;
            runs.hit();
            Ok(Response::new("fallback"))
        }
    });
    let (mut svc, mut handle) = mock::spawn_layer::<(), Res, _>(layer);

    handle.allow(1);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(()));
    assert_pending!(call.poll());
    let (_, respond) = handle
        .next_request()
        .await
        .expect("the call reached the inner service");
    assert_eq!(
        Arc::strong_count(&tracker),
        3,
        "the layer's, the service's, the future's"
    );
    drop(call);
    assert_eq!(Arc::strong_count(&tracker), 2, "the future's clone is gone");
    // The answer comes after the caller left: nobody runs the fallback.
    respond.send_error(std::io::Error::other("connection reset"));
    assert_eq!(runs.get(), 0);

    // The same layer still falls back for a call that is not dropped.
    handle.allow(1);
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(()));
    assert_pending!(call.poll());
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_error(std::io::Error::other("connection reset"));
    let res = tokio_test::assert_ready_ok!(call.poll());
    assert_eq!(*res.body(), "fallback");
    assert_eq!(runs.get(), 1);
}

#[tokio::test]
async fn dropped_before_the_inner_service_answers_anything() {
    let runs = Runs::default();
    let layer = FallbackLayer::new({
        let runs = runs.clone();
        move |_: Failed<'_, Res>| -> Result<Res, BoxError> {
            runs.hit();
            Ok(Response::new("fallback"))
        }
    });
    let mut svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|()| std::future::pending::<Result<Res, BoxError>>()),
    );
    let mut call = task::spawn(svc.call(()));
    for _ in 0..3 {
        assert_pending!(call.poll());
    }
    drop(call);
    assert_eq!(runs.get(), 0);
}
