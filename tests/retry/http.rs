//! The HTTP rule around `http::Request<B>`: statuses, safe methods, body
//! replay, `Retry-After` and the throttled backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use steadfast::deadline::Deadline;
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Backoff, HttpReplay, HttpRetryOn, RetryConfigBuilder, RetryLayer};
use steadfast::BoxError;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::harness::{ms, offsets, quick, Counts};

pub(crate) type Body = Full<Bytes>;

/// What the backend saw of one attempt.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) at: Duration,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) deadline: Option<Deadline>,
}

/// Every attempt a backend saw.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    start: Instant,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Log {
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            seen: Arc::default(),
        }
    }

    pub(crate) fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn offsets(&self) -> Vec<Duration> {
        self.all().iter().map(|s| s.at).collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A backend that reads each request body whole, logs the attempt and
/// answers attempt `n` (from 1) with `answer(n)`.
pub(crate) fn backend<F>(
    log: &Log,
    answer: F,
) -> impl Service<
    Request<ReplayBody<Body>>,
    Response = Response<String>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send
where
    F: Fn(usize) -> Result<Response<String>, BoxError> + Clone + Send + Sync + 'static,
{
    let log = log.clone();
    service_fn(move |req: Request<ReplayBody<Body>>| {
        let log = log.clone();
        let answer = answer.clone();
        async move {
            let at = log.start.elapsed();
            let (parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            let n = {
                let mut seen = log.seen.lock().unwrap();
                seen.push(Seen {
                    at,
                    deadline: parts.extensions.get::<Deadline>().copied(),
                    method: parts.method,
                    headers: parts.headers,
                    body,
                });
                seen.len()
            };
            answer(n)
        }
    })
}

/// A response with `status`, whose body names the attempt.
pub(crate) fn reply(status: u16, n: usize) -> Response<String> {
    Response::builder()
        .status(status)
        .body(format!("attempt {n}"))
        .unwrap()
}

/// `reply` with one more header.
pub(crate) fn reply_with(status: u16, n: usize, name: &str, value: &str) -> Response<String> {
    let mut res = reply(status, n);
    res.headers_mut().insert(
        name.parse::<http::HeaderName>().unwrap(),
        value.parse().unwrap(),
    );
    res
}

/// `status` on the first `failures` attempts, then 200.
fn failing(
    failures: usize,
    status: u16,
) -> impl Fn(usize) -> Result<Response<String>, BoxError> + Clone {
    move |n| Ok(reply(if n <= failures { status } else { 200 }, n))
}

pub(crate) fn get() -> Request<Body> {
    Request::get("http://backend/items/1")
        .body(Body::default())
        .unwrap()
}

fn with_body(method: Method, key: Option<&str>) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri("http://backend/items");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Body::new(Bytes::from_static(b"payload"))).unwrap()
}

/// Normal and throttled backoff both a fixed 100 ms.
fn config() -> RetryConfigBuilder {
    quick().throttled_backoff(Backoff::fixed(ms(100)))
}

