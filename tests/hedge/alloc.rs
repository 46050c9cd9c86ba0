//! A call answered at its first poll allocates nothing: no box for the
//! first attempt, no timer, no hedging state (`tests/alloc`'s counting
//! allocator, which counts this thread's allocations only).

use steadfast::hedge::{HedgeConfig, HedgeLayer};
use tower::Layer;

use crate::cases::{allocs_per_call, drive, Bare};
use crate::harness::ms;

#[test]
fn the_fast_path_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for config in [
        HedgeConfig::builder().delay(ms(10)).build().unwrap(),
        HedgeConfig::default(), // p95, with the budget
    ] {
        let layer = HedgeLayer::new(config);
        let mut svc = layer.layer(Bare);
        let per_call = allocs_per_call(1_000, |i| assert_eq!(drive(&mut svc, i).unwrap(), i));
        assert_eq!(per_call, 0.0);
        assert_eq!(layer.handle().snapshot().calls, 1_001);
    }
}
