//! The backoff is slept between attempts: each attempt starts at an exact
//! virtual instant.

use std::time::Duration;

use steadfast::retry::{Backoff, CloneRequest, Jitter, RetryLayer, Verdict};
use steadfast::BoxError;
use tower::{service_fn, Layer, ServiceExt};

use crate::harness::{down, flaky, ms, offsets, quick, Calls, Counts};

#[tokio::test(start_paused = true)]
async fn fixed_backoff_spaces_attempts_evenly() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().max_attempts(4).build().unwrap());
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 4 failed");
    assert_eq!(calls.offsets(), offsets(&[0, 100, 200, 300]));
    assert_eq!(
        calls.elapsed(),
        ms(300),
        "returns at the last attempt's end"
    );
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_without_jitter() {
    let calls = Calls::new();
    let config = quick()
        .max_attempts(5)
        .backoff(Backoff::exponential(ms(100), 2.0))
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let handle = layer.handle();
    assert_eq!(layer.layer(flaky(4, &calls)).oneshot(1).await.unwrap(), 5);
    // Waits of 100, 200, 400 and 800 ms.
    assert_eq!(calls.offsets(), offsets(&[0, 100, 300, 700, 1_500]));
    assert_eq!(Counts::of(&handle), Counts::call(5));
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_is_capped() {
    let calls = Calls::new();
    let config = quick()
        .max_attempts(5)
        .backoff(Backoff::exponential(ms(100), 3.0).max_delay(ms(500)))
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(down(&calls));
    svc.oneshot(1).await.unwrap_err();
    // Waits of 100, 300, 500 (not 900) and 500 ms.
    assert_eq!(calls.offsets(), offsets(&[0, 100, 400, 900, 1_400]));
}

#[tokio::test(start_paused = true)]
async fn linear_backoff() {
    let calls = Calls::new();
    let config = quick()
        .max_attempts(4)
        .backoff(Backoff::linear(ms(100), ms(50)))
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(down(&calls));
    svc.oneshot(1).await.unwrap_err();
    assert_eq!(calls.offsets(), offsets(&[0, 100, 250, 450]));
}

/// The backoff starts when an attempt ends, not when it started.
#[tokio::test(start_paused = true)]
async fn backoff_counts_from_the_end_of_an_attempt() {
    let calls = Calls::new();
    let log = calls.clone();
    let slow = service_fn(move |_: u32| {
        let n = log.record();
        async move {
            tokio::time::sleep(ms(30)).await;
            if n < 3 {
                Err::<usize, BoxError>("slow failure".into())
            } else {
                Ok(n)
            }
        }
    });
    let svc = RetryLayer::new(quick().build().unwrap()).layer(slow);
    assert_eq!(svc.oneshot(1).await.unwrap(), 3);
    assert_eq!(calls.offsets(), offsets(&[0, 130, 260]));
    assert_eq!(calls.elapsed(), ms(290));
}

/// A zero backoff retries at the same instant.
#[tokio::test(start_paused = true)]
async fn zero_backoff_retries_at_once() {
    let calls = Calls::new();
    let config = quick()
        .backoff(Backoff::fixed(Duration::ZERO))
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(flaky(2, &calls));
    assert_eq!(svc.oneshot(1).await.unwrap(), 3);
    assert_eq!(calls.offsets(), offsets(&[0, 0, 0]));
}

/// `Verdict::RetryThrottled` waits the throttled backoff, not the normal one.
#[tokio::test(start_paused = true)]
async fn throttled_verdict_uses_the_throttled_backoff() {
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::RetryThrottled,
    };
    let config = quick()
        .throttled_backoff(Backoff::exponential(ms(700), 2.0))
        .build()
        .unwrap();
    let layer = RetryLayer::with_policy(config, on, CloneRequest);
    let handle = layer.handle();
    assert_eq!(layer.layer(flaky(2, &calls)).oneshot(1).await.unwrap(), 3);
    assert_eq!(calls.offsets(), offsets(&[0, 700, 2_100]));
    assert_eq!(Counts::of(&handle), Counts::call(3));
}

/// The gaps between the attempts of one call through a fresh layer.
async fn jittered_gaps(seed: u64) -> Vec<Duration> {
    let calls = Calls::new();
    let config = quick()
        .max_attempts(8)
        .backoff(Backoff::exponential(ms(100), 2.0).jitter(Jitter::Full))
        .seed(seed)
        .build()
        .unwrap();
    let svc = RetryLayer::new(config).layer(down(&calls));
    svc.oneshot(1).await.unwrap_err();
    let at = calls.offsets();
    assert_eq!(at.len(), 8);
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_gives_the_same_schedule_twice() {
    let first = jittered_gaps(42).await;
    let second = jittered_gaps(42).await;
    assert_eq!(first, second);
    // Full jitter: each wait is at most the un-jittered delay ...
    let plain = Backoff::exponential(ms(100), 2.0);
    for (retry, gap) in (1..).zip(&first) {
        assert!(*gap <= plain.base_delay(retry), "{first:?}");
    }
    // ... and the waits really are jittered, and depend on the seed.
    let unjittered: Vec<Duration> = (1..8).map(|r| plain.base_delay(r)).collect();
    assert_ne!(first, unjittered);
    assert_ne!(first, jittered_gaps(7).await);
}
