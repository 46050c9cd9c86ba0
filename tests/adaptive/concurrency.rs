//! Many tasks at once on a multi-thread runtime: nobody waits for the
//! estimate, every drop is counted, the limit stays in bounds and the
//! bulkhead ends at the estimate's limit.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use steadfast::adaptive::{AdaptiveLimitLayer, AdaptiveSnapshot, Aimd, Gradient};
use steadfast::bulkhead::BulkheadLayer;
use tower::{ServiceBuilder, ServiceExt};

/// 16 tasks × 2,000 calls through one bulkhead with an adaptive limit of
/// `algorithm`; a request `n` fails when `fails(n)`. Returns the final
/// snapshot and the successes and failures the callers saw.
async fn hammer(
    algorithm: steadfast::adaptive::Algorithm,
    fails: fn(u64) -> bool,
) -> (AdaptiveSnapshot, u64, u64) {
    let bulkhead = BulkheadLayer::new(64).unwrap();
    let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
        .algorithm(algorithm)
        .min_limit(4)
        .max_limit(128)
        .build()
        .unwrap();
    let limit = adaptive.handle();
    let failures = Arc::new(AtomicU64::new(0));
    let successes = Arc::new(AtomicU64::new(0));
    let svc = ServiceBuilder::new()
        .layer(bulkhead)
        .layer(adaptive)
        .service_fn(move |n: u64| async move {
            tokio::task::yield_now().await;
            if fails(n) {
                Err(std::io::Error::other("overloaded"))
            } else {
                Ok(())
            }
        });
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let svc = svc.clone();
            let (failures, successes) = (failures.clone(), successes.clone());
            let limit = limit.clone();
            tokio::spawn(async move {
                for i in 0..2_000u64 {
                    match svc.clone().oneshot(t * 7 + i).await {
                        Ok(()) => successes.fetch_add(1, Relaxed),
                        // A real failure, or a full bulkhead (not a drop).
                        Err(e) if e.to_string() == "overloaded" => failures.fetch_add(1, Relaxed),
                        Err(_) => 0,
                    };
                    let l = limit.limit();
                    assert!((4..=128).contains(&l), "{l}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = limit.snapshot();
    assert_eq!(s.drops, failures.load(Relaxed), "{s}");
    assert_eq!(s.in_flight, 0);
    assert_eq!(limit.bulkhead().max_concurrent(), s.limit, "{s}");
    (s, successes.load(Relaxed), failures.load(Relaxed))
}

/// Every call timed: every success was a sample or was skipped; drops are
/// samples or are applied by the next holder.
async fn hammer_every_call(algorithm: steadfast::adaptive::Algorithm) {
    let (s, successes, failures) = hammer(algorithm, |n| n % 5 == 0).await;
    assert!(s.samples + s.skipped <= successes + failures, "{s}");
    assert!(s.samples + s.skipped >= successes, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_aimd() {
    hammer_every_call(Aimd::new().into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_gradient() {
    hammer_every_call(Gradient::new().measure_every(1).into()).await;
}

/// The gradient's default times one call in 8 per thread: an untimed
/// success skips the estimate entirely.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_gradient_sampled() {
    let (s, successes, failures) = hammer(Gradient::new().into(), |_| false).await;
    assert_eq!(failures, 0);
    // Every timed success is a sample or was skipped: about one in 8 (per
    // thread, so each of the 4 workers may be up to 7 short).
    let timed = s.samples + s.skipped;
    assert!(
        (successes / 8).saturating_sub(28) <= timed && timed <= successes / 8 + 4,
        "{timed} timed of {successes}: {s}"
    );
}
