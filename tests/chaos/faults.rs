use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use steadfast::chaos::error::{InjectedRefused, InjectedReset};
use steadfast::chaos::{Fault, FaultHandle, FaultLayer, FaultService, Latency};
use steadfast::classify::is_not_sent;
use steadfast::timeout::error::Elapsed;
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::{counting, Boom};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn always(fault: Fault<u32>) -> FaultLayer<u32> {
    FaultLayer::builder().fault(1.0, fault).build().unwrap()
}

#[test]
fn layer_service_handle_and_future_are_send_sync_clone() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<FaultLayer<u32>>();
    send_sync_clone::<FaultHandle>();
    send_sync_clone::<Fault<u32>>();
    send_sync_clone::<FaultService<tower::util::BoxCloneSyncService<u32, u32, BoxError>, u32>>();
    send::<
        steadfast::chaos::future::ResponseFuture<
            std::pin::Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>,
            u32,
        >,
    >();
}

/// Refused: the inner service is not called, and the error proves the
/// request was never sent.
#[test]
fn refused_is_not_sent_and_never_reaches_the_inner_service() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = always(Fault::refused());
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let inner = counting(&started).map_request(move |n: u32| {
        calls2.fetch_add(1, Ordering::SeqCst);
        n
    });
    let mut svc = layer.layer(inner);
    let err = svc.call(1).now_or_never().unwrap().unwrap_err();
    assert!(err.is::<InjectedRefused>());
    assert!(is_not_sent(err.as_ref()));
    let io = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
    assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(err.to_string(), "connection refused (injected fault)");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

/// Reset: the inner service runs to completion (the request may have been
/// processed), and its answer is replaced by an error that is *not* proof
/// of "not sent".
#[tokio::test(start_paused = true)]
async fn reset_runs_the_inner_call_then_fails_maybe_sent() {
    let done = Arc::new(AtomicUsize::new(0));
    let done2 = done.clone();
    let inner = service_fn(move |n: u32| {
        let done = done2.clone();
        async move {
            tokio::time::sleep(MS(300)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(n)
        }
    });
    let svc = always(Fault::reset()).layer(inner);
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(start.elapsed(), MS(300), "the inner call ran to its end");
    assert_eq!(done.load(Ordering::SeqCst), 1);
    assert!(err.is::<InjectedReset>());
    assert!(!is_not_sent(err.as_ref()));
    let io = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
}

/// A user error is returned as it is (boxed), without calling the inner
/// service; the factory runs once per injected error.
#[test]
fn user_error_comes_back_as_made() {
    let made = Arc::new(AtomicUsize::new(0));
    let made2 = made.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let mut svc = always(Fault::error(move || {
        made2.fetch_add(1, Ordering::SeqCst);
        Boom
    }))
    .layer(counting(&started));
    for _ in 0..3 {
        let err = svc.call(1).now_or_never().unwrap().unwrap_err();
        assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom));
    }
    assert_eq!(made.load(Ordering::SeqCst), 3);
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

/// A hang never completes; our own `TimeoutLayer` cuts it at exactly its
/// timeout, with `Elapsed`.
#[tokio::test(start_paused = true)]
async fn hang_is_cut_by_the_timeout_layer() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = always(Fault::hang());
    let svc = TimeoutLayer::new(Duration::from_secs(2))
        .unwrap()
        .layer(layer.layer(counting(&started)));
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(layer.handle().snapshot().hangs, 1);

    // Alone, it stays pending however long the clock runs.
    let mut svc = layer.layer(counting(&started));
    let mut fut = task::spawn(svc.call(2));
    assert_pending!(fut.poll());
    advance(Duration::from_secs(3_600)).await;
    assert_pending!(fut.poll());
    assert!(!fut.is_woken());
}

/// The latency comes first: the inner call starts when it has passed, not
/// at `call`.
#[tokio::test(start_paused = true)]
async fn latency_delays_the_inner_call() {
    let started_at = Arc::new(std::sync::Mutex::new(None));
    let started_at2 = started_at.clone();
    let inner = service_fn(move |n: u32| {
        let started_at = started_at2.clone();
        async move {
            *started_at.lock().unwrap() = Some(Instant::now());
            Ok::<_, BoxError>(n)
        }
    });
    let layer = FaultLayer::builder()
        .latency(Latency::fixed(MS(250)))
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(layer.layer(inner).oneshot(5).await.unwrap(), 5);
    assert_eq!(*started_at.lock().unwrap(), Some(start + MS(250)));
    assert_eq!(start.elapsed(), MS(250));

    // An error after the latency.
    let layer = FaultLayer::builder()
        .latency(Latency::fixed(MS(100)))
        .fault(1.0, Fault::refused())
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let err = layer
        .layer(counting(&started))
        .oneshot(5)
        .await
        .unwrap_err();
    assert!(err.is::<InjectedRefused>());
    assert_eq!(start.elapsed(), MS(100));
    let snap = layer.handle().snapshot();
    assert_eq!((snap.delayed, snap.refused, snap.passed), (1, 1, 0));
}

