//! The `tracing` events of every layer: one event per state change,
//! rejection, timeout, retry and give-up, with the stable fields `layer`,
//! `name`, `event` (and `state`, `attempt`, `delay_ms`, `reason` where they
//! apply).

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use tower::{service_fn, Layer, Service, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};

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

/// Runs `future` to its end on a new current-thread runtime whose clock
/// is paused.
fn block_on_paused<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs `body` on a paused current-thread runtime and returns every event
/// of a `steadfast::` target it emitted.
fn events_of<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) -> Vec<Seen> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Collect(seen.clone()));
    tracing::subscriber::with_default(subscriber, || block_on_paused(body()));
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|e| e.target.starts_with("steadfast::"))
        .cloned()
        .collect()
}

/// A breaker named "products" that opens for `open_secs` on one failure.
fn products_breaker(open_secs: u64) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .name("products")
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(open_secs))
        .open_jitter(0.0)
        .build()
        .unwrap()
}

/// Every event carries `layer`, `name` and `event`.
fn assert_stable(event: &Seen, layer: &str, name: &str, kind: &str) {
    assert_eq!(event.field("layer"), Some(layer), "{event:?}");
    assert_eq!(event.field("name"), Some(name), "{event:?}");
    assert_eq!(event.field("event"), Some(kind), "{event:?}");
}

#[test]
fn breaker_rejections_emit_one_debug_event() {
    let seen = events_of(|| async {
        let layer = CircuitBreakerLayer::new(products_breaker(5));
        let svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
        let _ = svc.clone().oneshot(()).await;
        let _ = svc.clone().oneshot(()).await;
    });
    let rejected: Vec<_> = seen
        .iter()
        .filter(|e| e.field("event") == Some("rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{seen:#?}");
    assert_stable(rejected[0], "circuit_breaker", "products", "rejected");
    assert_eq!(rejected[0].level, Level::DEBUG);
    assert_eq!(rejected[0].field("state"), Some("open"));
    assert_eq!(rejected[0].field("retry_after_ms"), Some("5000"));
}

#[test]
fn bulkhead_rejections_emit_one_debug_event() {
    let seen = events_of(|| async {
        let layer = BulkheadLayer::builder(1).name("db").build().unwrap();
        let mut svc = layer.layer(service_fn(|_: ()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::io::Error>(())
        }));
        let busy = svc.ready().await.unwrap().call(());
        let _ = svc.ready().await.unwrap().call(()).await;
        busy.await.unwrap();
    });
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_stable(&seen[0], "bulkhead", "db", "rejected");
    assert_eq!(seen[0].level, Level::DEBUG);
    assert_eq!(seen[0].field("reason"), Some("queue_full"));
}

#[test]
fn retries_and_give_ups_emit_one_event_each() {
    let seen = events_of(|| async {
        let config = RetryConfig::builder()
            .name("api")
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(100)))
            .build()
            .unwrap();
        let svc = RetryLayer::new(config).layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
        let _ = svc.oneshot(()).await;
    });
    let kinds: Vec<_> = seen.iter().map(|e| e.field("event").unwrap()).collect();
    assert_eq!(kinds, ["retry", "retry", "give_up"], "{seen:#?}");
    for (event, attempt) in seen.iter().zip(["2", "3", "3"]) {
        assert_stable(event, "retry", "api", event.field("event").unwrap());
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.field("attempt"), Some(attempt), "{event:?}");
    }
    assert_eq!(seen[0].field("delay_ms"), Some("100"));
    assert_eq!(seen[2].field("reason"), Some("attempts exhausted"));
}

#[cfg(feature = "http")]
#[test]
fn timeouts_and_deadlines_emit_one_event_each() {
    use steadfast::timeout::{DeadlineLayer, TimeoutLayer};
    let seen = events_of(|| async {
        let slow = || {
            service_fn(|_: http::Request<()>| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, std::io::Error>(())
            })
        };
        let timeout = TimeoutLayer::new(Duration::from_secs(1)).unwrap();
        let _ = timeout.layer(slow()).oneshot(http::Request::new(())).await;
        let deadline = DeadlineLayer::new(Duration::from_secs(2)).unwrap();
        let _ = deadline.layer(slow()).oneshot(http::Request::new(())).await;
    });
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_stable(&seen[0], "timeout", "", "timed_out");
    assert_eq!(seen[0].field("timeout_ms"), Some("1000"));
    assert_stable(&seen[1], "deadline", "", "timed_out");
    assert!(seen.iter().all(|e| e.level == Level::DEBUG));
}

