//! Backoff schedules: exact delays of each kind, the cap, saturation, jitter
//! bounds (property tests) and deterministic seeding.
//!
//! The schedules are pure functions of the retry number and a random number
//! generator; no clock is involved, so nothing here sleeps or reads time.
//! Validation (`Backoff::validate`, crate-private) is tested in the module.

use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use steadfast::retry::backoff::{Backoff, Jitter};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn first(delays: impl Iterator<Item = Duration>, n: usize) -> Vec<Duration> {
    delays.take(n).collect()
}

fn schedule(b: Backoff, n: usize) -> Vec<Duration> {
    first(b.delays(0), n)
}

// --- exact schedules, no jitter ---

#[test]
fn exponential_doubles_up_to_the_default_cap() {
    let b = Backoff::exponential(ms(100), 2.0);
    assert_eq!(b.cap(), Duration::from_secs(5));
    assert_eq!(
        schedule(b, 8),
        [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000].map(ms)
    );
}

#[test]
fn exponential_with_a_fractional_factor() {
    let b = Backoff::exponential(ms(100), 1.5);
    assert_eq!(
        schedule(b, 4),
        [ms(100), ms(150), ms(225), Duration::from_micros(337_500)]
    );
}

#[test]
fn exponential_factor_one_is_a_fixed_delay() {
    let odd = Duration::new(123_456, 789_012_345);
    let b = Backoff::exponential(odd, 1.0);
    assert_eq!(b.cap(), odd, "the default cap grows to the base");
    assert_eq!(schedule(b, 3), [odd; 3]);
    assert_eq!(b.base_delay(u32::MAX), odd);
}

#[test]
fn linear_adds_the_step() {
    let b = Backoff::linear(Duration::from_secs(1), ms(1_500));
    assert_eq!(schedule(b, 5), [1_000, 2_500, 4_000, 5_000, 5_000].map(ms));
    let from_zero = Backoff::linear(Duration::ZERO, ms(10));
    assert_eq!(schedule(from_zero, 4), [0, 10, 20, 30].map(ms));
}

#[test]
fn fixed_repeats_the_delay() {
    assert_eq!(schedule(Backoff::fixed(ms(250)), 4), [ms(250); 4]);
    assert_eq!(
        schedule(Backoff::fixed(Duration::ZERO), 3),
        [Duration::ZERO; 3],
        "immediate retries"
    );
}

#[test]
fn retry_zero_is_read_as_one() {
    for b in [
        Backoff::exponential(ms(100), 3.0),
        Backoff::linear(ms(100), ms(50)),
        Backoff::fixed(ms(7)),
    ] {
        assert_eq!(b.base_delay(0), b.base_delay(1), "{b:?}");
        assert_eq!(b.base_delay(1), b.base());
    }
    assert_eq!(Backoff::exponential(ms(100), 3.0).base_delay(2), ms(300));
}

#[test]
fn accessors_report_the_settings() {
    let b = Backoff::linear(ms(20), ms(5))
        .max_delay(ms(90))
        .jitter(Jitter::Proportional(0.2));
    assert_eq!(b.base(), ms(20));
    assert_eq!(b.cap(), ms(90));
    assert_eq!(b.jitter_mode(), Jitter::Proportional(0.2));
    assert_eq!(Backoff::fixed(ms(1)).jitter_mode(), Jitter::None);
}

// --- the cap ---

#[test]
fn max_delay_caps_every_kind() {
    assert_eq!(
        schedule(Backoff::exponential(ms(100), 2.0).max_delay(ms(300)), 4),
        [100, 200, 300, 300].map(ms)
    );
    assert_eq!(
        schedule(Backoff::linear(ms(100), ms(100)).max_delay(ms(250)), 4),
        [100, 200, 250, 250].map(ms)
    );
    assert_eq!(
        schedule(Backoff::fixed(ms(100)).max_delay(ms(40)), 2),
        [ms(40); 2]
    );
}

#[test]
fn max_delay_can_be_raised_above_five_seconds() {
    let b = Backoff::exponential(Duration::from_secs(1), 10.0).max_delay(Duration::from_secs(60));
    assert_eq!(schedule(b, 4), [1, 10, 60, 60].map(Duration::from_secs));
}

