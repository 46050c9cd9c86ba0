//! What is retried, and what a call returns once retries end.

use std::io;

use steadfast::retry::{CloneRequest, RetryConfig, RetryLayer, Verdict};
use steadfast::{BoxError, ServiceBuilderExt};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

use crate::harness::{down, flaky, ms, offsets, quick, Calls, Counts};
use crate::support::trace_init;

#[tokio::test(start_paused = true)]
async fn max_attempts_counts_the_first_call_and_defaults_to_three() {
    trace_init();
    assert_eq!(RetryConfig::default().max_attempts(), 3);
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 3 failed");
    assert_eq!(calls.count(), 3);
    assert_eq!(
        Counts::of(&handle),
        Counts {
            exhausted: 1,
            ..Counts::call(3)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn max_attempts_one_means_no_retries() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().max_attempts(1).build().unwrap());
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(calls.offsets(), offsets(&[0]));
    assert_eq!(calls.elapsed(), ms(0), "no backoff was slept");
    assert_eq!(
        Counts::of(&handle),
        Counts {
            exhausted: 1,
            ..Counts::call(1)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn success_is_returned_at_once() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    let handle = layer.handle();
    assert_eq!(layer.layer(flaky(0, &calls)).oneshot(1).await.unwrap(), 1);
    assert_eq!(calls.count(), 1);
    assert_eq!(Counts::of(&handle), Counts::call(1));
}

#[tokio::test(start_paused = true)]
async fn success_on_the_second_attempt_is_returned() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    let handle = layer.handle();
    assert_eq!(layer.layer(flaky(1, &calls)).oneshot(1).await.unwrap(), 2);
    assert_eq!(calls.count(), 2);
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn exhausted_returns_the_last_real_error() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().max_attempts(5).build().unwrap());
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 5 failed");
    assert_eq!(calls.count(), 5);
    assert_eq!(
        Counts::of(&handle),
        Counts {
            exhausted: 1,
            ..Counts::call(5)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn counters_add_up_over_calls_and_services() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    let handle = layer.handle();
    // Two services of one layer count into the same place.
    assert_eq!(layer.layer(flaky(1, &calls)).oneshot(1).await.unwrap(), 2);
    let other = Calls::new();
    let err = layer.layer(down(&other)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 3 failed");
    assert_eq!(
        Counts::of(&handle),
        Counts {
            calls: 2,
            attempts: 5,
            retries: 3,
            exhausted: 1,
            ..Counts::default()
        }
    );
}

/// `RetryLayer::new` retries every `Err`, whatever its type.
#[tokio::test(start_paused = true)]
async fn new_retries_every_error() {
    #[derive(Debug)]
    struct Custom;
    impl std::fmt::Display for Custom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("custom")
        }
    }
    impl std::error::Error for Custom {}

    let calls = Calls::new();
    let log = calls.clone();
    let svc = service_fn(move |_: u32| {
        let n = log.record();
        async move {
            match n {
                1 => Err(BoxError::from(io::Error::other("io"))),
                2 => Err(BoxError::from(Custom)),
                3 => Err(BoxError::from("text")),
                _ => Ok(n),
            }
        }
    });
    let layer = RetryLayer::new(quick().max_attempts(4).build().unwrap());
    let handle = layer.handle();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap(), 4);
    assert_eq!(Counts::of(&handle), Counts::call(4));
}

/// The predicate decides: a matching error is retried, the next error,
/// which does not match, is returned at once and is no give-up.
#[tokio::test(start_paused = true)]
async fn retry_if_retries_only_what_matches() {
    let calls = Calls::new();
    let log = calls.clone();
    let svc = service_fn(move |_: u32| {
        let n = log.record();
        async move {
            match n {
                1 => Err::<u32, BoxError>("transient".into()),
                _ => Err("fatal".into()),
            }
        }
    });
    let layer = RetryLayer::new(quick().max_attempts(5).build().unwrap()).retry_if(
        |res: &Result<u32, BoxError>| matches!(res, Err(e) if e.to_string() == "transient"),
    );
    let handle = layer.handle();
    let err = layer.layer(svc).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "fatal");
    assert_eq!(calls.offsets(), offsets(&[0, 100]));
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

/// A predicate may retry successes too (an empty answer, say).
#[tokio::test(start_paused = true)]
async fn retry_if_can_retry_an_ok() {
    let calls = Calls::new();
    let log = calls.clone();
    let svc = service_fn(move |_: u32| {
        let n = log.record();
        async move { Ok::<u32, BoxError>(if n < 3 { 0 } else { 7 }) }
    });
    let layer = RetryLayer::new(quick().max_attempts(5).build().unwrap())
        .retry_if(|res: &Result<u32, BoxError>| matches!(res, Ok(0)));
    let handle = layer.handle();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap(), 7);
    assert_eq!(Counts::of(&handle), Counts::call(3));
}

