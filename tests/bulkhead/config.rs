//! Build-time validation: every bad value is an `InvalidConfig` naming the field.

use super::*;

#[test]
fn zero_slots_is_invalid() {
    let err = BulkheadLayer::new(0).unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    assert_eq!(err.reason(), "must be at least 1, got 0");
    let err = BulkheadLayer::builder(0)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
}

#[test]
fn more_slots_than_u32_is_invalid() {
    let too_many = usize::try_from(u64::from(u32::MAX) + 1).unwrap_or(usize::MAX);
    if too_many == usize::MAX && usize::BITS == 32 {
        return; // cannot be expressed on this target
    }
    let err = BulkheadLayer::new(too_many).unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    assert!(err.reason().starts_with("must be at most"), "{err}");
    assert!(BulkheadLayer::new(u32::MAX as usize).is_ok());
}

#[test]
fn max_waiting_needs_max_wait() {
    let err = BulkheadLayer::builder(4)
        .max_waiting(10)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_waiting");
    assert!(err.reason().contains("max_wait is zero"), "{err}");
    let err = BulkheadLayer::builder(4)
        .max_wait(Duration::from_millis(5))
        .max_waiting(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_waiting");
    assert_eq!(
        err.to_string(),
        "invalid `bulkhead.max_waiting`: must be at least 1, got 0; for no queue, leave max_wait at zero"
    );
}

#[tokio::test(start_paused = true)]
async fn extreme_but_valid_values_build_and_work() {
    let layer = BulkheadLayer::builder(1)
        .max_wait(Duration::MAX)
        .max_waiting(usize::MAX)
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let _a = call(&mut svc, 1).await;
    let mut b = call(&mut svc, 2).await;
    tokio_test::assert_pending!(b.poll());
    // A `Duration::MAX` wait saturates to decades instead of overflowing.
    tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
    tokio_test::assert_pending!(b.poll());
    assert_eq!(received(&mut handle).unwrap().0, 1);
    assert!(received(&mut handle).is_none());
}

#[test]
fn new_is_the_builder_with_defaults() {
    let layer = BulkheadLayer::new(5).unwrap();
    let bh = layer.handle();
    assert_eq!(
        (bh.max_concurrent(), bh.in_flight(), bh.waiting()),
        (5, 0, 0)
    );
    assert_eq!(bh.name(), None);
    let debug = format!("{layer:?}");
    assert!(debug.contains("max_concurrent: 5"), "{debug}");
    assert!(debug.contains("max_wait: 0ns"), "{debug}");
}
