//! Snapshots, counters, changing the limit, and the rejection event.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};

use super::*;

const WAIT: Duration = Duration::from_millis(100);

#[tokio::test(start_paused = true)]
async fn snapshot_counts_every_path() {
    let layer = BulkheadLayer::builder(1)
        .max_wait(WAIT)
        .max_waiting(1)
        .name("inventory")
        .build()
        .unwrap();
    let bh = layer.handle();
    assert_eq!(bh.name(), Some("inventory"));
    let (mut svc, mut handle) = service(&layer);

    let mut a = call(&mut svc, 1).await; // admitted at once
    assert_pending!(a.poll());
    let mut b = call(&mut svc, 2).await; // waits, then runs
    assert_pending!(b.poll());
    let mut c = call(&mut svc, 3).await; // queue full
    assert_ready_err!(c.poll());
    let s = bh.snapshot();
    assert_eq!((s.in_flight, s.waiting, s.max_concurrent), (1, 1, 1));

    received(&mut handle).unwrap().1.send_response(1);
    assert_ready_ok!(a.poll());
    assert_pending!(b.poll());
    let (_, send_b) = received(&mut handle).unwrap();

    let d = call(&mut svc, 4).await; // waits, then is dropped
    drop(d);
    let mut e = call(&mut svc, 5).await; // waits, times out
    assert_pending!(e.poll());
    advance(WAIT).await;
    assert_ready_err!(e.poll());
    send_b.send_response(2);
    assert_ready_ok!(b.poll());

    let s = bh.snapshot();
    assert_eq!(s.name.as_deref(), Some("inventory"));
    assert_eq!((s.in_flight, s.waiting), (0, 0));
    assert_eq!((s.admitted, s.waited), (2, 1));
    assert_eq!((s.rejected_queue_full, s.rejected_wait_timed_out), (1, 1));
    assert_eq!(s.rejected(), 2);
    assert_eq!(s.cancelled_waiting, 1);
    assert_eq!(bh.rejected(FullReason::QueueFull), 1);
    assert_eq!(bh.rejected(FullReason::WaitTimedOut), 1);
    assert_eq!(
        s.to_string(),
        "inventory: 0/1 in flight, 0 waiting | admitted 2 (waited 1) | \
         rejected: queue full 1, wait timed out 1 | cancelled while waiting 1"
    );
    // The service's handle is the layer's.
    assert_eq!(svc.handle().snapshot(), s);
}

#[tokio::test(start_paused = true)]
async fn raising_the_limit_lets_the_oldest_waiters_in() {
    let layer = layer(1, Duration::from_secs(60), None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let mut calls = Vec::new();
    for i in 0..4 {
        let mut c = call(&mut svc, i).await;
        assert_pending!(c.poll());
        calls.push(c);
    }
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 3));
    bh.set_max_concurrent(3).unwrap();
    assert_eq!(
        (bh.in_flight(), bh.waiting(), bh.max_concurrent()),
        (3, 1, 3)
    );
    assert!(calls[1].is_woken() && calls[2].is_woken() && !calls[3].is_woken());
    for c in &mut calls {
        assert_pending!(c.poll());
    }
    let mut seen: Vec<u32> = std::iter::from_fn(|| received(&mut handle).map(|r| r.0)).collect();
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn lowering_the_limit_never_cuts_calls_short() {
    let layer = layer(3, Duration::ZERO, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let mut calls = Vec::new();
    for i in 0..3 {
        let mut c = call(&mut svc, i).await;
        assert_pending!(c.poll());
        calls.push(c);
    }
    let mut sends: Vec<_> = std::iter::from_fn(|| received(&mut handle).map(|r| r.1)).collect();
    bh.set_max_concurrent(1).unwrap();
    assert_eq!((bh.in_flight(), bh.max_concurrent()), (3, 1));
    let mut rejected = call(&mut svc, 9).await;
    assert_eq!(
        reason(assert_ready_err!(rejected.poll())),
        FullReason::QueueFull
    );

    // Two finish: one is still in flight, the new limit.
    for mut c in calls.drain(..2) {
        sends.remove(0).send_response(0);
        assert_ready_ok!(c.poll());
    }
    assert_eq!(bh.in_flight(), 1);
    let mut rejected = call(&mut svc, 9).await;
    assert_eq!(
        reason(assert_ready_err!(rejected.poll())),
        FullReason::QueueFull
    );

    sends.remove(0).send_response(0);
    assert_ready_ok!(calls[0].poll());
    assert_eq!(bh.in_flight(), 0);
    let mut admitted = call(&mut svc, 10).await;
    assert_pending!(admitted.poll());
    assert_eq!(received(&mut handle).unwrap().0, 10);
}

#[test]
fn set_max_concurrent_checks_the_value() {
    let layer = BulkheadLayer::new(4).unwrap();
    let bh = layer.handle();
    let err = bh.set_max_concurrent(0).unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    assert_eq!(bh.max_concurrent(), 4, "a bad value leaves the limit alone");
    bh.set_max_concurrent(7).unwrap();
    assert_eq!(bh.max_concurrent(), 7);
}

// --- the tracing event ---

#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Collect(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Collect {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            fields,
        });
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejection_emits_a_debug_event() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(Collect(seen.clone())),
    );
    let layer = BulkheadLayer::builder(1)
        .max_wait(WAIT)
        .name("payments")
        .build()
        .unwrap();
    let (mut svc, _handle) = service(&layer);
    let mut a = call(&mut svc, 1).await;
    assert_pending!(a.poll());
    assert!(
        seen.lock().unwrap().is_empty(),
        "an admission made an event"
    );

    let mut b = call(&mut svc, 2).await;
    assert_pending!(b.poll());
    advance(WAIT).await;
    assert_ready_err!(b.poll());

    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.level, Level::DEBUG);
    assert_eq!(e.target, "steadfast::bulkhead");
    assert_eq!(e.field("bulkhead"), Some("payments"));
    assert_eq!(e.field("reason"), Some("wait_timed_out"));
    assert_eq!(e.field("max_concurrent"), Some("1"));
    assert_eq!(e.field("waited_ms"), Some("100"));
}
