use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use steadfast::chaos::{Fault, FaultLayer, Latency};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::{counting, Boom, Seen, RESPONDED};

const CALLS: u64 = 100_000;

/// `|count - n p| <= 5 σ` for a binomial count.
fn assert_within_5_sigma(what: &str, count: u64, p: f64) {
    let n = CALLS as f64;
    let sigma = (n * p * (1.0 - p)).sqrt();
    let diff = (count as f64 - n * p).abs();
    assert!(
        diff <= 5.0 * sigma,
        "{what}: {count} of {CALLS}, expected {} ± {:.0} (5σ)",
        n * p,
        5.0 * sigma
    );
}

/// Every fault at a rate, 100,000 calls made outside any runtime (no fault
/// here needs a timer): the shares match the rates, and the snapshot counts
/// exactly what the calls returned.
#[test]
fn fault_rates_within_five_sigma_and_counted_exactly() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder()
        .seed(42)
        .name("rates")
        .fault(0.10, Fault::error(|| Boom))
        .fault(0.05, Fault::refused())
        .fault(0.02, Fault::reset())
        .fault(0.03, Fault::respond(|| RESPONDED))
        .fault(0.01, Fault::hang())
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(counting(&started));

    let mut seen: HashMap<Seen, u64> = HashMap::new();
    for i in 0..CALLS {
        let fut = svc.call(i as u32);
        *seen.entry(Seen::of(fut.now_or_never())).or_default() += 1;
    }
    let count = |s| seen.get(&s).copied().unwrap_or(0);
    assert_within_5_sigma("errors", count(Seen::Error), 0.10);
    assert_within_5_sigma("refused", count(Seen::Refused), 0.05);
    assert_within_5_sigma("reset", count(Seen::Reset), 0.02);
    assert_within_5_sigma("responses", count(Seen::Responded), 0.03);
    assert_within_5_sigma("hangs", count(Seen::Hang), 0.01);
    assert_within_5_sigma("passed", count(Seen::Ok), 0.79);

    let snap = handle.snapshot();
    assert_eq!(snap.name.as_deref(), Some("rates"));
    assert_eq!(snap.calls, CALLS);
    assert_eq!(snap.passed, count(Seen::Ok));
    assert_eq!(snap.delayed, 0);
    assert_eq!(snap.errors, count(Seen::Error));
    assert_eq!(snap.responses, count(Seen::Responded));
    assert_eq!(snap.hangs, count(Seen::Hang));
    assert_eq!(snap.refused, count(Seen::Refused));
    assert_eq!(snap.reset, count(Seen::Reset));
    assert!(snap.windows.is_empty());
    assert_eq!(snap.injected() + snap.passed, CALLS);
    // The inner service ran for the calls passed through and the resets.
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst) as u64,
        count(Seen::Ok) + count(Seen::Reset)
    );
}

/// A fault at rate 0 never fires, one at rate 1 always does.
#[test]
fn rates_zero_and_one_are_exact() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder()
        .fault(0.0, Fault::hang())
        .fault(1.0, Fault::refused())
        .build()
        .unwrap();
    let mut svc = layer.layer(counting(&started));
    for i in 0..10_000 {
        assert_eq!(Seen::of(svc.call(i).now_or_never()), Seen::Refused);
    }
    assert_eq!(layer.handle().snapshot().refused, 10_000);
}

/// `latency_rate` of the calls are delayed, each by a value from the
/// distribution; the mean of a uniform and of a capped exponential latency
/// lie within 5σ of theirs.
#[tokio::test(start_paused = true)]
async fn latency_rate_and_distributions() {
    let started = Arc::new(AtomicUsize::new(0));
    let ms = Duration::from_millis;

    // The gate: counted in `call`, so the futures need not run.
    let layer = FaultLayer::builder()
        .seed(7)
        .latency(Latency::fixed(ms(5)))
        .latency_rate(0.25)
        .build()
        .unwrap();
    let mut svc = layer.layer(counting(&started));
    for i in 0..CALLS {
        drop(svc.call(i as u32));
    }
    let snap = layer.handle().snapshot();
    assert_within_5_sigma("delayed", snap.delayed, 0.25);
    assert_eq!(snap.passed, CALLS);

    // The values, measured on the virtual clock.
    let n = 20_000;
    let uniform = Latency::uniform(ms(10), ms(30));
    // Mean 10 ms, σ ≈ 5.8 ms for uniform; the exponential's σ is at most its mean.
    let exponential = Latency::exponential(ms(20), ms(100));
    for (latency, mean, sigma, min, max) in [
        (uniform, 20.0, 20.0 / 12f64.sqrt(), ms(10), ms(30)),
        // E[min(X, c)] = m (1 - e^(-c/m)).
        (
            exponential,
            20.0 * (1.0 - (-5.0f64).exp()),
            20.0,
            Duration::ZERO,
            ms(100),
        ),
    ] {
        let layer = FaultLayer::builder()
            .seed(3)
            .latency(latency)
            .build()
            .unwrap();
        let mut svc = layer.layer(counting(&started));
        let mut total = Duration::ZERO;
        for i in 0..n {
            let start = Instant::now();
            svc.ready().await.unwrap().call(i).await.unwrap();
            let took = start.elapsed();
            // tokio's timer rounds a deadline up to the next millisecond.
            assert!(took >= min && took <= max + ms(1), "{latency:?}: {took:?}");
            total += took;
        }
        let mean_ms = total.as_secs_f64() * 1_000.0 / n as f64;
        // Rounding up to whole milliseconds adds 0.5 ms on average.
        let expected = mean + 0.5;
        let bound = 5.0 * sigma / (n as f64).sqrt() + 0.05;
        assert!(
            (mean_ms - expected).abs() <= bound,
            "{latency:?}: mean {mean_ms} ms, expected {expected} ± {bound}"
        );
        assert_eq!(layer.handle().snapshot().delayed, u64::from(n));
    }
}