#[test]
fn transitions_emit_events_with_stable_fields() {
    let seen = events_of(|| async {
        let layer = CircuitBreakerLayer::new(products_breaker(1));
        let fail = layer.layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
        let ok = layer.layer(service_fn(|_: ()| async { Ok::<_, &str>(()) }));
        let _ = fail.oneshot(()).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        ok.oneshot(()).await.unwrap();
    });

    let transitions: Vec<&Seen> = seen
        .iter()
        .filter(|e| e.target == "steadfast::circuit_breaker")
        .filter(|e| e.field("event") == Some("state_change"))
        .collect();
    assert_eq!(transitions.len(), 3, "{seen:#?}");
    let expect = [
        (Level::WARN, "closed", "open"),
        (Level::INFO, "open", "half_open"),
        (Level::INFO, "half_open", "closed"),
    ];
    for (event, (level, from, to)) in transitions.iter().zip(expect) {
        assert_eq!(event.level, level, "{event:?}");
        assert_eq!(event.field("breaker"), Some("products"));
        assert_stable(event, "circuit_breaker", "products", "state_change");
        assert_eq!(event.field("state"), Some(to));
        assert_eq!(event.field("from"), Some(from));
        assert_eq!(event.field("to"), Some(to));
        assert!(event.field("reason").is_some());
    }
    assert_eq!(transitions[0].field("open_for"), Some("Some(1s)"));
}

/// The idempotency server layer: a conflict, a mismatch and a replay each
/// emit one debug event with the stable fields and the layer's name.
#[cfg(feature = "http")]
#[test]
fn idempotency_conflicts_mismatches_and_replays_emit_one_event_each() {
    use bytes::Bytes;
    use http_body_util::Full;
    use steadfast::idempotency::store::MemoryStore;
    use steadfast::idempotency::{IdempotencyBody, IdempotencyLayer};

    fn keyed(body: &'static str) -> http::Request<Full<Bytes>> {
        http::Request::post("/orders")
            .header("idempotency-key", "\"k\"")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }
    let seen = events_of(|| async {
        let layer = IdempotencyLayer::builder(MemoryStore::new())
            .name("orders")
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(
            |_: http::Request<IdempotencyBody<Full<Bytes>>>| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            },
        ));
        let first = tokio::spawn(svc.clone().oneshot(keyed("one")));
        tokio::task::yield_now().await;
        let _ = svc.clone().oneshot(keyed("one")).await; // 409
        let _ = svc.clone().oneshot(keyed("two")).await; // 422
        first.await.unwrap().unwrap();
        let _ = svc.clone().oneshot(keyed("one")).await; // replayed
    });
    let kinds: Vec<&str> = seen.iter().filter_map(|e| e.field("event")).collect();
    assert_eq!(kinds, ["conflict", "mismatch", "replay"], "{seen:#?}");
    for event in &seen {
        assert_eq!(event.level, Level::DEBUG, "{event:?}");
        assert_eq!(event.target, "steadfast::idempotency");
        assert_stable(
            event,
            "idempotency",
            "orders",
            event.field("event").unwrap(),
        );
    }
}

/// `CallSpanLayer`: each call gets one `resilience.call` span with its
/// name, and the events the layers inside emit for the call nest in it.
#[test]
fn call_spans_hold_the_events_of_their_call() {
    use steadfast::metrics::CallSpanLayer;
    use tracing_subscriber::registry::LookupSpan;

    #[derive(Default)]
    struct Spans {
        /// `(span name, its `name` field)` of each new span.
        opened: Mutex<Vec<(String, String)>>,
        /// `(event, the name of the span it was in)` of each event.
        parents: Mutex<Vec<(String, Option<String>)>>,
    }
    struct Record(Arc<Spans>);
    impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Record {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            let name = fields.into_iter().find(|(k, _)| k == "name").unwrap().1;
            let span = attrs.metadata().name().to_owned();
            self.0.opened.lock().unwrap().push((span, name));
        }
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let mut fields = Vec::new();
            event.record(&mut Fields(&mut fields));
            let kind = fields.into_iter().find(|(k, _)| k == "event");
            let parent = ctx.event_span(event).map(|s| s.name().to_owned());
            if let Some((_, kind)) = kind {
                self.0.parents.lock().unwrap().push((kind, parent));
            }
        }
    }

    let spans = Arc::new(Spans::default());
    let subscriber = tracing_subscriber::registry().with(Record(spans.clone()));
    tracing::subscriber::with_default(subscriber, || {
        block_on_paused(async {
            let breaker = CircuitBreakerLayer::new(products_breaker(5));
            let svc = CallSpanLayer::new("products")
                .layer(breaker.layer(service_fn(|_: ()| async { Err::<(), _>("down") })));
            let _ = svc.clone().oneshot(()).await; // fails: the breaker opens
            let _ = svc.clone().oneshot(()).await; // rejected in `call`
        });
    });
    let opened = spans.opened.lock().unwrap().clone();
    assert_eq!(
        opened,
        [
            ("resilience.call".to_owned(), "products".to_owned()),
            ("resilience.call".to_owned(), "products".to_owned())
        ]
    );
    let parents = spans.parents.lock().unwrap().clone();
    let in_call = Some("resilience.call".to_owned());
    assert_eq!(
        parents,
        [
            ("state_change".to_owned(), in_call.clone()),
            ("rejected".to_owned(), in_call)
        ],
        "{parents:?}"
    );
}
