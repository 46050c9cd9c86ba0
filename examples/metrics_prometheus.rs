//! Metrics an operator can scrape: a dependency behind the preset stack with
//! its metrics piece, made flaky on purpose with a seeded `FaultLayer`, and
//! a `/metrics` endpoint on 127.0.0.1 serving every handle as Prometheus
//! text. The example makes 300 calls, scrapes its own endpoint once and
//! prints what a Prometheus server would read.
//!
//! ```text
//! cargo run -p steadfast-integration --example metrics_prometheus
//! ```

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{Request, Response, StatusCode};
use steadfast::chaos::{Fault, FaultLayer, Latency};
use steadfast::metrics::{Registry, PROMETHEUS_CONTENT_TYPE};
use steadfast::retry::body::ReplayBody;
use steadfast::{BoxError, ResilienceLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // The dependency: 1-3 ms per call; one call in five answers 503, one in
    // fifty is refused before it is sent. Seeded: the same faults each run.
    let faults = FaultLayer::builder()
        .seed(12)
        .latency(Latency::uniform(
            Duration::from_millis(1),
            Duration::from_millis(3),
        ))
        .fault(0.2, Fault::http_status(StatusCode::SERVICE_UNAVAILABLE))
        .fault(0.02, Fault::refused())
        .name("inventory")
        .build()?;
    let chaos = faults.handle();
    let inventory = service_fn(|_req: Request<ReplayBody<String>>| async {
        Ok::<_, BoxError>(Response::new(String::from("in stock")))
    });

    // The preset with its metrics piece; `metrics("inventory")` also names
    // the retry and breaker pieces, so every series carries name="inventory".
    let (resilience, handle) = ResilienceLayer::http().metrics("inventory").build()?;
    let client = ServiceBuilder::new()
        .layer(resilience)
        .layer(faults)
        .service(inventory);

    // Every handle in one registry (the preset's handle brings each of its
    // pieces, the fault layer's what it injected); the endpoint renders it
    // on each scrape.
    let registry = Registry::new();
    registry.register(handle.clone()).register(chaos.clone());
    let scraped = registry.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = scraped.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
                    registry.render_prometheus(),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut failed = 0;
    for id in 0..300 {
        let req = Request::get(format!("http://inventory/items/{id}")).body(String::new())?;
        match client.clone().oneshot(req).await {
            Ok(res) if res.status().is_success() => {}
            _ => failed += 1,
        }
    }
    println!("300 calls, {failed} failed after retries; the dependency was sent {} attempts, {} of them faulted\n",
        chaos.snapshot().calls, chaos.snapshot().injected());

    // One scrape, as Prometheus would make it.
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await??;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    println!("{}\n", head.lines().next().unwrap_or(""));
    // The histogram buckets are long; print the rest whole.
    for line in body.lines() {
        if !line.contains("_bucket{")
            || line.contains("le=\"+Inf\"")
            || line.contains("le=\"0.005\"")
        {
            println!("{line}");
        }
    }
    server.abort();
    Ok(())
}
