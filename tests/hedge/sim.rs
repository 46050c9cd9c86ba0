//! A heavy-tailed backend on virtual time, driven open-loop, and exact
//! latency percentiles: shared by `tests/hedge` (this crate's layer) and
//! `tests/hedge_tail` (the same run beside tower's `Hedge`).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// Calls made, one per millisecond (1,000 a second for a minute).
pub const CALLS: usize = 60_000;
/// Where the backend's latency is drawn from: 99 % of calls take
/// [`FAST`], 1 % [`SLOW`].
pub const SLOW_SHARE: f64 = 0.01;
pub const FAST: Duration = Duration::from_millis(10);
pub const SLOW: Duration = Duration::from_secs(1);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Reply = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// The backend: each call draws its latency from a seeded RNG, in the
/// order the calls arrive; `calls` counts them.
#[derive(Clone)]
pub struct Backend {
    rng: Arc<Mutex<SmallRng>>,
    pub calls: Arc<AtomicU64>,
}

impl Backend {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Arc::new(Mutex::new(SmallRng::seed_from_u64(seed))),
            calls: Arc::default(),
        }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Service<u32> for Backend {
    type Response = ();
    type Error = BoxError;
    type Future = Reply;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Reply {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let slow = self.rng.lock().unwrap().random_bool(SLOW_SHARE);
        Box::pin(async move {
            tokio::time::sleep(if slow { SLOW } else { FAST }).await;
            Ok(())
        })
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub name: &'static str,
    pub p50: Duration,
    pub p99: Duration,
    pub p995: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// Backend calls per call, less one: the extra load.
    pub extra_load: f64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<40} p50 {:>7.1?}  p99 {:>7.1?}  p99.5 {:>7.1?}  p99.9 {:>7.1?}  max {:>7.1?}  extra load {:>5.2} %",
            self.name,
            self.p50,
            self.p99,
            self.p995,
            self.p999,
            self.max,
            self.extra_load * 100.0
        )
    }
}

/// The value at quantile `q` of `sorted` (nearest rank: the smallest value
/// with at least `q` of the values at or below it).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Makes [`CALLS`] calls through `svc`, one per millisecond of virtual time,
/// each in its own task; returns the figures from every call's latency,
/// sorted and read exactly. Run on a paused current-thread runtime.
pub async fn run<S>(name: &'static str, mut svc: S, backend: &Backend) -> Figures
where
    S: Service<u32>,
    S::Error: std::fmt::Debug,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    let before = backend.calls();
    let mut tasks = Vec::with_capacity(CALLS);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..CALLS {
        tick.tick().await;
        let call = svc.ready().await.unwrap().call(i as u32);
        let start = Instant::now();
        tasks.push(tokio::spawn(async move {
            call.await.unwrap();
            start.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(CALLS);
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    latencies.sort_unstable();
    let sent = backend.calls() - before;
    Figures {
        name,
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        p995: quantile(&latencies, 0.995),
        p999: quantile(&latencies, 0.999),
        max: *latencies.last().unwrap(),
        extra_load: sent as f64 / CALLS as f64 - 1.0,
    }
}

/// The seed of every run, so that each sees the same backend.
pub const SEED: u64 = 7;

/// The run without hedging and the run through a default `HedgeLayer`
/// (p95 of 10 s, one hedge, the default budget), with its counters.
pub async fn plain_and_hedged() -> (Figures, Figures, steadfast::hedge::HedgeSnapshot) {
    use tower::Layer;

    let backend = Backend::new(SEED);
    let plain = run("no hedging", backend.clone(), &backend).await;
    let backend = Backend::new(SEED);
    let layer = steadfast::hedge::HedgeLayer::new(steadfast::hedge::HedgeConfig::default());
    let hedged = run(
        "steadfast (p95 of 10 s, 2, budget)",
        layer.layer(backend.clone()),
        &backend,
    )
    .await;
    (plain, hedged, layer.handle().snapshot())
}
