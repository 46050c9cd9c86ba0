//! A percentile delay: the upper bound until the window holds enough
//! calls, then the percentile of the window, refreshed every tenth of it.

use std::time::Duration;

use steadfast::hedge::{HedgeConfig, HedgeLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use crate::harness::{ms, Backend, Step};

/// p95 of the last 10 s, from 1 ms to `max`, no budget.
fn p95(max: Duration) -> HedgeLayer {
    let config = HedgeConfig::builder()
        .delay_percentile(95.0, Duration::from_secs(10), ms(1), max)
        .no_budget()
        .build()
        .unwrap();
    HedgeLayer::new(config)
}

#[tokio::test(start_paused = true)]
async fn the_delay_follows_the_p95_of_the_window() {
    // 100 calls of 20 ms, then a call whose first attempt hangs.
    let mut script = vec![Step::Ok(20); 100];
    script.extend([Step::Hang, Step::Ok(5)]);
    let backend = Backend::new(&script);
    let config = HedgeConfig::builder()
        .delay_percentile(95.0, Duration::from_secs(10), ms(1), ms(500))
        .no_budget()
        .build()
        .unwrap();
    let layer = HedgeLayer::new(config);
    let handle = layer.handle();
    let svc = layer.layer(backend.service());
    assert_eq!(
        handle.snapshot().delay,
        ms(500),
        "the upper bound until warmed up"
    );
    for _ in 0..100 {
        svc.clone().oneshot(1).await.unwrap();
    }
    // 2 s have passed; the estimate was read at the first call after 1 s
    // (a tenth of the window), from the 50 calls before it.
    assert_eq!(handle.snapshot().delay, ms(20));
    assert_eq!(
        handle.snapshot().hedges,
        0,
        "no call was slower than the delay"
    );

    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 101);
    assert_eq!(backend.sent_ms()[100..], [2000, 2020]);
    assert_eq!(start.elapsed(), ms(25));
}

#[tokio::test(start_paused = true)]
async fn old_calls_leave_the_window() {
    // 50 calls of 200 ms, a quiet minute, then 50 calls of 10 ms.
    let mut script = vec![Step::Ok(200); 50];
    script.extend(vec![Step::Ok(10); 300]);
    let backend = Backend::new(&script);
    let layer = p95(ms(1000));
    let handle = layer.handle();
    let svc = layer.layer(backend.service());
    for _ in 0..50 {
        svc.clone().oneshot(1).await.unwrap();
    }
    assert_near(handle.snapshot().delay, ms(200));
    tokio::time::sleep(Duration::from_secs(60)).await;
    // 300 calls of 10 ms, 3 s. Were the slow calls still counted, 50 of
    // 350 would put p95 at 200 ms; the window holds at most the few made
    // after the last refresh before the quiet minute. (The 10 ms are read
    // at the midpoint of their histogram bucket, within 3.125 %.)
    for _ in 0..300 {
        svc.clone().oneshot(1).await.unwrap();
    }
    assert_near(handle.snapshot().delay, ms(10));
}

/// Within the histogram's 3.125 %.
fn assert_near(delay: Duration, expected: Duration) {
    let (lo, hi) = (expected * 31 / 32, expected * 33 / 32);
    assert!(
        delay >= lo && delay <= hi,
        "{delay:?}, expected about {expected:?}"
    );
}
