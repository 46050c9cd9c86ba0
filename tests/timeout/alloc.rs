//! The per-attempt timeout allocates nothing when the response comes first,
//! whether it is ready at once or only after the timer was registered.
//! Counted by the global allocator of `tests/alloc/cases.rs`, on the test's
//! own thread only.

use std::time::Duration;

use steadfast::timeout::TimeoutLayer;
use tower_layer::Layer;

use super::cases::{allocs_per_call, count_allocs, drive, Bare};
use super::pending_once::{drive_twice, PendingOnce};

const CALLS: u64 = 1_000;

/// Runs `f` inside a current-thread runtime's context with time enabled:
/// the timeout's `Sleep` needs the timer driver.
fn in_runtime<T>(f: impl FnOnce() -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    f()
}

#[test]
fn the_counter_sees_allocations() {
    let n = count_allocs(|| drop(std::hint::black_box(Box::new(1u64))));
    assert_eq!(n, 1);
}

#[test]
fn a_response_ready_at_once_allocates_nothing() {
    let per_call = in_runtime(|| {
        let mut svc = TimeoutLayer::new(Duration::from_secs(1))
            .unwrap()
            .layer(Bare);
        allocs_per_call(CALLS, |i| {
            assert_eq!(drive(&mut svc, i).expect("in time"), i);
        })
    });
    assert_eq!(per_call, 0.0);
}

#[test]
fn a_response_ready_on_the_second_poll_allocates_nothing() {
    // The first poll registers the timer with tokio's driver; dropping the
    // future deregisters it.
    let per_call = in_runtime(|| {
        let mut svc = TimeoutLayer::new(Duration::from_secs(1))
            .unwrap()
            .layer(PendingOnce);
        allocs_per_call(CALLS, |i| {
            assert_eq!(drive_twice(&mut svc, i).expect("in time"), i);
        })
    });
    assert_eq!(per_call, 0.0);
}
