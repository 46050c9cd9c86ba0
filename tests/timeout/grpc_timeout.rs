//! `grpc_timeout::{parse, format}`: exact values at the edges, and property
//! tests for the round trip, the choice of unit and the parser's grammar.

use std::time::Duration;

use proptest::prelude::*;
use steadfast::deadline::grpc_timeout::{format, parse};

/// The largest value the header can hold: 99,999,999 hours.
const MAX_HOURS: u64 = 99_999_999;
const MAX: Duration = Duration::from_secs(MAX_HOURS * 3600);
const MAX_DIGITS: u128 = 99_999_999;

/// Nanoseconds per unit, finest first.
const UNITS: [(u8, u128); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60_000_000_000),
    (b'H', 3_600_000_000_000),
];

fn unit_nanos(unit: u8) -> u128 {
    UNITS
        .iter()
        .find(|&&(u, _)| u == unit)
        .map(|&(_, n)| n)
        .unwrap_or_else(|| panic!("unknown unit {:?}", unit as char))
}

/// The grammar, written independently of the crate: 1 to 8 ASCII digits and
/// one unit letter; the value it denotes.
fn reference_parse(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let per = UNITS.iter().find(|&&(u, _)| u == unit)?.1;
    let nanos = n * per;
    Some(Duration::new(
        u64::try_from(nanos / 1_000_000_000).ok()?,
        u32::try_from(nanos % 1_000_000_000).ok()?,
    ))
}

#[test]
fn exact_values() {
    assert_eq!(parse(b"1n"), Some(Duration::from_nanos(1)));
    assert_eq!(parse(b"250u"), Some(Duration::from_micros(250)));
    assert_eq!(parse(b"200m"), Some(Duration::from_millis(200)));
    assert_eq!(parse(b"30S"), Some(Duration::from_secs(30)));
    assert_eq!(parse(b"2M"), Some(Duration::from_secs(120)));
    assert_eq!(parse(b"99999999H"), Some(MAX));
    assert_eq!(parse(b"00000007S"), Some(Duration::from_secs(7)));
    assert_eq!(
        parse(b"000000007S"),
        None,
        "nine digits, even if leading zeros"
    );
    for bad in [
        &b""[..],
        b"S",
        b"1",
        b"1s",
        b"1h",
        b"-1S",
        b"+1S",
        b"1 S",
        b" 1S",
        b"1S ",
    ] {
        assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }

    assert_eq!(format(Duration::ZERO), "0n");
    assert_eq!(format(Duration::from_nanos(99_999_999)), "99999999n");
    assert_eq!(format(Duration::from_nanos(100_000_000)), "100000u");
    assert_eq!(
        format(Duration::from_nanos(100_000_001)),
        "100001u",
        "rounded up"
    );
    assert_eq!(format(Duration::from_secs(1)), "1000000u");
    assert_eq!(format(Duration::from_millis(99_999_999)), "99999999m");
    assert_eq!(format(Duration::from_secs(100_000)), "100000S");
    assert_eq!(format(MAX), "99999999H");
    assert_eq!(format(MAX + Duration::from_nanos(1)), "99999999H", "capped");
    assert_eq!(format(Duration::MAX), "99999999H", "capped");
}

/// Durations up to [`MAX`], spread over every unit's range.
fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=200_000_000).prop_map(Duration::from_nanos),
        (0u64..=200_000_000_000).prop_map(Duration::from_nanos),
        (0u64..=200_000_000_000_000).prop_map(Duration::from_nanos),
        (0u64..=20_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..MAX_HOURS * 3600, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..=3).prop_map(|k| MAX - Duration::from_nanos(k)),
    ]
}

/// Bytes near the grammar: digits, unit letters and a few strangers.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12),
        proptest::collection::vec(
            proptest::sample::select(b"0123456789HMSmunhs-+ .x\xff".to_vec()),
            0..12
        ),
        (1usize..=10, proptest::sample::select(b"HMSmunx".to_vec())).prop_flat_map(
            |(len, unit)| {
                proptest::collection::vec(proptest::sample::select(b"0123456789".to_vec()), len)
                    .prop_map(move |mut v| {
                        v.push(unit);
                        v
                    })
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn format_then_parse_never_gives_less_and_rounds_up_by_less_than_one_unit(d in durations()) {
        let value = format(d);
        let bytes = value.as_bytes();
        let (&unit, digits) = bytes.split_last().unwrap();
        prop_assert!((1..=8).contains(&digits.len()), "{value:?}");
        let back = parse(bytes).expect("format's output parses");
        prop_assert!(back >= d, "{value:?}: {back:?} < {d:?}");
        let excess = (back - d).as_nanos();
        prop_assert!(excess < unit_nanos(unit), "{value:?}: {d:?} rounded up by {excess} ns");
    }

    #[test]
    fn format_picks_the_finest_unit_that_fits(d in durations()) {
        let value = format(d);
        let unit = *value.as_bytes().last().unwrap();
        let index = UNITS.iter().position(|&(u, _)| u == unit).unwrap();
        if index > 0 {
            let finer = UNITS[index - 1].1;
            prop_assert!(
                d.as_nanos().div_ceil(finer) > MAX_DIGITS,
                "{value:?} for {d:?}: a finer unit would fit"
            );
        }
    }

    #[test]
    fn parse_accepts_exactly_the_grammar(bytes in header_bytes()) {
        prop_assert_eq!(parse(&bytes), reference_parse(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
    }
}
