//! The main demo: a flaky in-process "products" service behind the whole
//! stack — deadline, retries with a budget, bulkhead, circuit breaker,
//! per-attempt timeout — driven through five phases, printing a timeline.
//!
//! - healthy;
//! - a blip (one attempt in three fails): retries absorb it, callers see no
//!   failure;
//! - an outage: retries run into their budget, the breaker opens and
//!   rejects at once, probes, and closes when the backend is back;
//! - a slow phase (every answer takes 400 ms): the per-attempt timeout
//!   fires, and with calls piling up the bulkhead sheds what it cannot hold;
//! - healthy again.
//!
//! No network, and the clock is tokio's paused test clock, so the 22-second
//! scenario runs in an instant and prints the same timeline every time.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::bulkhead::{error::BulkheadFull, BulkheadLayer};
use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, Window};
use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::retry::{Backoff, CloneWithDeadline, Jitter, RetryBudget, RetryConfig, RetryLayer};
use steadfast::timeout::error::Elapsed;
use steadfast::timeout::{DeadlineLayer, TimeoutLayer};
use steadfast::BoxError;
use tokio::time::{self, Instant};
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// When one attempt in three fails, in seconds since the start.
const BLIP: std::ops::Range<f64> = 1.0..2.0;
/// When the backend is down.
const OUTAGE: std::ops::Range<f64> = 3.0..8.0;
/// When every answer takes 400 ms.
const SLOW: std::ops::Range<f64> = 14.0..17.0;
const RUN_FOR: Duration = Duration::from_secs(22);
const EVERY: Duration = Duration::from_millis(50);

/// A request: which product, and the deadline the deadline layer gives it
/// (so retry, the bulkhead and the timeout inside see what is left).
#[derive(Clone)]
struct GetProduct {
    id: u32,
    deadline: Option<Deadline>,
}

impl CarriesDeadline for GetProduct {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

/// What happened to the calls that finished in one second.
#[derive(Default, Clone, Copy)]
struct Tally {
    ok: u32,
    failed: u32,
    timed_out: u32,
    open: u32,
    shed: u32,
}

impl Tally {
    fn record(&mut self, result: &Result<String, BoxError>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(e) if e.is::<CircuitOpen>() => self.open += 1,
            Err(e) if e.is::<BulkheadFull>() => self.shed += 1,
            Err(e) if e.is::<Elapsed>() => self.timed_out += 1,
            Err(_) => self.failed += 1,
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let secs = move || start.elapsed().as_secs_f64();

    // The backend: 10 ms per call; during the blip one attempt in three
    // fails, during the outage every one does, and in the slow phase each
    // takes 400 ms.
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let products = service_fn(move |req: GetProduct| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        async move {
            let t = secs();
            let latency = if SLOW.contains(&t) { 400 } else { 10 };
            time::sleep(Duration::from_millis(latency)).await;
            if OUTAGE.contains(&t) || (BLIP.contains(&t) && n % 3 == 0) {
                Err::<String, BoxError>("connection refused".into())
            } else {
                Ok(format!("product {}", req.id))
            }
        }
    });

    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .name("products")
            // Trip on 50 % failed attempts over the last 2 s (at least 10).
            .failure_rate(50.0)
            .window(Window::time(Duration::from_secs(2), 10))
            .minimum_calls(10)
            .without_consecutive_failures()
            // Open for 1 s, doubling on each failed probe, at most 4 s.
            .open_duration(Duration::from_secs(1))
            .max_open_duration(Duration::from_secs(4))
            .open_jitter(0.1)
            .jitter_seed(42)
            .on_transition(move |t| println!("{:>7.3}s  ** {t}", secs()))
            .build()?,
    );
    let breaker_handle = breaker.handle();

