//! Concurrency tests of the bulkhead on a multi-thread runtime.
//!
//! Paused time is not available on a multi-thread runtime, and these tests
//! need none: the inner service yields to the scheduler instead of
//! sleeping, waits are unbounded (`Duration::MAX`, so no timer fires) or
//! zero, and nothing here asserts a duration. The inner service measures
//! how many calls it runs at once; the bulkhead must never let that exceed
//! its limit, and every slot must come back, whatever the interleaving.

#[path = "../support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use steadfast::bulkhead::error::{BulkheadFull, FullReason};
use steadfast::bulkhead::{Bulkhead, BulkheadHandle, BulkheadLayer};
use steadfast::BoxError;
use tower::{Layer, Service, ServiceExt};

const TASKS: usize = 10_000;
const LIMIT: usize = 8;

/// No test here comes anywhere near this; it only turns a hang into a failure.
const HANG: Duration = Duration::from_secs(120);

/// The inner service: counts the calls it runs at once, and yields to the
/// scheduler `req` times before answering.
#[derive(Clone, Default)]
struct Probe {
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

/// Counts a running call; uncounts it when the call ends or is dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Service<u32> for Probe {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, yields: u32) -> Self::Future {
        let (now, peak, calls) = (self.now.clone(), self.peak.clone(), self.calls.clone());
        Box::pin(async move {
            // Counted when the call starts to run, as the work would.
            let n = now.fetch_add(1, SeqCst) + 1;
            let _running = Running(now);
            peak.fetch_max(n, SeqCst);
            calls.fetch_add(1, SeqCst);
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            Ok(yields)
        })
    }
}

impl Probe {
    fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
    fn running(&self) -> usize {
        self.now.load(SeqCst)
    }
}

/// Polls a future at most `polls` times, then drops it: a caller that
/// gives up at an arbitrary point.
struct GiveUpAfter<F> {
    future: Pin<Box<F>>,
    polls: u32,
}

impl<F: Future> Future for GiveUpAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(None);
        }
        self.polls -= 1;
        self.future.as_mut().poll(cx).map(Some)
    }
}

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(HANG, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: not done within {HANG:?}"),
    }
}

/// Every slot is back: nothing runs, nothing is in flight or waiting, and
/// `limit` calls take a slot at once (their futures, never polled, hold them).
async fn all_slots_back(
    handle: &BulkheadHandle,
    probe: &Probe,
    svc: &Bulkhead<Probe>,
    limit: usize,
) {
    assert_eq!(probe.running(), 0);
    assert_eq!(handle.in_flight(), 0, "{}", handle.snapshot());
    assert_eq!(handle.waiting(), 0, "{}", handle.snapshot());
    let mut held = Vec::new();
    for _ in 0..limit {
        let mut svc = svc.clone();
        svc.ready().await.unwrap();
        held.push(svc.call(0));
    }
    assert_eq!(
        handle.in_flight(),
        limit,
        "a slot was lost: {}",
        handle.snapshot()
    );
    assert_eq!(handle.waiting(), 0);
    drop(held);
    assert_eq!(handle.in_flight(), 0);
}

