//! Concurrency tests of the rate limiter, on real threads and a
//! multi-thread runtime.
//!
//! Paused time is not available here, so nothing asserts a duration. The
//! bounds are either exact and time-independent (a period so long that the
//! limit is exactly the burst) or an upper bound on admissions from the
//! elapsed time measured around the run (`tokio::time::Instant`, read
//! before the limiter is built and after the last call): admissions in that
//! span can only be fewer than the bound computed from it.

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use futures_util::FutureExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use steadfast::rate_limit::error::RateLimited;
use steadfast::rate_limit::{RateLimit, RateLimitLayer};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// An always-ready inner service that counts the calls it receives.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Service<u32> for Counter {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.0.fetch_add(1, Relaxed);
        ready(Ok(()))
    }
}

/// `threads` OS threads each make `attempts` calls through its own clone of
/// the service, started together; returns the admitted count per thread.
fn hammer(svc: &RateLimit<Counter>, threads: usize, attempts: u32) -> Vec<u64> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut svc = svc.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut admitted = 0;
                for n in 0..attempts {
                    // Without a max_wait the future is ready at once.
                    match svc.call(n).now_or_never().expect("never waits") {
                        Ok(()) => admitted += 1,
                        Err(e) => assert!(e.is::<RateLimited>(), "{e}"),
                    }
                }
                admitted
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// 2 threads × 1,000,000 calls on a limiter whose period is so long that
/// only the burst can pass: exactly `burst` admitted, whatever the
/// interleaving, and every other call counted as rejected. Runs through
/// the service (`call` and one poll of its future) in a few seconds in
/// debug builds.
#[test]
fn two_threads_a_million_calls_each_admit_exactly_the_burst() {
    const BURST: u64 = 1_000;
    const ATTEMPTS: u32 = 1_000_000;
    // One cell every 11.6 days.
    let layer = RateLimitLayer::builder(1, Duration::from_secs(1_000_000))
        .burst(BURST)
        .build()
        .unwrap();
    let counter = Counter::default();
    let svc = layer.layer(counter.clone());
    let per_thread = hammer(&svc, 2, ATTEMPTS);
    let admitted: u64 = per_thread.iter().sum();
    assert_eq!(admitted, BURST, "{per_thread:?}");
    assert_eq!(counter.0.load(Relaxed), BURST);
    let s = layer.handle().snapshot();
    assert_eq!(s.rejected, 2 * u64::from(ATTEMPTS) - BURST);
    assert_eq!((s.available, s.waiting), (0, 0));
}

/// The same race at a rate that refills during the run: admissions stay
/// within `burst + elapsed / interval`, elapsed measured around the run.
#[test]
fn two_threads_at_a_real_rate_stay_within_the_bound() {
    const BURST: u64 = 10;
    let interval = Duration::from_micros(50);
    let start = Instant::now();
    let layer = RateLimitLayer::builder(1, interval)
        .burst(BURST)
        .build()
        .unwrap();
    let counter = Counter::default();
    let svc = layer.layer(counter.clone());
    let admitted: u64 = hammer(&svc, 2, 200_000).iter().sum();
    let elapsed = start.elapsed();
    let bound = BURST + u64::try_from(elapsed.as_nanos() / interval.as_nanos()).unwrap();
    assert!(
        admitted <= bound,
        "{admitted} admitted in {elapsed:?}, bound {bound}"
    );
    assert!(admitted >= BURST);
    assert_eq!(counter.0.load(Relaxed), admitted);
    assert_eq!(layer.handle().snapshot().rejected, 2 * 200_000 - admitted);
}

/// 64 tasks on a multi-thread runtime call one limiter in waiting mode and
/// give up (drop the waiting future through `tokio::time::timeout`) at
/// random points. At the end nobody waits, the counters add up, and the
/// admissions obey the bound.
#[test]
fn waiting_tasks_dropped_at_random_points() {
    support::trace_init();
    const TASKS: u64 = 64;
    const CALLS: u64 = 60;
    const BURST: u64 = 4;
    let interval = Duration::from_micros(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let layer = RateLimitLayer::builder(1, interval)
            .burst(BURST)
            .max_wait(Duration::from_millis(8))
            .build()
            .unwrap();
        let h = layer.handle();
        let counter = Counter::default();
        let svc = layer.layer(counter.clone());
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(t);
                    let (mut ok, mut rejected, mut dropped) = (0u64, 0u64, 0u64);
                    for n in 0..CALLS as u32 {
                        let call = svc.clone().oneshot(n);
                        let result = if rng.random_bool(0.5) {
                            let give_up = Duration::from_micros(rng.random_range(0..4_000));
                            match tokio::time::timeout(give_up, call).await {
                                Ok(r) => r,
                                Err(_) => {
                                    dropped += 1;
                                    continue;
                                }
                            }
                        } else {
                            call.await
                        };
                        match result {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                assert!(e.is::<RateLimited>(), "{e}");
                                rejected += 1;
                            }
                        }
                        if rng.random_bool(0.3) {
                            tokio::task::yield_now().await;
                        }
                    }
                    (ok, rejected, dropped)
                })
            })
            .collect();
        let (mut ok, mut rejected, mut dropped) = (0, 0, 0);
        for t in tasks {
            let (o, r, d) = t.await.unwrap();
            ok += o;
            rejected += r;
            dropped += d;
        }
        let elapsed = start.elapsed();
        assert_eq!(ok + rejected + dropped, TASKS * CALLS);
        assert_eq!(counter.0.load(Relaxed), ok);
        let s = h.snapshot();
        assert_eq!(s.waiting, 0, "{s}");
        assert_eq!(s.rejected_total(), rejected, "{s}");
        // The inner service answers at once, so a future dropped by the
        // timeout was waiting.
        assert_eq!(s.cancelled_waiting, dropped, "{s}");
        let bound = BURST + u64::try_from(elapsed.as_nanos() / interval.as_nanos()).unwrap();
        assert!(ok <= bound, "{ok} admitted in {elapsed:?}, bound {bound}");
        assert!(ok >= BURST, "{s}");
        // The run took both paths it is meant to test.
        assert!(s.waited > 0 && dropped > 0, "{s}");
        // Nobody waits: a burst later, a call passes at once.
        tokio::time::sleep(interval * BURST as u32).await;
        assert_eq!(h.available(), BURST);
        let admitted = svc.clone().oneshot(0).now_or_never();
        assert!(matches!(admitted, Some(Ok(()))), "not on the fast path");
    });
}
