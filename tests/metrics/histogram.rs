//! `Histogram`: exact under two threads, quantiles within 3.125 % of a
//! sorted reference from 1 µs to 60 s.

use std::time::Duration;

use proptest::prelude::*;
use steadfast::metrics::{Histogram, HistogramSnapshot};

#[test]
fn exact_under_two_threads_times_a_million() {
    let histogram = Histogram::new();
    const N: u64 = 1_000_000;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let histogram = &histogram;
            s.spawn(move || {
                for i in 0..N {
                    // Spread over many buckets: 1 µs to ~1 s.
                    histogram.record_nanos(1_000 + (i * 997 + t) % 1_000_000_000);
                }
            });
        }
    });
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.count(), 2 * N);
    let expected_sum: u64 = (0..2u64)
        .flat_map(|t| (0..N).map(move |i| 1_000 + (i * 997 + t) % 1_000_000_000))
        .sum();
    assert_eq!(snapshot.sum(), Duration::from_nanos(expected_sum));
    let expected_max = (0..2u64)
        .flat_map(|t| (0..N).map(move |i| 1_000 + (i * 997 + t) % 1_000_000_000))
        .max()
        .unwrap();
    assert_eq!(snapshot.max(), Duration::from_nanos(expected_max));
    let bucketed: u64 = snapshot.buckets().map(|(_, _, n)| n).sum();
    assert_eq!(bucketed, 2 * N);
}

#[test]
fn exact_with_more_threads_than_owned_stripes() {
    // Past the owned stripes threads share stripe 0 (atomic updates): the
    // counts stay exact there too.
    let histogram = Histogram::new();
    let threads = 4 * std::thread::available_parallelism().map_or(2, |n| n.get()) + 8;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..10_000u64 {
                    histogram.record_nanos(i * 1_000);
                }
            });
        }
    });
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.count(), threads as u64 * 10_000);
    assert_eq!(
        snapshot.sum(),
        Duration::from_nanos(threads as u64 * (0..10_000u64).map(|i| i * 1_000).sum::<u64>())
    );
}

/// The nearest-rank reference: the smallest value with at least `q` of the
/// values at or below it.
fn reference(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn check_quantiles(values: &[u64]) -> Result<(), TestCaseError> {
    let histogram = Histogram::new();
    for v in values {
        histogram.record_nanos(*v);
    }
    let snapshot = histogram.snapshot();
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
        let want = reference(&sorted, q) as f64;
        let got = snapshot.quantile(q).unwrap().as_nanos() as f64;
        let error = (got - want).abs() / want;
        prop_assert!(
            error <= 0.03125 + 1e-9,
            "q={q}: estimate {got} vs {want}, error {:.2} %",
            100.0 * error
        );
    }
    prop_assert_eq!(
        snapshot.max(),
        Duration::from_nanos(*sorted.last().unwrap())
    );
    Ok(())
}

/// A log-uniform value from 1 µs to 60 s.
fn latency() -> impl Strategy<Value = u64> {
    (0.0f64..1.0).prop_map(|u| (1_000f64 * (60e9f64 / 1_000f64).powf(u)) as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quantiles_within_the_stated_error(values in prop::collection::vec(latency(), 1..2_000)) {
        check_quantiles(&values)?;
    }

    #[test]
    fn quantiles_of_clustered_values(base in latency(), spread in 0u64..5_000, n in 1usize..500) {
        // Many values in few buckets: the case where a rank falls inside a
        // crowded bucket.
        let values: Vec<u64> = (0..n as u64).map(|i| base + (i * 7919) % (spread + 1)).collect();
        check_quantiles(&values)?;
    }

    #[test]
    fn merging_equals_recording_into_one(a in prop::collection::vec(latency(), 0..300),
                                         b in prop::collection::vec(latency(), 0..300)) {
        let (ha, hb, both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in &a { ha.record_nanos(*v); both.record_nanos(*v); }
        for v in &b { hb.record_nanos(*v); both.record_nanos(*v); }
        let mut merged = ha.snapshot();
        merged.merge(&hb.snapshot());
        prop_assert_eq!(merged, both.snapshot());
    }
}

#[test]
fn cumulative_counts_are_monotonic_and_end_at_the_count() {
    let histogram = Histogram::new();
    for ms in [1, 2, 3, 50, 50, 700, 20_000] {
        histogram.record(Duration::from_millis(ms));
    }
    let s = histogram.snapshot();
    let bounds = [0.001, 0.0025, 0.005, 0.1, 1.0, 10.0, 60.0];
    let counts: Vec<u64> = bounds
        .iter()
        .map(|b| s.count_at_or_below(Duration::from_secs_f64(*b)))
        .collect();
    assert_eq!(counts, vec![1, 2, 3, 5, 6, 6, 7]);
    assert_eq!(s.count_at_or_below(Duration::MAX), s.count());
}

#[test]
fn an_empty_snapshot_merges_as_nothing() {
    let h = Histogram::new();
    h.record(Duration::from_millis(5));
    let mut s = h.snapshot();
    s.merge(&HistogramSnapshot::empty());
    assert_eq!(s, h.snapshot());
    assert_eq!(HistogramSnapshot::default().count(), 0);
}
