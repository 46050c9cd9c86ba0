//! One known run through real layers, shared by both exporters' tests.

use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::metrics::{MetricsLayer, Registry};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use steadfast::BoxError;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};

/// A request: `Ok` after `ms` milliseconds, or `Err` after them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Ok(u64),
    Err(u64),
}

pub(crate) type Svc = BoxCloneSyncService<Call, (), BoxError>;

/// metrics → retry (2 attempts, 10 ms apart, no budget) → bulkhead (4) →
/// breaker (opens after 3 failures in a row, for 60 s) → the backend, every
/// piece named `name`; each handle registered in a new registry.
pub(crate) fn stack(name: &str) -> (Svc, Registry) {
    let (metrics, metrics_handle) = MetricsLayer::new(name);
    let retry = RetryLayer::new(
        RetryConfig::builder()
            .max_attempts(2)
            .backoff(Backoff::fixed(Duration::from_millis(10)))
            .no_budget()
            .build()
            .unwrap(),
    );
    let bulkhead = BulkheadLayer::builder(4)
        .name(name.to_owned())
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .name(name.to_owned())
            .consecutive_failures(3)
            .without_failure_rate()
            .open_duration(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let registry = Registry::new();
    registry
        .register(metrics_handle)
        .register(retry.handle())
        .register(bulkhead.handle())
        .register(breaker.handle());
    let backend = service_fn(|call: Call| async move {
        let (ms, ok) = match call {
            Call::Ok(ms) => (ms, true),
            Call::Err(ms) => (ms, false),
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if ok {
            Ok(())
        } else {
            Err(BoxError::from("unavailable"))
        }
    });
    let svc = metrics.layer(retry.layer(bulkhead.layer(breaker.layer(backend))));
    (BoxCloneSyncService::new(svc), registry)
}

/// The known run (on paused time):
///
/// 1. `Ok(2)`: succeeds in 2 ms;
/// 2. `Err(4)`: fails, is retried 10 ms later, fails again: 18 ms, given up
///    (attempts exhausted); the breaker has 2 failures in a row;
/// 3. `Err(4)`: fails (the third in a row: the breaker opens), the retry
///    10 ms later is rejected by the open breaker and returned: 14 ms.
pub(crate) async fn run(svc: &Svc) {
    assert!(svc.clone().oneshot(Call::Ok(2)).await.is_ok());
    assert!(svc.clone().oneshot(Call::Err(4)).await.is_err());
    let err = svc.clone().oneshot(Call::Err(4)).await.unwrap_err();
    assert!(err.is::<steadfast::CircuitOpen>(), "{err}");
}
