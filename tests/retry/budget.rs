//! The retry budget at the layer: against a backend that always fails,
//! retries stay within `percent` of the requests plus the reserve of
//! `min_per_second` over the window, spent at most a tenth at a time, also
//! under concurrency.

use std::time::Duration;

use steadfast::retry::{Backoff, RetryBudget, RetryConfig, RetryLayer, RetrySnapshot};
use tower::{Layer, ServiceExt};

use crate::harness::{down, Calls, Counts};

/// What the brief bound allows: `(1 + percent/100) × n + min × window`.
fn bound(n: u64, percent: f64, min_per_second: u32, window_secs: u64) -> u64 {
    (n as f64 * (1.0 + percent / 100.0)).floor() as u64 + u64::from(min_per_second) * window_secs
}

/// The counters of a layer whose every call failed to the end.
fn check_all_failed(snapshot: &RetrySnapshot, n: u64) {
    let counts = Counts::from_snapshot(snapshot);
    assert_eq!(counts.calls, n);
    assert!(counts.refused > 0, "the budget refused: {snapshot}");
    assert!(counts.retries > 0, "the budget allowed some: {snapshot}");
    // Every call ended either refused or out of attempts.
    assert_eq!(counts.exhausted + counts.refused, n, "{snapshot}");
    let budget = snapshot.budget.expect("the layer has a budget");
    // Deposits are dated by the withdrawals around them: never more than
    // were made.
    assert!(budget.requests <= n, "{budget:?}");
    assert_eq!(budget.retries, counts.retries);
    assert_eq!(budget.refused, counts.refused);
    assert_eq!(budget.refunded, 0);
}

#[tokio::test(start_paused = true)]
async fn budget_bounds_the_retries_of_a_failing_backend() {
    let (percent, min, window) = (20.0, 10, 10);
    let budget = RetryBudget::builder()
        .percent(percent)
        .min_per_second(min)
        .window(Duration::from_secs(window))
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .budget(budget)
        .max_attempts(10)
        .backoff(Backoff::fixed(Duration::ZERO))
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let handle = layer.handle();
    let calls = Calls::new();
    let svc = layer.layer(down(&calls));
    // 50 calls a second for one window.
    let n = 500;
    for i in 0..n {
        if i > 0 {
            tokio::time::advance(Duration::from_millis(20)).await;
        }
        svc.clone().oneshot(1).await.unwrap_err();
    }
    let snapshot = handle.snapshot();
    check_all_failed(&snapshot, n);
    assert!(
        snapshot.attempts <= bound(n, percent, min, window),
        "{snapshot}"
    );
    // The floor is always granted, a tenth in each of the 10 buckets.
    assert!(snapshot.retries >= u64::from(min) * window, "{snapshot}");
    assert_eq!(calls.count() as u64, snapshot.attempts);
}

/// The default budget (20 %, 10/s over 10 s) is on unless switched off.
#[tokio::test(start_paused = true)]
async fn the_default_budget_bounds_retries() {
    let config = RetryConfig::builder()
        .max_attempts(10)
        .backoff(Backoff::fixed(Duration::ZERO))
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let handle = layer.handle();
    assert!(handle.budget().is_some());
    let calls = Calls::new();
    let svc = layer.layer(down(&calls));
    // 50 calls a second for one window.
    let n = 500;
    for i in 0..n {
        if i > 0 {
            tokio::time::advance(Duration::from_millis(20)).await;
        }
        svc.clone().oneshot(1).await.unwrap_err();
    }
    let snapshot = handle.snapshot();
    check_all_failed(&snapshot, n);
    assert!(snapshot.attempts <= bound(n, 20.0, 10, 10), "{snapshot}");
    assert!(
        snapshot.retries >= 100,
        "the floor, 10/s over 10 s: {snapshot}"
    );
}

/// Without a budget only `max_attempts` bounds the retries.
#[tokio::test(start_paused = true)]
async fn no_budget_retries_every_call_to_the_end() {
    let config = RetryConfig::builder()
        .no_budget()
        .max_attempts(10)
        .backoff(Backoff::fixed(Duration::ZERO))
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let handle = layer.handle();
    assert!(handle.budget().is_none());
    let calls = Calls::new();
    let svc = layer.layer(down(&calls));
    for _ in 0..50 {
        svc.clone().oneshot(1).await.unwrap_err();
    }
    assert_eq!(
        Counts::of(&handle),
        Counts {
            calls: 50,
            attempts: 500,
            retries: 450,
            exhausted: 50,
            ..Counts::default()
        }
    );
    assert_eq!(handle.snapshot().budget, None);
}

/// Many tasks on several threads share one budget and never overdraw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_never_overdraw() {
    let (percent, min, window) = (10.0, 1, 60);
    let budget = RetryBudget::builder()
        .percent(percent)
        .min_per_second(min)
        .window(Duration::from_secs(window))
        .build()
        .unwrap();
    let config = RetryConfig::builder()
        .budget(budget)
        .max_attempts(20)
        .backoff(Backoff::fixed(Duration::ZERO))
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let handle = layer.handle();
    let calls = Calls::new();
    let svc = layer.layer(down(&calls));
    let (tasks, per_task) = (8, 100);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let svc = svc.clone();
        set.spawn(async move {
            for _ in 0..per_task {
                svc.clone().oneshot(1).await.unwrap_err();
                tokio::task::yield_now().await;
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    let n = tasks * per_task;
    let snapshot = handle.snapshot();
    check_all_failed(&snapshot, n);
    assert!(
        snapshot.attempts <= bound(n, percent, min, window),
        "{snapshot}"
    );
    // Calls on the real clock, within a bucket or two of 6 s: the floor's
    // tenth at least.
    assert!(
        snapshot.retries >= u64::from(min) * window / 10,
        "{snapshot}"
    );
    assert_eq!(calls.count() as u64, snapshot.attempts);
}
