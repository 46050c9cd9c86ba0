//! The main demo: a flaky in-process "products" service behind a circuit
//! breaker, driven through healthy → outage → recovery, printing a timeline.
//!
//! No network, and the clock is tokio's paused test clock, so the 16-second
//! scenario runs in an instant and prints the same timeline every time.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, Window};
use steadfast::BoxError;
use tokio::time::{self, Instant};
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// When the backend is down, in seconds since the start.
const OUTAGE: std::ops::Range<f64> = 3.0..8.0;
const RUN_FOR: Duration = Duration::from_secs(16);
const EVERY: Duration = Duration::from_millis(50);

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    let start = Instant::now();
    let secs = move || start.elapsed().as_secs_f64();

    // The backend: 10 ms per call; during the outage it fails after 10 ms.
    let products = service_fn(move |id: u32| async move {
        time::sleep(Duration::from_millis(10)).await;
        if OUTAGE.contains(&secs()) {
            Err::<String, BoxError>("connection refused".into())
        } else {
            Ok(format!("product {id}"))
        }
    });

    let config = CircuitBreakerConfig::builder()
        .name("products")
        // Trip on 50 % failures over the last 5 s (at least 10 calls)...
        .failure_rate(50.0)
        .window(Window::time(Duration::from_secs(5), 10))
        .minimum_calls(10)
        // ...or on 5 failures in a row, whichever comes first.
        .consecutive_failures(5)
        // Open for 1 s, doubling on each failed probe, at most 4 s.
        .open_duration(Duration::from_secs(1))
        .max_open_duration(Duration::from_secs(4))
        .open_jitter(0.1)
        .jitter_seed(42)
        .on_transition(move |t| println!("{:>7.3}s  ** {t}", secs()))
        .build()?;
    let layer = CircuitBreakerLayer::new(config);
    let handle = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service(products);

    println!(
        "backend down from {}s to {}s; one call every {EVERY:?}\n",
        OUTAGE.start, OUTAGE.end
    );
    println!("   time   ok  failed  rejected  state");

    let mut tick = time::interval(EVERY);
    let (mut ok, mut failed, mut rejected) = (0u32, 0u32, 0u32);
    let mut next_report = Duration::from_secs(1);
    let mut id = 0;
    while start.elapsed() < RUN_FOR {
        tick.tick().await;
        id += 1;
        match svc.clone().oneshot(id).await {
            Ok(_) => ok += 1,
            Err(e) if e.is::<CircuitOpen>() => rejected += 1,
            Err(_) => failed += 1,
        }
        if start.elapsed() >= next_report {
            println!(
                "{:>6.1}s  {ok:>3}  {failed:>6}  {rejected:>8}  {}",
                next_report.as_secs_f64(),
                handle.state()
            );
            (ok, failed, rejected) = (0, 0, 0);
            next_report += Duration::from_secs(1);
        }
    }

    println!("\nfinal: {}", handle.snapshot());
    Ok(())
}
