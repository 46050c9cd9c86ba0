//! Snapshots serialise with serde (feature `serde`).

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::retry::{RetryConfig, RetryLayer};

#[test]
fn breaker_snapshot_serialises_with_its_field_names() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .name("inventory")
            .build()
            .unwrap(),
    );
    let _rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = _rt.enter();
    layer.handle().force_open();
    let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
    assert_eq!(json["name"], "inventory");
    assert_eq!(json["state"], "forced_open");
    assert_eq!(json["opened"], 1);
    assert_eq!(json["failure_rate"], serde_json::Value::Null);
    // Durations as serde writes them.
    assert!(json["time_open"]["secs"].is_u64(), "{json}");
    assert!(json["time_in_state"]["nanos"].is_u64(), "{json}");
    for field in [
        "successes",
        "failures",
        "rejected",
        "half_opened",
        "closed",
        "window_calls",
        "consecutive_failures",
        "retry_after",
        "probes_in_flight",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
}

#[test]
fn bulkhead_and_retry_snapshots_serialise() {
    let bulkhead = BulkheadLayer::builder(3).build().unwrap();
    let json = serde_json::to_value(bulkhead.handle().snapshot()).unwrap();
    assert_eq!(json["name"], serde_json::Value::Null);
    assert_eq!(json["max_concurrent"], 3);
    assert_eq!(json["rejected_queue_full"], 0);
    assert_eq!(json["rejected_wait_timed_out"], 0);

    let retry = RetryLayer::new(RetryConfig::builder().name("api").build().unwrap());
    let json = serde_json::to_value(retry.handle().snapshot()).unwrap();
    assert_eq!(json["name"], "api");
    for field in [
        "calls",
        "attempts",
        "retries",
        "refused_by_budget",
        "give_ups",
    ] {
        assert_eq!(json[field], 0, "{field} in {json}");
    }
    assert!(json["budget"].is_object(), "{json}");
}

#[cfg(feature = "http")]
#[test]
fn preset_snapshot_serialises_every_piece() {
    let (_layer, handle) = steadfast::ResilienceLayer::http()
        .name("catalog")
        .build()
        .unwrap();
    let json = serde_json::to_value(handle.snapshot()).unwrap();
    assert_eq!(json["retry"]["name"], "catalog");
    assert_eq!(json["circuit_breaker"]["state"], "closed");
    assert_eq!(json["bulkhead"], serde_json::Value::Null);
    assert_eq!(json["deadline"]["secs"], 30);

    let idem = steadfast::idempotency::IdempotencyLayer::new(
        steadfast::idempotency::store::MemoryStore::new(),
    );
    let json = serde_json::to_value(idem.handle().snapshot()).unwrap();
    for field in [
        "claims",
        "replays",
        "conflicts",
        "mismatches",
        "store_errors",
    ] {
        assert_eq!(json[field], 0, "{field} in {json}");
    }
}

#[test]
fn adaptive_snapshot_serialises_with_its_field_names() {
    let bulkhead = BulkheadLayer::new(16).unwrap();
    let layer = steadfast::adaptive::AdaptiveLimitLayer::builder(bulkhead.handle())
        .name("orders")
        .build()
        .unwrap();
    let json = serde_json::to_value(layer.handle().snapshot()).unwrap();
    assert_eq!(json["name"], "orders");
    assert_eq!(json["limit"], 16);
    assert_eq!(json["estimate"], 16.0);
    assert_eq!(json["short_rtt"], serde_json::Value::Null);
    for field in [
        "min_limit",
        "max_limit",
        "in_flight",
        "long_rtt",
        "samples",
        "skipped",
        "drops",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
}
