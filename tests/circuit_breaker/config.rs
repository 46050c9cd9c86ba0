//! `CircuitBreakerBuilder::build` validation.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerConfig, Window};

fn builder() -> CircuitBreakerBuilder {
    CircuitBreakerConfig::builder()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Asserts that `b` is rejected, naming `circuit_breaker.<field>`.
#[track_caller]
fn rejects(case: &str, b: CircuitBreakerBuilder, field: &str) {
    let err = match b.build() {
        Ok(cfg) => panic!("{case}: accepted {cfg:?}"),
        Err(err) => err,
    };
    let field = format!("circuit_breaker.{field}");
    assert_eq!(err.field(), field, "{case}: {err}");
    assert!(!err.reason().is_empty(), "{case}");
    let text = err.to_string();
    assert!(text.contains(&field), "{case}: {text}");
    assert!(
        text.starts_with(|c: char| c.is_lowercase()) && !text.ends_with('.'),
        "{case}: {text}"
    );
}

#[track_caller]
fn accepts(case: &str, b: CircuitBreakerBuilder) {
    if let Err(err) = b.build() {
        panic!("{case}: rejected: {err}");
    }
}

#[test]
fn the_default_config_builds() {
    accepts("builder defaults", builder());
    let cfg = CircuitBreakerConfig::default();
    assert_eq!(cfg.name(), None);
    let named = builder().name("db").build().unwrap();
    assert_eq!(named.name(), Some("db"));
}

#[test]
fn failure_rate_must_be_in_0_to_100() {
    for bad in [0.0, -1.0, 150.0, 100.000_001, f64::NAN, f64::INFINITY] {
        rejects(
            &format!("failure_rate {bad}"),
            builder().failure_rate(bad),
            "failure_rate",
        );
    }
    for good in [0.001, 50.0, 100.0] {
        accepts(
            &format!("failure_rate {good}"),
            builder().failure_rate(good),
        );
    }
}

#[test]
fn slow_call_rule_needs_both_halves_in_range() {
    let slow = |rate: f64| builder().slow_call_duration(secs(1)).slow_call_rate(rate);
    for bad in [0.0, -5.0, 100.5, f64::NAN] {
        rejects(
            &format!("slow_call_rate {bad}"),
            slow(bad),
            "slow_call_rate",
        );
    }
    accepts("slow_call_rate 100", slow(100.0));
    rejects(
        "duration without rate",
        builder().slow_call_duration(secs(1)),
        "slow_call_rate",
    );
    rejects(
        "rate without duration",
        builder().slow_call_rate(50.0),
        "slow_call_duration",
    );
    rejects(
        "zero slow duration",
        builder()
            .slow_call_duration(Duration::ZERO)
            .slow_call_rate(50.0),
        "slow_call_duration",
    );
    accepts(
        "slow-call rule alone",
        builder()
            .without_failure_rate()
            .without_consecutive_failures()
            .slow_call_duration(ms(1))
            .slow_call_rate(50.0),
    );
}

#[test]
fn counts_must_be_at_least_one() {
    rejects(
        "consecutive_failures 0",
        builder().consecutive_failures(0),
        "consecutive_failures",
    );
    rejects(
        "minimum_calls 0",
        builder().minimum_calls(0),
        "minimum_calls",
    );
    rejects(
        "success_threshold 0",
        builder().success_threshold(0),
        "success_threshold",
    );
    rejects(
        "success_threshold 1024",
        builder().success_threshold(1024),
        "success_threshold",
    );
    accepts("success_threshold 1023", builder().success_threshold(1023));
    rejects(
        "half_open_max_calls 0",
        builder().half_open_max_calls(0),
        "half_open_max_calls",
    );
    rejects(
        "half_open_max_calls 1024",
        builder().half_open_max_calls(1024),
        "half_open_max_calls",
    );
    accepts(
        "half_open_max_calls 1023",
        builder().half_open_max_calls(1023),
    );
}

#[test]
fn no_trip_rule_is_an_error() {
    rejects(
        "no rule",
        builder()
            .without_failure_rate()
            .without_consecutive_failures(),
        "trip_rules",
    );
    accepts(
        "consecutive only",
        builder().without_failure_rate().consecutive_failures(1),
    );
    accepts(
        "rate only",
        builder().without_consecutive_failures().failure_rate(1.0),
    );
}

#[test]
fn count_window_bounds_and_minimum_calls() {
    rejects("count 0", builder().window(Window::count(0)), "window");
    rejects(
        "count 1,000,001",
        builder().window(Window::count(1_000_001)),
        "window",
    );
    accepts(
        "count 1,000,000",
        builder().window(Window::count(1_000_000)),
    );
    rejects(
        "explicit minimum above the count window",
        builder().window(Window::count(10)).minimum_calls(11),
        "minimum_calls",
    );
    accepts(
        "explicit minimum equal to the count window",
        builder().window(Window::count(10)).minimum_calls(10),
    );
    // The default minimum (20) shrinks to fit; the behaviour is checked in
    // `transitions::default_minimum_calls_shrinks_to_a_small_count_window`.
    accepts(
        "default minimum, count 5",
        builder().window(Window::count(5)),
    );
    accepts(
        "default minimum, count 1",
        builder().window(Window::count(1)),
    );
}

#[test]
fn time_window_bounds() {
    rejects(
        "0 buckets",
        builder().window(Window::time(secs(10), 0)),
        "window",
    );
    rejects(
        "1,001 buckets",
        builder().window(Window::time(secs(10), 1_001)),
        "window",
    );
    rejects(
        "buckets under 1 ms",
        builder().window(Window::time(ms(999), 1_000)),
        "window",
    );
    rejects(
        "zero duration",
        builder().window(Window::time(Duration::ZERO, 1)),
        "window",
    );
    accepts(
        "1,000 buckets of 1 ms",
        builder().window(Window::time(secs(1), 1_000)),
    );
    accepts("one bucket", builder().window(Window::time(ms(1), 1)));
}

#[test]
fn open_duration_schedule() {
    rejects(
        "open_duration 0",
        builder().open_duration(Duration::ZERO),
        "open_duration",
    );
    for bad in [0.5, 0.999, f64::NAN, f64::INFINITY, -2.0] {
        rejects(
            &format!("multiplier {bad}"),
            builder().open_duration_multiplier(bad),
            "open_duration_multiplier",
        );
    }
    accepts("multiplier 1", builder().open_duration_multiplier(1.0));
    rejects(
        "max below base",
        builder().open_duration(secs(5)).max_open_duration(secs(4)),
        "max_open_duration",
    );
    accepts(
        "max equal to base",
        builder().open_duration(secs(5)).max_open_duration(secs(5)),
    );
    // The default cap (60 s) gives way to a longer base; a chosen cap does not.
    let long = builder().open_duration(secs(120)).build().unwrap();
    assert!(
        format!("{long:?}").contains("max_open_duration: 120s"),
        "{long:?}"
    );
    rejects(
        "chosen max below base",
        builder()
            .open_duration(secs(120))
            .max_open_duration(secs(60)),
        "max_open_duration",
    );
    for bad in [-0.1, 1.0, 1.5, f64::NAN] {
        rejects(
            &format!("jitter {bad}"),
            builder().open_jitter(bad),
            "open_jitter",
        );
    }
    accepts("jitter 0", builder().open_jitter(0.0));
    accepts("jitter 0.99", builder().open_jitter(0.99));
    rejects(
        "probe_timeout 0",
        builder().probe_timeout(Duration::ZERO),
        "probe_timeout",
    );
}

#[test]
fn flap_window_must_be_positive_and_at_most_a_year() {
    rejects(
        "flap_window 0",
        builder().flap_window(Duration::ZERO),
        "flap_window",
    );
    rejects(
        "flap_window over a year",
        builder().flap_window(secs(365 * 24 * 3600 + 1)),
        "flap_window",
    );
    accepts(
        "flap_window 1 ns",
        builder().flap_window(Duration::from_nanos(1)),
    );
    accepts(
        "flap_window a year",
        builder().flap_window(secs(365 * 24 * 3600)),
    );
    let cfg = builder().build().unwrap();
    assert!(
        format!("{cfg:?}").contains("flap_window: 30s"),
        "the default is 30 s: {cfg:?}"
    );
}
