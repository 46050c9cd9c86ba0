//! The retry budget on paused time: the floor, the share of requests, the
//! sliding window, the pace (a tenth of the window's allowance per bucket),
//! the outage of issue #13, a blip, the estimate after a quiet period,
//! refunds, refusals, concurrency (exact totals), validation and defaults,
//! and a model check of the budget's arithmetic.

use std::time::Duration;

use proptest::prelude::*;
use steadfast::retry::budget::{BudgetSnapshot, RetryBudget, Withdrawal};
use tokio::time::{self, Instant};

const SEC: Duration = Duration::from_secs(1);

fn budget(percent: f64, min_per_second: u32, window: Duration) -> RetryBudget {
    RetryBudget::builder()
        .percent(percent)
        .min_per_second(min_per_second)
        .window(window)
        .build()
        .unwrap()
}

fn deposit(b: &RetryBudget, n: u64) {
    for _ in 0..n {
        b.deposit();
    }
}

/// Withdraws until the budget refuses (one refusal).
fn drain(b: &RetryBudget) -> Vec<Withdrawal> {
    std::iter::from_fn(|| b.try_withdraw()).collect()
}

/// Drains each of the 10 buckets of a `window`, one after the other, and
/// returns how many retries were taken in all; the clock ends one window on.
async fn drain_window(b: &RetryBudget, window: Duration) -> usize {
    let mut taken = 0;
    for _ in 0..10 {
        taken += drain(b).len();
        time::advance(window / 10).await;
    }
    taken
}

/// (requests, retries, available) now.
fn window(b: &RetryBudget) -> (u64, u64, u64) {
    let s = b.snapshot();
    (s.requests, s.retries, s.available)
}

#[test]
fn budgets_are_send_sync_clone_and_tokens_are_send() {
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send_sync_clone::<RetryBudget>();
    assert_send_sync_clone::<BudgetSnapshot>();
    assert_send::<Withdrawal>();
}

#[tokio::test(start_paused = true)]
async fn the_floor_alone_grants_min_per_second_times_window() {
    // 10 retries per window of 2 s, at most one per bucket of 200 ms.
    let b = budget(0.0, 5, 2 * SEC);
    assert_eq!(window(&b), (0, 0, 1));
    for i in 0..10 {
        assert_eq!(window(&b), (0, i, 1));
        assert_eq!(drain(&b).len(), 1);
        time::advance(Duration::from_millis(200)).await;
    }
    let s = b.snapshot();
    // t = 2 s: the retry of t = 0 has left the window.
    assert_eq!(
        (s.requests, s.retries, s.available, s.refused, s.refunded),
        (0, 9, 1, 10, 0)
    );
    // Whole again once a window has passed without retries.
    time::advance(2 * SEC).await;
    assert_eq!(window(&b), (0, 0, 1));
    assert_eq!(drain_window(&b, 2 * SEC).await, 10);
}

#[tokio::test(start_paused = true)]
async fn retries_may_add_a_percentage_of_the_requests() {
    let b = budget(20.0, 0, 10 * SEC);
    deposit(&b, 100);
    // 20 in the window, a tenth of them in this bucket.
    assert_eq!(window(&b), (100, 0, 2));
    assert_eq!(drain(&b).len(), 2);
    // More requests in the same bucket raise its limit again: 20 % of 200
    // is 40 in the window, 4 in the bucket.
    deposit(&b, 100);
    assert_eq!(window(&b), (200, 2, 2));
    assert_eq!(drain(&b).len(), 2);
    // Over the window, 40 in all.
    assert_eq!(drain_window(&b, 10 * SEC).await, 36);

    // 20 % of 104 is 20.8: rounded down; of 105, 21 (3 a bucket at most).
    for (requests, retries) in [(104, 20), (105, 21)] {
        let b = budget(20.0, 0, 10 * SEC);
        deposit(&b, requests);
        assert_eq!(drain_window(&b, 10 * SEC).await, retries);
    }
    // Fractional and above-100 % shares, and the floor added on top.
    for (percent, min, requests, retries) in
        [(12.5, 0, 80, 10), (250.0, 0, 4, 10), (50.0, 1, 7, 10 + 3)]
    {
        let b = budget(percent, min, 10 * SEC);
        deposit(&b, requests);
        assert_eq!(drain_window(&b, 10 * SEC).await, retries, "{percent}");
    }
}

