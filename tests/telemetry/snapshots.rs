//! Snapshot fields added for telemetry.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use tokio::time::advance;
use tower::{service_fn, Layer, ServiceExt};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn time_in_state_restarts_at_each_transition() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .open_duration(10 * SEC)
            .open_jitter(0.0)
            .build()
            .unwrap(),
    );
    let h = layer.handle();
    advance(3 * SEC).await;
    assert_eq!(h.snapshot().time_in_state, 3 * SEC);

    let fail = layer.layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
    let _ = fail.oneshot(()).await;
    let s = h.snapshot();
    assert_eq!(s.state, CircuitState::Open);
    assert_eq!(s.time_in_state, Duration::ZERO);
    advance(2 * SEC).await;
    assert_eq!(h.snapshot().time_in_state, 2 * SEC);

    // A reset of a closed breaker is no state change; of an open one it is.
    h.reset();
    advance(SEC).await;
    assert_eq!(h.snapshot().time_in_state, SEC);
    h.reset();
    assert_eq!(h.snapshot().time_in_state, SEC);
    h.force_open();
    assert_eq!(h.snapshot().time_in_state, Duration::ZERO);
}