#[test]
fn default_cap_is_the_larger_of_five_seconds_and_the_first_delay() {
    assert_eq!(Backoff::fixed(ms(10)).cap(), Duration::from_secs(5));
    assert_eq!(
        Backoff::fixed(Duration::from_secs(60)).cap(),
        Duration::from_secs(60)
    );
    assert_eq!(
        Backoff::linear(Duration::from_secs(9), ms(1)).cap(),
        Duration::from_secs(9)
    );
    let b = Backoff::exponential(Duration::from_secs(30), 2.0);
    assert_eq!(schedule(b, 3), [Duration::from_secs(30); 3]);
}

#[test]
fn the_cap_applies_after_jitter() {
    // Proportional jitter stretches 1 s up to 1.9 s, but never past 1.2 s.
    let b = Backoff::fixed(Duration::from_secs(1))
        .max_delay(ms(1_200))
        .jitter(Jitter::Proportional(0.9));
    let delays = first(b.delays(3), 500);
    assert!(delays.iter().all(|d| *d <= ms(1_200)));
    assert!(
        delays.contains(&ms(1_200)),
        "draws above the cap are clamped to it"
    );
    assert!(delays.iter().any(|d| *d < ms(500)));
}

// --- saturation ---

#[test]
fn huge_retry_numbers_saturate_at_the_cap() {
    let cap = Duration::from_secs(30);
    for b in [
        Backoff::exponential(ms(100), 2.0).max_delay(cap),
        Backoff::linear(ms(100), ms(100)).max_delay(cap),
    ] {
        assert_eq!(b.base_delay(1_000), cap, "{b:?}");
        assert_eq!(b.base_delay(u32::MAX), cap, "{b:?}");
    }
    // The tiny factor has not reached the cap by retry 1,000 but has long before u32::MAX.
    let slow = Backoff::exponential(Duration::from_nanos(1), 1.000_001);
    assert!(slow.base_delay(1_000) < ms(1));
    assert_eq!(slow.base_delay(u32::MAX), slow.cap());
}

#[test]
fn uncapped_growth_saturates_at_duration_max() {
    let exp = Backoff::exponential(Duration::from_secs(1), 2.0).max_delay(Duration::MAX);
    assert_eq!(exp.base_delay(60), Duration::from_secs(1 << 59));
    assert_eq!(exp.base_delay(64), Duration::from_secs(1 << 63));
    assert_eq!(exp.base_delay(1_000), Duration::MAX);
    assert_eq!(exp.base_delay(u32::MAX), Duration::MAX);

    let lin = Backoff::linear(Duration::MAX, Duration::MAX).max_delay(Duration::MAX);
    assert_eq!(lin.base_delay(2), Duration::MAX);
    assert_eq!(lin.base_delay(u32::MAX), Duration::MAX);
}

#[test]
fn huge_factors_and_bases_do_not_overflow() {
    let cap = Duration::from_secs(10);
    for factor in [1e300, f64::MAX] {
        let b = Backoff::exponential(ms(1), factor).max_delay(cap);
        assert_eq!(b.base_delay(1), ms(1));
        assert_eq!(b.base_delay(2), cap);
        assert_eq!(b.base_delay(u32::MAX), cap);
    }
    let huge = Backoff::exponential(Duration::MAX, 1e300);
    assert_eq!(huge.cap(), Duration::MAX);
    for retry in [1, 2, 1_000, u32::MAX] {
        assert_eq!(huge.base_delay(retry), Duration::MAX);
    }
    let capped = Backoff::exponential(Duration::MAX, 2.0).max_delay(cap);
    assert_eq!(capped.base_delay(1), cap);
    assert_eq!(capped.base_delay(7), cap);
}

#[test]
fn every_jitter_survives_the_extremes() {
    let mut rng = SmallRng::seed_from_u64(9);
    for jitter in all_jitters(1.0) {
        for b in [
            Backoff::exponential(Duration::MAX, 1e300),
            Backoff::linear(Duration::MAX, Duration::MAX),
            Backoff::fixed(Duration::MAX),
            Backoff::fixed(Duration::ZERO).max_delay(Duration::ZERO),
        ] {
            let b = b.jitter(jitter);
            for retry in [0, 1, 1_000, u32::MAX] {
                for prev in [Duration::ZERO, Duration::MAX] {
                    assert!(b.delay(retry, prev, &mut rng) <= b.cap());
                }
            }
        }
    }
}

