//! The gRPC rule: UNAVAILABLE is retried, pushback is honoured, retries
//! say how many attempts came before.

use bytes::Bytes;
use http::{Request, Response};
use steadfast::classify::GrpcCode;
use steadfast::retry::{Backoff, GrpcRetryOn, HttpReplay, RetryLayer};
use steadfast::BoxError;
use tower::{Layer, ServiceExt};

use crate::harness::{ms, offsets, quick, Counts};
use crate::http::{backend, Body, Log};

fn call() -> Request<Body> {
    Request::post("http://backend/pkg.Items/Get")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::new(Bytes::from_static(b"\0\0\0\0\x02\x08\x01")))
        .unwrap()
}

/// A trailers-only response with `grpc-status: code`.
fn status(code: i32, n: usize) -> Response<String> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .body(format!("attempt {n}"))
        .unwrap()
}

fn status_with(code: i32, n: usize, name: &str, value: &str) -> Response<String> {
    let mut res = status(code, n);
    res.headers_mut().insert(
        name.parse::<http::HeaderName>().unwrap(),
        value.parse().unwrap(),
    );
    res
}

fn grpc_status(res: &Response<String>) -> &str {
    res.headers()["grpc-status"].to_str().unwrap()
}

#[tokio::test(start_paused = true)]
async fn unavailable_is_retried() {
    let log = Log::new();
    let layer = RetryLayer::grpc(quick().build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| Ok(status(if n == 1 { 14 } else { 0 }, n));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(grpc_status(&res), "0");
    assert_eq!(log.offsets(), offsets(&[0, 100]));
    // The whole message is sent again.
    for seen in log.all() {
        assert_eq!(seen.body, &b"\0\0\0\0\x02\x08\x01"[..]);
    }
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn transport_errors_are_retried() {
    let log = Log::new();
    let layer = RetryLayer::grpc(quick().build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| match n {
        // Refused: the call never reached the server, so even a call not
        // marked idempotent goes again.
        1 => Err(BoxError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        ))),
        _ => Ok(status(0, n)),
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(grpc_status(&res), "0");
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn other_codes_are_not_retried() {
    // UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
    // INTERNAL, UNAUTHENTICATED; and OK.
    for code in [2, 3, 4, 8, 13, 16, 0] {
        let log = Log::new();
        let layer = RetryLayer::grpc(quick().build().unwrap());
        let handle = layer.handle();
        let answer = move |n: usize| Ok(status(code, n));
        let res = layer
            .layer(backend(&log, answer))
            .oneshot(call())
            .await
            .unwrap();
        assert_eq!(grpc_status(&res), code.to_string());
        assert_eq!(log.count(), 1, "code {code}");
        assert_eq!(Counts::of(&handle), Counts::call(1), "code {code}");
    }
}

#[tokio::test(start_paused = true)]
async fn pushback_is_waited_exactly() {
    let log = Log::new();
    let layer = RetryLayer::grpc(quick().build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => status_with(14, n, "grpc-retry-pushback-ms", "300"),
            _ => status(0, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(grpc_status(&res), "0");
    assert_eq!(log.offsets(), offsets(&[0, 300]), "not the 100 ms backoff");
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn negative_or_malformed_pushback_is_not_retried() {
    for value in ["-1", "-300", "abc", "1.5", ""] {
        let log = Log::new();
        let layer = RetryLayer::grpc(quick().build().unwrap());
        let handle = layer.handle();
        let answer = move |n: usize| Ok(status_with(14, n, "grpc-retry-pushback-ms", value));
        let res = layer
            .layer(backend(&log, answer))
            .oneshot(call())
            .await
            .unwrap();
        assert_eq!(grpc_status(&res), "14");
        assert_eq!(log.count(), 1, "pushback {value:?}");
        assert_eq!(
            Counts::of(&handle),
            Counts {
                server_hint: 1,
                ..Counts::call(1)
            },
            "pushback {value:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_carry_grpc_previous_rpc_attempts() {
    let log = Log::new();
    let layer = RetryLayer::grpc(quick().max_attempts(4).build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| Ok(status(14, n));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(res.body(), "attempt 4");
    let previous: Vec<Option<String>> = log
        .all()
        .iter()
        .map(|s| {
            s.headers
                .get("grpc-previous-rpc-attempts")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        previous,
        [None, Some("1".into()), Some("2".into()), Some("3".into())]
    );
    assert_eq!(
        Counts::of(&handle),
        Counts {
            exhausted: 1,
            ..Counts::call(4)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_when_asked_uses_the_throttled_backoff() {
    let log = Log::new();
    let config = quick()
        .throttled_backoff(Backoff::fixed(ms(700)))
        .build()
        .unwrap();
    let on = GrpcRetryOn::new().retry_code(GrpcCode::ResourceExhausted);
    let layer = RetryLayer::with_policy(config, on, HttpReplay::new(1024));
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => status(8, n),
            2 => status(14, n),
            _ => status(0, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(grpc_status(&res), "0");
    // 700 ms throttled after RESOURCE_EXHAUSTED, 100 ms after UNAVAILABLE.
    assert_eq!(log.offsets(), offsets(&[0, 700, 800]));
    assert_eq!(Counts::of(&handle), Counts::call(3));
}

/// A code removed from the set is no longer retried.
#[tokio::test(start_paused = true)]
async fn no_retry_code_removes_unavailable() {
    let log = Log::new();
    let on = GrpcRetryOn::new().no_retry_code(GrpcCode::Unavailable);
    let layer = RetryLayer::with_policy(quick().build().unwrap(), on, HttpReplay::new(1024));
    let handle = layer.handle();
    let answer = |n: usize| Ok(status(14, n));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(grpc_status(&res), "14");
    assert_eq!(Counts::of(&handle), Counts::call(1));
}

/// A proxy's 503 without `grpc-status` means UNAVAILABLE: retried.
#[tokio::test(start_paused = true)]
async fn a_proxy_unavailable_status_is_retried() {
    let log = Log::new();
    let layer = RetryLayer::grpc(quick().build().unwrap());
    let handle = layer.handle();
    let answer = |n: usize| {
        Ok(match n {
            1 => Response::builder().status(503).body(String::new()).unwrap(),
            _ => status(0, n),
        })
    };
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(call())
        .await
        .unwrap();
    assert_eq!(grpc_status(&res), "0");
    assert_eq!(log.offsets(), offsets(&[0, 100]));
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

/// With a deadline, each retry tells the server the time left after the
/// backoff, in `grpc-timeout`.
#[tokio::test(start_paused = true)]
async fn retries_carry_the_time_left_as_grpc_timeout() {
    use steadfast::deadline::{grpc_timeout, CarriesDeadline, Deadline};

    let log = Log::new();
    let layer = RetryLayer::grpc(quick().build().unwrap());
    let mut req = call();
    req.set_deadline(Deadline::after(ms(1_000)));
    let answer = |n: usize| Ok(status_with(14, n, "grpc-retry-pushback-ms", "300"));
    let res = layer
        .layer(backend(&log, answer))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.body(), "attempt 3");
    assert_eq!(log.offsets(), offsets(&[0, 300, 600]));
    let left: Vec<Option<std::time::Duration>> = log
        .all()
        .iter()
        .map(|s| {
            s.headers
                .get("grpc-timeout")
                .map(|v| grpc_timeout::parse(v.as_bytes()).unwrap())
        })
        .collect();
    assert_eq!(left, [None, Some(ms(700)), Some(ms(400))]);
}
