//! Server hints: `Retry-After` (delta-seconds and the three HTTP-date forms)
//! and gRPC `grpc-retry-pushback-ms`, including garbage and property tests.
#![cfg(feature = "http")]

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use steadfast::classify::hints::{
    grpc_retry_pushback, parse_grpc_retry_pushback, parse_retry_after, retry_after, Pushback,
    GRPC_RETRY_PUSHBACK_MS, RETRY_AFTER,
};

/// 1994-11-06 08:49:37 UTC, the date in RFC 9110's examples (a Sunday).
const RFC_DATE: u64 = 784_111_777;
const IMF: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";
const RFC850: &[u8] = b"Sunday, 06-Nov-94 08:49:37 GMT";
const ASCTIME: &[u8] = b"Sun Nov  6 08:49:37 1994";

/// A fixed wall-clock instant `secs` after the Unix epoch.
// HTTP-dates are wall-clock time; the parsers take `now` as a SystemTime.
#[allow(clippy::disallowed_types)]
fn at(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(secs)
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

fn ra(value: &[u8]) -> Option<Duration> {
    parse_retry_after(value, at(RFC_DATE))
}

fn headers_with(name: http::HeaderName, values: &[&'static str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(name.clone(), HeaderValue::from_static(v));
    }
    headers
}

// === Retry-After: delta-seconds ===

#[test]
fn delta_seconds() {
    assert_eq!(ra(b"0"), Some(Duration::ZERO));
    assert_eq!(ra(b"1"), secs(1));
    assert_eq!(ra(b"120"), secs(120));
    assert_eq!(ra(b"86400"), secs(86_400));
}

#[test]
fn delta_seconds_leading_zeros() {
    assert_eq!(ra(b"00"), Some(Duration::ZERO));
    assert_eq!(ra(b"007"), secs(7));
    assert_eq!(ra(b"0000000000000000000000000000042"), secs(42));
}

#[test]
fn delta_seconds_surrounding_whitespace_is_trimmed() {
    assert_eq!(ra(b" 5"), secs(5));
    assert_eq!(ra(b"5 "), secs(5));
    assert_eq!(ra(b"\t 5 \t"), secs(5));
    // Whitespace inside the number is not allowed.
    assert_eq!(ra(b"1 2"), None);
    // Only spaces and tabs are optional whitespace.
    assert_eq!(ra(b"\n5"), None);
    assert_eq!(ra(b"5\r"), None);
}

#[test]
fn delta_seconds_saturate_on_overflow() {
    assert_eq!(ra(b"18446744073709551615"), secs(u64::MAX));
    assert_eq!(ra(b"18446744073709551616"), secs(u64::MAX));
    assert_eq!(ra(b"99999999999999999999999"), secs(u64::MAX));
    let ten_kb = vec![b'9'; 10 * 1024];
    assert_eq!(ra(&ten_kb), secs(u64::MAX));
    // Leading zeros do not count towards the overflow.
    let mut padded = vec![b'0'; 10 * 1024];
    padded.extend_from_slice(b"3");
    assert_eq!(ra(&padded), secs(3));
}

// === Retry-After: HTTP-dates ===

#[test]
fn dates_in_the_future_give_the_time_until_then() {
    for date in [IMF, RFC850, ASCTIME] {
        let name = String::from_utf8_lossy(date);
        assert_eq!(
            parse_retry_after(date, at(RFC_DATE - 120)),
            secs(120),
            "{name}"
        );
        assert_eq!(parse_retry_after(date, at(0)), secs(RFC_DATE), "{name}");
    }
}

#[test]
fn future_date_with_subsecond_now() {
    // `now` half a second before the date: the delay is exact, neither
    // rounded up past the date nor down to zero.
    let now = at(RFC_DATE - 1) + Duration::from_millis(500);
    assert_eq!(
        parse_retry_after(IMF, now),
        Some(Duration::from_millis(500))
    );
}

#[test]
fn dates_in_the_past_or_now_give_zero() {
    for date in [IMF, RFC850, ASCTIME] {
        let name = String::from_utf8_lossy(date);
        assert_eq!(
            parse_retry_after(date, at(RFC_DATE)),
            Some(Duration::ZERO),
            "{name}"
        );
        assert_eq!(
            parse_retry_after(date, at(RFC_DATE + 3600)),
            Some(Duration::ZERO),
            "{name}"
        );
        assert_eq!(
            parse_retry_after(date, at(4_000_000_000)),
            Some(Duration::ZERO),
            "{name}"
        );
    }
}

#[test]
fn dates_far_in_the_future() {
    // 2038-01-19 03:14:08 UTC, past i32 seconds.
    let now = at(2_147_483_648 - 30);
    assert_eq!(
        parse_retry_after(b"Tue, 19 Jan 2038 03:14:08 GMT", now),
        secs(30)
    );
    // RFC 850 two-digit years below 70 are 20xx: Wed, 21 Oct 2015 07:28:00.
    assert_eq!(
        parse_retry_after(b"Wednesday, 21-Oct-15 07:28:00 GMT", at(1_445_412_480 - 5)),
        secs(5)
    );
}

#[test]
fn dates_with_surrounding_whitespace() {
    assert_eq!(
        parse_retry_after(b"  Sun, 06 Nov 1994 08:49:37 GMT\t", at(RFC_DATE - 9)),
        secs(9)
    );
    assert_eq!(
        parse_retry_after(b"\tSun Nov  6 08:49:37 1994 ", at(RFC_DATE - 9)),
        secs(9)
    );
}

#[test]
fn malformed_dates_are_ignored() {
    let now = at(RFC_DATE - 120);
    for bad in [
        &b"Fri"[..],
        b"tomorrow",
        // Wrong weekday for the date.
        b"Mon, 06 Nov 1994 08:49:37 GMT",
        // Not GMT.
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        // Impossible day and time.
        b"Sun, 31 Feb 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 25:49:37 GMT",
        // Before 1970.
        b"Sat, 01 Jan 1966 00:00:00 GMT",
        // Truncated, and with an extra character.
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 06 Nov 1994 08:49:37 GMTx",
        // Non-ASCII where the month goes.
        "Sun, 06 N\u{f6}v 1994 08:49:37 GMT".as_bytes(),
        // Line breaks are not optional whitespace.
        b"\nSun, 06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        // A list is not a hint.
        b"120, Sun, 06 Nov 1994 08:49:37 GMT",
    ] {
        assert_eq!(
            parse_retry_after(bad, now),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

// === Retry-After: garbage ===

#[test]
fn garbage_is_ignored() {
    for bad in [
        &b""[..],
        b" ",
        b" \t ",
        b"-1",
        b"-5",
        b"+5",
        b"1.5",
        b"1e3",
        b"0x10",
        b"5s",
        b"Fri",
        b"tomorrow",
        b"\xff\xfe",
        b"12\xff",
        b"\x00",
        "\u{0663}".as_bytes(), // ARABIC-INDIC DIGIT THREE: not an ASCII digit
    ] {
        assert_eq!(ra(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn long_garbage_is_ignored() {
    let mut junk = vec![b'9'; 10 * 1024];
    junk.push(b'x');
    assert_eq!(ra(&junk), None);
    let mut long_date = IMF.to_vec();
    long_date.extend(std::iter::repeat_n(b' ', 100));
    long_date.extend_from_slice(b"x");
    assert_eq!(ra(&long_date), None);
    assert_eq!(ra(&vec![b'a'; 10 * 1024]), None);
}

// === Retry-After: headers ===

#[test]
fn header_absent_is_none() {
    assert_eq!(retry_after(&HeaderMap::new(), at(RFC_DATE)), None);
    // The gRPC header is not Retry-After.
    let headers = headers_with(GRPC_RETRY_PUSHBACK_MS, &["100"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE)), None);
}

#[test]
fn header_value_is_parsed() {
    let headers = headers_with(RETRY_AFTER, &["30"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE)), secs(30));
    let headers = headers_with(RETRY_AFTER, &["Sun, 06 Nov 1994 08:49:37 GMT"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE - 60)), secs(60));
    let headers = headers_with(RETRY_AFTER, &["later"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE)), None);
    // Header names are case-insensitive.
    let mut headers = HeaderMap::new();
    headers.insert("RETRY-AFTER", HeaderValue::from_static("8"));
    assert_eq!(retry_after(&headers, at(RFC_DATE)), secs(8));
}

#[test]
fn only_the_first_retry_after_value_counts() {
    let headers = headers_with(RETRY_AFTER, &["10", "20"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE)), secs(10));
    // A bad first value is not rescued by a good second one.
    let headers = headers_with(RETRY_AFTER, &["soon", "20"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE)), None);
    let headers = headers_with(RETRY_AFTER, &["Sun, 06 Nov 1994 08:49:37 GMT", "5"]);
    assert_eq!(retry_after(&headers, at(RFC_DATE - 100)), secs(100));
}

// === grpc-retry-pushback-ms ===

fn after_ms(ms: u64) -> Pushback {
    Pushback::RetryAfter(Duration::from_millis(ms))
}

#[test]
fn pushback_values() {
    assert_eq!(parse_grpc_retry_pushback(b"0"), after_ms(0));
    assert_eq!(parse_grpc_retry_pushback(b"1500"), after_ms(1500));
    assert_eq!(parse_grpc_retry_pushback(b" 20 "), after_ms(20));
    assert_eq!(parse_grpc_retry_pushback(b"\t20\t"), after_ms(20));
    assert_eq!(parse_grpc_retry_pushback(b"0042"), after_ms(42));
}

#[test]
fn pushback_overflow_saturates() {
    assert_eq!(
        parse_grpc_retry_pushback(b"18446744073709551615"),
        after_ms(u64::MAX)
    );
    assert_eq!(
        parse_grpc_retry_pushback(b"99999999999999999999999"),
        after_ms(u64::MAX)
    );
    assert_eq!(
        parse_grpc_retry_pushback(&vec![b'7'; 10 * 1024]),
        after_ms(u64::MAX)
    );
}

#[test]
fn pushback_negative_or_malformed_means_do_not_retry() {
    for bad in [
        &b"-1"[..],
        b"-0",
        b"-1500",
        b"+5",
        b"1.5",
        b"abc",
        b"",
        b" ",
        b"1 5",
        b"15ms",
        b"\xff",
        b"Sun, 06 Nov 1994 08:49:37 GMT",
    ] {
        assert_eq!(
            parse_grpc_retry_pushback(bad),
            Pushback::DoNotRetry,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn pushback_header() {
    assert_eq!(grpc_retry_pushback(&HeaderMap::new()), None);
    // Retry-After is not gRPC pushback.
    let headers = headers_with(RETRY_AFTER, &["10"]);
    assert_eq!(grpc_retry_pushback(&headers), None);

    let headers = headers_with(GRPC_RETRY_PUSHBACK_MS, &["250"]);
    assert_eq!(grpc_retry_pushback(&headers), Some(after_ms(250)));
    let headers = headers_with(GRPC_RETRY_PUSHBACK_MS, &["-1"]);
    assert_eq!(grpc_retry_pushback(&headers), Some(Pushback::DoNotRetry));
    let headers = headers_with(GRPC_RETRY_PUSHBACK_MS, &[""]);
    assert_eq!(grpc_retry_pushback(&headers), Some(Pushback::DoNotRetry));
}

#[test]
fn only_the_first_pushback_value_counts() {
    let headers = headers_with(GRPC_RETRY_PUSHBACK_MS, &["100", "-1"]);
    assert_eq!(grpc_retry_pushback(&headers), Some(after_ms(100)));
    let headers = headers_with(GRPC_RETRY_PUSHBACK_MS, &["-1", "100"]);
    assert_eq!(grpc_retry_pushback(&headers), Some(Pushback::DoNotRetry));
}

#[test]
fn header_names() {
    assert_eq!(RETRY_AFTER.as_str(), "retry-after");
    assert_eq!(GRPC_RETRY_PUSHBACK_MS.as_str(), "grpc-retry-pushback-ms");
}

// === Properties ===

fn is_ows(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// Trims spaces and tabs, independently of the library's helper.
fn trimmed(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The value of an all-digit string, saturated at `u64::MAX`, computed a
/// different way than the library does (strip zeros, compare lengths).
fn saturated_value(digits: &[u8]) -> u64 {
    let significant = match digits.iter().position(|&b| b != b'0') {
        Some(i) => &digits[i..],
        None => return 0,
    };
    if significant.len() > 20 {
        return u64::MAX;
    }
    let text = std::str::from_utf8(significant).unwrap();
    let wide: u128 = text.parse().unwrap();
    u64::try_from(wide).unwrap_or(u64::MAX)
}

fn all_digits(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

proptest! {
    #[test]
    fn retry_after_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), now in 0u64..8_000_000_000) {
        let got = parse_retry_after(&bytes, at(now));
        let t = trimmed(&bytes);
        if all_digits(t) {
            prop_assert_eq!(got, secs(saturated_value(t)));
        } else if let Some(d) = got {
            // Anything else that gives a value must be a real HTTP-date.
            let text = std::str::from_utf8(t);
            prop_assert!(
                text.is_ok_and(|t| httpdate::parse_http_date(t).is_ok()),
                "{:?} -> {:?}", bytes, d
            );
        }
    }

    #[test]
    fn retry_after_digits(
        lead in "[ \t]{0,3}",
        digits in "[0-9]{1,40}",
        trail in "[ \t]{0,3}",
    ) {
        let value = format!("{lead}{digits}{trail}");
        prop_assert_eq!(
            parse_retry_after(value.as_bytes(), at(RFC_DATE)),
            secs(saturated_value(digits.as_bytes()))
        );
    }

    #[test]
    fn retry_after_date_round_trip(date in 0u64..253_402_300_799, now in 0u64..253_402_300_799) {
        // Any representable date, formatted as IMF-fixdate, comes back as
        // the distance from `now` (zero when it is not in the future).
        let text = httpdate::fmt_http_date(at(date));
        prop_assert_eq!(
            parse_retry_after(text.as_bytes(), at(now)),
            secs(date.saturating_sub(now))
        );
    }

    #[test]
    fn pushback_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let got = parse_grpc_retry_pushback(&bytes);
        let t = trimmed(&bytes);
        if all_digits(t) {
            prop_assert_eq!(got, after_ms(saturated_value(t)));
        } else {
            prop_assert_eq!(got, Pushback::DoNotRetry);
        }
    }

    #[test]
    fn pushback_digits(
        lead in "[ \t]{0,3}",
        digits in "[0-9]{1,40}",
        trail in "[ \t]{0,3}",
    ) {
        let value = format!("{lead}{digits}{trail}");
        prop_assert_eq!(
            parse_grpc_retry_pushback(value.as_bytes()),
            after_ms(saturated_value(digits.as_bytes()))
        );
    }

    #[test]
    fn pushback_negative_numbers(n in 0u64..=u64::MAX) {
        let value = format!("-{n}");
        prop_assert_eq!(parse_grpc_retry_pushback(value.as_bytes()), Pushback::DoNotRetry);
    }
}