#[tokio::test(start_paused = true)]
async fn old_requests_and_retries_leave_the_window() {
    // 50 %, no floor, 10 s window in buckets of 1 s.
    let b = budget(50.0, 0, 10 * SEC);
    deposit(&b, 200);
    // 100 retries in the window, at most 10 a bucket.
    let mut taken = 0;
    for _ in 0..5 {
        taken += drain(&b).len();
        time::advance(SEC).await;
    }
    assert_eq!(taken, 50);

    // t = 5 s: the first withdrawal of this bucket notes the deposits so
    // far, which dates the next ones to this bucket.
    assert_eq!(drain(&b).len(), 10);
    deposit(&b, 100);
    // 150 in the window, 15 in this bucket, 10 of which are taken.
    assert_eq!(window(&b), (300, 60, 5));
    assert_eq!(drain(&b).len(), 5);

    // t = 10 s: the 200 requests and 10 retries of t = 0 have left.
    time::advance(5 * SEC).await;
    assert_eq!(window(&b), (100, 55, 0));
    assert!(b.try_withdraw().is_none());

    // t = 15 s: so have those of t = 1 s to 5 s.
    time::advance(5 * SEC).await;
    assert_eq!(window(&b), (0, 0, 0));
    deposit(&b, 4);
    assert_eq!(window(&b), (4, 0, 1));
    assert_eq!(drain(&b).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_outage_after_a_quiet_period_gets_a_share_of_the_last_window_only() {
    let b = budget(20.0, 0, 10 * SEC);
    // 100 s of healthy traffic, 100 requests a second, no retry at all.
    for _ in 0..100 {
        time::advance(SEC).await;
        deposit(&b, 100);
    }
    // 10,000 requests since the budget was built, 20 % of which would be
    // 2,000 retries. The window (9 whole buckets at the start of the 10th)
    // gets its share at the average rate: 900 requests, 180 retries, 18 of
    // them in this bucket.
    assert_eq!(window(&b), (900, 0, 18));
    assert_eq!(drain(&b).len(), 18);

    // The outage goes on: every request fails and retries as much as it may.
    let mut taken = Vec::new();
    for _ in 0..30 {
        time::advance(SEC).await;
        deposit(&b, 100);
        taken.push(drain(&b).len());
    }
    // Each bucket counts the requests since the first retry of the outage
    // (k × 100 at t = 100 + k s): its tenth of 20 % of them, until the
    // window holds nine buckets of requests (900, 18 retries a bucket).
    // Never the window's whole allowance at once.
    let expected: Vec<usize> = (1..=30).map(|k| 2 * k.min(9)).collect();
    assert_eq!(taken, expected);
    // Never more than 20 % of the 1,000 requests of any 10 s.
    for w in taken.windows(10) {
        assert!(w.iter().sum::<usize>() <= 200, "{w:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refund_restores_one_retry() {
    // Three retries per window of 1 s, at most one per bucket of 100 ms.
    let b = budget(0.0, 3, SEC);
    let first = b.try_withdraw().expect("one in this bucket");
    assert!(b.try_withdraw().is_none());
    time::advance(Duration::from_millis(100)).await;
    let second = b.try_withdraw().unwrap();
    time::advance(Duration::from_millis(100)).await;
    let third = b.try_withdraw().unwrap();
    time::advance(Duration::from_millis(100)).await;
    assert_eq!(window(&b), (0, 3, 0));
    assert!(b.try_withdraw().is_none());

    // A refund into an earlier bucket of the window counts.
    b.refund(first);
    assert_eq!(window(&b), (0, 2, 1));
    let fourth = b.try_withdraw().expect("refunded from an earlier bucket");
    // So does one into the current bucket.
    b.refund(fourth);
    assert_eq!(window(&b), (0, 2, 1));
    let fourth = b.try_withdraw().expect("the refunded retry");
    assert!(b.try_withdraw().is_none());

    // A refund for a bucket that has left the window changes nothing.
    // t = 1.1 s: the window holds the third and fourth.
    time::advance(Duration::from_millis(800)).await;
    assert_eq!(window(&b), (0, 2, 1));
    b.refund(second);
    assert_eq!(window(&b), (0, 2, 1));
    b.refund(third);
    assert_eq!(window(&b), (0, 1, 1));
    b.refund(fourth);
    assert_eq!(window(&b), (0, 0, 1));
    assert_eq!(b.snapshot().refunded, 5);

    // A withdrawal from another budget is ignored.
    let other = budget(0.0, 3, SEC);
    b.refund(other.try_withdraw().unwrap());
    assert_eq!(window(&b), (0, 0, 1));
    assert_eq!(b.snapshot().refunded, 5);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_counted_and_clones_share_one_budget() {
    let b = budget(20.0, 0, 10 * SEC);
    let clone = b.clone();
    deposit(&clone, 10);
    assert_eq!(drain(&b).len(), 1);
    for _ in 0..4 {
        assert!(clone.try_withdraw().is_none());
    }
    let s = b.snapshot();
    assert_eq!((s.requests, s.retries, s.refused), (10, 1, 5));
    assert_eq!(clone.snapshot(), s);
    // Snapshots only read.
    assert_eq!(b.snapshot().refused, 5);
}

#[tokio::test(start_paused = true)]
async fn a_lagging_clock_withdraws_from_the_newest_bucket() {
    let b = budget(0.0, 2, 10 * SEC); // 20 retries per 10 s, 2 per second
    let t0 = Instant::now();
    time::advance(5 * SEC).await;
    let _first = b.try_withdraw().unwrap();
    // A caller that read the clock at t = 0 is counted at t = 5 s.
    let _late = b.try_withdraw_at(t0).unwrap();
    assert!(
        b.try_withdraw_at(t0).is_none(),
        "the bucket of t = 5 s is full"
    );
    time::advance(Duration::from_millis(9_999)).await;
    assert_eq!(b.snapshot().retries, 2);
    assert_eq!(b.snapshot_at(t0).retries, 2);
    time::advance(Duration::from_millis(1)).await;
    assert_eq!(b.snapshot().retries, 0);
}

#[test]
fn concurrent_withdrawals_never_take_more_than_the_allowance() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    // A fixed `now`: every withdrawal falls in one bucket, whatever the
    // scheduling, so the total is exact.
    let b = budget(20.0, 10, 10 * SEC);
    let now = Instant::now();
    deposit(&b, 10_000);
    // A tenth of the window's 10/s × 10 s + 20 % of 10,000: the bucket's pace.
    let allowance = (10 * 10 + 10_000 / 5) / 10;
    let taken: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move {
                    let mut taken = 0u64;
                    for i in 0..10_000 {
                        if b.try_withdraw_at(now).is_some() {
                            taken += 1;
                        }
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    taken
                })
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        sum
    });
    assert_eq!(taken, allowance);
    let s = b.snapshot_at(now);
    assert_eq!((s.retries, s.available), (allowance, 0));
    assert_eq!(s.refused, 80_000 - allowance);
}

/// Threads withdraw together in each bucket in turn: every bucket gives
/// exactly its pace, and the window exactly its allowance, whatever the
/// scheduling (leases of a closed bucket are given back).
#[test]
fn concurrent_withdrawals_take_exactly_each_buckets_pace() {
    // 2,100 retries per window of 10 s, 210 per bucket of 1 s.
    let b = budget(20.0, 10, 10 * SEC);
    deposit(&b, 10_000);
    let t0 = Instant::now();
    let threads = 8;
    let barrier = std::sync::Barrier::new(threads);
    let per_thread: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    (0..12)
                        .map(|k| {
                            barrier.wait();
                            let now = t0 + SEC * k;
                            (0..1_000)
                                .filter(|_| b.try_withdraw_at(now).is_some())
                                .count() as u64
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let per_bucket: Vec<u64> = (0..12)
        .map(|k| per_thread.iter().map(|t| t[k]).sum())
        .collect();
    // Then the window is spent: the requests were all made before t = 1 s.
    let mut expected = vec![210; 10];
    expected.extend([0, 0]);
    assert_eq!(per_bucket, expected);
    // At t = 11 s the window holds buckets 2 to 11.
    let s = b.snapshot_at(t0 + SEC * 11);
    assert_eq!((s.retries, s.available), (8 * 210, 0));
}

#[test]
fn concurrent_withdrawals_and_refunds_keep_exact_accounts() {
    let b = budget(0.0, 500, 10 * SEC); // 500 retries in this bucket
    let now = Instant::now();
    let (kept, refunded) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let (mut kept, mut refunded) = (0u64, 0u64);
                    for i in 0..10_000 {
                        if let Some(w) = b.try_withdraw_at(now) {
                            if i % 2 == 0 {
                                b.refund(w);
                                refunded += 1;
                            } else {
                                kept += 1;
                            }
                        }
                    }
                    (kept, refunded)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(k, r), (k2, r2)| (k + k2, r + r2))
    });
    assert!(kept <= 500, "{kept}");
    let s = b.snapshot_at(now);
    assert_eq!(s.retries, kept);
    assert_eq!(s.available, 500 - kept);
    assert_eq!(s.refunded, refunded);
    assert!(refunded > 0);
}

#[test]
fn concurrent_deposits_are_all_counted() {
    let b = budget(20.0, 0, 10 * SEC);
    let now = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| deposit(&b, 10_000));
        }
    });
    // And from threads that come and go (their counters are reused).
    for _ in 0..20 {
        std::thread::scope(|s| {
            s.spawn(|| deposit(&b, 100));
        });
    }
    let s = b.snapshot_at(now);
    assert_eq!(s.requests, 82_000);
    // 20 % of them in the window, a tenth of that in this bucket.
    assert_eq!(s.available, 82_000 / 5 / 10);
}

