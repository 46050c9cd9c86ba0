//! `steadfast::Rejection::of`: every variant from the real error of a real
//! layer, found through boxes and wrappers, and `None` for the backend's own
//! errors.

#[path = "../support/mod.rs"]
mod support;

use std::error::Error;
use std::fmt;
use std::future::pending;
use std::time::Duration;

use steadfast::bulkhead::error::FullReason;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::timeout::TimeoutLayer;
use steadfast::{AsError, BoxError, BulkheadFull, CircuitOpen, Rejection};
use tokio_test::{assert_pending, assert_ready_err, task};
use tower::{service_fn, Layer, ServiceExt};

const OPEN_FOR: Duration = Duration::from_secs(5);

/// A backend error that is none of ours.
fn backend_error() -> BoxError {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer").into()
}

/// The error a breaker that tripped on one failure returns for the next call.
async fn tripped_breaker_error() -> BoxError {
    let config = CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(OPEN_FOR)
        .open_jitter(0.0)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config);
    let svc = layer.layer(service_fn(|()| async { Err::<(), _>(backend_error()) }));
    let first = svc.clone().oneshot(()).await.unwrap_err();
    assert_eq!(Rejection::of(&first), None, "the backend's own failure");
    assert_eq!(layer.handle().state(), CircuitState::Open);
    svc.oneshot(()).await.unwrap_err().into()
}

