//! Hedges draw on the retry budget: it caps them when every attempt hangs.

use steadfast::hedge::HedgeLayer;
use steadfast::retry::RetryBudget;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

use crate::harness::{counts, fixed, ms, Backend, Step};

#[tokio::test(start_paused = true)]
async fn the_budget_caps_hedges_in_a_total_outage() {
    // Every attempt hangs. The budget allows 100 retries per 10 s window,
    // 10 in any tenth of it (percent 0: the floor alone).
    let backend = Backend::new(&[Step::Hang]);
    let budget = RetryBudget::builder()
        .percent(0.0)
        .min_per_second(10)
        .build()
        .unwrap();
    let layer = HedgeLayer::new(fixed(10, 3).budget(budget.clone()).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(backend.service());
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(1)))
        .collect();
    tokio::time::sleep(ms(500)).await;
    // 100 first attempts and 10 hedges at 10 ms: 90 refused then, and the
    // 10 third attempts at 20 ms. A call refused once sends no more hedges.
    assert_eq!(backend.sent_ms().len(), 110);
    assert_eq!(counts(&handle.snapshot()), (100, 10, 0, 100, 0, 0));
    assert_eq!(budget.snapshot().refused, 100);
    for call in &calls {
        assert!(
            !call.is_finished(),
            "a refused hedge leaves the call waiting"
        );
    }
    calls.iter().for_each(|c| c.abort());
}

#[tokio::test(start_paused = true)]
async fn with_the_budget_spent_the_call_waits_on_its_first_attempt() {
    let backend = Backend::new(&[Step::Ok(300)]);
    let budget = RetryBudget::builder()
        .percent(0.0)
        .min_per_second(1)
        .build()
        .unwrap();
    // Spend the one retry of this tenth of the window.
    let spent = budget.try_withdraw().unwrap();
    let layer = HedgeLayer::new(fixed(10, 2).budget(budget.clone()).build().unwrap());
    let handle = layer.handle();
    let start = Instant::now();
    assert_eq!(layer.layer(backend.service()).oneshot(1).await.unwrap(), 0);
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(backend.sent_ms(), [0]);
    assert_eq!(counts(&handle.snapshot()), (1, 0, 0, 1, 0, 0));
    drop(spent);
}

#[tokio::test(start_paused = true)]
async fn every_call_deposits() {
    let backend = Backend::new(&[Step::Ok(1)]);
    let budget = RetryBudget::default();
    let layer = HedgeLayer::new(fixed(10, 2).budget(budget.clone()).build().unwrap());
    let svc = layer.layer(backend.service());
    for _ in 0..5 {
        svc.clone().oneshot(1).await.unwrap();
    }
    assert_eq!(budget.snapshot().requests, 5);
}