// --- jitter ---

fn all_jitters(f: f64) -> [Jitter; 5] {
    [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Proportional(f),
        Jitter::Decorrelated,
    ]
}

#[test]
fn jitter_spreads_the_delays() {
    let d = Duration::from_secs(1);
    let spread = |jitter| {
        let delays = first(Backoff::fixed(d).jitter(jitter).delays(1), 1_000);
        let lo = *delays.iter().min().unwrap();
        let hi = *delays.iter().max().unwrap();
        (lo, hi)
    };
    assert_eq!(spread(Jitter::None), (d, d));
    let (lo, hi) = spread(Jitter::Full);
    assert!(lo < ms(20) && hi > ms(980), "full: {lo:?}..{hi:?}");
    let (lo, hi) = spread(Jitter::Equal);
    assert!(
        lo >= ms(500) && lo < ms(520) && hi > ms(980),
        "equal: {lo:?}..{hi:?}"
    );
    // Proportional(0.2) of 1 s spans 0.8 s to 1.2 s; a 5 s cap keeps the top.
    let (lo, hi) = spread(Jitter::Proportional(0.2));
    assert!(lo >= ms(800) && lo < ms(810), "proportional: {lo:?}");
    assert!(hi <= ms(1_200) && hi > ms(1_190), "proportional: {hi:?}");
}

#[test]
fn decorrelated_grows_from_the_previous_delay() {
    let b = Backoff::fixed(ms(100))
        .max_delay(Duration::from_secs(10))
        .jitter(Jitter::Decorrelated);
    let mut rng = SmallRng::seed_from_u64(4);
    assert_eq!(
        b.delay(1, Duration::ZERO, &mut rng),
        ms(100),
        "first delay is the base"
    );
    let delays = first(b.delays(4), 200);
    assert_eq!(delays[0], ms(100));
    for pair in delays.windows(2) {
        assert!(pair[1] >= ms(100) && pair[1] <= (pair[0] * 3).min(ms(10_000)));
    }
    assert!(
        delays.iter().any(|d| *d > Duration::from_secs(1)),
        "it grows"
    );
    assert!(
        delays.contains(&Duration::from_secs(10)),
        "and reaches the cap"
    );
}

#[test]
fn same_seed_same_sequence_different_seeds_differ() {
    for jitter in [
        Jitter::Full,
        Jitter::Equal,
        Jitter::Proportional(0.5),
        Jitter::Decorrelated,
    ] {
        let b = Backoff::exponential(ms(100), 2.0)
            .max_delay(Duration::from_secs(60))
            .jitter(jitter);
        let a = first(b.delays(42), 20);
        assert_eq!(a, first(b.delays(42), 20), "{jitter:?}");
        assert_ne!(a, first(b.delays(43), 20), "{jitter:?}");
        let injected = first(b.delays_with_rng(SmallRng::seed_from_u64(42)), 20);
        assert_eq!(a, injected, "delays(seed) seeds a SmallRng: {jitter:?}");
    }
}

#[test]
fn delays_is_endless_and_counts_retries() {
    let mut delays = Backoff::fixed(ms(1)).delays(0);
    assert_eq!(delays.size_hint(), (usize::MAX, None));
    assert_eq!(delays.retries(), 0);
    assert_eq!(delays.nth(9_999), Some(ms(1)));
    assert_eq!(delays.retries(), 10_000);
    assert_eq!(delays.backoff(), &Backoff::fixed(ms(1)));
    assert!(format!("{delays:?}").contains("Delays"));
}

// --- properties ---

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => (0u64..=10_000_000_000).prop_map(Duration::from_nanos), // up to 10 s
        2 => any::<u64>().prop_map(Duration::from_nanos),
        1 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
    ]
}

fn any_factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 1.0f64..4.0,
        1 => 1.0f64..1e300,
        1 => Just(1.0),
        1 => Just(f64::MAX),
    ]
}

