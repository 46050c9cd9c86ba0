//! The preset's rate limit (outside the retry, inside the deadline) and
//! fallback (outermost): where each sits decides what it sees.

use steadfast::classify::HttpClassifier;
use steadfast::fallback::{Failed, FallbackLayer};
use steadfast::rate_limit::RateLimitLayer;
use steadfast::stack::ResilienceHandle;
use steadfast::{InvalidConfig, RateLimited, Rejection};

use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// The preset `built` over `backend`, with its handle.
fn over<L: Layer<B>, B>(
    built: Result<(L, ResilienceHandle), InvalidConfig>,
    backend: B,
) -> (L::Service, ResilienceHandle) {
    let (layer, handle) = built.expect("a valid preset");
    (layer.layer(backend), handle)
}

#[tokio::test(start_paused = true)]
async fn a_call_takes_one_cell_whatever_its_attempts_and_the_rejection_is_not_retried() {
    let seen = Seen::default();
    let (svc, handle) = over(
        ResilienceLayer::http()
            .rate_limit(RateLimitLayer::builder(1, SECOND))
            .build(),
        backend(&seen, StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO),
    );
    let res = svc.clone().oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.calls(), 3, "three attempts on the call's one cell");
    let retries = handle.retry().unwrap().snapshot().retries;
    assert_eq!(retries, 2);

    // The limit is spent: the next call is refused before any attempt,
    // and retry never sees the refusal.
    let err = svc
        .clone()
        .oneshot(get("http://products/1"))
        .await
        .unwrap_err();
    let limited = err
        .downcast_ref::<RateLimited>()
        .expect("the stack's error is our RateLimited");
    assert!(limited.retry_after() > Duration::ZERO && limited.retry_after() <= SECOND);
    assert!(matches!(
        Rejection::of(&err),
        Some(Rejection::RateLimited { .. })
    ));
    assert_eq!(seen.calls(), 3);
    assert_eq!(handle.retry().unwrap().snapshot().retries, retries);
    let limit = handle.rate_limit().expect("the stack has a rate limit");
    assert_eq!(limit.snapshot().rejected, 1);
    // Not a failure of the backend: the breaker counted the three attempts
    // only.
    assert_eq!(
        handle.circuit_breaker().unwrap().state(),
        CircuitState::Closed
    );

    // A second later there is a cell again.
    time::advance(SECOND).await;
    svc.oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(seen.calls(), 6);
    assert!(
        handle.to_string().contains("limit     burst 1 every 1s"),
        "{handle}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_never_waits_past_the_deadline() {
    let seen = Seen::default();
    let (svc, handle) = over(
        ResilienceLayer::http()
            .deadline(2 * SECOND)
            .rate_limit(RateLimitLayer::builder(1, 10 * SECOND).max_wait(60 * SECOND))
            .build(),
        backend(&seen, StatusCode::OK, Duration::ZERO),
    );
    svc.clone().oneshot(get("http://products/1")).await.unwrap();
    // The next cell is 10 s away, the deadline 2 s: refused without
    // waiting for a cell it could never use.
    let start = Instant::now();
    let err = svc
        .clone()
        .oneshot(get("http://products/1"))
        .await
        .unwrap_err();
    assert!(Rejection::of(&err).is_some(), "{err}");
    assert!(start.elapsed() <= 2 * SECOND, "{:?}", start.elapsed());
    assert_eq!(seen.calls(), 1);
    assert_eq!(handle.rate_limit().unwrap().waiting(), 0);

    // A cell 1 s away is worth waiting for, within the deadline.
    let (svc, _) = over(
        ResilienceLayer::http()
            .deadline(2 * SECOND)
            .rate_limit(RateLimitLayer::builder(1, SECOND).max_wait(60 * SECOND))
            .build(),
        backend(&seen, StatusCode::OK, Duration::ZERO),
    );
    svc.clone().oneshot(get("http://products/1")).await.unwrap();
    let start = Instant::now();
    svc.oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(start.elapsed(), SECOND);
    assert_eq!(seen.calls(), 3);
}

fn stale(body: &str) -> Response<String> {
    let mut res = Response::new(body.to_owned());
    res.headers_mut()
        .insert("warning", "110 - \"stale\"".parse().unwrap());
    res
}

#[tokio::test(start_paused = true)]
async fn the_fallback_answers_for_the_rate_limit() {
    let seen = Seen::default();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let log = reasons.clone();
    let (svc, handle) = over(
        ResilienceLayer::http()
            .rate_limit(RateLimitLayer::builder(1, SECOND))
            .fallback(FallbackLayer::new(
                move |failed: Failed<'_, Response<String>>| {
                    log.lock()
                        .unwrap()
                        .push(failed.rejection().map(|r| r.as_str()));
                    Ok(stale("cached products"))
                },
            ))
            .build(),
        backend(&seen, StatusCode::OK, Duration::ZERO),
    );
    let res = svc.clone().oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.body(), "ok");
    let res = svc.clone().oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.body(), "cached products");
    assert!(res.headers().contains_key("warning"));
    assert_eq!(*reasons.lock().unwrap(), [Some("rate_limited")]);
    assert_eq!(seen.calls(), 1);
    let fallback = handle.fallback().expect("the stack has a fallback");
    assert_eq!(fallback.snapshot().served, 1);
    assert_eq!(handle.rate_limit().unwrap().snapshot().rejected, 1);
    let text = handle.to_string();
    assert!(text.contains("fallback"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_fallback_sees_the_final_result_after_every_retry() {
    let seen = Seen::default();
    let (svc, handle) = over(
        ResilienceLayer::http()
            .fallback(
                FallbackLayer::new(|failed: Failed<'_, Response<String>>| {
                    let res = failed.into_response().expect("a failed response");
                    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                    Ok(stale("cached products"))
                })
                .on_failed_responses(HttpClassifier::new()),
            )
            .build(),
        backend(&seen, StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO),
    );
    let res = svc.oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.body(), "cached products");
    assert_eq!(seen.calls(), 3, "every retry ran before the fallback");
    assert_eq!(handle.retry().unwrap().snapshot().retries, 2);
    assert_eq!(handle.fallback().unwrap().snapshot().served, 1);
}
