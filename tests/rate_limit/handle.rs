//! `RateLimitHandle`, `RateLimitSnapshot`, auto traits.

use steadfast::rate_limit::{RateLimitHandle, RateLimitSnapshot};

use super::*;

#[tokio::test(start_paused = true)]
async fn available_follows_the_rate() {
    let layer = layer(4, Duration::from_secs(1), 3); // 250 ms a cell
    let h = layer.handle();
    assert_eq!((h.burst(), h.interval()), (3, 250 * MS));
    assert_eq!(h.available(), 3);
    let (mut svc, _) = service(&layer);
    assert!(try_call(&mut svc, 1).unwrap().is_ok());
    assert!(try_call(&mut svc, 2).unwrap().is_ok());
    assert_eq!(h.available(), 1);
    assert!(try_call(&mut svc, 3).unwrap().is_ok());
    assert_eq!(h.available(), 0);
    tokio::time::advance(249 * MS).await;
    assert_eq!(h.available(), 0);
    tokio::time::advance(MS).await;
    assert_eq!(h.available(), 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(h.available(), 3, "never more than the burst");
}

#[tokio::test(start_paused = true)]
async fn snapshot_counts_and_displays() {
    let layer = RateLimitLayer::builder(10, Duration::from_secs(1))
        .burst(1)
        .max_wait(250 * MS)
        .max_waiting(2)
        .name("orders")
        .build()
        .unwrap();
    let h = layer.handle();
    assert_eq!(h.name(), Some("orders"));
    let (mut svc, _) = service(&layer);
    assert_eq!(try_call(&mut svc, 0), Some(Ok(0)));
    let mut a = call(&mut svc, 1); // turn at 100 ms
    let mut b = call(&mut svc, 2); // turn at 200 ms
    tokio_test::assert_pending!(a.poll());
    tokio_test::assert_pending!(b.poll());
    assert_eq!(h.waiting(), 2);
    assert_eq!(h.available(), 0, "0 while callers wait");
    let mut c = call(&mut svc, 3); // the queue is full
    assert_eq!(rejected(&mut c).waited(), Duration::ZERO);
    drop(b);
    tokio::time::advance(100 * MS).await;
    assert_eq!(tokio_test::assert_ready_ok!(a.poll()), 1);

    let s: RateLimitSnapshot = h.snapshot();
    assert_eq!(s.name.as_deref(), Some("orders"));
    assert_eq!(
        (s.burst, s.interval, s.available, s.waiting),
        (1, 100 * MS, 0, 0)
    );
    assert_eq!(
        (
            s.waited,
            s.rejected,
            s.rejected_after_waiting,
            s.cancelled_waiting
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(s.rejected_total(), 1);
    assert_eq!(
        s.to_string(),
        "orders: burst 1 every 100ms | 0 available, 0 waiting | waited 1 | rejected 1 (after waiting 0) | cancelled while waiting 1"
    );
    assert!(format!("{h:?}").contains("RateLimitHandle"));
    assert!(format!("{layer:?}").contains("orders"));
}

#[test]
fn unnamed_snapshot_display_has_no_prefix() {
    let layer = RateLimitLayer::new(5, Duration::from_secs(1)).unwrap();
    let s = layer.handle().snapshot();
    assert_eq!(s.name, None);
    assert!(s.to_string().starts_with("burst 5 every 200ms"), "{s}");
}

#[test]
fn layer_service_handle_and_future_are_send_sync_clone() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    fn send<T: Send>(_: &T) {}
    send_sync_clone::<RateLimitLayer>();
    send_sync_clone::<RateLimitHandle>();
    send_sync_clone::<Limited>();
    send_sync_clone::<RateLimited>();
    send_sync_clone::<steadfast::rate_limit::Rejected>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut svc, _) = service(&layer(1, Duration::from_secs(1), 1));
        let fut: ResponseFuture<Recorder, u32> = svc.call(1);
        send(&fut);
    });
}
