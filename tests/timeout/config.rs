//! Configuration: zero durations are refused with `InvalidConfig`, huge
//! ones saturate instead of panicking; layers and services are
//! `Send + Sync + Clone + Debug`.

use std::convert::Infallible;
use std::time::Duration;

use steadfast::timeout::{DeadlineLayer, Timeout, TimeoutLayer, WithDeadline};
use tower::{Layer, ServiceExt};

#[test]
fn a_zero_timeout_is_invalid() {
    let err = TimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "timeout.timeout");
    assert!(
        err.to_string().starts_with("invalid `timeout.timeout`: "),
        "{err}"
    );
}

#[test]
fn a_zero_deadline_is_invalid() {
    let err = DeadlineLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "deadline.timeout");
    assert!(
        err.to_string().starts_with("invalid `deadline.timeout`: "),
        "{err}"
    );
}

#[test]
fn the_smallest_durations_are_valid_and_kept() {
    let one = Duration::from_nanos(1);
    assert_eq!(TimeoutLayer::new(one).unwrap().timeout(), one);
    assert_eq!(
        TimeoutLayer::new(one).unwrap().deadline_aware().timeout(),
        one
    );
    assert_eq!(DeadlineLayer::new(one).unwrap().timeout(), one);
    let svc = TimeoutLayer::new(one).unwrap().layer(());
    assert_eq!(svc.timeout(), one);
    let svc = DeadlineLayer::new(one).unwrap().layer(());
    assert_eq!(svc.timeout(), one);
}

fn quick<Req>() -> impl tower_service::Service<Req, Response = u8, Error = Infallible> + Clone {
    tower::service_fn(|_: Req| std::future::ready(Ok(7)))
}

#[tokio::test(start_paused = true)]
async fn duration_max_timeouts_do_not_panic() {
    let svc = TimeoutLayer::new(Duration::MAX).unwrap().layer(quick());
    assert_eq!(svc.oneshot(()).await.unwrap(), 7);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn duration_max_deadlines_do_not_panic() {
    use steadfast::deadline::{CarriesDeadline, Deadline};

    let svc = DeadlineLayer::new(Duration::MAX).unwrap().layer(quick());
    let mut req = super::grpc_request();
    req.headers_mut()
        .insert("grpc-timeout", http::HeaderValue::from_static("99999999H"));
    assert_eq!(svc.oneshot(req).await.unwrap(), 7);

    // A deadline-aware timeout of `Duration::MAX` under a request deadline
    // (the `Instant` addition overflows) and under a deadline decades away.
    for deadline in [
        Deadline::after(Duration::from_secs(1)),
        Deadline::after(Duration::MAX),
    ] {
        let svc = TimeoutLayer::new(Duration::MAX)
            .unwrap()
            .deadline_aware()
            .layer(quick());
        let mut req = http::Request::new(());
        req.set_deadline(deadline);
        assert_eq!(svc.oneshot(req).await.unwrap(), 7);
    }
}

fn send_sync_clone_debug<T: Send + Sync + Clone + std::fmt::Debug>(_: &T) {}

#[test]
fn layers_and_services_are_send_sync_clone_debug() {
    let timeout = TimeoutLayer::new(Duration::from_secs(1)).unwrap();
    send_sync_clone_debug(&timeout);
    send_sync_clone_debug(&timeout.deadline_aware());
    let deadline = DeadlineLayer::new(Duration::from_secs(1)).unwrap();
    send_sync_clone_debug(&deadline);
    let svc: Timeout<()> = timeout.layer(());
    send_sync_clone_debug(&svc);
    send_sync_clone_debug(&timeout.deadline_aware().layer(()));
    let svc: WithDeadline<()> = deadline.layer(());
    send_sync_clone_debug(&svc);
    assert_eq!(
        format!("{:?}", deadline.ignore_incoming_timeout().layer(())),
        "WithDeadline { inner: (), timeout: 1s, honor_incoming: false }"
    );
}
