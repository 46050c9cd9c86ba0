//! The main demo: a flaky in-process "products" service behind the preset
//! stack (`ResilienceLayer`: deadline, retries with a budget, bulkhead,
//! circuit breaker, per-attempt timeout), driven through five phases,
//! printing a timeline.
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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::chaos::{Fault, FaultLayer, FaultSnapshot, Latency};
use steadfast::circuit_breaker::{CircuitBreakerConfig, Window};
use steadfast::classify::ErrorsAsFailures;
use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryConfig};
use steadfast::stack::ResilienceSnapshot;
use steadfast::{BoxError, Rejection, ResilienceLayer};
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
        let Err(e) = result else {
            self.ok += 1;
            return;
        };
        match Rejection::of(e) {
            Some(Rejection::CircuitOpen { .. }) => self.open += 1,
            Some(Rejection::BulkheadFull { .. }) => self.shed += 1,
            Some(Rejection::TimedOut { .. } | Rejection::DeadlineExceeded { .. }) => {
                self.timed_out += 1
            }
            _ => self.failed += 1,
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let secs = move || start.elapsed().as_secs_f64();

    // The backend: 10 ms per call. Its faults come from a `FaultLayer`,
    // seeded and on tokio's clock, so every run is the same: during the
    // blip one attempt in three fails, during the outage every connection
    // is refused, and in the slow phase each answer takes 400 ms.
    let at = |s: f64| Duration::from_secs_f64(s);
    let faults = FaultLayer::builder()
        .seed(7)
        .latency(Latency::fixed(Duration::from_millis(10)))
        .window_with_rate(
            at(BLIP.start),
            at(BLIP.end),
            1.0 / 3.0,
            Fault::error(|| std::io::Error::other("internal error")),
        )
        .window(at(OUTAGE.start), at(OUTAGE.end), Fault::refused())
        .window(
            at(SLOW.start),
            at(SLOW.end),
            Fault::delay(Latency::fixed(Duration::from_millis(390))),
        )
        .build()?;
    let backend = faults.handle();
    let products =
        service_fn(
            |req: GetProduct| async move { Ok::<_, BoxError>(format!("product {}", req.id)) },
        );

    // The preset, outermost first: the whole call within 1 s, up to 3
    // attempts, at most 4 attempts in flight, the breaker, 250 ms per
    // attempt (inside the breaker, so a timeout counts as a failure).
    let (resilience, handle) = ResilienceLayer::new(ErrorsAsFailures)
        .deadline(Duration::from_secs(1))
        // Up to 3 attempts, 10 ms × 2 backoff with jitter; retries may add
        // 20 % of the last 10 s of calls plus 1 per second. An open
        // breaker's or a full bulkhead's rejection is not retried.
        .retry(
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
                .seed(7),
        )
        // A fifth attempt waits up to 20 ms for a slot, then is shed.
        .bulkhead_with(BulkheadLayer::builder(4).max_wait(Duration::from_millis(20)))
        .circuit_breaker(
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
                .on_transition(move |t| println!("{:>7.3}s  ** {t}", secs())),
        )
        .attempt_timeout(Duration::from_millis(250))
        // Outermost: every call counted by outcome and timed.
        .metrics("products")
        .build()?; // Err(InvalidConfig) would name the bad field
    let svc = ServiceBuilder::new()
        .layer(resilience)
        .layer(faults)
        .service(products);
    let breaker = handle.circuit_breaker().expect("the breaker is on").clone();
    let retries = handle.retry().expect("retries are on").clone();

    println!(
        "one attempt in three fails {}-{}s; down {}-{}s; slow (400 ms) {}-{}s; a call every {EVERY:?}\n",
        BLIP.start, BLIP.end, OUTAGE.start, OUTAGE.end, SLOW.start, SLOW.end
    );
    println!("calls ended as: ok, failed, timed out, rejected by the open breaker (open), shed by the bulkhead (shed);");
    println!("attempts: that reached the backend (hits), retried, retries refused by the budget\n");
    println!("   time   ok  failed  timed-out  open  shed    hits  retries  refused  breaker");

    let tally = Arc::new(Mutex::new(Tally::default()));
    let tasks = tokio::task::LocalSet::new();
    let mut tick = time::interval(EVERY);
    let mut next_report = Duration::from_secs(1);
    let mut last = retries.snapshot();
    let mut last_hits = 0;
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
            let hits = backend.snapshot().calls;
            println!(
                "{:>6.1}s  {:>3}  {:>6}  {:>9}  {:>4}  {:>4}  {:>6}  {:>7}  {:>7}  {}",
                next_report.as_secs_f64(),
                t.ok,
                t.failed,
                t.timed_out,
                t.open,
                t.shed,
                hits - last_hits,
                now.retries - last.retries,
                now.refused_by_budget - last.refused_by_budget,
                breaker.state()
            );
            last = now;
            last_hits = hits;
            next_report += Duration::from_secs(1);
        }
    }
    tasks.await;

    println!("\n{handle}");
    print_table(&handle.snapshot(), &backend.snapshot());
    Ok(())
}

/// The run in one table: what callers saw (the metrics piece), what the
/// pieces did, and what the backend was made to do.
fn print_table(stack: &ResilienceSnapshot, backend: &FaultSnapshot) {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".into(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
        )
    };
    println!("\n{:<40} {:>10}", "snapshot", "value");
    let row = |name: &str, value: String| println!("{name:<40} {value:>10}");
    if let Some(m) = &stack.metrics {
        row("calls", m.calls.to_string());
        row("  ok", m.successes.to_string());
        row("  failed (incl. timed out)", m.failures.to_string());
        row("  ignored (open, shed, deadline)", m.ignored.to_string());
        row("  timed out", m.timed_out.to_string());
        row(
            "  rejected: breaker open",
            m.rejected_circuit_open.to_string(),
        );
        row(
            "  rejected: bulkhead full",
            m.rejected_bulkhead_full.to_string(),
        );
        row("  deadline exceeded", m.deadline_exceeded.to_string());
        row("call duration p50", ms(m.duration.p50()));
        row("call duration p90", ms(m.duration.p90()));
        row("call duration p99", ms(m.duration.p99()));
        row("call duration max", ms(Some(m.duration.max())));
    }
    if let Some(r) = &stack.retry {
        row("attempts", r.attempts.to_string());
        row("  retries", r.retries.to_string());
        row("  refused by the budget", r.refused_by_budget.to_string());
    }
    if let Some(b) = &stack.circuit_breaker {
        row("breaker opened", b.opened.to_string());
        row("breaker time open", format!("{:.1?}", b.time_open));
    }
    row(
        "backend: calls reaching the fault layer",
        backend.calls.to_string(),
    );
    row("backend: faults injected", backend.injected().to_string());
}
