//! GCRA exactness on virtual time: over any window of length `w`, at most
//! `burst + floor(w * rate / period)` calls are admitted.

use super::*;

/// Checks every window between two admissions: `times` (nanoseconds, in
/// order) must hold at most `burst + floor(w * rate / period)` admissions
/// in each closed window `[times[i], times[j]]`.
#[track_caller]
fn check_windows(times: &[u64], rate: u64, period: Duration, burst: u64) {
    let period = period.as_nanos();
    for i in 0..times.len() {
        for j in i..times.len() {
            let w = u128::from(times[j] - times[i]);
            let allowed = u128::from(burst) + w * u128::from(rate) / period;
            let count = (j - i + 1) as u128;
            assert!(
                count <= allowed,
                "{count} admitted in [{}, {}] ns; allowed {allowed}",
                times[i],
                times[j]
            );
        }
    }
}

/// Drives `calls` calls at seeded pseudo-random virtual instants (bursts of
/// calls at one instant, gaps of up to `max_gap` between them); returns
/// the admission instants in nanoseconds since the layer was built.
async fn drive(
    rate: u64,
    period: Duration,
    burst: u64,
    calls: u32,
    max_gap: u64,
    seed: u64,
) -> Vec<u64> {
    let start = Instant::now();
    let layer = layer(rate, period, burst);
    let (mut svc, rec) = service(&layer);
    let mut rng = Rng(seed);
    let mut rejected = 0u64;
    let mut sent = 0;
    while sent < calls {
        tokio::time::advance(Duration::from_nanos(rng.below(max_gap + 1))).await;
        for _ in 0..=rng.below(4) {
            match try_call(&mut svc, sent) {
                Some(Ok(n)) => assert_eq!(n, sent),
                Some(Err(l)) => {
                    assert!(l.retry_after() > Duration::ZERO);
                    assert_eq!(l.waited(), Duration::ZERO);
                    rejected += 1;
                }
                None => panic!("a limiter without max_wait never queues"),
            }
            sent += 1;
        }
    }
    assert_eq!(layer.handle().snapshot().rejected, rejected);
    let times: Vec<u64> = rec
        .times_since(start)
        .into_iter()
        .map(|(_, t)| nanos(t))
        .collect();
    assert_eq!(times.len() as u64 + rejected, u64::from(sent));
    times
}

#[tokio::test(start_paused = true)]
async fn every_window_within_the_bound() {
    support::trace_init();
    // (rate, period, burst, mean spacing of calls): an interval that
    // divides the period, one that does not (1000 / 3 ns), a burst larger
    // than the rate, and calls faster and slower than the rate.
    let cases: [(u64, Duration, u64, u64); 6] = [
        (10, Duration::from_secs(1), 1, 30_000_000),
        (10, Duration::from_secs(1), 10, 60_000_000),
        (3, Duration::from_micros(1), 2, 150),
        (7, Duration::from_millis(1), 20, 50_000),
        (1, Duration::from_nanos(1), 1, 2),
        (1000, Duration::from_secs(60), 5, 200_000_000),
    ];
    for (k, &(rate, period, burst, gap)) in cases.iter().enumerate() {
        let times = drive(rate, period, burst, 3_000, gap, 0x5eed + k as u64).await;
        assert!(
            times.len() as u64 > burst,
            "case {k}: only {} admitted",
            times.len()
        );
        check_windows(&times, rate, period, burst);
    }
}

/// Calls at every instant, as fast as they come: the limiter admits exactly
/// `burst` at once and then one per interval, so the bound is met with
/// equality at every admission (the limiter wastes nothing).
#[tokio::test(start_paused = true)]
async fn a_saturated_limiter_meets_the_bound_exactly() {
    let (rate, period, burst) = (4, Duration::from_millis(100), 3);
    let interval = nanos(period) / rate; // 25 ms
    let start = Instant::now();
    let layer = layer(rate, period, burst);
    let (mut svc, rec) = service(&layer);
    for t in 0..40u32 {
        for k in 0..5 {
            let _ = try_call(&mut svc, t * 10 + k);
        }
        tokio::time::advance(Duration::from_nanos(interval / 5)).await;
    }
    let times: Vec<u64> = rec
        .times_since(start)
        .into_iter()
        .map(|(_, t)| nanos(t))
        .collect();
    // `burst` at t = 0, then one every interval.
    let mut expected = vec![0; burst as usize];
    expected.extend(
        (1..)
            .map(|k| k * interval)
            .take_while(|&t| t < 40 * interval / 5),
    );
    assert_eq!(times, expected);
    check_windows(&times, rate, period, burst);
}