/// An error wrapping another as its `source()`, as a transport or a
/// framework would.
#[derive(Debug)]
struct Wrapped(BoxError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("call failed")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// `err` under `depth` layers of [`Wrapped`].
fn nest(mut err: BoxError, depth: usize) -> BoxError {
    for _ in 0..depth {
        err = Box::new(Wrapped(err));
    }
    err
}

#[tokio::test(start_paused = true)]
async fn a_tripped_breaker_is_circuit_open_with_the_time_to_the_next_probe() {
    support::trace_init();
    let err = tripped_breaker_error().await;
    let rejection = Rejection::of(&err).expect("a rejection of ours");
    assert_eq!(
        rejection,
        Rejection::of(&CircuitOpen::new(CircuitState::Open, Some(OPEN_FOR)) as &dyn Error).unwrap()
    );
    match rejection {
        Rejection::CircuitOpen {
            state, retry_after, ..
        } => {
            assert_eq!(state, CircuitState::Open);
            assert_eq!(retry_after, Some(OPEN_FOR));
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert_eq!(rejection.retry_after(), Some(OPEN_FOR));
    assert!(!rejection.is_backend_failure());
    assert!(rejection.is_not_sent());
    assert_eq!(rejection.to_string(), "circuit_open");
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_is_bulkhead_full_with_its_reason() {
    let layer = BulkheadLayer::new(1).unwrap();
    let svc = layer.layer(service_fn(|()| pending::<Result<(), BoxError>>()));
    let mut holder = task::spawn(svc.clone().oneshot(()));
    assert_pending!(holder.poll());
    assert_eq!(layer.handle().in_flight(), 1);

    let err = svc.oneshot(()).await.unwrap_err();
    match Rejection::of(&err) {
        Some(Rejection::BulkheadFull {
            reason,
            max_concurrent,
            waited,
            ..
        }) => {
            assert_eq!(reason, FullReason::QueueFull);
            assert_eq!(max_concurrent, 1);
            assert_eq!(waited, Duration::ZERO);
        }
        other => panic!("expected BulkheadFull, got {other:?}"),
    }
    let rejection = Rejection::of(&err).unwrap();
    assert!(!rejection.is_backend_failure());
    assert!(rejection.is_not_sent());
    assert_eq!(rejection.retry_after(), None);
    assert_eq!(rejection.as_str(), "bulkhead_full");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_timed_out_and_the_only_backend_failure() {
    let timeout = Duration::from_millis(300);
    let svc = TimeoutLayer::new(timeout)
        .unwrap()
        .layer(service_fn(|()| pending::<Result<(), BoxError>>()));
    let mut call = task::spawn(svc.oneshot(()));
    assert_pending!(call.poll());
    tokio::time::advance(timeout).await;
    let err = assert_ready_err!(call.poll());

    let rejection = Rejection::of(&err).expect("a rejection of ours");
    assert!(
        matches!(rejection, Rejection::TimedOut { after, .. } if after == timeout),
        "{rejection:?}"
    );
    assert!(rejection.is_backend_failure());
    assert!(!rejection.is_not_sent());
    assert_eq!(rejection.as_str(), "timed_out");
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn a_passed_deadline_is_deadline_exceeded_with_the_budget() {
    use steadfast::timeout::DeadlineLayer;

    let budget = Duration::from_secs(2);
    let svc = DeadlineLayer::new(budget)
        .unwrap()
        .layer(service_fn(|_req: http::Request<()>| {
            pending::<Result<(), BoxError>>()
        }));
    let mut call = task::spawn(svc.oneshot(http::Request::new(())));
    assert_pending!(call.poll());
    tokio::time::advance(budget).await;
    let err = assert_ready_err!(call.poll());

    let rejection = Rejection::of(&err).expect("a rejection of ours");
    assert!(
        matches!(rejection, Rejection::DeadlineExceeded { budget: Some(b), .. } if b == budget),
        "{rejection:?}"
    );
    assert!(!rejection.is_backend_failure());
    assert!(
        !rejection.is_not_sent(),
        "the call may have reached the backend"
    );
    assert_eq!(rejection.as_str(), "deadline_exceeded");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_is_found_through_boxes_wrappers_and_dyn_error() {
    let err = tripped_breaker_error().await;
    let expected = Rejection::of(&err).unwrap();

    // As a framework would hand it back: wrapped, and wrapped again in an io::Error.
    let io = std::io::Error::other(Wrapped(nest(err, 3)));
    assert_eq!(Rejection::of(&io), Some(expected));
    let dyn_err: &(dyn Error + 'static) = &io;
    assert_eq!(Rejection::of(dyn_err), Some(expected));
    assert_eq!(Rejection::of(&dyn_err), Some(expected));
    let boxed: Box<dyn Error> = Box::new(io);
    assert_eq!(Rejection::of(&boxed), Some(expected));
    assert_eq!(Rejection::of(boxed.as_error()), Some(expected));

    // A concrete error type without `AsError`, as a `&dyn Error`.
    let wrapped = Wrapped(BulkheadFull::new(FullReason::WaitTimedOut, 4, OPEN_FOR).into());
    assert!(matches!(
        Rejection::of(&wrapped as &dyn Error),
        Some(Rejection::BulkheadFull { reason: FullReason::WaitTimedOut, max_concurrent: 4, waited, .. }) if waited == OPEN_FOR
    ));
    // A `Box<E>` of a concrete type.
    assert!(Rejection::of(&Box::new(wrapped)).is_some());
}

#[test]
fn errors_of_the_backend_are_none() {
    assert_eq!(Rejection::of(&backend_error()), None);
    assert_eq!(Rejection::of(&nest(backend_error(), 5)), None);
    let plain: BoxError = "500 from upstream".into();
    assert_eq!(Rejection::of(&plain), None);
    // tower's own timeout is not ours: it is the caller's to interpret.
    let tower_elapsed: BoxError = tower::timeout::error::Elapsed::new().into();
    assert_eq!(Rejection::of(&tower_elapsed), None);
}

#[test]
fn the_chain_is_followed_64_errors_deep_and_no_further() {
    let open = || -> BoxError { CircuitOpen::new(CircuitState::ForcedOpen, None).into() };
    // The rejection is the 64th error of the chain: found.
    assert!(matches!(
        Rejection::of(&nest(open(), 63)),
        Some(Rejection::CircuitOpen {
            state: CircuitState::ForcedOpen,
            retry_after: None,
            ..
        })
    ));
    // The 65th: not looked at.
    assert_eq!(Rejection::of(&nest(open(), 64)), None);
}

/// An error whose `source()` is itself: the walk ends.
#[derive(Debug)]
struct Cyclic;

impl fmt::Display for Cyclic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cyclic")
    }
}

impl Error for Cyclic {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self)
    }
}

#[test]
fn a_cyclic_chain_ends() {
    assert_eq!(Rejection::of(&Cyclic as &dyn Error), None);
    assert!(!steadfast::is_caused_by::<CircuitOpen>(&Cyclic));
}

#[test]
fn the_error_types_are_at_the_crate_root_and_in_their_layers() {
    fn same<T: 'static, U: 'static>() -> bool {
        std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
    }
    assert!(same::<
        steadfast::CircuitOpen,
        steadfast::circuit_breaker::error::CircuitOpen,
    >());
    assert!(same::<
        steadfast::BulkheadFull,
        steadfast::bulkhead::error::BulkheadFull,
    >());
    assert!(same::<steadfast::Elapsed, steadfast::timeout::error::Elapsed>());
    assert!(same::<
        steadfast::DeadlineExceeded,
        steadfast::timeout::error::DeadlineExceeded,
    >());
    #[allow(deprecated)]
    {
        assert!(same::<steadfast::bulkhead::error::Rejection, FullReason>());
        // The old name still reaches the variants.
        let old = steadfast::bulkhead::error::Rejection::QueueFull;
        assert_eq!(old, FullReason::QueueFull);
    }
}
