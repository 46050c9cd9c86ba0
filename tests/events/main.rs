//! The `tracing` events a breaker emits on transitions.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use tower::{service_fn, Layer, ServiceExt};
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

#[test]
fn transitions_emit_events_with_stable_fields() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Collect(seen.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let config = CircuitBreakerConfig::builder()
                .name("products")
                .without_failure_rate()
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(1))
                .open_jitter(0.0)
                .build()
                .unwrap();
            let layer = CircuitBreakerLayer::new(config);
            let fail = layer.layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
            let ok = layer.layer(service_fn(|_: ()| async { Ok::<_, &str>(()) }));
            let _ = fail.oneshot(()).await;
            tokio::time::advance(Duration::from_secs(1)).await;
            ok.oneshot(()).await.unwrap();
        });
    });

    let seen = seen.lock().unwrap();
    let transitions: Vec<&Seen> = seen
        .iter()
        .filter(|e| e.target == "steadfast::circuit_breaker")
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
        assert_eq!(event.field("from"), Some(from));
        assert_eq!(event.field("to"), Some(to));
        assert!(event.field("reason").is_some());
    }
    assert_eq!(transitions[0].field("open_for"), Some("Some(1s)"));
}
