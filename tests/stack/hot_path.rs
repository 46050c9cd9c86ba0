//! What the preset leaves out of its hot path, and the guarantees that
//! stay. Its deadline has no timer of its own when the attempt timeout is
//! on: the attempt's timer is set at the earlier of the two, and the retry
//! layer neither sleeps nor waits for readiness past the deadline, so every
//! way a call can outlive an attempt still ends at the deadline. With
//! retries off, no copy of the request is made.

use super::*;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use steadfast::retry::Backoff;

/// Answers `503` at once to the first call; after it, never ready again
/// (a saturated connection pool, a full buffer).
#[derive(Clone, Default)]
struct Stuck {
    calls: Arc<AtomicUsize>,
    stuck: Arc<AtomicBool>,
}

impl Service<Req> for Stuck {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<String>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.stuck.load(Ordering::SeqCst) {
            // Never woken: only a timer can end the wait.
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.stuck.store(true, Ordering::SeqCst);
        let mut res = Response::new(String::new());
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        std::future::ready(Ok(res))
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_ends_exactly_at_the_deadline_with_or_without_an_attempt_timer() {
    // With the attempt timeout on, its timer ends the call at the deadline;
    // without, the deadline keeps a timer of its own.
    for attempt_timeout in [true, false] {
        let seen = Seen::default();
        let builder = ResilienceLayer::http().deadline(Duration::from_millis(700));
        let builder = if attempt_timeout {
            builder.attempt_timeout(Duration::from_secs(10))
        } else {
            builder.no_attempt_timeout()
        };
        let (layer, _) = builder.build().unwrap();
        let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::from_secs(5)));
        let start = Instant::now();
        let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err}");
        assert!(!is_caused_by::<Elapsed>(err.as_ref()), "{err}");
        assert_eq!(seen.calls(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_cut_by_its_own_limit_is_elapsed_then_the_deadline_ends_the_retry() {
    // Attempts of 300 ms each from 0, 300 and 600 ms; the third is cut at
    // the 800 ms deadline, not at its own 900 ms limit.
    let seen = Seen::default();
    let (layer, _) = ResilienceLayer::http()
        .deadline(Duration::from_millis(800))
        .attempt_timeout(Duration::from_millis(300))
        .retry(
            RetryConfig::builder()
                .max_attempts(5)
                .retry_timeouts(true)
                .backoff(Backoff::fixed(Duration::ZERO)),
        )
        .build()
        .unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::from_secs(5)));
    let start = Instant::now();
    let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(800));
    assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err}");
    assert_eq!(seen.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waiting_for_a_service_that_is_never_ready_stops_at_the_deadline() {
    for attempt_timeout in [Some(Duration::from_secs(10)), None] {
        let backend = Stuck::default();
        let builder = ResilienceLayer::http()
            .deadline(Duration::from_millis(900))
            .retry(
                RetryConfig::builder()
                    .max_attempts(3)
                    .backoff(Backoff::fixed(Duration::from_millis(100))),
            );
        let builder = match attempt_timeout {
            Some(t) => builder.attempt_timeout(t),
            None => builder.no_attempt_timeout(),
        };
        let (layer, handle) = builder.build().unwrap();
        let svc = layer.layer(backend.clone());
        let start = Instant::now();
        let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(900),
            "attempt timeout {attempt_timeout:?}"
        );
        assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err}");
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1, "one attempt sent");
        let retry = handle.retry().unwrap().snapshot();
        assert_eq!(retry.retries, 0, "the retry was never sent: {retry:?}");
        if attempt_timeout.is_some() {
            // The retry layer's own bound ended it, and counted why.
            assert_eq!(retry.deadline_reached, 1, "{retry:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_waiting_for_readiness_gives_its_budget_token_back_at_the_deadline() {
    let backend = Stuck::default();
    let (layer, handle) = ResilienceLayer::http()
        .deadline(Duration::from_millis(500))
        .retry(
            RetryConfig::builder()
                .max_attempts(3)
                .backoff(Backoff::fixed(Duration::ZERO)),
        )
        .build()
        .unwrap();
    let svc = layer.layer(backend);
    let before = handle.retry().unwrap().snapshot().budget.unwrap();
    let err = svc.oneshot(get("http://products/1")).await.unwrap_err();
    assert!(is_caused_by::<DeadlineExceeded>(err.as_ref()), "{err}");
    let after = handle.retry().unwrap().snapshot().budget.unwrap();
    // The retry took a token, was never sent, and gave it back.
    assert_eq!(
        after.refunded,
        before.refunded + 1,
        "{before:?} → {after:?}"
    );
    assert_eq!(after.refused, 0);
}

/// A request that counts its clones.
#[derive(Default)]
struct Counted {
    clones: Arc<AtomicUsize>,
    deadline: Option<steadfast::deadline::Deadline>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            clones: self.clones.clone(),
            deadline: self.deadline,
        }
    }
}

impl steadfast::deadline::CarriesDeadline for Counted {
    fn deadline(&self) -> Option<steadfast::deadline::Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: steadfast::deadline::Deadline) {
        self.deadline = Some(deadline);
    }
}

#[tokio::test(start_paused = true)]
async fn retries_off_copy_no_request_and_retries_on_copy_one() {
    for retries in [false, true] {
        let builder = ResilienceLayer::new(steadfast::classify::ErrorsAsFailures);
        let builder = if retries { builder } else { builder.no_retry() };
        let (layer, _) = builder.build().unwrap();
        let svc = layer.layer(tower::service_fn(|_: Counted| async {
            Ok::<_, BoxError>("ok")
        }));
        let req = Counted::default();
        let clones = req.clones.clone();
        assert_eq!(svc.oneshot(req).await.unwrap(), "ok");
        // With retries the replay keeps one copy for a retry; without, the
        // request goes as it is.
        assert_eq!(clones.load(Ordering::SeqCst), usize::from(retries));
    }
}