fn layer_waiting_forever() -> BulkheadLayer {
    BulkheadLayer::builder(LIMIT)
        .max_wait(Duration::MAX)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_waiting_tasks_never_exceed_the_limit() {
    support::trace_init();
    let layer = layer_waiting_forever();
    let handle = layer.handle();
    let probe = Probe::default();
    let svc = layer.layer(probe.clone());
    let mut rng = SmallRng::seed_from_u64(1);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let svc = svc.clone();
            let yields = rng.random_range(0..4);
            tokio::spawn(async move { svc.oneshot(yields).await })
        })
        .collect();
    bounded("10,000 calls", async {
        for t in tasks {
            t.await.unwrap().expect("an unbounded wait never rejects");
        }
    })
    .await;
    assert!(probe.peak() <= LIMIT, "{} calls ran at once", probe.peak());
    assert_eq!(
        probe.peak(),
        LIMIT,
        "the limit was never reached: a weak test"
    );
    let s = handle.snapshot();
    assert_eq!(s.admitted, TASKS as u64);
    assert!(s.waited > 0, "{s}");
    assert_eq!(probe.calls.load(SeqCst), TASKS);
    all_slots_back(&handle, &probe, &svc, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejecting_at_once_never_exceeds_the_limit_and_counts_every_call() {
    let layer = BulkheadLayer::new(LIMIT).unwrap();
    let handle = layer.handle();
    let probe = Probe::default();
    let svc = layer.layer(probe.clone());
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot((i % 5) as u32).await })
        })
        .collect();
    let mut rejected = 0u64;
    bounded("10,000 calls", async {
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                let full = e
                    .downcast_ref::<BulkheadFull>()
                    .expect("only rejections fail");
                assert_eq!(full.reason(), FullReason::QueueFull);
                rejected += 1;
            }
        }
    })
    .await;
    assert!(probe.peak() <= LIMIT, "{} calls ran at once", probe.peak());
    let s = handle.snapshot();
    assert_eq!(s.admitted + s.rejected_queue_full, TASKS as u64);
    assert_eq!(s.rejected_queue_full, rejected);
    assert_eq!(probe.calls.load(SeqCst) as u64, s.admitted);
    all_slots_back(&handle, &probe, &svc, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_slot_returns_when_callers_give_up_at_random_points() {
    let layer = BulkheadLayer::builder(LIMIT)
        .max_wait(Duration::MAX)
        .max_waiting(TASKS / 4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let probe = Probe::default();
    let svc = layer.layer(probe.clone());
    let mut rng = SmallRng::seed_from_u64(2);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut svc = svc.clone();
            let yields = rng.random_range(0..6);
            let polls = rng.random_range(0..8);
            let abort = rng.random_ratio(1, 10);
            let task = tokio::spawn(async move {
                // Readying never waits in the default mode.
                svc.ready().await.unwrap();
                let future = Box::pin(svc.call(yields));
                GiveUpAfter { future, polls }.await
            });
            if abort {
                task.abort();
            }
            task
        })
        .collect();
    let mut finished = 0;
    bounded("10,000 calls", async {
        for t in tasks {
            if let Ok(Some(result)) = t.await {
                if let Err(e) = result {
                    assert!(e.is::<BulkheadFull>(), "{e}");
                }
                finished += 1;
            }
        }
    })
    .await;
    assert!(probe.peak() <= LIMIT, "{} calls ran at once", probe.peak());
    let s = handle.snapshot();
    assert!(
        finished > 0 && s.cancelled_waiting > 0,
        "{finished} finished; {s}"
    );
    all_slots_back(&handle, &probe, &svc, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_in_poll_ready_never_exceeds_the_limit() {
    let layer = layer_waiting_forever().wait_in_poll_ready();
    let handle = layer.handle();
    let probe = Probe::default();
    let svc = layer.layer(probe.clone());
    let tasks: Vec<_> = (0..TASKS / 4)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot((i % 3) as u32).await })
        })
        .collect();
    bounded("2,500 calls", async {
        for t in tasks {
            t.await.unwrap().expect("an unbounded wait never rejects");
        }
    })
    .await;
    assert!(probe.peak() <= LIMIT, "{} calls ran at once", probe.peak());
    assert_eq!(handle.snapshot().admitted, (TASKS / 4) as u64);
    all_slots_back(&handle, &probe, &svc, LIMIT).await;
}

/// Spawns `n` calls of `svc` and waits for them all to succeed.
async fn wave(svc: &Bulkhead<Probe>, n: usize, during: impl FnOnce()) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot((i % 4) as u32).await })
        })
        .collect();
    tokio::task::yield_now().await;
    during();
    bounded("a wave of calls", async {
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lowered_limit_is_never_exceeded() {
    let layer = layer_waiting_forever();
    let handle = layer.handle();
    let probe = Probe::default();
    let svc = layer.layer(probe.clone());

    // Lowered to 2 while up to 8 calls run: those finish, the rest follow
    // under the new limit.
    wave(&svc, TASKS / 2, || handle.set_max_concurrent(2).unwrap()).await;
    assert!(probe.peak() <= LIMIT, "{}", probe.peak());
    all_slots_back(&handle, &probe, &svc, 2).await;

    probe.peak.store(0, SeqCst);
    wave(&svc, TASKS / 2, || {}).await;
    assert_eq!(probe.peak(), 2, "the lowered limit was not kept");

    // Raised again while calls wait: they get the new slots.
    probe.peak.store(0, SeqCst);
    wave(&svc, TASKS / 2, || {
        handle.set_max_concurrent(LIMIT).unwrap()
    })
    .await;
    assert!(probe.peak() <= LIMIT, "{}", probe.peak());
    all_slots_back(&handle, &probe, &svc, LIMIT).await;
}
