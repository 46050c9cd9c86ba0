//! The slow tail, simulated: a backend where 1 % of calls take 1 s and the
//! rest 10 ms, 60,000 calls at 1,000 a second on virtual time, with and
//! without hedging at p95 (the default config: p95 of the last 10 s, one
//! hedge, the default budget). `cargo test --test hedge tail --
//! --nocapture` prints the figures; `tests/hedge_tail` (workspace member
//! `integration`) runs the same beside tower's `Hedge`.

use std::time::Duration;

use crate::sim::plain_and_hedged;

#[tokio::test(start_paused = true)]
async fn hedging_at_p95_cuts_the_tail() {
    let (plain, hedged, snapshot) = plain_and_hedged().await;
    println!("{plain}\n{hedged}\n{snapshot}");
    // Without hedging, the 1 % of slow calls are the tail.
    assert!(plain.p999 >= Duration::from_millis(999), "{plain}");
    // (With 1 % slow, p99 sits on the boundary: 10 ms for this seed.)
    assert!(plain.p995 >= Duration::from_millis(999), "{plain}");
    // With it, a slow call costs the delay (p95: ~10 ms) plus a fast one.
    assert!(hedged.p99 <= Duration::from_millis(30), "{hedged}");
    assert!(hedged.p995 <= Duration::from_millis(30), "{hedged}");
    assert!(hedged.p999 <= Duration::from_millis(60), "{hedged}");
    assert!(hedged.extra_load <= 0.05, "{hedged}");
    assert_eq!(plain.extra_load, 0.0);
    let s = snapshot;
    assert_eq!(s.calls, 60_000);
    assert!(s.hedges_won > 0 && s.refused_by_budget == 0, "{s}");
}