fn any_backoff() -> impl Strategy<Value = Backoff> {
    let kind = prop_oneof![
        (any_duration(), any_factor()).prop_map(|(b, f)| Backoff::exponential(b, f)),
        (any_duration(), any_duration()).prop_map(|(b, s)| Backoff::linear(b, s)),
        any_duration().prop_map(Backoff::fixed),
    ];
    (kind, proptest::option::of(any_duration()))
        .prop_map(|(b, cap)| cap.map_or(b, |cap| b.max_delay(cap)))
}

fn any_retry() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..70, 1 => any::<u32>(), 1 => Just(u32::MAX)]
}

/// `d` in whole nanoseconds, saturated as jitter does.
fn nanos(d: Duration) -> u128 {
    d.as_nanos().min(u128::from(u64::MAX))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn prop_un_jittered_delay_is_capped_and_monotonic(b in any_backoff(), retry in any_retry()) {
        let d = b.base_delay(retry);
        prop_assert!(d <= b.cap());
        prop_assert!(b.base_delay(retry.saturating_add(1)) >= d, "delays never shrink");
        prop_assert_eq!(b.delay(retry, Duration::ZERO, &mut SmallRng::seed_from_u64(0)), d);
    }

    #[test]
    fn prop_full_jitter_within_zero_and_d(b in any_backoff(), retry in any_retry(), seed: u64) {
        let b = b.jitter(Jitter::Full);
        let d = b.base_delay(retry);
        let got = b.delay(retry, Duration::ZERO, &mut SmallRng::seed_from_u64(seed));
        prop_assert!(got <= d && got <= b.cap());
    }

    #[test]
    fn prop_equal_jitter_within_half_and_d(b in any_backoff(), retry in any_retry(), seed: u64) {
        let b = b.jitter(Jitter::Equal);
        let d = nanos(b.base_delay(retry));
        let got = b.delay(retry, Duration::ZERO, &mut SmallRng::seed_from_u64(seed));
        prop_assert!(got <= b.cap());
        prop_assert!(nanos(got) >= d / 2 && nanos(got) <= d, "{:?} not in [{}/2, {}]", got, d, d);
    }

    #[test]
    fn prop_proportional_jitter_within_its_band(
        b in any_backoff(),
        retry in any_retry(),
        f in prop_oneof![0.0f64..=1.0, Just(0.0), Just(0.2), Just(1.0)],
        seed: u64,
    ) {
        let b = b.jitter(Jitter::Proportional(f));
        let d = nanos(b.base_delay(retry)) as f64;
        let got = b.delay(retry, Duration::ZERO, &mut SmallRng::seed_from_u64(seed));
        prop_assert!(got <= b.cap());
        let n = nanos(got) as f64;
        let slack = d * 1e-12 + 1.0; // float rounding of d × f
        prop_assert!(n >= d * (1.0 - f) - slack, "{} below {} × (1 - {})", n, d, f);
        prop_assert!(n <= d * (1.0 + f) + slack, "{} above {} × (1 + {})", n, d, f);
        if f == 0.0 {
            prop_assert_eq!(nanos(got), nanos(b.base_delay(retry)));
        }
    }

    #[test]
    fn prop_decorrelated_within_base_and_three_times_previous(
        b in any_backoff(),
        retry in any_retry(),
        previous in any_duration(),
        seed: u64,
    ) {
        let b = b.jitter(Jitter::Decorrelated);
        let first = nanos(b.base_delay(1));
        let got = b.delay(retry, previous, &mut SmallRng::seed_from_u64(seed));
        prop_assert!(got <= b.cap());
        let hi = first.max(nanos(previous.saturating_mul(3)));
        let cap = b.cap().as_nanos();
        prop_assert!(nanos(got) >= first.min(cap), "{:?} below the first delay", got);
        prop_assert!(nanos(got) <= hi.min(cap), "{:?} above 3 × {:?}", got, previous);
    }

    #[test]
    fn prop_no_delay_of_a_schedule_exceeds_max_delay(
        b in any_backoff(),
        jitter_index in 0usize..5,
        f in 0.0f64..=1.0,
        seed: u64,
        skip in 0usize..200,
    ) {
        let b = b.jitter(all_jitters(f)[jitter_index]);
        for d in b.delays(seed).skip(skip).take(20) {
            prop_assert!(d <= b.cap(), "{:?} over the cap of {:?}", d, b);
        }
    }
}
