//! The capacity-drop simulation, on paused time: a backend that serves 100
//! calls at once drops to 20 and comes back, under a steady 3,000 calls a
//! second. The gradient limit must keep the backend busy (throughput at
//! least 90 % of its capacity) with latency at most twice the unloaded p99,
//! within 2 s of the drop; a static bulkhead of 100 and no limit at all are
//! measured in the same run for comparison.
//!
//! `cargo test --test adaptive simulation -- --nocapture` prints the table
//! BENCHMARKS.md quotes.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use steadfast::adaptive::{AdaptiveHandle, AdaptiveLimitLayer, Aimd, Gradient};
use steadfast::bulkhead::BulkheadLayer;
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, Instant};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

const RATE_PER_MS: u32 = 3; // 3,000 calls a second
const SERVICE_MS: u64 = 10;
const DROP_AT_MS: u64 = 2_000;
const BACK_AT_MS: u64 = 6_000;
const END_MS: u64 = 8_000;
const HIGH: usize = 100;
const LOW: usize = 20;

/// A backend that works on `capacity` calls at once, 10 ms each (± 1 ms),
/// the others queueing in arrival order.
#[derive(Clone)]
struct Backend {
    slots: Arc<Semaphore>,
    rng: Arc<Mutex<SmallRng>>,
    served: Arc<AtomicUsize>,
}

impl Backend {
    fn new() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(HIGH)),
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(7))),
            served: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes 80 slots away (as they free up, in turn with the calls
    /// queued before) until the returned sender is dropped.
    fn capacity_drops(&self) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slots = self.slots.clone();
        tokio::spawn(async move {
            let _taken = slots.acquire_many((HIGH - LOW) as u32).await;
            let _ = rx.await;
        });
        tx
    }

    async fn serve(self) -> Result<(), BoxError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        let us = self.rng.lock().unwrap().random_range(9_000..=11_000);
        tokio::time::sleep(Duration::from_micros(us)).await;
        self.served.fetch_add(1, Relaxed);
        Ok(())
    }
}

type Svc = BoxCloneSyncService<(), (), BoxError>;

struct Call {
    start_ms: u64,
    end_ms: u64,
    ok: bool,
}

#[derive(Debug)]
struct Report {
    name: &'static str,
    unloaded_p99_ms: f64,
    /// From 2 s to 4 s after the drop.
    throughput_share: f64,
    p99_ms: f64,
    rejected_share: f64,
    /// After the capacity came back (last second).
    recovered_throughput_share: f64,
    limits: Vec<(u64, usize)>,
}

fn p99(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64) * 0.99).ceil() as usize - 1;
    v[i.min(v.len() - 1)] as f64 / 1_000.0
}

/// Drives `svc` with the steady load through the three phases.
async fn run(
    name: &'static str,
    backend: Backend,
    svc: Svc,
    limit: Option<AdaptiveHandle>,
) -> Report {
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let t0 = Instant::now();
    let mut limits = Vec::new();
    let mut taken = None;
    for ms in 0..END_MS {
        sleep_until(t0 + Duration::from_millis(ms)).await;
        if ms == DROP_AT_MS {
            taken = Some(backend.capacity_drops());
        }
        if ms == BACK_AT_MS {
            drop(taken.take());
        }
        if ms % 250 == 0 {
            if let Some(l) = &limit {
                limits.push((ms, l.limit()));
            }
        }
        if std::env::var("SIM_TRACE").is_ok() && ms % 20 == 0 && (1_900..4_000).contains(&ms) {
            if let Some(l) = &limit {
                println!("{ms} {}", l.snapshot());
            }
        }
        for _ in 0..RATE_PER_MS {
            let svc = svc.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let ok = svc.oneshot(()).await.is_ok();
                let us = |t: Instant| (t - t0).as_micros() as u64;
                calls.lock().unwrap().push(Call {
                    start_ms: us(start),
                    end_ms: us(Instant::now()),
                    ok,
                });
            });
        }
    }
    // Let the last calls finish.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls = calls.lock().unwrap();
    let in_window =
        |c: &&Call, from: u64, to: u64| c.start_ms >= from * 1000 && c.start_ms < to * 1000;
    let latencies = |from, to| {
        calls
            .iter()
            .filter(|c| in_window(c, from, to) && c.ok)
            .map(|c| c.end_ms - c.start_ms)
            .collect::<Vec<_>>()
    };
    let completed = |from: u64, to: u64| {
        calls
            .iter()
            .filter(|c| c.ok && c.end_ms >= from * 1000 && c.end_ms < to * 1000)
            .count() as f64
    };
    let window = (DROP_AT_MS + 2_000, DROP_AT_MS + 4_000);
    let secs = (window.1 - window.0) as f64 / 1000.0;
    let started = calls
        .iter()
        .filter(|c| in_window(c, window.0, window.1))
        .count() as f64;
    let rejected = calls
        .iter()
        .filter(|c| in_window(c, window.0, window.1) && !c.ok)
        .count() as f64;
    let offered_per_s = f64::from(RATE_PER_MS) * 1000.0;
    Report {
        name,
        unloaded_p99_ms: p99(latencies(1_000, DROP_AT_MS)),
        throughput_share: completed(window.0, window.1)
            / secs
            / (LOW as f64 * 1000.0 / SERVICE_MS as f64),
        p99_ms: p99(latencies(window.0, window.1)),
        rejected_share: rejected / started,
        recovered_throughput_share: completed(END_MS - 1_000, END_MS) / offered_per_s,
        limits,
    }
}

