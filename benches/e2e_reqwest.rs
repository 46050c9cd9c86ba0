//! End to end on loopback: requests per second and latency percentiles of a
//! plain `reqwest::Client` against the same client inside the preset stack
//! (`ResilienceLayer::reqwest()`, defaults), both calling a local axum
//! Product service on 127.0.0.1.
//!
//! Not a criterion bench: it drives the server from 16 concurrent callers
//! for a fixed time and reports throughput and p50 / p99 / max per round.
//! Rounds alternate (plain, preset, plain, preset, …) so that drift on a
//! busy machine hits both alike; the summary is the median of the rounds.
//!
//! ```text
//! cargo bench -p steadfast-integration --bench e2e_reqwest --features reqwest
//! ```
#![cfg(feature = "reqwest")]
// Wall-clock time is what a load test measures: benches only, never tests.
#![allow(clippy::disallowed_types)]

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use steadfast::{BoxError, ResilienceLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

const CALLERS: usize = 16;
const ROUND: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

async fn product(Path(id): Path<u32>) -> String {
    format!("{{\"id\":{id},\"name\":\"lamp\",\"price_cents\":4250}}")
}

/// One round: `CALLERS` tasks calling through clones of `svc` for `ROUND`.
async fn round<S>(svc: S, url: &str, client: &reqwest::Client) -> (f64, Vec<Duration>)
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let mut svc = svc.clone();
        let client = client.clone();
        let url = format!("{url}/products/{i}");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < ROUND {
                let req = client.get(&url).build().expect("a valid request");
                let t = Instant::now();
                let res = svc.ready().await.map_err(Into::into).expect("ready");
                let res = res.call(req).await.map_err(Into::into).expect("a response");
                let _ = res.bytes().await.expect("a body");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("the caller finished"));
    }
    let rps = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort_unstable();
    (rps, all)
}

/// Per round: requests per second, p50, p99, max.
type Rounds = (Vec<f64>, Vec<Duration>, Vec<Duration>, Vec<Duration>);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench --no-run` builds it; `cargo test --benches` would run
    // it with `--bench` absent: run only when asked.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route("/products/{id}", get(product));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (layer, handle) = ResilienceLayer::reqwest().build().unwrap();
        let preset = ServiceBuilder::new().layer(layer).service(client.clone());

        // Warm up connections and code paths.
        let _ = round(client.clone(), &url, &client).await;
        let _ = round(preset.clone(), &url, &client).await;

        let mut results: [Rounds; 2] = Default::default();
        for r in 0..ROUNDS {
            for (which, name) in [(0, "plain"), (1, "preset")] {
                let (rps, lat) = if which == 0 {
                    round(client.clone(), &url, &client).await
                } else {
                    round(preset.clone(), &url, &client).await
                };
                let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), *lat.last().unwrap());
                println!(
                    "round {r} {name:<6} {rps:>9.0} req/s  p50 {p50:>9.1?}  p99 {p99:>9.1?}  max {max:>9.1?}"
                );
                let slot = &mut results[which];
                slot.0.push(rps);
                slot.1.push(p50);
                slot.2.push(p99);
                slot.3.push(max);
            }
        }
        println!("\nmedian of {ROUNDS} rounds, {CALLERS} concurrent callers, {ROUND:?} each:");
        for (i, name) in ["plain reqwest::Client", "ResilienceLayer::reqwest() defaults"]
            .iter()
            .enumerate()
        {
            let (rps, p50, p99, max) = &results[i];
            let mid = |v: &Vec<Duration>| {
                let mut v = v.clone();
                v.sort_unstable();
                v[v.len() / 2]
            };
            println!(
                "  {name:<38} {:>9.0} req/s  p50 {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}",
                median(rps.clone()),
                mid(p50),
                mid(p99),
                mid(max)
            );
        }
        println!("\n{handle}");
    });
}
