//! Build-time validation: every bad value names its field, none panics.

use steadfast::rate_limit::RateLimitBuilder;

use super::*;

#[track_caller]
fn field(b: RateLimitBuilder) -> String {
    b.build().expect_err("invalid config").field().to_owned()
}

#[test]
fn rate_zero_or_more_than_one_per_nanosecond() {
    let b = RateLimitLayer::builder;
    assert_eq!(field(b(0, Duration::from_secs(1))), "rate_limit.rate");
    assert_eq!(
        field(b(1001, Duration::from_nanos(1000))),
        "rate_limit.rate"
    );
    assert_eq!(
        field(b(u64::MAX, Duration::from_secs(1))),
        "rate_limit.rate"
    );
    assert_eq!(field(b(2, Duration::from_nanos(1))), "rate_limit.rate");
    // One per nanosecond is the most.
    assert!(b(1000, Duration::from_nanos(1000)).build().is_ok());
    assert_eq!(
        RateLimitLayer::new(0, Duration::from_secs(1))
            .unwrap_err()
            .field(),
        "rate_limit.rate"
    );
}

#[test]
fn period_zero() {
    assert_eq!(
        field(RateLimitLayer::builder(1, Duration::ZERO)),
        "rate_limit.period"
    );
    // The rate's check comes first.
    assert_eq!(
        field(RateLimitLayer::builder(0, Duration::ZERO)),
        "rate_limit.rate"
    );
}

#[test]
fn burst_zero_or_spanning_more_than_73_years() {
    let b = || RateLimitLayer::builder(10, Duration::from_secs(1));
    assert_eq!(field(b().burst(0)), "rate_limit.burst");
    assert_eq!(field(b().burst(u64::MAX)), "rate_limit.burst");
    // 100 ms per cell: 2^61 ns is about 73 years, 23 billion cells.
    assert_eq!(field(b().burst(23_058_430_093)), "rate_limit.burst");
    assert!(b().burst(23_058_430_092).build().is_ok());
    // A period so long that even the default burst (the rate) spans too much.
    assert_eq!(
        field(RateLimitLayer::builder(1, Duration::MAX)),
        "rate_limit.burst"
    );
    assert_eq!(
        field(RateLimitLayer::builder(u64::MAX, Duration::MAX)),
        "rate_limit.burst"
    );
}

#[test]
fn max_waiting_without_max_wait_or_zero() {
    let b = || RateLimitLayer::builder(10, Duration::from_secs(1));
    assert_eq!(field(b().max_waiting(4)), "rate_limit.max_waiting");
    assert_eq!(
        field(b().max_wait(Duration::ZERO).max_waiting(4)),
        "rate_limit.max_waiting"
    );
    assert_eq!(
        field(b().max_wait(MS).max_waiting(0)),
        "rate_limit.max_waiting"
    );
    assert!(b().max_wait(MS).max_waiting(1).build().is_ok());
    assert!(b().max_wait(Duration::MAX).build().is_ok());
}

/// Extreme values build or fail with a field, never panic, and the layers
/// that build serve a call.
#[tokio::test(start_paused = true)]
async fn extreme_values_never_panic() {
    let rates = [1, 2, 1_000_000_007, u64::MAX / 2, u64::MAX];
    let periods = [
        Duration::from_nanos(1),
        Duration::from_secs(1),
        Duration::from_secs(u64::MAX / 1_000_000_000),
        Duration::MAX,
    ];
    let bursts = [None, Some(1), Some(u64::MAX / 2), Some(u64::MAX)];
    for rate in rates {
        for period in periods {
            for burst in bursts {
                for max_wait in [Duration::ZERO, Duration::MAX] {
                    let mut b = RateLimitLayer::builder(rate, period).max_wait(max_wait);
                    if let Some(burst) = burst {
                        b = b.burst(burst);
                    }
                    match b.build() {
                        Ok(layer) => {
                            let (mut svc, _) = service(&layer);
                            assert_eq!(try_call(&mut svc, 1), Some(Ok(1)));
                            let _ = try_call(&mut svc, 2);
                            let s = layer.handle().snapshot();
                            assert!(s.burst >= 1 && s.interval >= Duration::from_nanos(1));
                        }
                        Err(e) => assert!(
                            e.field().starts_with("rate_limit."),
                            "{rate} per {period:?}, burst {burst:?}: {e}"
                        ),
                    }
                }
            }
        }
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let e = RateLimitLayer::builder(10, Duration::from_secs(1))
        .burst(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("rate_limit.burst"), "{e}");
    let e = RateLimitLayer::builder(5, Duration::from_nanos(4))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("nanosecond"), "{e}");
}