#[tokio::test(start_paused = true)]
async fn get_is_retried_on_each_retryable_status() {
    for status in [503, 502, 504, 408, 429] {
        let log = Log::new();
        let layer = RetryLayer::http(config().build().unwrap());
        let handle = layer.handle();
        let svc = layer.layer(backend(&log, failing(1, status)));
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200, "after {status}");
        assert_eq!(res.body(), "attempt 2");
        assert_eq!(log.offsets(), offsets(&[0, 100]), "after {status}");
        assert_eq!(Counts::of(&handle), Counts::call(2), "after {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn transport_errors_are_retried() {
    let log = Log::new();
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| match n {
        1 => Err(BoxError::from("connection reset")),
        _ => Ok(reply(200, n)),
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn exhausted_returns_the_last_response() {
    let log = Log::new();
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(backend(&log, failing(usize::MAX, 503)));
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.body(), "attempt 3", "the last response, not the first");
    assert_eq!(log.offsets(), offsets(&[0, 100, 200]));
    assert_eq!(
        Counts::of(&handle),
        Counts {
            exhausted: 1,
            ..Counts::call(3)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn status_500_is_retried_only_when_asked() {
    let log = Log::new();
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let res = layer
        .layer(backend(&log, failing(1, 500)))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(log.count(), 1);
    assert_eq!(Counts::of(&handle), Counts::call(1), "not a give-up either");

    let log = Log::new();
    let on = HttpRetryOn::new().retry_status(500);
    let layer = RetryLayer::with_policy(config().build().unwrap(), on, HttpReplay::new(1024));
    let handle = layer.handle();
    let res = layer
        .layer(backend(&log, failing(1, 500)))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.offsets(), offsets(&[0, 100]));
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    for status in [400, 401, 404, 409] {
        let log = Log::new();
        let layer = RetryLayer::http(config().build().unwrap());
        let handle = layer.handle();
        let res = layer
            .layer(backend(&log, failing(1, status)))
            .oneshot(get())
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(log.count(), 1, "{status}");
        assert_eq!(Counts::of(&handle), Counts::call(1), "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn post_without_idempotency_key_is_not_retried() {
    for method in [Method::POST, Method::PATCH] {
        let log = Log::new();
        let layer = RetryLayer::http(config().build().unwrap());
        let handle = layer.handle();
        let svc = layer.layer(backend(&log, failing(1, 503)));
        let res = svc.oneshot(with_body(method.clone(), None)).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(log.count(), 1, "{method}");
        assert_eq!(log.all()[0].body, "payload", "the body still goes through");
        assert_eq!(
            Counts::of(&handle),
            Counts {
                unsafe_: 1,
                ..Counts::call(1)
            },
            "{method}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_is_retried_with_its_body() {
    let log = Log::new();
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(backend(&log, failing(2, 503)));
    let res = svc
        .oneshot(with_body(Method::POST, Some("order-17")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    for attempt in &seen {
        assert_eq!(attempt.method, Method::POST);
        assert_eq!(attempt.headers["idempotency-key"], "order-17");
        assert_eq!(attempt.body, "payload");
    }
    assert_eq!(Counts::of(&handle), Counts::call(3));
}

/// Idempotent methods are replayed with the same head and body.
#[tokio::test(start_paused = true)]
async fn idempotent_methods_are_replayed_whole() {
    for method in ["PUT", "DELETE", "HEAD", "OPTIONS", "TRACE"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let log = Log::new();
        let layer = RetryLayer::http(config().build().unwrap());
        let handle = layer.handle();
        let svc = layer.layer(backend(&log, failing(1, 502)));
        let mut req = with_body(method.clone(), None);
        req.headers_mut()
            .insert("x-request", "abc".parse().unwrap());
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200, "{method}");
        let seen = log.all();
        assert_eq!(seen.len(), 2, "{method}");
        for attempt in &seen {
            assert_eq!(attempt.method, method);
            assert_eq!(attempt.headers["x-request"], "abc");
            assert_eq!(attempt.body, "payload", "{method}");
        }
        assert_eq!(Counts::of(&handle), Counts::call(2), "{method}");
    }
}

/// A body larger than the replay cap goes through once and is not retried.
#[tokio::test(start_paused = true)]
async fn body_over_the_cap_is_not_retried() {
    let log = Log::new();
    let layer = RetryLayer::http(config().max_replay_body(4).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(backend(&log, failing(1, 503)));
    let res = svc.oneshot(with_body(Method::PUT, None)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(log.all()[0].body, "payload", "streamed through intact");
    assert_eq!(
        Counts::of(&handle),
        Counts {
            unreplayable: 1,
            ..Counts::call(1)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_is_waited_exactly() {
    let log = Log::new();
    let config = quick()
        .throttled_backoff(Backoff::fixed(ms(700)))
        .build()
        .unwrap();
    let layer = RetryLayer::http(config);
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => reply_with(429, n, "retry-after", "2"),
            _ => reply(200, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.offsets(), offsets(&[0, 2_000]));
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_503_is_waited_exactly() {
    let log = Log::new();
    let layer = RetryLayer::http(config().build().unwrap());
    let answer = |n: usize| Ok(reply_with(503, n, "retry-after", "3"));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.offsets(), offsets(&[0, 3_000, 6_000]));
}

#[tokio::test(start_paused = true)]
async fn retry_after_above_max_server_delay_returns_the_response() {
    let log = Log::new();
    let config = config()
        .max_server_delay(Duration::from_secs(5))
        .build()
        .unwrap();
    let layer = RetryLayer::http(config);
    let handle = layer.handle();
    let answer = |n: usize| Ok(reply_with(503, n, "retry-after", "10"));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "10");
    assert_eq!(log.count(), 1);
    assert_eq!(log.elapsed(), ms(0), "returned at once");
    assert_eq!(
        Counts::of(&handle),
        Counts {
            server_hint: 1,
            ..Counts::call(1)
        }
    );
}

/// 1994-11-06 08:47:37 UTC: two minutes before RFC 9110's example date.
// An HTTP-date is wall-clock time: the policy's clock is a `SystemTime`.
#[allow(clippy::disallowed_types)]
fn fixed_now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(784_111_657)
}

/// The policy with a fixed wall clock, so HTTP-dates are deterministic.
fn dated(config: RetryConfigBuilder) -> RetryLayer<HttpRetryOn, HttpReplay> {
    let config = config.build().unwrap();
    let replay = HttpReplay::new(1024);
    RetryLayer::with_policy(config, HttpRetryOn::new().wall_clock(fixed_now), replay)
}

#[tokio::test(start_paused = true)]
async fn retry_after_date_in_the_past_retries_at_once() {
    let log = Log::new();
    let layer = dated(config());
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => reply_with(503, n, "retry-after", "Sun, 06 Nov 1994 08:40:00 GMT"),
            _ => reply(200, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.offsets(), offsets(&[0, 0]), "not the 100 ms backoff");
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_date_in_the_future_is_waited_exactly() {
    let log = Log::new();
    let layer = dated(config().max_server_delay(Duration::from_secs(300)));
    let answer = |n: usize| {
        Ok(match n {
            1 => reply_with(503, n, "retry-after", "Sun, 06 Nov 1994 08:49:37 GMT"),
            _ => reply(200, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.offsets(), offsets(&[0, 120_000]));
}

#[tokio::test(start_paused = true)]
async fn garbage_retry_after_uses_the_backoff() {
    let log = Log::new();
    let layer = RetryLayer::http(config().build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => reply_with(503, n, "retry-after", "soon"),
            2 => reply_with(503, n, "retry-after", "-5"),
            _ => reply(200, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.offsets(), offsets(&[0, 100, 200]));
    assert_eq!(Counts::of(&handle), Counts::call(3));
}

#[tokio::test(start_paused = true)]
async fn too_many_requests_without_retry_after_uses_the_throttled_backoff() {
    let log = Log::new();
    let config = quick()
        .max_attempts(4)
        .throttled_backoff(Backoff::fixed(ms(700)))
        .build()
        .unwrap();
    let layer = RetryLayer::http(config);
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => reply(429, n),
            2 => reply_with(429, n, "retry-after", "garbage"),
            3 => reply(503, n),
            _ => reply(200, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // 700 ms throttled, 700 ms throttled (the hint is unreadable), then the
    // normal 100 ms backoff after the 503.
    assert_eq!(log.offsets(), offsets(&[0, 700, 1_400, 1_500]));
    assert_eq!(Counts::of(&handle), Counts::call(4));
}
