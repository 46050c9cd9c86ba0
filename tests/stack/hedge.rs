//! The preset with hedges in place of retries (`ResilienceBuilder::hedge`).

use super::*;
use steadfast::hedge::HedgeConfig;

/// A backend whose first call takes 1 s and every later one 10 ms; it
/// records each attempt's `Idempotency-Key` and `Seen::calls`.
fn slow_first(
    seen: &Seen,
) -> impl Service<Req, Response = Response<String>, Error = BoxError, Future = impl Send> + Clone {
    let seen = seen.clone();
    tower::service_fn(move |req: Req| {
        let seen = seen.clone();
        async move {
            let n = seen.calls.fetch_add(1, Ordering::SeqCst);
            let key = req
                .headers()
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.keys.lock().unwrap().push(key);
            let delay = if n == 0 { 1_000 } else { 10 };
            time::sleep(Duration::from_millis(delay)).await;
            Ok::<_, BoxError>(Response::new(format!("attempt {}", n + 1)))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_get_is_answered_by_its_hedge_and_the_loser_frees_its_slot() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .hedge(HedgeConfig::builder().delay(Duration::from_millis(50)))
        .bulkhead(8)
        .build()
        .unwrap();
    let svc = layer.layer(slow_first(&seen));
    let start = Instant::now();
    let res = svc.oneshot(get("http://inventory/items/7")).await.unwrap();
    // The hedge went at 50 ms and answered 10 ms later; the first attempt
    // (due at 1 s) was dropped.
    assert_eq!(res.into_body(), "attempt 2");
    assert_eq!(start.elapsed(), Duration::from_millis(60));
    assert_eq!(seen.calls(), 2);
    assert!(handle.retry().is_none(), "hedges replace retries");
    let hedge = handle.hedge().unwrap().snapshot();
    assert_eq!(
        (hedge.calls, hedge.hedges, hedge.hedges_won),
        (1, 1, 1),
        "{hedge}"
    );
    assert_eq!(handle.bulkhead().unwrap().in_flight(), 0);
    // Both attempts were successes for the breaker: the loser was
    // cancelled, not failed.
    let breaker = handle.circuit_breaker().unwrap().snapshot();
    assert_eq!(breaker.failures, 0, "{breaker}");
    assert!(handle.to_string().contains("hedge"), "{handle:?}");
    // The exporters see the hedge piece.
    let registry = steadfast::metrics::Registry::new();
    registry.register(handle.clone());
    let text = registry.render_prometheus();
    assert!(
        text.contains(r#"resilience_events_total{layer="hedge",name="",event="hedge_won"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"resilience_hedge_delay_seconds{name=""} 0.05"#),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_is_hedged_only_with_its_one_idempotency_key() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .hedge(HedgeConfig::builder().delay(Duration::from_millis(50)))
        .build()
        .unwrap();
    let svc = layer.layer(slow_first(&seen));
    let res = svc.oneshot(post("http://orders/orders")).await.unwrap();
    assert_eq!(res.into_body(), "attempt 2");
    // The preset's key layer gave the POST a key, so repeating it is safe;
    // both attempts carry the same one.
    let keys = seen.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].is_some());
    assert_eq!(keys[0], keys[1]);
    assert_eq!(handle.hedge().unwrap().snapshot().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn without_keys_a_post_is_never_hedged() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .no_idempotency_key()
        .hedge(HedgeConfig::builder().delay(Duration::from_millis(50)))
        .build()
        .unwrap();
    let svc = layer.layer(slow_first(&seen));
    let start = Instant::now();
    let res = svc.oneshot(post("http://orders/orders")).await.unwrap();
    assert_eq!(res.into_body(), "attempt 1");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(seen.calls(), 1);
    let hedge = handle.hedge().unwrap().snapshot();
    assert_eq!(hedge.hedges, 0, "{hedge}");
}

#[test]
fn hedge_and_retry_replace_each_other_and_bad_settings_name_the_field() {
    let (_, handle) = ResilienceLayer::http()
        .hedge(HedgeConfig::builder())
        .retry(RetryConfig::builder())
        .build()
        .unwrap();
    assert!(handle.retry().is_some() && handle.hedge().is_none());
    let (_, handle) = ResilienceLayer::http()
        .max_attempts(2)
        .hedge(HedgeConfig::builder())
        .build()
        .unwrap();
    assert!(handle.retry().is_none() && handle.hedge().is_some());
    let (_, handle) = ResilienceLayer::http()
        .hedge(HedgeConfig::builder())
        .no_hedge()
        .build()
        .unwrap();
    assert!(handle.retry().is_none() && handle.hedge().is_none());

    let err = ResilienceLayer::http()
        .hedge(HedgeConfig::builder().max_attempts(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "stack.hedge.max_attempts");
    let (_, handle) = ResilienceLayer::http()
        .name("inventory")
        .hedge(HedgeConfig::builder())
        .build()
        .unwrap();
    assert_eq!(handle.hedge().unwrap().name(), Some("inventory"));
}
