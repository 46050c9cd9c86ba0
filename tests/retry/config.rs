//! Build-time validation: every bad setting names its field, and nothing
//! panics.

use std::time::Duration;

use steadfast::retry::{Backoff, Jitter, RetryConfig, RetryConfigBuilder};

use crate::harness::ms;

/// The field the build error names.
fn field(builder: RetryConfigBuilder) -> String {
    let err = builder.build().expect_err("an invalid configuration");
    assert!(err.to_string().contains(err.field()), "{err}");
    assert!(!err.reason().is_empty(), "{err}");
    err.field().to_owned()
}

#[test]
fn max_attempts_zero() {
    assert_eq!(
        field(RetryConfig::builder().max_attempts(0)),
        "retry.max_attempts"
    );
}

#[test]
fn backoff_fields() {
    let cases = [
        (Backoff::exponential(ms(100), 0.5), "retry.backoff.factor"),
        (
            Backoff::exponential(ms(100), f64::NAN),
            "retry.backoff.factor",
        ),
        (
            Backoff::exponential(ms(100), f64::INFINITY),
            "retry.backoff.factor",
        ),
        (
            Backoff::exponential(Duration::ZERO, 2.0),
            "retry.backoff.base",
        ),
        (
            Backoff::exponential(ms(100), 2.0).max_delay(ms(50)),
            "retry.backoff.max_delay",
        ),
        (
            Backoff::fixed(ms(100)).max_delay(Duration::ZERO),
            "retry.backoff.max_delay",
        ),
        (
            Backoff::fixed(ms(100)).jitter(Jitter::Proportional(1.5)),
            "retry.backoff.jitter",
        ),
    ];
    for (backoff, name) in cases {
        assert_eq!(
            field(RetryConfig::builder().backoff(backoff)),
            name,
            "{backoff:?}"
        );
    }
}

#[test]
fn throttled_backoff_fields() {
    let cases = [
        (
            Backoff::exponential(Duration::from_secs(1), 2.0).max_delay(ms(500)),
            "retry.throttled_backoff.max_delay",
        ),
        (
            Backoff::exponential(Duration::from_secs(1), 0.0),
            "retry.throttled_backoff.factor",
        ),
        (
            Backoff::linear(ms(10), ms(10)).max_delay(Duration::ZERO),
            "retry.throttled_backoff.max_delay",
        ),
    ];
    for (backoff, name) in cases {
        assert_eq!(
            field(RetryConfig::builder().throttled_backoff(backoff)),
            name,
            "{backoff:?}"
        );
    }
}

#[test]
fn max_server_delay_zero() {
    assert_eq!(
        field(RetryConfig::builder().max_server_delay(Duration::ZERO)),
        "retry.max_server_delay"
    );
}

/// The first bad field, in the documented order, is the one named.
#[test]
fn the_first_bad_field_is_named() {
    let bad = Backoff::exponential(ms(100), 0.5);
    let builder = RetryConfig::builder()
        .max_server_delay(Duration::ZERO)
        .throttled_backoff(bad)
        .backoff(bad);
    assert_eq!(field(builder.clone().max_attempts(0)), "retry.max_attempts");
    assert_eq!(field(builder.clone()), "retry.backoff.factor");
    let builder = builder.backoff(Backoff::fixed(ms(1)));
    assert_eq!(field(builder.clone()), "retry.throttled_backoff.factor");
    let builder = builder.throttled_backoff(Backoff::fixed(ms(1)));
    assert_eq!(field(builder), "retry.max_server_delay");
}

/// Extreme but valid values build.
#[test]
fn extremes_are_valid() {
    let config = RetryConfig::builder()
        .max_attempts(u32::MAX)
        .backoff(Backoff::fixed(Duration::MAX).max_delay(Duration::MAX))
        .throttled_backoff(Backoff::fixed(Duration::ZERO))
        .max_server_delay(Duration::MAX)
        .max_replay_body(usize::MAX)
        .build()
        .unwrap();
    assert_eq!(config.max_attempts(), u32::MAX);
    assert_eq!(config.backoff().cap(), Duration::MAX);
    let config = RetryConfig::builder()
        .max_attempts(1)
        .max_replay_body(0)
        .max_server_delay(Duration::from_nanos(1))
        .build()
        .unwrap();
    assert_eq!(config.max_attempts(), 1);
}

#[test]
fn defaults() {
    let config = RetryConfig::default();
    assert_eq!(config.max_attempts(), 3);
    assert!(config.budget().is_some(), "a budget by default");
    let backoff = config.backoff();
    assert_eq!(backoff.base(), ms(50));
    assert_eq!(backoff.cap(), Duration::from_secs(5));
    assert_eq!(backoff.jitter_mode(), Jitter::Full);
    assert!(RetryConfig::builder()
        .no_budget()
        .build()
        .unwrap()
        .budget()
        .is_none());
}