#[test]
fn each_validation_error_names_its_field() {
    let field = |b: steadfast::retry::budget::RetryBudgetBuilder| b.build().unwrap_err();
    for p in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.5, 1_000.5] {
        let err = field(RetryBudget::builder().percent(p));
        assert_eq!(err.field(), "retry.budget.percent", "{p}");
        assert!(err.to_string().contains("retry.budget.percent"), "{err}");
    }
    for w in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_secs(61),
    ] {
        let err = field(RetryBudget::builder().window(w));
        assert_eq!(err.field(), "retry.budget.window", "{w:?}");
    }
    let err = field(RetryBudget::builder().percent(0.0).min_per_second(0));
    assert_eq!(err.field(), "retry.budget.min_per_second");
    assert!(err.reason().contains("max_attempts(1)"), "{err}");

    // The edges are valid.
    for b in [
        RetryBudget::builder().percent(0.0).min_per_second(1),
        RetryBudget::builder().percent(1_000.0).min_per_second(0),
        RetryBudget::builder().window(SEC),
        RetryBudget::builder().window(60 * SEC),
        RetryBudget::builder().min_per_second(u32::MAX),
    ] {
        b.build().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn defaults_are_20_percent_10_per_second_over_10_seconds() {
    let makers: [fn() -> RetryBudget; 2] = [RetryBudget::default, || {
        RetryBudget::builder().build().unwrap()
    }];
    for make in makers {
        // Built here, on the clock of this round.
        let b = make();
        let debug = format!("{b:?}");
        for part in ["percent: 20.0", "min_per_second: 10", "window: 10s"] {
            assert!(debug.contains(part), "{debug}");
        }
        // The floor: 10/s over 10 s, a tenth of it in each bucket of 1 s.
        assert_eq!(window(&b), (0, 0, 10));
        deposit(&b, 50);
        assert_eq!(window(&b), (50, 0, 11));
        assert_eq!(drain_window(&b, 10 * SEC).await, 110);
        // t = 10 s: the requests and the 11 retries of t = 0 have left.
        assert_eq!(window(&b), (0, 99, 1));
        time::advance(10 * SEC).await;
        assert_eq!(window(&b), (0, 0, 10));
    }
}

/// One bucket of the model check.
#[derive(Debug, Clone)]
struct Step {
    deposits: u64,
    attempts: usize,
    /// Refund every n-th withdrawal of this step (0: none).
    refund_every: usize,
    /// Refund one withdrawal kept from this many buckets back, if any.
    refund_back: Option<usize>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u64..60,
        0usize..25,
        0usize..4,
        proptest::option::of(0usize..14),
    )
        .prop_map(|(deposits, attempts, refund_every, refund_back)| Step {
            deposits,
            attempts,
            refund_every,
            refund_back,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// With a withdrawal at the start of every bucket (so that every bucket
    /// is sampled before its deposits), the budget grants exactly what the
    /// rule says: a withdrawal succeeds iff the retries in the last 10
    /// buckets are fewer than the allowance `min_per_second × window +
    /// percent × deposits in those buckets`, rounded down, and the retries
    /// in the current bucket fewer than a tenth of the allowance, rounded up.
    #[test]
    fn the_budget_follows_its_rule(
        percent in prop::sample::select(vec![0.0, 1.0, 12.5, 20.0, 50.0, 100.0, 250.0]),
        min_per_second in 0u32..4,
        window_secs in prop::sample::select(vec![1u64, 10, 60]),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        prop_assume!(percent > 0.0 || min_per_second > 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let b = budget(percent, min_per_second, Duration::from_secs(window_secs));
        let t0 = Instant::now();
        let bucket = Duration::from_secs(window_secs) / 10;
        let floor_units = u64::from(min_per_second) * window_secs * 1_000_000;
        let earn = (percent * 10_000.0) as u64;

        let mut deposits: Vec<u64> = Vec::new();
        let mut retries: Vec<u64> = Vec::new();
        let mut held: Vec<Vec<Withdrawal>> = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let now = t0 + bucket * i as u32;
            deposits.push(0);
            retries.push(0);
            held.push(Vec::new());
            let first = i.saturating_sub(9);
            let allowed = |deposits: &[u64]| {
                (floor_units + earn * deposits[first..].iter().sum::<u64>()) / 1_000_000
            };
            let attempt = |retries: &mut Vec<u64>, deposits: &[u64], held: &mut Vec<Vec<Withdrawal>>, n: usize| {
                let in_window: u64 = retries[first..].iter().sum();
                let got = b.try_withdraw_at(now);
                let allowed = allowed(deposits);
                let fits = in_window < allowed && retries[i] < allowed.div_ceil(10);
                prop_assert_eq!(got.is_some(), fits, "step {} attempt {}", i, n);
                if let Some(w) = got {
                    if s.refund_every > 0 && n % s.refund_every == 0 {
                        b.refund(w);
                    } else {
                        retries[i] += 1;
                        held[i].push(w);
                    }
                }
                Ok(())
            };
            attempt(&mut retries, &deposits, &mut held, 0)?;
            deposits[i] = s.deposits;
            for _ in 0..s.deposits {
                b.deposit();
            }
            if let Some(back) = s.refund_back {
                if back <= i {
                    if let Some(w) = held[i - back].pop() {
                        b.refund(w);
                        if i - back >= first {
                            retries[i - back] -= 1;
                        }
                    }
                }
            }
            for n in 1..=s.attempts {
                attempt(&mut retries, &deposits, &mut held, n)?;
            }
            let snap = b.snapshot_at(now);
            let requests: u64 = deposits[first..].iter().sum();
            let in_window: u64 = retries[first..].iter().sum();
            prop_assert_eq!(snap.requests, requests, "step {}", i);
            prop_assert_eq!(snap.retries, in_window, "step {}", i);
            let allowed = allowed(&deposits);
            let available = allowed
                .saturating_sub(in_window)
                .min(allowed.div_ceil(10).saturating_sub(retries[i]));
            prop_assert_eq!(snap.available, available, "step {}", i);
        }
    }
}

/// The outage of issue #13 on explicit clock readings: 1,000 requests a
/// second at an even rate (one a millisecond), healthy (no retry) for
/// `healthy_ms`, then dead for `outage_ms`, every request wanting 2 retries
/// at once. Returns the retries granted in each millisecond of the outage.
fn outage(b: &RetryBudget, t0: Instant, healthy_ms: u64, outage_ms: u64) -> Vec<u64> {
    deposit(b, healthy_ms);
    (healthy_ms..healthy_ms + outage_ms)
        .map(|ms| {
            let now = t0 + Duration::from_millis(ms);
            b.deposit();
            (0..2).filter(|_| b.try_withdraw_at(now).is_some()).count() as u64
        })
        .collect()
}

/// `(start, sum)` of every run of `width` values of `v`.
fn sliding_sums(v: &[u64], width: usize) -> impl Iterator<Item = (usize, u64)> + '_ {
    let mut sum: u64 = v[..width].iter().sum();
    std::iter::once((0, sum)).chain((width..v.len()).map(move |i| {
        sum = sum + v[i] - v[i - width];
        (i + 1 - width, sum)
    }))
}

#[tokio::test(start_paused = true)]
async fn an_outage_never_sees_more_than_half_its_load_in_retries_in_any_second() {
    // Outages that start on a bucket edge, inside a bucket, and just before an edge.
    for healthy_ms in [10_000, 10_500, 10_999] {
        let b = RetryBudget::default();
        let t0 = Instant::now();
        let granted = outage(&b, t0, healthy_ms, 60_000);
        // Any second, however aligned: 1,000 requests offered, at most 500
        // retries (attempts ≤ 1.5 × the offered load).
        for (start, sum) in sliding_sums(&granted, 1_000) {
            assert!(
                sum <= 500,
                "{healthy_ms}: {sum} retries in the second from +{start} ms"
            );
        }
        // The long-run cap: over each 10 s window of buckets (1 s each,
        // counted from the build), at most 20 % of its 10,000 requests plus
        // the floor of 10/s.
        let first_edge = healthy_ms.next_multiple_of(1_000) - healthy_ms;
        for w in granted[first_edge as usize..]
            .chunks(1_000)
            .collect::<Vec<_>>()
            .windows(10)
        {
            let sum: u64 = w.iter().flat_map(|s| s.iter()).sum();
            assert!(sum <= 2_100, "{healthy_ms}: {sum} retries in 10 s");
        }
        // Any 10 s, however aligned, straddles 11 buckets: one bucket's
        // pace (a tenth of 2,100) more at most.
        for (start, sum) in sliding_sums(&granted, 10_000) {
            assert!(
                sum <= 2_310,
                "{healthy_ms}: {sum} retries in the 10 s from +{start} ms"
            );
        }
        // Not starved: the 60 s of outage may hold 6 × 2,100 = 12,600
        // retries; at least 90 % of them are granted (11,697 to 11,894 when
        // written). What is lost is in the first window: it counts its
        // requests from its first retry (the first bucket's sample), so
        // over the window the pace grows from the floor's share to a full
        // tenth, and about half the window's allowance is lost but for the
        // first bucket, which gets its share by the estimate after a quiet
        // period: at most 1,050 of the 12,600 (8.3 %).
        let total: u64 = granted.iter().sum();
        assert!(total >= 11_340, "{healthy_ms}: {total} retries in 60 s");
        assert!(
            total <= 12_600 + 2_100,
            "{healthy_ms}: {total} retries in 60 s"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_blip_among_healthy_traffic_is_retried_in_full() {
    for healthy_ms in [20_000, 20_500] {
        let b = RetryBudget::default();
        let t0 = Instant::now();
        // 1,000 healthy calls a second, then 10 fail at once.
        deposit(&b, healthy_ms + 10);
        let now = t0 + Duration::from_millis(healthy_ms);
        let retried = (0..10).filter(|_| b.try_withdraw_at(now).is_some()).count();
        assert_eq!(retried, 10, "{healthy_ms}");
        // A tenth of the window's 2,100 (about 200) could have gone at once.
        let s = b.snapshot_at(now);
        assert_eq!(s.refused, 0);
        assert!(s.available >= 180, "{healthy_ms}: {s:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn low_traffic_relies_on_the_floor() {
    // Two calls a second: 20 % of them is 4 retries per 10 s; the floor of
    // 10/s grants the rest.
    let b = RetryBudget::default();
    let t0 = Instant::now();
    // The backend is dead for a minute and every call wants 2 retries: all
    // are granted.
    let mut granted = 0;
    for i in 0..120 {
        let now = t0 + Duration::from_millis(500 * i);
        b.deposit();
        granted += (0..2).filter(|_| b.try_withdraw_at(now).is_some()).count();
    }
    assert_eq!(granted, 240);
    // t = 60 s: 30 calls fail at once. The window allows 10/s × 10 s + 20 %
    // of its 47 requests = 109, less the 36 retries of the last 9 s; this
    // bucket a tenth of 109, rounded up: 11, and as many in the next.
    let now = t0 + 60 * SEC;
    deposit(&b, 30);
    let first = (0..30).filter(|_| b.try_withdraw_at(now).is_some()).count();
    assert_eq!(first, 11);
    let next = (0..30)
        .filter(|_| b.try_withdraw_at(now + SEC).is_some())
        .count();
    assert_eq!(next, 11);
}
