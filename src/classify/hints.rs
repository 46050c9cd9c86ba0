//! Server hints about when to retry: `Retry-After` and gRPC's
//! `grpc-retry-pushback-ms`.
//!
//! A server that is overloaded or rate limiting can tell the client how long
//! to wait before trying again. The retry layer reads these hints with the
//! parsers here; they are public so other code (a custom policy, a load
//! balancer) can read them the same way.
//!
//! | header | where from | meaning | parser |
//! |---|---|---|---|
//! | [`Retry-After`][RETRY_AFTER] | HTTP, RFC 9110 §10.2.3 | wait this long (delta-seconds) or until this moment (an HTTP-date) | [`retry_after`], [`parse_retry_after`] |
//! | [`grpc-retry-pushback-ms`][GRPC_RETRY_PUSHBACK_MS] | gRPC, proposal A6 | wait this many milliseconds; a negative or malformed value means "do not retry" | [`grpc_retry_pushback`], [`parse_grpc_retry_pushback`] |
//!
//! # `Retry-After`
//!
//! The value is either delta-seconds (`1*DIGIT`: `120`, leading zeros
//! allowed) or an HTTP-date in any of the three forms RFC 9110 accepts:
//! IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
//! (`Sunday, 06-Nov-94 08:49:37 GMT`, two-digit years below 70 are read as
//! 20xx) and asctime (`Sun Nov  6 08:49:37 1994`). Spaces and tabs around the
//! value are ignored.
//!
//! - delta-seconds give that many seconds, saturating at [`u64::MAX`]
//!   seconds rather than failing on an absurdly long number;
//! - a date in the future gives the time from `now` until then; a date in
//!   the past (or `now` itself) gives [`Duration::ZERO`];
//! - anything else (empty, a sign, a fraction, a date that does not parse,
//!   non-ASCII bytes) is not a hint and gives `None`, as RFC 9110 asks
//!   recipients to ignore a value they cannot parse.
//!
//! Dates are read against a wall-clock `now` the caller passes in: an
//! HTTP-date is wall-clock time by definition, and taking `now` as an
//! argument keeps the parsers deterministic in tests. The status code is not
//! looked at; deciding which responses a hint applies to (usually 429 and
//! 503) is the retry layer's job.
//!
//! # `grpc-retry-pushback-ms`
//!
//! gRPC servers push back with a non-negative decimal number of milliseconds
//! ([`Pushback::RetryAfter`]). Per proposal A6, "if the value is negative or
//! not an integer, the client should not retry": so a present header with a
//! negative, empty or malformed value is [`Pushback::DoNotRetry`]. An absent
//! header is `None` — no hint, the retry policy decides alone.
//!
//! # Several values
//!
//! Only the first value of each header counts; later values (a second
//! `Retry-After` line, say) are ignored. A hint is a single value by
//! definition, and reading the first matches what [`HeaderMap::get`] returns.
//!
//! # What the retry layer does with a hint
//!
//! These functions report, they do not clamp: a server asking for a day gets
//! a day back. The retry layer then applies its clamp rule: a hint longer
//! than the configured `max_server_delay`, or one that would end after the
//! request's deadline, ends retrying (the last response or error is
//! returned) rather than waiting less than the server asked.
//! [`Pushback::DoNotRetry`] ends retrying too.
//!
//! # Cost
//!
//! The parsers read the bytes in place: they never allocate and never
//! panic, whatever the bytes or their length. Values too long to be a date
//! are rejected before any date parsing.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use http::{HeaderMap, HeaderValue};
//! use steadfast::classify::hints::{
//!     grpc_retry_pushback, retry_after, Pushback, GRPC_RETRY_PUSHBACK_MS, RETRY_AFTER,
//! };
//!
//! // A fixed wall-clock "now": 1994-11-06 08:47:37 UTC.
//! let now: SystemTime = UNIX_EPOCH + Duration::from_secs(784_111_657);
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
//! assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
//!
//! // Two minutes after `now`, as an HTTP-date.
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
//! assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
//!
//! // Not a hint: ignored.
//! headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
//! assert_eq!(retry_after(&headers, now), None);
//!
//! // gRPC pushback.
//! assert_eq!(grpc_retry_pushback(&headers), None);
//! headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("1500"));
//! assert_eq!(
//!     grpc_retry_pushback(&headers),
//!     Some(Pushback::RetryAfter(Duration::from_millis(1500)))
//! );
//! headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("-1"));
//! assert_eq!(grpc_retry_pushback(&headers), Some(Pushback::DoNotRetry));
//! ```

use std::time::Duration;

use http::{HeaderMap, HeaderName};

/// The `Retry-After` header (RFC 9110 §10.2.3). See the module docs.
pub const RETRY_AFTER: HeaderName = http::header::RETRY_AFTER;

