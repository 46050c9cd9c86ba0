//! The retry budget on paused time: the floor, the share of requests, the
//! sliding window, the estimate after a quiet period, refunds, refusals,
//! concurrency (exact totals), validation and defaults, and a model check
//! of the budget's arithmetic.

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
    let b = budget(0.0, 5, 2 * SEC);
    assert_eq!(window(&b), (0, 0, 10));
    assert_eq!(drain(&b).len(), 10);
    let s = b.snapshot();
    assert_eq!(
        (s.requests, s.retries, s.available, s.refused, s.refunded),
        (0, 10, 0, 1, 0)
    );
    // Still spent within the window, whole again once it has passed.
    time::advance(Duration::from_millis(1_999)).await;
    assert!(b.try_withdraw().is_none());
    time::advance(Duration::from_millis(1)).await;
    assert_eq!(window(&b), (0, 0, 10));
    assert_eq!(drain(&b).len(), 10);
}

#[tokio::test(start_paused = true)]
async fn retries_may_add_a_percentage_of_the_requests() {
    let b = budget(20.0, 0, 10 * SEC);
    deposit(&b, 100);
    assert_eq!(window(&b), (100, 0, 20));
    assert_eq!(drain(&b).len(), 20);
    // 20 % of 104 is 20.8: rounded down; of 105, 21.
    deposit(&b, 4);
    assert!(b.try_withdraw().is_none());
    deposit(&b, 1);
    assert_eq!(drain(&b).len(), 1);
    // More requests in the same bucket raise the limit again.
    deposit(&b, 100);
    assert_eq!(drain(&b).len(), 20);
    assert_eq!(window(&b), (205, 41, 0));

    // Fractional and above-100 % shares, and the floor added on top.
    let b = budget(12.5, 0, 10 * SEC);
    deposit(&b, 80);
    assert_eq!(drain(&b).len(), 10);
    let b = budget(250.0, 0, 10 * SEC);
    deposit(&b, 4);
    assert_eq!(drain(&b).len(), 10);
    let b = budget(50.0, 1, 10 * SEC);
    deposit(&b, 7);
    assert_eq!(drain(&b).len(), 10 + 3);
}