fn print(r: &Report) {
    println!(
        "{:<22} unloaded p99 {:>6.1} ms | 2-4 s after the drop: throughput {:>5.1} % of capacity, p99 {:>8.1} ms, rejected {:>5.1} % | after recovery: {:>5.1} % of offered",
        r.name,
        r.unloaded_p99_ms,
        r.throughput_share * 100.0,
        r.p99_ms,
        r.rejected_share * 100.0,
        r.recovered_throughput_share * 100.0,
    );
    if !r.limits.is_empty() {
        let l: Vec<String> = r
            .limits
            .iter()
            .map(|(ms, l)| format!("{}s:{l}", *ms as f64 / 1000.0))
            .collect();
        println!("{:<22} limit: {}", "", l.join(" "));
    }
}

async fn adaptive(
    name: &'static str,
    algorithm: steadfast::adaptive::Algorithm,
    timeout: bool,
) -> Report {
    let backend = Backend::new();
    let bulkhead = BulkheadLayer::new(HIGH).unwrap();
    let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
        .algorithm(algorithm)
        .min_limit(5)
        .max_limit(200)
        .build()
        .unwrap();
    let handle = adaptive.handle();
    let b = backend.clone();
    let inner = tower::service_fn(move |()| b.clone().serve());
    let svc: Svc = if timeout {
        Svc::new(
            ServiceBuilder::new()
                .layer(bulkhead)
                .layer(adaptive)
                .layer(TimeoutLayer::new(Duration::from_millis(2 * SERVICE_MS)).unwrap())
                .service(inner),
        )
    } else {
        Svc::new(
            ServiceBuilder::new()
                .layer(bulkhead)
                .layer(adaptive)
                .service(inner),
        )
    };
    run(name, backend, svc, Some(handle)).await
}

#[tokio::test(start_paused = true)]
async fn simulation_capacity_drop_gradient_keeps_the_backend_busy_and_latency_low() {
    let gradient = adaptive("gradient (default)", Gradient::new().into(), false).await;
    print(&gradient);
    let aimd = adaptive("aimd + 20 ms timeout", Aimd::new().into(), true).await;
    print(&aimd);

    let backend = Backend::new();
    let b = backend.clone();
    let svc = Svc::new(
        ServiceBuilder::new()
            .layer(BulkheadLayer::new(HIGH).unwrap())
            .service_fn(move |()| b.clone().serve()),
    );
    let fixed = run("static bulkhead 100", backend, svc, None).await;
    print(&fixed);

    let backend = Backend::new();
    let b = backend.clone();
    let svc = Svc::new(tower::service_fn(move |()| b.clone().serve()));
    let none = run("no limit", backend, svc, None).await;
    print(&none);

    // The targets, for the default algorithm.
    assert!(gradient.throughput_share >= 0.90, "{gradient:?}");
    assert!(
        gradient.p99_ms <= 2.0 * gradient.unloaded_p99_ms,
        "{gradient:?}"
    );
    // After the capacity comes back, every call is served again.
    assert!(gradient.recovered_throughput_share >= 0.99, "{gradient:?}");
    // The comparisons show why: a static limit of 100 queues 80 calls at
    // the backend; no limit queues without end.
    assert!(fixed.p99_ms > 4.0 * fixed.unloaded_p99_ms, "{fixed:?}");
    assert!(none.p99_ms > 10.0 * none.unloaded_p99_ms, "{none:?}");
}