/// The `grpc-retry-pushback-ms` header (gRPC proposal A6). See the module docs.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// The longest value tried as an HTTP-date. The longest valid form, RFC 850
/// with a nine-letter weekday, is 33 bytes; longer values are rejected
/// before any date parsing.
const MAX_DATE_LEN: usize = 64;

/// The delay asked for by the first `Retry-After` value in `headers`,
/// measured against the wall-clock `now` when it is an HTTP-date.
///
/// `None` when the header is absent or its first value is not a valid
/// hint; later values are ignored. See [`parse_retry_after`] and the module
/// docs.
// An HTTP-date is wall-clock time by definition, so `now` must be too.
#[allow(clippy::disallowed_types)]
pub fn retry_after(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|value| parse_retry_after(value.as_bytes(), now))
}

/// Parses one `Retry-After` value: delta-seconds or an HTTP-date.
///
/// Delta-seconds saturate at [`u64::MAX`] seconds; a past date gives
/// [`Duration::ZERO`]; anything else gives `None`. Never panics and never
/// allocates. See the module docs.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use steadfast::classify::hints::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
/// assert_eq!(parse_retry_after(b" 007\t", now), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after(b"Thu, 01 Jan 1970 00:00:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after(b"1.5", now), None);
/// ```
// An HTTP-date is wall-clock time by definition, so `now` must be too.
#[allow(clippy::disallowed_types)]
pub fn parse_retry_after(value: &[u8], now: std::time::SystemTime) -> Option<Duration> {
    let value = trim_ows(value);
    if let Some(secs) = parse_digits(value) {
        return Some(Duration::from_secs(secs));
    }
    // Every HTTP-date form is printable ASCII; checking that here also
    // keeps `httpdate` from trimming other whitespace we do not allow.
    if value.is_empty()
        || value.len() > MAX_DATE_LEN
        || !value.iter().all(|b| matches!(b, b' '..=b'~'))
    {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let date = httpdate::parse_http_date(text).ok()?;
    // A date at or before `now` means "retry now".
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What a gRPC server asked for in `grpc-retry-pushback-ms`. See the module
/// docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Retry, but not before this delay has passed.
    RetryAfter(Duration),
    /// Do not retry this call (a negative or malformed value).
    DoNotRetry,
}

/// The pushback in the first `grpc-retry-pushback-ms` value of `headers`.
///
/// `None` when the header is absent (no hint); later values are ignored.
/// See [`parse_grpc_retry_pushback`] and the module docs.
pub fn grpc_retry_pushback(headers: &HeaderMap) -> Option<Pushback> {
    headers
        .get(GRPC_RETRY_PUSHBACK_MS)
        .map(|value| parse_grpc_retry_pushback(value.as_bytes()))
}

/// Parses one `grpc-retry-pushback-ms` value.
///
/// A non-negative decimal integer of milliseconds (spaces and tabs around
/// it ignored, saturating at [`u64::MAX`] milliseconds) is
/// [`Pushback::RetryAfter`]; anything else — negative, empty, fractional,
/// not a number — is [`Pushback::DoNotRetry`], as gRPC proposal A6 asks.
/// Never panics and never allocates.
///
/// ```
/// use std::time::Duration;
/// use steadfast::classify::hints::{parse_grpc_retry_pushback, Pushback};
///
/// assert_eq!(parse_grpc_retry_pushback(b" 20 "), Pushback::RetryAfter(Duration::from_millis(20)));
/// assert_eq!(parse_grpc_retry_pushback(b"-1"), Pushback::DoNotRetry);
/// ```
pub fn parse_grpc_retry_pushback(value: &[u8]) -> Pushback {
    match parse_digits(trim_ows(value)) {
        Some(ms) => Pushback::RetryAfter(Duration::from_millis(ms)),
        None => Pushback::DoNotRetry,
    }
}

/// Strips optional whitespace (spaces and horizontal tabs, RFC 9110 `OWS`)
/// from both ends.
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `1*DIGIT` as a `u64`, saturating at `u64::MAX`; `None` unless `value` is
/// one or more ASCII digits and nothing else.
fn parse_digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_ows_strips_only_spaces_and_tabs() {
        assert_eq!(trim_ows(b" \t 12 \t"), b"12");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\n12\r"), b"\n12\r");
    }

    #[test]
    fn parse_digits_saturates() {
        assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_digits(b"18446744073709551616"), Some(u64::MAX));
        assert_eq!(parse_digits(b"18446744073709551614"), Some(u64::MAX - 1));
        assert_eq!(parse_digits(b"1a"), None);
        assert_eq!(parse_digits(b""), None);
    }
}