#[tokio::test(start_paused = true)]
async fn old_requests_and_retries_leave_the_window() {
    // 50 %, no floor, 10 s window in buckets of 1 s.
    let b = budget(50.0, 0, 10 * SEC);
    deposit(&b, 20);
    assert_eq!(window(&b), (20, 0, 10));
    assert_eq!(drain(&b).len(), 10);

    time::advance(5 * SEC).await;
    // This refusal is the first withdrawal of its bucket: it notes the
    // deposits so far, which dates the next ones to this bucket.
    assert!(b.try_withdraw().is_none());
    deposit(&b, 10);
    assert_eq!(window(&b), (30, 10, 5));
    assert_eq!(drain(&b).len(), 5);

    // t = 10 s: the 20 requests and 10 retries of t = 0 have left.
    time::advance(5 * SEC).await;
    assert_eq!(window(&b), (10, 5, 0));
    assert!(b.try_withdraw().is_none());

    // t = 15 s: so have those of t = 5 s.
    time::advance(5 * SEC).await;
    assert_eq!(window(&b), (0, 0, 0));
    deposit(&b, 4);
    assert_eq!(window(&b), (4, 0, 2));
    assert_eq!(drain(&b).len(), 2);
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
    // gets its share at the average rate: 900 requests, 180 retries.
    assert_eq!(window(&b), (900, 0, 180));
    assert_eq!(drain(&b).len(), 180);

    // The outage goes on: every request fails and retries as much as it may.
    let mut taken = Vec::new();
    for _ in 0..30 {
        time::advance(SEC).await;
        deposit(&b, 100);
        taken.push(drain(&b).len());
    }
    // The retries of t = 100 s fill the window until they leave it; then
    // the next window's 20 % of 900 requests, and so on.
    let mut expected = vec![0; 30];
    for t in [110, 120, 130] {
        expected[t - 101] = 180;
    }
    assert_eq!(taken, expected);
    // Never more than 20 % of the 1,000 requests of any 10 s.
    for w in taken.windows(10) {
        assert!(w.iter().sum::<usize>() <= 200, "{w:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refund_restores_one_retry() {
    // Three retries per window of 1 s (buckets of 100 ms).
    let b = budget(0.0, 3, SEC);
    let mut taken = drain(&b);
    assert_eq!(taken.len(), 3);
    b.refund(taken.pop().unwrap());
    assert_eq!(window(&b), (0, 2, 1));
    let again = b.try_withdraw().expect("the refunded retry");
    assert!(b.try_withdraw().is_none());

    // A refund into an earlier bucket of the window counts too.
    time::advance(Duration::from_millis(300)).await;
    assert!(b.try_withdraw().is_none());
    b.refund(taken.pop().unwrap());
    assert_eq!(window(&b), (0, 2, 1));
    let later = b.try_withdraw().expect("refunded from an earlier bucket");
    assert!(b.try_withdraw().is_none());

    // A refund for a bucket that has left the window changes nothing.
    time::advance(Duration::from_millis(700)).await;
    assert_eq!(window(&b), (0, 1, 2));
    b.refund(taken.pop().unwrap());
    b.refund(again);
    assert_eq!(window(&b), (0, 1, 2));
    b.refund(later);
    assert_eq!(window(&b), (0, 0, 3));
    assert_eq!(b.snapshot().refunded, 5);

    // A withdrawal from another budget is ignored.
    let other = budget(0.0, 3, SEC);
    b.refund(other.try_withdraw().unwrap());
    assert_eq!(window(&b), (0, 0, 3));
    assert_eq!(b.snapshot().refunded, 5);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_counted_and_clones_share_one_budget() {
    let b = budget(20.0, 0, 10 * SEC);
    let clone = b.clone();
    deposit(&clone, 10);
    assert_eq!(drain(&b).len(), 2);
    for _ in 0..4 {
        assert!(clone.try_withdraw().is_none());
    }
    let s = b.snapshot();
    assert_eq!((s.requests, s.retries, s.refused), (10, 2, 5));
    assert_eq!(clone.snapshot(), s);
    // Snapshots only read.
    assert_eq!(b.snapshot().refused, 5);
}

#[tokio::test(start_paused = true)]
async fn a_lagging_clock_withdraws_from_the_newest_bucket() {
    let b = budget(0.0, 1, 10 * SEC); // 10 retries per 10 s
    let t0 = Instant::now();
    time::advance(5 * SEC).await;
    let _first = b.try_withdraw().unwrap();
    // A caller that read the clock at t = 0 is counted at t = 5 s.
    let _late = b.try_withdraw_at(t0).unwrap();
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
    deposit(&b, 1_000);
    let allowance = 10 * 10 + 1_000 / 5;
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

#[test]
fn concurrent_withdrawals_and_refunds_keep_exact_accounts() {
    let b = budget(0.0, 50, 10 * SEC); // 500 retries
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
    assert_eq!(s.available, 82_000 / 5);
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
        // The floor: 10/s over 10 s.
        assert_eq!(window(&b), (0, 0, 100));
        deposit(&b, 50);
        assert_eq!(window(&b), (50, 0, 110));
        assert_eq!(drain(&b).len(), 110);
        time::advance(Duration::from_millis(9_999)).await;
        assert!(b.try_withdraw().is_none());
        time::advance(Duration::from_millis(1)).await;
        assert_eq!(window(&b), (0, 0, 100));
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
    /// buckets are fewer than `min_per_second × window + percent × deposits
    /// in those buckets`, rounded down.
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
                prop_assert_eq!(got.is_some(), in_window < allowed(deposits), "step {} attempt {}", i, n);
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
            prop_assert_eq!(snap.available, allowed(&deposits).saturating_sub(in_window), "step {}", i);
        }
    }
}
