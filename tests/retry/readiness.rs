//! Readiness: `poll_ready` errors surface as errors, and each call keeps its
//! own clone of the inner service, readied again before every retry.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use steadfast::retry::RetryLayer;
use steadfast::BoxError;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use crate::harness::{ms, quick, Counts};

#[tokio::test(start_paused = true)]
async fn poll_ready_errors_surface() {
    let layer = RetryLayer::new(quick().build().unwrap());
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    handle.send_error("inner not ready");
    let err = assert_ready_err!(svc.poll_ready());
    assert_eq!(err.to_string(), "inner not ready");
}

/// The retry waits for the inner service to be ready: nothing is sent
/// until the mock allows it, and the mock (which panics on a call it did
/// not ready) sees `poll_ready` first.
#[tokio::test(start_paused = true)]
async fn readiness_is_requested_before_each_retry() {
    let layer = RetryLayer::new(quick().build().unwrap());
    let counters = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(5));
    assert_pending!(call.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 5);
    send.send_error("first attempt failed");
    assert_pending!(call.poll(), "sleeping the backoff");

    tokio::time::advance(ms(100)).await;
    assert_pending!(call.poll(), "waiting for the inner service");
    assert_pending!(call.poll());
    assert!(handle.poll_request().is_pending(), "nothing sent yet");

    handle.allow(1);
    assert!(call.is_woken(), "readiness wakes the call");
    assert_pending!(call.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 5, "the same request again");
    send.send_response(50);
    assert_eq!(assert_ready_ok!(call.poll()), 50);
    assert_eq!(Counts::of(&counters), Counts::call(2));
}

/// A `poll_ready` error while readying a retry ends the call with it.
#[tokio::test(start_paused = true)]
async fn poll_ready_error_before_a_retry_is_returned() {
    let layer = RetryLayer::new(quick().build().unwrap());
    let counters = layer.handle();
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(layer);
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(5));
    assert_pending!(call.poll());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("first attempt failed");
    assert_pending!(call.poll());
    handle.send_error("connection pool closed");
    tokio::time::advance(ms(100)).await;
    let err = assert_ready_err!(call.poll());
    assert_eq!(err.to_string(), "connection pool closed");
    assert!(handle.poll_request().is_pending(), "no second attempt");
    // One attempt was sent; the retry never was.
    assert_eq!(Counts::of(&counters), Counts::call(1));
}

/// What a [`Tracked`] clone was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Ready,
    Call(u32),
    /// `call` without a `poll_ready` before it: a broken contract.
    CallUnready(u32),
}

/// An inner service whose clones have ids and log what they are asked;
/// the first attempt of each request fails.
#[derive(Debug)]
struct Tracked {
    id: usize,
    ready: bool,
    next_id: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<(usize, Event)>>>,
}

impl Tracked {
    fn new() -> Self {
        Self {
            id: 0,
            ready: false,
            next_id: Arc::new(AtomicUsize::new(1)),
            log: Arc::default(),
        }
    }

    /// The events of clone `id`, in order.
    fn events_of(&self, id: usize) -> Vec<Event> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, e)| *e)
            .collect()
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Self {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            ready: false,
            next_id: self.next_id.clone(),
            log: self.log.clone(),
        }
    }
}

impl Service<u32> for Tracked {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready = true;
        self.log.lock().unwrap().push((self.id, Event::Ready));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let event = if self.ready {
            Event::Call(req)
        } else {
            Event::CallUnready(req)
        };
        self.ready = false;
        let mut log = self.log.lock().unwrap();
        let earlier = log
            .iter()
            .filter(|(_, e)| matches!(e, Event::Call(r) | Event::CallUnready(r) if *r == req))
            .count();
        log.push((self.id, event));
        ready(if earlier == 0 {
            Err("first attempt fails".into())
        } else {
            Ok(req * 10)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn each_call_keeps_its_own_readied_clone() {
    let tracked = Tracked::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    let counters = layer.handle();
    let mut svc = layer.layer(tracked.clone()); // clone 1
    svc.ready().await.unwrap();
    let first = svc.call(1); // clone 1 takes call 1; the service keeps clone 2
    svc.ready().await.unwrap();
    let second = svc.call(2); // clone 2 takes call 2; the service keeps clone 3
    let (a, b) = tokio::join!(first, second);
    assert_eq!((a.unwrap(), b.unwrap()), (10, 20));
    let expect = |req| {
        vec![
            Event::Ready,
            Event::Call(req),
            Event::Ready,
            Event::Call(req),
        ]
    };
    assert_eq!(tracked.events_of(1), expect(1));
    assert_eq!(tracked.events_of(2), expect(2));
    assert_eq!(
        tracked.events_of(3),
        [],
        "the service's own clone is untouched"
    );
    assert_eq!(
        Counts::of(&counters),
        Counts {
            calls: 2,
            attempts: 4,
            retries: 2,
            ..Counts::default()
        }
    );
}
