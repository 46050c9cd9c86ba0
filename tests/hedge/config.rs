//! Bad settings are an `InvalidConfig` naming the field, never a panic.

use std::time::Duration;

use steadfast::hedge::{HedgeConfig, HedgeDelay};

use crate::harness::ms;

fn field(builder: steadfast::hedge::HedgeConfigBuilder) -> String {
    builder.build().unwrap_err().field().to_owned()
}

#[test]
fn max_attempts_from_2_to_5() {
    for n in [0, 1, 6, u32::MAX] {
        assert_eq!(
            field(HedgeConfig::builder().max_attempts(n)),
            "hedge.max_attempts",
            "{n}"
        );
    }
    for n in 2..=5 {
        assert_eq!(
            HedgeConfig::builder()
                .max_attempts(n)
                .build()
                .unwrap()
                .max_attempts(),
            n
        );
    }
}

#[test]
fn delays() {
    assert_eq!(
        field(HedgeConfig::builder().delay(Duration::from_secs(3601))),
        "hedge.delay"
    );
    assert_eq!(
        field(HedgeConfig::builder().delay(Duration::MAX)),
        "hedge.delay"
    );
    let zero = HedgeConfig::builder()
        .delay(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(zero.delay(), HedgeDelay::Fixed(Duration::ZERO));
}

#[test]
fn percentiles() {
    let p = |p: f64| {
        HedgeConfig::builder().delay_percentile(p, Duration::from_secs(10), ms(1), ms(500))
    };
    for bad in [
        0.0,
        49.9,
        99.95,
        100.0,
        150.0,
        -5.0,
        f64::NAN,
        f64::INFINITY,
    ] {
        assert_eq!(field(p(bad)), "hedge.delay_percentile.percentile", "{bad}");
    }
    for good in [50.0, 90.0, 95.0, 99.0, 99.9] {
        p(good).build().unwrap();
    }
    let w = |w: Duration| HedgeConfig::builder().delay_percentile(95.0, w, ms(1), ms(500));
    assert_eq!(field(w(ms(999))), "hedge.delay_percentile.window");
    assert_eq!(
        field(w(Duration::from_secs(601))),
        "hedge.delay_percentile.window"
    );
    let b =
        |min, max| HedgeConfig::builder().delay_percentile(95.0, Duration::from_secs(10), min, max);
    assert_eq!(field(b(ms(10), ms(5))), "hedge.delay_percentile.min");
    assert_eq!(
        field(b(ms(10), Duration::MAX)),
        "hedge.delay_percentile.max"
    );
    b(ms(5), ms(5)).build().unwrap();
}

#[test]
fn the_default_is_p95_with_one_hedge_and_a_budget() {
    let config = HedgeConfig::default();
    assert_eq!(config.max_attempts(), 2);
    assert!(config.budget().is_some());
    assert!(
        matches!(config.delay(), HedgeDelay::Percentile { percentile, .. } if percentile == 95.0)
    );
    assert!(HedgeConfig::builder()
        .no_budget()
        .build()
        .unwrap()
        .budget()
        .is_none());
}

#[test]
fn layers_and_services_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<steadfast::hedge::HedgeLayer>();
    check::<
        steadfast::hedge::Hedge<
            tower::util::BoxCloneSyncService<u32, u32, steadfast::BoxError>,
            steadfast::retry::RetryFailures,
            steadfast::retry::CloneRequest,
        >,
    >();
    check::<steadfast::hedge::HedgeHandle>();
}
