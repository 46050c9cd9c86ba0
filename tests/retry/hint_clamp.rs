//! Whatever bytes a server puts in `Retry-After` or
//! `grpc-retry-pushback-ms`, the layer never panics and never waits longer
//! than `max_server_delay`: it either retries within the clamp or returns
//! the response.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use proptest::prelude::*;
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const CLAMP: Duration = Duration::from_secs(5);

/// Two attempts, 1 s apart unless a hint says otherwise, hints clamped at
/// [`CLAMP`].
fn config() -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::from_secs(1)))
        .max_server_delay(CLAMP)
        .no_budget()
        .build()
        .expect("valid")
}

/// Sends one GET (or gRPC call) to a backend that fails the first attempt
/// with `header: value`; returns the attempts made and when the second began.
fn run(grpc: bool, value: Vec<u8>) -> (u32, Option<Duration>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let start = Instant::now();
        let attempts = Arc::new(AtomicU32::new(0));
        let second = Arc::new(std::sync::Mutex::new(None));
        let (seen, at) = (attempts.clone(), second.clone());
        let backend = tower::service_fn(move |_req: Request<ReplayBody<Empty<Bytes>>>| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n == 1 {
                *at.lock().unwrap() = Some(start.elapsed());
            }
            let value = value.clone();
            async move {
                let mut res = Response::builder();
                res = if grpc {
                    res.status(200).header("grpc-status", "14")
                } else {
                    res.status(503)
                };
                let mut res = res.body(()).expect("response");
                if n == 0 {
                    if let Ok(v) = HeaderValue::from_bytes(&value) {
                        let name = if grpc {
                            "grpc-retry-pushback-ms"
                        } else {
                            "retry-after"
                        };
                        res.headers_mut().insert(name, v);
                    }
                } else {
                    *res.status_mut() = http::StatusCode::OK;
                    res.headers_mut().remove("grpc-status");
                }
                Ok::<_, std::io::Error>(res)
            }
        });
        let mut req = Request::get("http://backend/x")
            .body(Empty::<Bytes>::new())
            .expect("request");
        if grpc {
            req.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            let svc = RetryLayer::grpc(config()).layer(backend);
            let _ = svc.oneshot(req).await;
        } else {
            let svc = RetryLayer::http(config()).layer(backend);
            let _ = svc.oneshot(req).await;
        }
        let second = *second.lock().unwrap();
        (attempts.load(Ordering::SeqCst), second)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn retry_after_of_any_bytes_stays_within_the_clamp(value in proptest::collection::vec(any::<u8>(), 0..40)) {
        let (attempts, second) = run(false, value);
        prop_assert!(attempts == 1 || attempts == 2);
        if attempts == 2 {
            prop_assert!(second.expect("second attempt time") <= CLAMP, "{second:?}");
        } else {
            prop_assert_eq!(second, None);
        }
    }

    #[test]
    fn digits_in_retry_after_are_waited_or_end_the_retries(secs in 0u64..20) {
        let (attempts, second) = run(false, secs.to_string().into_bytes());
        if Duration::from_secs(secs) <= CLAMP {
            prop_assert_eq!((attempts, second), (2, Some(Duration::from_secs(secs))));
        } else {
            prop_assert_eq!((attempts, second), (1, None));
        }
    }

    #[test]
    fn pushback_of_any_bytes_stays_within_the_clamp(value in proptest::collection::vec(any::<u8>(), 0..40)) {
        let (attempts, second) = run(true, value);
        prop_assert!(attempts == 1 || attempts == 2);
        if attempts == 2 {
            prop_assert!(second.expect("second attempt time") <= CLAMP, "{second:?}");
        }
    }
}