/// `retry_if` makes a layer with counters of its own.
#[tokio::test(start_paused = true)]
async fn retry_if_starts_its_counters_afresh() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    layer.layer(flaky(1, &calls)).oneshot(1).await.unwrap();
    assert_eq!(Counts::of(&layer.handle()), Counts::call(2));
    let only_ok_zero = layer
        .clone()
        .retry_if(|res: &Result<u32, BoxError>| matches!(res, Ok(0)));
    assert_eq!(Counts::of(&only_ok_zero.handle()), Counts::default());
    assert_eq!(only_ok_zero.config().max_attempts(), 3, "the same config");
    // Errors are no longer retried.
    let err = only_ok_zero
        .layer(down(&Calls::new()))
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(Counts::of(&only_ok_zero.handle()), Counts::call(1));
    assert_eq!(Counts::of(&layer.handle()), Counts::call(2));
}

/// A `RetryOn` closure asking for `RetryAfter` waits exactly that long,
/// not the backoff.
#[tokio::test(start_paused = true)]
async fn custom_retry_on_with_retry_after() {
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::RetryAfter(ms(750)),
    };
    let layer = RetryLayer::with_policy(quick().build().unwrap(), on, CloneRequest);
    let handle = layer.handle();
    assert_eq!(layer.layer(flaky(2, &calls)).oneshot(1).await.unwrap(), 3);
    assert_eq!(calls.offsets(), offsets(&[0, 750, 1_500]));
    assert_eq!(Counts::of(&handle), Counts::call(3));
}

/// `Verdict::Done` on an error returns it without a retry or a give-up.
#[tokio::test(start_paused = true)]
async fn custom_retry_on_done_returns_the_error() {
    let calls = Calls::new();
    let on = |_: &Result<u32, BoxError>| Verdict::Done;
    let layer = RetryLayer::with_policy(quick().build().unwrap(), on, CloneRequest);
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(calls.count(), 1);
    assert_eq!(Counts::of(&handle), Counts::call(1));
}

/// `Verdict::GiveUp` returns the result at once, counted as a server hint.
#[tokio::test(start_paused = true)]
async fn custom_retry_on_give_up() {
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::GiveUp,
    };
    let layer = RetryLayer::with_policy(quick().build().unwrap(), on, CloneRequest);
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(calls.count(), 1);
    assert_eq!(
        Counts::of(&handle),
        Counts {
            server_hint: 1,
            ..Counts::call(1)
        }
    );
}

/// A server delay above `max_server_delay` ends the retries: the result
/// is returned at once, counted as a server hint.
#[tokio::test(start_paused = true)]
async fn retry_after_above_max_server_delay_gives_up() {
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::RetryAfter(ms(501)),
    };
    let config = quick().max_server_delay(ms(500)).build().unwrap();
    let layer = RetryLayer::with_policy(config, on, CloneRequest);
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(calls.elapsed(), ms(0));
    assert_eq!(
        Counts::of(&handle),
        Counts {
            server_hint: 1,
            ..Counts::call(1)
        }
    );

    // Exactly the cap is still honoured.
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::RetryAfter(ms(500)),
    };
    let config = quick().max_server_delay(ms(500)).build().unwrap();
    let svc = RetryLayer::with_policy(config, on, CloneRequest).layer(flaky(1, &calls));
    assert_eq!(svc.oneshot(1).await.unwrap(), 2);
    assert_eq!(calls.offsets(), offsets(&[0, 500]));
}

/// A server delay too long to add to the clock ends the retries instead of
/// panicking.
#[tokio::test(start_paused = true)]
async fn an_endless_server_delay_does_not_overflow() {
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::RetryAfter(std::time::Duration::MAX),
    };
    let config = quick()
        .max_server_delay(std::time::Duration::MAX)
        .build()
        .unwrap();
    let layer = RetryLayer::with_policy(config, on, CloneRequest);
    let handle = layer.handle();
    let err = layer.layer(down(&calls)).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(calls.count(), 1);
    let counts = Counts::of(&handle);
    assert_eq!(counts.retries, 0);
    assert_eq!(handle.snapshot().give_ups, 1, "{}", handle.snapshot());
}

/// `ServiceBuilder::retries` adds a `RetryLayer::new`.
#[tokio::test(start_paused = true)]
async fn service_builder_retries() {
    let calls = Calls::new();
    let svc = ServiceBuilder::new()
        .retries(quick().max_attempts(4).build().unwrap())
        .service(flaky(3, &calls));
    assert_eq!(svc.oneshot(1).await.unwrap(), 4);
    assert_eq!(calls.offsets(), offsets(&[0, 100, 200, 300]));
}

/// Layers, services and futures can cross threads; layers and services
/// are `Clone`.
#[test]
fn auto_traits() {
    fn send_sync_clone<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    send_sync_clone(&layer);
    send_sync_clone(&layer.handle());
    let mut svc = layer.layer(flaky(0, &calls));
    send(&svc);
    let _ = svc.clone();
    send(&tower::Service::call(&mut svc, 1));
}
