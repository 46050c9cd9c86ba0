//! The chain on a paused clock, with a `tower::service_fn` standing in for
//! the `reqwest::Client`: each attempt's reqwest timeout, exactly.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use steadfast::timeout::error::DeadlineExceeded;
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use super::{is_quoted_uuid, Stack};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One attempt as the stand-in client received it.
#[derive(Debug, Clone, PartialEq)]
struct Attempt {
    /// When, from the test's start.
    at: Duration,
    /// The request's reqwest timeout.
    timeout: Option<Duration>,
    key: Option<String>,
}

/// A stand-in `reqwest::Client`: records each attempt, then answers after
/// `delay` with the next status of `script` (the last one repeats).
#[derive(Clone)]
struct FakeClient {
    start: Instant,
    delay: Duration,
    script: Arc<[u16]>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    /// Fails an attempt whose timeout is shorter than `delay` when the
    /// timeout runs out, as reqwest does.
    honours_timeout: bool,
}

impl FakeClient {
    fn new(delay: Duration, script: &[u16]) -> Self {
        Self {
            start: Instant::now(),
            delay,
            script: script.into(),
            attempts: Arc::default(),
            honours_timeout: false,
        }
    }

    /// Like reqwest: an attempt fails with a timeout error when its
    /// timeout runs out first.
    fn honouring_timeouts(mut self) -> Self {
        self.honours_timeout = true;
        self
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    fn timeouts(&self) -> Vec<Option<Duration>> {
        self.attempts().into_iter().map(|a| a.timeout).collect()
    }

    fn arrivals(&self) -> Vec<Duration> {
        self.attempts().into_iter().map(|a| a.at).collect()
    }

    fn service(
        &self,
    ) -> impl Service<reqwest::Request, Response = reqwest::Response, Error = io::Error, Future: Send>
           + Clone {
        let this = self.clone();
        tower::service_fn(move |req: reqwest::Request| {
            let n = {
                let mut attempts = this.attempts.lock().unwrap();
                attempts.push(Attempt {
                    at: this.start.elapsed(),
                    timeout: req.timeout().copied(),
                    key: req
                        .headers()
                        .get("idempotency-key")
                        .map(|v| v.to_str().unwrap().to_owned()),
                });
                attempts.len() - 1
            };
            let status = this.script[n.min(this.script.len() - 1)];
            let timeout = req.timeout().copied().filter(|_| this.honours_timeout);
            let delay = this.delay;
            async move {
                if let Some(timeout) = timeout.filter(|t| *t < delay) {
                    tokio::time::sleep(timeout).await;
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "client timeout"));
                }
                tokio::time::sleep(delay).await;
                let res = http::Response::builder().status(status).body("").unwrap();
                Ok(reqwest::Response::from(res))
            }
        })
    }
}

/// A 1 s deadline; up to 10 attempts, 100 ms apart.
const ONE_SECOND: Stack = Stack {
    keys: true,
    deadline: Duration::from_secs(1),
    max_attempts: 10,
    backoff: Duration::from_millis(100),
    slots: 8,
    max_wait: Duration::ZERO,
};