/// A `Fault::delay` adds to the layer's latency, and the call then goes
/// through.
#[tokio::test(start_paused = true)]
async fn delay_fault_adds_to_the_latency() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder()
        .latency(Latency::fixed(MS(100)))
        .fault(1.0, Fault::delay(Latency::fixed(MS(400))))
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(layer.layer(counting(&started)).oneshot(3).await.unwrap(), 3);
    assert_eq!(start.elapsed(), MS(500));
    let snap = layer.handle().snapshot();
    assert_eq!((snap.calls, snap.delayed, snap.passed), (1, 1, 1));
}

/// Something the inner future owns; the count of live guards tells
/// whether the future was dropped.
fn guarded(
    live: &Arc<()>,
    work: Duration,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> {
    let live = live.clone();
    service_fn(move |n: u32| {
        let guard = live.clone();
        async move {
            tokio::time::sleep(work).await;
            drop(guard);
            Ok::<_, BoxError>(n)
        }
    })
}

/// Dropping the response future during the latency, during a hang, or
/// during the inner call (pass or reset) releases the timer and the inner
/// future at once.
#[tokio::test(start_paused = true)]
async fn dropping_the_future_releases_everything() {
    let live = Arc::new(());
    let cases: Vec<(&str, FaultLayer<u32>)> = vec![
        (
            "during latency",
            FaultLayer::builder()
                .latency(Latency::fixed(MS(500)))
                .build()
                .unwrap(),
        ),
        ("during hang", always(Fault::hang())),
        ("during inner call", FaultLayer::builder().build().unwrap()),
        ("during reset's inner call", always(Fault::reset())),
    ];
    for (name, layer) in cases {
        let mut svc = layer.layer(guarded(&live, MS(1_000)));
        // The service itself holds one.
        let idle = Arc::strong_count(&live);
        let mut fut = task::spawn(svc.call(1));
        assert_pending!(fut.poll(), "{name}");
        advance(MS(200)).await;
        assert_pending!(fut.poll(), "{name}");
        let held = usize::from(name != "during hang");
        assert_eq!(Arc::strong_count(&live), idle + held, "{name}");
        drop(fut);
        assert_eq!(
            Arc::strong_count(&live),
            idle,
            "{name}: inner future leaked"
        );
    }
    // And a completed one released it too.
    let mut svc = FaultLayer::builder()
        .build()
        .unwrap()
        .layer(guarded(&live, MS(10)));
    let idle = Arc::strong_count(&live);
    let mut fut = task::spawn(svc.call(1));
    assert_pending!(fut.poll());
    advance(MS(10)).await;
    assert_eq!(assert_ready!(fut.poll()).unwrap(), 1);
    assert_eq!(Arc::strong_count(&live), idle);
}

/// Calls without a delay work outside any runtime; the inner service's
/// errors pass through boxed.
#[test]
fn inner_errors_pass_through() {
    let svc = FaultLayer::builder()
        .build()
        .unwrap()
        .layer(service_fn(|_: u32| async {
            Err::<u32, _>(io::Error::other("backend down"))
        }));
    let err = svc.oneshot(1).now_or_never().unwrap().unwrap_err();
    assert_eq!(err.to_string(), "backend down");
}

/// Accessors and `Debug`.
#[test]
fn accessors_and_debug() {
    let started = Arc::new(AtomicUsize::new(0));
    // Nothing calls the service here: name the response type.
    let layer = FaultLayer::<u32>::builder()
        .name("payments")
        .fault(0.5, Fault::refused())
        .build()
        .unwrap();
    let mut svc = layer.layer(counting(&started));
    let _: &_ = svc.get_ref();
    let _: &mut _ = svc.get_mut();
    let handle = layer.handle();
    assert_eq!(handle.name(), Some("payments"));
    assert!(format!("{layer:?}").contains("payments"));
    assert!(format!("{handle:?}").contains("payments"));
    assert!(format!("{:?}", Fault::<u32>::refused()).contains("refused"));
    let _ = svc.into_inner();
    let snap = handle.snapshot();
    assert_eq!(
        snap.to_string(),
        "payments: 0 calls | passed 0 (delayed 0) | errors 0, responses 0, hangs 0, refused 0, reset 0"
    );
}