    // Up to 3 attempts, 10 ms × 2 backoff with jitter; retries may add 20 %
    // of the last 10 s of calls plus 1 per second. An open breaker's or a
    // full bulkhead's rejection is not retried: it fails fast.
    let retry = RetryLayer::new(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(
                Backoff::exponential(Duration::from_millis(10), 2.0)
                    .max_delay(Duration::from_millis(100))
                    .jitter(Jitter::Full),
            )
            .budget(
                RetryBudget::builder()
                    .percent(20.0)
                    .min_per_second(1)
                    .window(Duration::from_secs(10))
                    .build()?,
            )
            .seed(7)
            .build()?,
    )
    .with_replay(CloneWithDeadline); // retries never sleep past the deadline
    let retries = retry.handle();

    // At most 4 attempts in flight; a fifth waits up to 20 ms, then is shed.
    let bulkhead = BulkheadLayer::builder(4)
        .max_wait(Duration::from_millis(20))
        .build()?
        .deadline_aware();
    let bulkhead_handle = bulkhead.handle();

    // Outermost first: the whole call within 1 s, retries, the bulkhead
    // (it limits attempts), the breaker, and 250 ms per attempt (inside the
    // breaker, so a timeout counts as a failure).
    // Counts the attempts the per-attempt timeout cut short.
    let timeouts = Arc::new(AtomicU32::new(0));
    let timed_out = timeouts.clone();
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(1))?)
        .layer(retry)
        .layer(bulkhead)
        .layer(breaker)
        .map_err(move |e: BoxError| {
            if e.is::<Elapsed>() {
                timed_out.fetch_add(1, Ordering::Relaxed);
            }
            e
        })
        .layer(TimeoutLayer::new(Duration::from_millis(250))?.deadline_aware())
        .service(products);

    println!(
        "one attempt in three fails {}-{}s; down {}-{}s; slow (400 ms) {}-{}s; a call every {EVERY:?}\n",
        BLIP.start, BLIP.end, OUTAGE.start, OUTAGE.end, SLOW.start, SLOW.end
    );
    println!("calls ended as: ok, failed, timed out, rejected by the open breaker (open), shed by the bulkhead (shed);");
    println!("attempts: sent to the backend (hits), cut by the 250 ms timeout, retried, retries refused by the budget\n");
    println!(
        "   time   ok  failed  timed-out  open  shed    hits  timeouts  retries  refused  breaker"
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let tasks = tokio::task::LocalSet::new();
    let mut tick = time::interval(EVERY);
    let mut next_report = Duration::from_secs(1);
    let mut last = retries.snapshot();
    let mut id = 0;
    while start.elapsed() < RUN_FOR {
        tasks.run_until(tick.tick()).await;
        id += 1;
        // Every call runs on its own task: calls overlap when the backend is slow.
        let (svc, calls) = (svc.clone(), tally.clone());
        tasks.spawn_local(async move {
            let result = svc.oneshot(GetProduct { id, deadline: None }).await;
            calls.lock().unwrap().record(&result);
        });
        if start.elapsed() >= next_report {
            let t = std::mem::take(&mut *tally.lock().unwrap());
            let now = retries.snapshot();
            println!(
                "{:>6.1}s  {:>3}  {:>6}  {:>9}  {:>4}  {:>4}  {:>6}  {:>8}  {:>7}  {:>7}  {}",
                next_report.as_secs_f64(),
                t.ok,
                t.failed,
                t.timed_out,
                t.open,
                t.shed,
                hits.swap(0, Ordering::Relaxed),
                timeouts.swap(0, Ordering::Relaxed),
                now.retries - last.retries,
                now.refused_by_budget - last.refused_by_budget,
                breaker_handle.state()
            );
            last = now;
            next_report += Duration::from_secs(1);
        }
    }
    tasks.await;

    println!("\nbreaker:  {}", breaker_handle.snapshot());
    println!("retry:    {}", retries.snapshot());
    let b = bulkhead_handle.snapshot();
    println!(
        "bulkhead: max {} | admitted {} | shed: queue full {}, wait timed out {}",
        b.max_concurrent, b.admitted, b.rejected_queue_full, b.rejected_wait_timed_out
    );
    Ok(())
}
