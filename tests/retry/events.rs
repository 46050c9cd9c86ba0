//! The `tracing` events of the retry layer: one debug event per retry with
//! `attempt`, `reason` and `delay_ms`, and one when it stops retrying.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use steadfast::retry::{CloneRequest, RetryLayer, Verdict};
use steadfast::BoxError;
use tower::{Layer, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::harness::{down, flaky, ms, quick, Calls};

#[derive(Debug, Clone)]
struct Seen {
    level: Level,
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

/// Collects the events of target `steadfast::retry`.
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
        if event.metadata().target() != "steadfast::retry" {
            return;
        }
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// Installs the collector for this thread (the test's runtime is
/// current-thread) until the guard is dropped.
///
/// While only one dispatcher exists, tracing-core caches a callsite's
/// interest from the default of whichever thread hits it first: another
/// test's thread, with no subscriber, would switch the retry events off for
/// good. A second dispatcher kept alive for the whole run makes it compute
/// the interest from every registered dispatcher instead.
fn collect() -> (Arc<Mutex<Vec<Seen>>>, tracing::subscriber::DefaultGuard) {
    static KEEP: OnceLock<tracing::Dispatch> = OnceLock::new();
    KEEP.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Collect(seen.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    (seen, guard)
}

#[tokio::test(start_paused = true)]
async fn a_debug_event_per_retry() {
    let (seen, _guard) = collect();
    let calls = Calls::new();
    let svc = RetryLayer::new(quick().build().unwrap()).layer(flaky(2, &calls));
    assert_eq!(svc.oneshot(1).await.unwrap(), 3);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for (event, attempt) in seen.iter().zip(["2", "3"]) {
        assert_eq!(event.level, Level::DEBUG, "{event:?}");
        assert_eq!(event.field("message"), Some("retrying"), "{event:?}");
        assert_eq!(event.field("attempt"), Some(attempt), "{event:?}");
        assert_eq!(
            event.field("reason"),
            Some("retryable failure"),
            "{event:?}"
        );
        assert_eq!(event.field("delay_ms"), Some("100"), "{event:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_reason_and_delay_follow_the_verdict() {
    let (seen, _guard) = collect();
    let calls = Calls::new();
    let on = |res: &Result<u32, BoxError>| match res {
        Ok(_) => Verdict::Done,
        Err(_) => Verdict::RetryAfter(ms(1_250)),
    };
    let layer = RetryLayer::with_policy(quick().build().unwrap(), on, CloneRequest);
    assert_eq!(layer.layer(flaky(1, &calls)).oneshot(1).await.unwrap(), 2);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].field("attempt"), Some("2"));
    assert_eq!(seen[0].field("reason"), Some("server hint"));
    assert_eq!(seen[0].field("delay_ms"), Some("1250"));
}

#[tokio::test(start_paused = true)]
async fn giving_up_is_reported() {
    let (seen, _guard) = collect();
    let calls = Calls::new();
    let svc = RetryLayer::new(quick().max_attempts(2).build().unwrap()).layer(down(&calls));
    svc.oneshot(1).await.unwrap_err();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].field("message"), Some("retrying"));
    let last = &seen[1];
    assert_eq!(last.level, Level::DEBUG);
    assert_eq!(last.field("message"), Some("not retrying"));
    assert_eq!(last.field("attempts"), Some("2"));
    assert_eq!(last.field("reason"), Some("attempts exhausted"));
}
