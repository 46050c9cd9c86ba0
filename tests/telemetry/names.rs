//! Every layer with a handle can be named once; handles and snapshots share
//! the name.

use std::borrow::Cow;
use std::sync::Arc;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::retry::{RetryConfig, RetryLayer};

#[test]
fn names_take_static_str_string_cow_and_arc() {
    let owned = String::from("payments");
    let cfg = CircuitBreakerConfig::builder().name(owned).build().unwrap();
    assert_eq!(cfg.name(), Some("payments"));
    let cow: Cow<'static, str> = Cow::Borrowed("ledger");
    let cfg = CircuitBreakerConfig::builder().name(cow).build().unwrap();
    assert_eq!(cfg.name(), Some("ledger"));
    let arc: Arc<str> = Arc::from("search");
    let b = BulkheadLayer::builder(1).name(arc).build().unwrap();
    assert_eq!(b.handle().name(), Some("search"));
    let r = RetryConfig::builder().name("static").build().unwrap();
    assert_eq!(r.name(), Some("static"));
}

#[test]
fn snapshots_share_the_layers_name() {
    let cb = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .name("inventory")
            .build()
            .unwrap(),
    );
    let (a, b) = (cb.handle().snapshot(), cb.handle().snapshot());
    assert_eq!(a.name.as_deref(), Some("inventory"));
    // One allocation shared by every snapshot: not a copy per snapshot.
    assert!(Arc::ptr_eq(
        a.name.as_ref().unwrap(),
        b.name.as_ref().unwrap()
    ));

    let bulkhead = BulkheadLayer::builder(2).name("db").build().unwrap();
    let (a, b) = (bulkhead.handle().snapshot(), bulkhead.handle().snapshot());
    assert_eq!(a.name.as_deref(), Some("db"));
    assert!(Arc::ptr_eq(
        a.name.as_ref().unwrap(),
        b.name.as_ref().unwrap()
    ));

    let retry = RetryLayer::new(RetryConfig::builder().name("api").build().unwrap());
    let h = retry.handle();
    assert_eq!(h.name(), Some("api"));
    let (a, b) = (h.snapshot(), h.snapshot());
    assert_eq!(a.name.as_deref(), Some("api"));
    assert!(Arc::ptr_eq(
        a.name.as_ref().unwrap(),
        b.name.as_ref().unwrap()
    ));
    assert!(a.to_string().starts_with("api: "), "{a}");

    let unnamed = RetryLayer::new(RetryConfig::default()).handle();
    assert_eq!(unnamed.name(), None);
    assert_eq!(unnamed.snapshot().name, None);
}

#[cfg(feature = "http")]
#[test]
fn idempotency_layer_is_named() {
    use steadfast::idempotency::store::MemoryStore;
    use steadfast::idempotency::IdempotencyLayer;

    let layer = IdempotencyLayer::builder(MemoryStore::new())
        .name("orders")
        .build()
        .unwrap();
    assert_eq!(layer.handle().name(), Some("orders"));
    assert_eq!(layer.handle().snapshot().name.as_deref(), Some("orders"));
    assert_eq!(
        IdempotencyLayer::new(MemoryStore::new()).handle().name(),
        None
    );
}

#[cfg(feature = "http")]
#[test]
fn a_named_preset_names_its_unnamed_pieces() {
    use steadfast::ResilienceLayer;

    let (_layer, handle) = ResilienceLayer::http()
        .name("catalog")
        .bulkhead(4)
        .build()
        .unwrap();
    assert_eq!(handle.retry().unwrap().name(), Some("catalog"));
    assert_eq!(handle.bulkhead().unwrap().name(), Some("catalog"));
    assert_eq!(handle.circuit_breaker().unwrap().name(), Some("catalog"));
    let snap = handle.snapshot();
    assert_eq!(snap.retry.unwrap().name.as_deref(), Some("catalog"));

    // A piece named by its own builder keeps its name.
    let (_layer, handle) = ResilienceLayer::http()
        .name("catalog")
        .circuit_breaker(CircuitBreakerConfig::builder().name("catalog-breaker"))
        .bulkhead_with(BulkheadLayer::builder(4).name("catalog-pool"))
        .retry(RetryConfig::builder().name("catalog-retry"))
        .build()
        .unwrap();
    assert_eq!(handle.retry().unwrap().name(), Some("catalog-retry"));
    assert_eq!(handle.bulkhead().unwrap().name(), Some("catalog-pool"));
    assert_eq!(
        handle.circuit_breaker().unwrap().name(),
        Some("catalog-breaker")
    );

    // Unnamed stacks leave the pieces unnamed.
    let (_layer, handle) = ResilienceLayer::http().build().unwrap();
    assert_eq!(handle.circuit_breaker().unwrap().name(), None);
}
