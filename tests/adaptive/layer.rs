//! The layer: drops, RTT samples, cancellation, the bulkhead following,
//! the handle, the configuration.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use steadfast::adaptive::{
    AdaptiveHandle, AdaptiveLimitBuilder, AdaptiveLimitLayer, Aimd, Algorithm, Gradient,
};
use steadfast::bulkhead::error::BulkheadFull;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::classify::Outcome;
use steadfast::metrics::Registry;
use steadfast::BoxError;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the test backend does with a call.
#[derive(Clone, Copy, Debug)]
enum Do {
    /// Answers after this many milliseconds.
    Ok(u64),
    /// Fails after this many milliseconds.
    Fail(u64),
    /// Answers with an outcome the classifier ignores.
    Ignore,
}

async fn backend(d: Do) -> Result<&'static str, std::io::Error> {
    match d {
        Do::Ok(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok("ok")
        }
        Do::Fail(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Err(std::io::Error::other("overloaded"))
        }
        Do::Ignore => Ok("ignore"),
    }
}

fn classify(r: &Result<&'static str, std::io::Error>) -> Outcome {
    match r {
        Ok("ignore") => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// A bulkhead of `max` with the adaptive limit `build` configures, over
/// [`backend`].
fn limited(
    max: usize,
    build: impl FnOnce(AdaptiveLimitBuilder) -> AdaptiveLimitBuilder,
) -> (
    AdaptiveHandle,
    impl Service<Do, Response = &'static str, Error = BoxError, Future: Send> + Clone,
) {
    let bulkhead = BulkheadLayer::new(max).unwrap();
    let adaptive = build(AdaptiveLimitLayer::builder(bulkhead.handle()))
        .build()
        .unwrap();
    let handle = adaptive.handle();
    let svc = ServiceBuilder::new()
        .layer(bulkhead)
        .layer(adaptive)
        .service_fn(backend);
    (handle, svc)
}

#[tokio::test(start_paused = true)]
async fn each_drop_multiplies_the_limit_and_the_bulkhead_follows() {
    let (limit, svc) = limited(40, |b| {
        b.algorithm(Aimd::new().backoff_ratio(0.75)).min_limit(10)
    });

    assert_eq!(limit.limit(), 40);
    svc.clone().oneshot(Do::Fail(5)).await.unwrap_err();
    assert_eq!(limit.estimate(), 30.0);
    assert_eq!(limit.bulkhead().max_concurrent(), 30);
    svc.clone().oneshot(Do::Fail(5)).await.unwrap_err();
    assert_eq!(limit.estimate(), 22.5);
    assert_eq!(limit.bulkhead().max_concurrent(), 22);
    for _ in 0..10 {
        svc.clone().oneshot(Do::Fail(0)).await.unwrap_err();
    }
    assert_eq!(limit.limit(), 10, "never under min_limit");
    assert_eq!(limit.bulkhead().max_concurrent(), 10);
    assert_eq!(limit.drops(), 12);
    // AIMD reads no clock: no RTT.
    assert_eq!(limit.short_rtt(), None);
}

#[tokio::test(start_paused = true)]
async fn successes_grow_the_limit_only_while_it_is_in_use() {
    let (limit, svc) = limited(4, |b| b.algorithm(Aimd::new().increase(2.0)).max_limit(5));

    // One call at a time: 1 of 4 in flight, under half: no growth.
    for _ in 0..20 {
        svc.clone().oneshot(Do::Ok(1)).await.unwrap();
    }
    assert_eq!(limit.estimate(), 4.0);
    assert_eq!(limit.snapshot().samples, 20);

    // Four at once: a success adds increase / limit while at least half
    // the limit is in flight (the call itself included).
    let round = || async {
        let calls: Vec<_> = (0..4).map(|_| svc.clone().oneshot(Do::Ok(1))).collect();
        for r in futures_util::future::join_all(calls).await {
            r.unwrap();
        }
    };
    round().await;
    // 4 in flight: + 2/4; 3: + 2/4.5; 2 (under half of 4.94): nothing.
    let expected = 4.0 + 2.0 / 4.0 + 2.0 / 4.5;
    assert!(
        (limit.estimate() - expected).abs() < 1e-9,
        "{}",
        limit.estimate()
    );
    assert_eq!(limit.limit(), 4);
    round().await;
    // Over 5, capped at max_limit.
    assert_eq!(limit.estimate(), 5.0);
    assert_eq!(limit.limit(), 5);
    assert_eq!(limit.bulkhead().max_concurrent(), 5);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_and_cancelled_calls_teach_nothing_and_free_the_slot() {
    let bulkhead = BulkheadLayer::new(8).unwrap();
    let bh = bulkhead.handle();
    let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
        .algorithm(Gradient::new())
        .build()
        .unwrap()
        .classify(classify);
    let limit = adaptive.handle();
    let mut svc = ServiceBuilder::new()
        .layer(bulkhead)
        .layer(adaptive)
        .service_fn(backend);

    svc.ready().await.unwrap().call(Do::Ignore).await.unwrap();
    assert_eq!(limit.snapshot().samples, 0);

    // Dropped half way: no sample, no drop, the slot comes back.
    let fut = svc.ready().await.unwrap().call(Do::Fail(100));
    assert_eq!(bh.in_flight(), 1);
    let timed = tokio::time::timeout(Duration::from_millis(50), fut).await;
    assert!(timed.is_err());
    assert_eq!(bh.in_flight(), 0);
    let s = limit.snapshot();
    assert_eq!((s.samples, s.drops, s.skipped), (0, 0, 0));
    assert_eq!(s.limit, 8);
}

#[tokio::test(start_paused = true)]
async fn the_gradient_measures_round_trips_on_tokio_time() {
    let (limit, svc) = limited(2, |b| {
        b.algorithm(Gradient::new().short_window(2).measure_every(1))
    });

    svc.clone().oneshot(Do::Ok(30)).await.unwrap();
    assert_eq!(limit.short_rtt(), Some(Duration::from_millis(30)));
    assert_eq!(limit.long_rtt(), Some(Duration::from_millis(30)));
    svc.clone().oneshot(Do::Ok(10)).await.unwrap();
    // short: 30 + (10 − 30) / 2; long: the least.
    assert_eq!(limit.short_rtt(), Some(Duration::from_millis(20)));
    assert_eq!(limit.long_rtt(), Some(Duration::from_millis(10)));
    // A drop is no RTT sample.
    svc.clone().oneshot(Do::Fail(1)).await.unwrap_err();
    assert_eq!(limit.short_rtt(), Some(Duration::from_millis(20)));
    assert_eq!(limit.drops(), 1);
}

#[tokio::test(start_paused = true)]
async fn queueing_at_the_backend_brings_the_gradient_limit_down_and_the_bulkhead_rejects() {
    let bulkhead = BulkheadLayer::new(50).unwrap();
    let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
        .algorithm(Gradient::new().measure_every(1))
        .min_limit(2)
        .build()
        .unwrap();
    let limit = adaptive.handle();
    // A backend that serves four calls at a time, 10 ms each.
    let gate = Arc::new(tokio::sync::Semaphore::new(4));
    let svc = ServiceBuilder::new()
        .layer(bulkhead)
        .layer(adaptive)
        .service_fn(move |()| {
            let gate = gate.clone();
            async move {
                let _one = gate.acquire().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, std::io::Error>(())
            }
        });
    let rejected = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    // 50 callers in a loop for 3 s.
    for _ in 0..50 {
        let svc = svc.clone();
        let rejected = rejected.clone();
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < Duration::from_secs(3) {
                match svc.clone().oneshot(()).await {
                    Ok(()) => {}
                    Err(e) => {
                        assert!(e.is::<BulkheadFull>(), "{e}");
                        rejected.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Capacity 4 at 10 ms: the limit settles near tolerance × 4 + √limit
    // (the RTT then 1.5 × 10 ms), not at the 50 callers.
    assert!((4..=12).contains(&limit.limit()), "{}", limit.snapshot());
    assert_eq!(limit.long_rtt(), Some(Duration::from_millis(10)));
    assert!(rejected.load(Relaxed) > 0);
    assert_eq!(limit.bulkhead().max_concurrent(), limit.limit());
}

#[test]
fn bad_settings_are_errors_naming_the_field() {
    let bh = || BulkheadLayer::new(10).unwrap().handle();
    let field =
        |b: steadfast::adaptive::AdaptiveLimitBuilder| b.build().unwrap_err().field().to_owned();
    assert_eq!(
        field(AdaptiveLimitLayer::builder(bh()).min_limit(0)),
        "adaptive.min_limit"
    );
    assert_eq!(
        field(AdaptiveLimitLayer::builder(bh()).min_limit(5).max_limit(4)),
        "adaptive.max_limit"
    );
    assert_eq!(
        field(AdaptiveLimitLayer::builder(bh()).max_limit(u32::MAX as usize + 1)),
        "adaptive.max_limit"
    );
    assert_eq!(
        field(
            AdaptiveLimitLayer::builder(bh())
                .max_limit(20)
                .initial_limit(21)
        ),
        "adaptive.initial_limit"
    );
    assert_eq!(
        field(AdaptiveLimitLayer::builder(bh()).algorithm(Gradient::new().smoothing(f64::NAN))),
        "adaptive.gradient.smoothing"
    );
    assert_eq!(
        field(AdaptiveLimitLayer::builder(bh()).algorithm(Aimd::new().backoff_ratio(-1.0))),
        "adaptive.aimd.backoff_ratio"
    );
}

#[test]
fn building_sets_the_bulkhead_to_the_initial_limit() {
    let bulkhead = BulkheadLayer::new(500).unwrap();
    let layer = AdaptiveLimitLayer::builder(bulkhead.handle())
        .max_limit(100)
        .build()
        .unwrap();
    // The bulkhead's 500, brought into [1, 100].
    assert_eq!(bulkhead.handle().max_concurrent(), 100);
    assert_eq!(layer.handle().limit(), 100);
    let layer = AdaptiveLimitLayer::builder(bulkhead.handle())
        .initial_limit(7)
        .name("orders")
        .build()
        .unwrap();
    assert_eq!(bulkhead.handle().max_concurrent(), 7);
    let s = layer.handle().snapshot();
    assert_eq!((s.limit, s.min_limit, s.max_limit), (7, 1, 1000));
    assert_eq!(s.name.as_deref(), Some("orders"));
    assert!(
        s.to_string()
            .starts_with("orders: limit 7 (7.00) in [1, 1000]"),
        "{s}"
    );
    assert!(matches!(layer.handle().algorithm(), Algorithm::Gradient(_)));
}

#[tokio::test(start_paused = true)]
async fn the_limit_and_rtts_are_exported() {
    let (limit, svc) = limited(10, |b| {
        b.algorithm(Gradient::new().measure_every(1)).name("orders")
    });
    let registry = Registry::new();
    registry.register(limit);
    svc.clone().oneshot(Do::Ok(20)).await.unwrap();
    svc.oneshot(Do::Fail(1)).await.unwrap_err();
    let text = registry.render_prometheus();
    assert!(
        text.contains("resilience_adaptive_limit{name=\"orders\"} 9"),
        "{text}"
    );
    assert!(
        text.contains("resilience_adaptive_rtt_seconds{name=\"orders\",window=\"short\"} 0.02"),
        "{text}"
    );
    assert!(
        text.contains(
            "resilience_events_total{layer=\"adaptive\",name=\"orders\",event=\"drop\"} 1"
        ),
        "{text}"
    );
}
