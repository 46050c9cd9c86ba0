//! The slow-tail simulation of `tests/hedge` (`tail`), run beside tower's
//! `tower::hedge::Hedge` in the same process, on the same seeded backend:
//! 60,000 calls at 1,000 a second, 1 % of them 1 s, the rest 10 ms.
//!
//! ```text
//! cargo test -p steadfast-integration --test hedge_tail -- --nocapture
//! ```
//!
//! tower's hedge needs tower's `hedge` feature, which this crate's own
//! tests must not switch on; hence this member.

#[path = "../hedge/sim.rs"]
mod sim;

use std::time::Duration;

use sim::{run, Backend, SEED};

/// Hedges every call (tower asks the policy whether a request may be
/// cloned; all of these may).
#[derive(Clone)]
struct Always;

impl tower::hedge::Policy<u32> for Always {
    fn clone_request(&self, req: &u32) -> Option<u32> {
        Some(*req)
    }

    fn can_retry(&self, _: &u32) -> bool {
        true
    }
}

#[tokio::test(start_paused = true)]
async fn steadfast_and_tower_hedging_side_by_side() {
    let (plain, ours, snapshot) = sim::plain_and_hedged().await;

    let mut towers = Vec::new();
    for (name, period) in [
        ("tower::hedge (p95, period 10 s)", Duration::from_secs(10)),
        ("tower::hedge (p95, period 1 s)", Duration::from_secs(1)),
    ] {
        let backend = Backend::new(SEED);
        // 20 data points, as ours needs for p95.
        let svc = tower::hedge::Hedge::new::<u32>(backend.clone(), Always, 20, 0.95, period);
        towers.push(run(name, svc, &backend).await);
    }

    println!("{plain}\n{ours}");
    for t in &towers {
        println!("{t}");
    }
    println!("steadfast: {snapshot}");

    assert!(plain.p999 >= Duration::from_millis(999), "{plain}");
    assert!(ours.p99 <= Duration::from_millis(30), "{ours}");
    assert!(ours.p999 <= Duration::from_millis(60), "{ours}");
    assert!(ours.extra_load <= 0.05, "{ours}");
}