fn get(url: &str) -> reqwest::Request {
    reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_the_time_left_as_its_timeout() {
    // 300 ms attempts, 100 ms apart, within a 1 s deadline: [0, 300]
    // [400, 700] [800, 1100), the last cut at 1 s.
    let fake = FakeClient::new(ms(300), &[503]);
    let (svc, handles) = ONE_SECOND.around(fake.service());
    let mut req = get("http://products/products/7");
    // A looser timeout of the caller's: the deadline's is tighter and wins.
    *req.timeout_mut() = Some(Duration::from_secs(5));

    let err: BoxError = svc.oneshot(req).await.unwrap_err();

    assert!(err.is::<DeadlineExceeded>(), "{err:?}");
    assert_eq!(fake.start.elapsed(), Duration::from_secs(1));
    assert_eq!(fake.arrivals(), [0, 400, 800].map(ms));
    assert_eq!(fake.timeouts(), [1000, 600, 200].map(|n| Some(ms(n))));
    assert!(fake.attempts().iter().all(|a| a.key.is_none()), "a GET");
    assert_eq!(handles.retry.snapshot().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn a_tighter_timeout_of_the_callers_bounds_the_whole_call() {
    // 150 ms attempts, 100 ms apart; the caller's 500 ms timeout is tighter
    // than the 1 s deadline: [0, 150] [250, 400]; a third would start at
    // 500 ms, at the deadline, so the last 503 is returned at 400 ms.
    let fake = FakeClient::new(ms(150), &[503]);
    let (svc, handles) = ONE_SECOND.around(fake.service());
    let mut req = get("http://products/products/7");
    *req.timeout_mut() = Some(ms(500));

    let res = svc.oneshot(req).await.expect("the last response");

    assert_eq!(res.status(), 503);
    assert_eq!(fake.start.elapsed(), ms(400));
    assert_eq!(fake.arrivals(), [0, 250].map(ms));
    assert_eq!(fake.timeouts(), [Some(ms(500)), Some(ms(250))]);
    assert_eq!(handles.retry.snapshot().deadline_reached, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_of_the_callers_is_the_deadline_without_a_deadline_layer() {
    // No DeadlineLayer: the request's own timeout is the call's deadline,
    // so retry never sleeps past it and each retry gets what is left.
    let fake = FakeClient::new(ms(150), &[503]);
    let svc = RetryLayer::http(
        RetryConfig::builder()
            .max_attempts(10)
            .backoff(Backoff::fixed(ms(100)))
            .no_budget()
            .build()
            .unwrap(),
    )
    .layer(fake.service());
    let mut req = get("http://products/products/7");
    *req.timeout_mut() = Some(ms(500));

    let res = svc.oneshot(req).await.expect("the last response");

    assert_eq!(res.status(), 503);
    assert_eq!(fake.timeouts(), [Some(ms(500)), Some(ms(250))]);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_each_attempt_carries_the_attempt_timeout() {
    let fake = FakeClient::new(ms(10), &[503, 503, 200]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::http(
            RetryConfig::builder()
                .backoff(Backoff::fixed(ms(100)))
                .no_budget()
                .build()
                .unwrap(),
        ))
        .layer(TimeoutLayer::new(ms(50)).unwrap().deadline_aware())
        .service(fake.service());

    let res = svc
        .oneshot(get("http://products/products/7"))
        .await
        .unwrap();

    assert_eq!(res.status(), 200);
    // No deadline: each attempt is told the per-attempt timeout, so reqwest
    // stops when our timer does (as a gRPC attempt gets it as grpc-timeout).
    assert_eq!(fake.timeouts(), [Some(ms(50)); 3]);
}

#[tokio::test(start_paused = true)]
async fn a_call_that_waited_for_a_bulkhead_slot_gets_the_time_left_after_the_wait() {
    // One slot: the second call waits 200 ms for it, so 800 ms of its 1 s
    // deadline are left when it is sent.
    let fake = FakeClient::new(ms(200), &[200]);
    let stack = Stack {
        deadline: Duration::from_secs(1),
        slots: 1,
        max_wait: Duration::from_secs(1),
        ..Stack::default()
    };
    let (svc, _handles) = stack.around(fake.service());

    let (first, second) = tokio::join!(
        svc.clone().oneshot(get("http://products/products/1")),
        svc.oneshot(get("http://products/products/2")),
    );

    assert_eq!(first.unwrap().status(), 200);
    assert_eq!(second.unwrap().status(), 200);
    assert_eq!(fake.arrivals(), [0, 200].map(ms));
    assert_eq!(fake.timeouts(), [Some(ms(1000)), Some(ms(800))]);
}

#[tokio::test(start_paused = true)]
async fn a_post_gets_one_key_before_the_retries() {
    let fake = FakeClient::new(ms(10), &[503, 503, 201]);
    let (svc, _handles) = Stack::default().around(fake.service());
    let req = reqwest::Request::new(
        reqwest::Method::POST,
        "http://products/orders".parse().unwrap(),
    );

    let res = svc.oneshot(req).await.unwrap();

    assert_eq!(res.status(), 201);
    let attempts = fake.attempts();
    assert_eq!(attempts.len(), 3);
    let key = attempts[0].key.clone().expect("a POST gets a key");
    assert!(is_quoted_uuid(&key), "{key}");
    assert!(attempts.iter().all(|a| a.key.as_deref() == Some(&*key)));
}

#[tokio::test(start_paused = true)]
async fn the_clients_own_timeout_at_the_deadline_is_deadline_exceeded() {
    // The client's timer (the time left) and ours fire at the same instant
    // and the client is polled first: its error is still reported as
    // DeadlineExceeded, which the breaker ignores.
    let fake = FakeClient::new(Duration::from_secs(60), &[200]).honouring_timeouts();
    let stack = Stack {
        deadline: Duration::from_secs(1),
        ..Stack::default()
    };
    let (svc, handles) = stack.around(fake.service());

    let err: BoxError = svc
        .oneshot(get("http://products/products/7"))
        .await
        .unwrap_err();

    assert!(err.is::<DeadlineExceeded>(), "{err:?}");
    assert_eq!(fake.start.elapsed(), Duration::from_secs(1));
    assert_eq!(fake.timeouts(), [Some(Duration::from_secs(1))]);
    let breaker = handles.breaker.snapshot();
    assert_eq!((breaker.failures, breaker.ignored), (0, 1), "{breaker:?}");
}
