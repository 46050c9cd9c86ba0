use std::time::Duration;

use steadfast::chaos::{Fault, FaultLayer, Latency};

fn field_of(builder: steadfast::chaos::FaultBuilder<u32>) -> String {
    builder.build().unwrap_err().field().to_owned()
}

#[test]
fn rates_must_be_finite_and_in_zero_to_one() {
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(
            field_of(FaultLayer::builder().latency_rate(bad)),
            "chaos.latency_rate"
        );
        assert_eq!(
            field_of(
                FaultLayer::builder()
                    .fault(0.1, Fault::hang())
                    .fault(bad, Fault::refused())
            ),
            "chaos.faults[1].rate"
        );
        assert_eq!(
            field_of(FaultLayer::builder().window_with_rate(
                Duration::ZERO,
                Duration::from_secs(1),
                bad,
                Fault::hang()
            )),
            "chaos.windows[0].rate"
        );
    }
    // The bounds themselves are fine.
    FaultLayer::<u32>::builder()
        .latency_rate(0.0)
        .fault(1.0, Fault::refused())
        .build()
        .unwrap();
}

#[test]
fn rates_must_add_up_to_at_most_one() {
    let err = FaultLayer::<u32>::builder()
        .fault(0.6, Fault::refused())
        .fault(0.5, Fault::reset())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "chaos.faults");
    assert!(err.reason().contains("1.1"), "{err}");
    // Rounding does not count: 0.1 + 0.2 + 0.7 is a little over 1 in f64.
    FaultLayer::<u32>::builder()
        .fault(0.1, Fault::refused())
        .fault(0.2, Fault::reset())
        .fault(0.7, Fault::hang())
        .build()
        .unwrap();
}

#[test]
fn uniform_latency_needs_min_not_above_max() {
    let backwards = Latency::uniform(Duration::from_secs(2), Duration::from_secs(1));
    assert_eq!(
        field_of(FaultLayer::builder().latency(backwards)),
        "chaos.latency"
    );
    assert_eq!(
        field_of(FaultLayer::builder().fault(0.5, Fault::delay(backwards))),
        "chaos.faults[0].delay"
    );
    assert_eq!(
        field_of(FaultLayer::builder().window(
            Duration::ZERO,
            Duration::from_secs(1),
            Fault::delay(backwards)
        )),
        "chaos.windows[0].delay"
    );
}

#[test]
fn windows_must_not_be_empty() {
    let s = Duration::from_secs;
    let err = FaultLayer::<u32>::builder()
        .window(s(1), s(2), Fault::hang())
        .window(s(5), s(5), Fault::hang())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "chaos.windows[1]");
    assert_eq!(
        field_of(FaultLayer::builder().window(s(3), s(2), Fault::refused())),
        "chaos.windows[0]"
    );
}

#[cfg(feature = "http")]
#[test]
fn http_setters_on_other_faults_are_errors() {
    use http::StatusCode;
    type Res = http::Response<String>;

    let err = FaultLayer::<Res>::builder()
        .fault(0.1, Fault::refused().retry_after(Duration::from_secs(1)))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "chaos.faults[0].retry_after");
    assert!(err.reason().contains("refused"), "{err}");

    let err = FaultLayer::<Res>::builder()
        .window(
            Duration::ZERO,
            Duration::from_secs(1),
            Fault::http_status(StatusCode::BAD_GATEWAY).grpc_message("no"),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "chaos.windows[0].grpc_message");
}

#[test]
fn messages_name_the_field_and_the_rule() {
    let err = FaultLayer::<u32>::builder()
        .latency_rate(2.0)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `chaos.latency_rate`: must be a finite number in [0, 1], got 2"
    );
}
