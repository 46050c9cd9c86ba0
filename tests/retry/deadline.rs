//! A request's deadline bounds the retries: no sleep past it, no attempt
//! started at or after it, and the call returns when its last attempt ends.

use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::retry::{CloneWithDeadline, RetryFailures, RetryLayer, Verdict};
use steadfast::BoxError;
use tower::{service_fn, Layer, ServiceExt};

use crate::harness::{ms, offsets, quick, Calls, Counts};

/// A request type that carries its deadline.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) deadline: Option<Deadline>,
}

impl Job {
    pub(crate) fn within(millis: u64) -> Self {
        Self {
            deadline: Some(Deadline::after(ms(millis))),
        }
    }
}

impl CarriesDeadline for Job {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

/// A backend for `Job`s that takes `latency` per attempt and always fails.
fn slow_down(
    calls: &Calls,
    latency: u64,
) -> impl tower::Service<Job, Response = (), Error = BoxError, Future: Send> + Clone {
    let calls = calls.clone();
    service_fn(move |_: Job| {
        let n = calls.record();
        async move {
            tokio::time::sleep(ms(latency)).await;
            Err::<(), BoxError>(format!("attempt {n} failed").into())
        }
    })
}

fn layer() -> RetryLayer<RetryFailures, CloneWithDeadline> {
    let config = quick().max_attempts(10).build().unwrap();
    RetryLayer::with_policy(config, RetryFailures::default(), CloneWithDeadline)
}

#[tokio::test(start_paused = true)]
async fn never_sleeps_past_the_deadline() {
    let calls = Calls::new();
    let layer = layer();
    let handle = layer.handle();
    let err = layer
        .layer(slow_down(&calls, 0))
        .oneshot(Job::within(250))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "attempt 3 failed");
    // The next attempt would start at 300 ms, after the deadline.
    assert_eq!(calls.offsets(), offsets(&[0, 100, 200]));
    assert_eq!(
        calls.elapsed(),
        ms(200),
        "returns then, not at the deadline"
    );
    assert_eq!(
        Counts::of(&handle),
        Counts {
            deadline: 1,
            ..Counts::call(3)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_at_the_deadline() {
    let calls = Calls::new();
    let layer = layer();
    let handle = layer.handle();
    layer
        .layer(slow_down(&calls, 0))
        .oneshot(Job::within(300))
        .await
        .unwrap_err();
    assert_eq!(calls.offsets(), offsets(&[0, 100, 200]));
    assert_eq!(
        Counts::of(&handle),
        Counts {
            deadline: 1,
            ..Counts::call(3)
        }
    );
}

/// Attempt latency counts: the call returns when the last attempt ends.
#[tokio::test(start_paused = true)]
async fn returns_at_the_end_of_the_last_attempt() {
    let calls = Calls::new();
    let layer = layer();
    let handle = layer.handle();
    let err = layer
        .layer(slow_down(&calls, 30))
        .oneshot(Job::within(300))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "attempt 3 failed");
    assert_eq!(calls.offsets(), offsets(&[0, 130, 260]));
    assert_eq!(calls.elapsed(), ms(290));
    assert_eq!(
        Counts::of(&handle),
        Counts {
            deadline: 1,
            ..Counts::call(3)
        }
    );
}

/// A server hint that ends after the deadline is not waited for.
#[tokio::test(start_paused = true)]
async fn a_server_hint_past_the_deadline_ends_the_retries() {
    let calls = Calls::new();
    let on = |res: &Result<(), BoxError>| match res {
        Ok(()) => Verdict::Done,
        Err(_) => Verdict::RetryAfter(ms(1_000)),
    };
    let layer = RetryLayer::with_policy(quick().build().unwrap(), on, CloneWithDeadline);
    let handle = layer.handle();
    layer
        .layer(slow_down(&calls, 0))
        .oneshot(Job::within(500))
        .await
        .unwrap_err();
    assert_eq!(calls.count(), 1);
    assert_eq!(calls.elapsed(), ms(0));
    assert_eq!(
        Counts::of(&handle),
        Counts {
            deadline: 1,
            ..Counts::call(1)
        }
    );
}

/// Without a deadline the same request type retries up to `max_attempts`.
#[tokio::test(start_paused = true)]
async fn no_deadline_no_limit() {
    let calls = Calls::new();
    let layer = layer();
    let handle = layer.handle();
    layer
        .layer(slow_down(&calls, 0))
        .oneshot(Job { deadline: None })
        .await
        .unwrap_err();
    assert_eq!(calls.count(), 10);
    assert_eq!(
        Counts::of(&handle),
        Counts {
            exhausted: 1,
            ..Counts::call(10)
        }
    );
}

/// `http::Request` carries its deadline in its extensions.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn an_http_request_deadline_bounds_the_retries() {
    use crate::http::{backend, get, reply, Log};

    let log = Log::new();
    let layer = RetryLayer::http(quick().max_attempts(10).build().unwrap());
    let handle = layer.handle();
    let mut req = get();
    let deadline = Deadline::after(ms(250));
    req.set_deadline(deadline);
    let answer = |n: usize| Ok(reply(503, n));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.body(), "attempt 3");
    assert_eq!(log.offsets(), offsets(&[0, 100, 200]));
    // Every attempt carries the deadline, for the layers inside.
    for seen in log.all() {
        assert_eq!(seen.deadline, Some(deadline));
    }
    assert_eq!(log.elapsed(), ms(200));
    assert_eq!(
        Counts::of(&handle),
        Counts {
            deadline: 1,
            ..Counts::call(3)
        }
    );
}

/// `with_replay` swaps in `CloneWithDeadline` and keeps the retry rule; the
/// counters start afresh.
#[tokio::test(start_paused = true)]
async fn with_replay_reads_the_deadline() {
    let calls = Calls::new();
    let plain = RetryLayer::new(quick().max_attempts(10).build().unwrap());
    let layer = plain.clone().with_replay(CloneWithDeadline);
    layer
        .layer(slow_down(&calls, 0))
        .oneshot(Job::within(250))
        .await
        .unwrap_err();
    assert_eq!(calls.offsets(), offsets(&[0, 100, 200]));
    assert_eq!(
        Counts::of(&layer.handle()),
        Counts {
            deadline: 1,
            ..Counts::call(3)
        }
    );
    assert_eq!(Counts::of(&plain.handle()), Counts::default());
}
