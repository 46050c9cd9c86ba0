//! The main demo: a flaky in-process "products" service behind retries and a
//! circuit breaker, driven through healthy → blip → outage → recovery,
//! printing a timeline.
//!
//! Retries absorb the short blip (callers see no failure); in the long outage
//! the retry budget stops the retry storm and the breaker stops calling.
//!
//! No network, and the clock is tokio's paused test clock, so the 16-second
//! scenario runs in an instant and prints the same timeline every time.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, Window};
use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryConfig, RetryLayer};
use steadfast::BoxError;
use tokio::time::{self, Instant};
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// When one attempt in three fails, in seconds since the start.
const BLIP: std::ops::Range<f64> = 1.0..2.0;
/// When the backend is down, in seconds since the start.
const OUTAGE: std::ops::Range<f64> = 3.0..8.0;
const RUN_FOR: Duration = Duration::from_secs(16);
const EVERY: Duration = Duration::from_millis(50);

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let secs = move || start.elapsed().as_secs_f64();

    // The backend: 10 ms per call; during the blip one attempt in three
    // fails, during the outage every one does.
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let products = service_fn(move |id: u32| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        async move {
            time::sleep(Duration::from_millis(10)).await;
            let t = secs();
            if OUTAGE.contains(&t) || (BLIP.contains(&t) && n % 3 == 0) {
                Err::<String, BoxError>("connection refused".into())
            } else {
                Ok(format!("product {id}"))
            }
        }
    });

    let config = CircuitBreakerConfig::builder()
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
        .build()?;
    let layer = CircuitBreakerLayer::new(config);
    let handle = layer.handle();

    // Up to 3 attempts, 10 ms × 2 backoff with jitter; retries may add 20 %
    // of the last 10 s of calls plus 1 per second. An open breaker's
    // rejection is not retried: it fails fast.
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
    );
    let retries = retry.handle();

    // Retry outside the breaker: each attempt passes the breaker.
    let svc = ServiceBuilder::new()
        .layer(retry)
        .layer(layer)
        .service(products);

    println!(
        "one attempt in three fails from {}s to {}s; backend down from {}s to {}s; \
         one call every {EVERY:?}\n",
        BLIP.start, BLIP.end, OUTAGE.start, OUTAGE.end
    );
    println!("   time   ok  failed  rejected  backend-hits  retries  refused  state");

    let mut tick = time::interval(EVERY);
    let (mut ok, mut failed, mut rejected) = (0u32, 0u32, 0u32);
    let mut next_report = Duration::from_secs(1);
    let mut id = 0;
    let mut last = retries.snapshot();
    while start.elapsed() < RUN_FOR {
        tick.tick().await;
        id += 1;
        match svc.clone().oneshot(id).await {
            Ok(_) => ok += 1,
            Err(e) if e.is::<CircuitOpen>() => rejected += 1,
            Err(_) => failed += 1,
        }
        if start.elapsed() >= next_report {
            let now = retries.snapshot();
            println!(
                "{:>6.1}s  {ok:>3}  {failed:>6}  {rejected:>8}  {:>12}  {:>7}  {:>7}  {}",
                next_report.as_secs_f64(),
                hits.swap(0, Ordering::Relaxed),
                now.retries - last.retries,
                now.refused_by_budget - last.refused_by_budget,
                handle.state()
            );
            (ok, failed, rejected) = (0, 0, 0);
            last = now;
            next_report += Duration::from_secs(1);
        }
    }

    println!("\nbreaker: {}", handle.snapshot());
    println!("retry:   {}", retries.snapshot());
    Ok(())
}
