//! `Registry::publish`: the `metrics` facade receives the documented
//! metrics (the debugging recorder of `metrics-util`).

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Mutex;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use steadfast::metrics::{families, Kind, MetricsLayer, Registry};
use tower::{service_fn, Layer, ServiceExt};

use crate::scenario::{run, stack, Call};

/// A metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What the recorder holds, by name and sorted labels; reading it drains
/// the counters, gauges and histograms.
#[derive(Debug, Default)]
struct Seen {
    values: BTreeMap<Series, (MetricKind, DebugValue)>,
    described: BTreeMap<String, (Option<Unit>, String)>,
}

impl Seen {
    fn read(snapshotter: &Snapshotter) -> Self {
        let mut seen = Self::default();
        for (key, unit, help, value) in snapshotter.snapshot().into_vec() {
            let name = key.key().name().to_owned();
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            if let Some(help) = help {
                seen.described
                    .insert(name.clone(), (unit, help.to_string()));
            }
            let old = seen.values.insert((name, labels), (key.kind(), value));
            assert!(old.is_none(), "{key:?} twice");
        }
        seen
    }

    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> &DebugValue {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        &self
            .values
            .get(&(name.to_owned(), labels.clone()))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", self.values.keys()))
            .1
    }

    #[track_caller]
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            DebugValue::Counter(n) => *n,
            v => panic!("{name}: {v:?}"),
        }
    }

    #[track_caller]
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            DebugValue::Gauge(v) => v.into_inner(),
            v => panic!("{name}: {v:?}"),
        }
    }

    #[track_caller]
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, labels) {
            DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect(),
            v => panic!("{name}: {v:?}"),
        }
    }
}

/// Forwards to the debugging recorder and notes every `describe_*` call.
#[derive(Debug, Default)]
struct Counting {
    inner: DebuggingRecorder,
    described: Mutex<Vec<String>>,
}

impl Counting {
    fn note(&self, name: &KeyName) {
        self.described
            .lock()
            .unwrap()
            .push(name.as_str().to_owned());
    }
}

impl Recorder for Counting {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.note(&key);
        self.inner.describe_counter(key, unit, help);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.note(&key);
        self.inner.describe_gauge(key, unit, help);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.note(&key);
        self.inner.describe_histogram(key, unit, help);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

/// `a` is within the histogram's 3.125 % of `b`.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= b / 32.0
}

#[tokio::test(start_paused = true)]
async fn the_facade_receives_every_documented_metric() {
    let recorder = Counting::default();
    let snapshotter = recorder.inner.snapshotter();
    let (svc, registry) = stack("inventory");
    run(&svc).await;
    metrics::with_local_recorder(&recorder, || registry.publish());
    metrics::with_local_recorder(&recorder, || registry.publish());
    let seen = Seen::read(&snapshotter);

    // Every family described once, over two publishes.
    let mut described = recorder.described.lock().unwrap().clone();
    described.sort_unstable();
    let mut all: Vec<String> = families()
        .iter()
        .map(|f| f.otel_name().to_owned())
        .collect();
    all.sort_unstable();
    assert_eq!(described, all);
    // With its unit and help (the recorder shows those of the metrics it saw).
    assert_eq!(seen.described.len(), 8);
    for family in families() {
        let Some((unit, help)) = seen.described.get(family.otel_name()) else {
            continue;
        };
        assert_eq!(help, family.help(), "{}", family.otel_name());
        let want = match family.unit() {
            "s" => Some(Unit::Seconds),
            "1" => None,
            _ => Some(Unit::Count),
        };
        assert_eq!(*unit, want, "{}", family.otel_name());
    }
    // Every sample under the family's name, kind and labels.
    for ((name, labels), (kind, _)) in &seen.values {
        let family = families()
            .iter()
            .find(|f| f.otel_name() == name)
            .unwrap_or_else(|| panic!("undocumented {name}"));
        let want = match family.kind() {
            Kind::Counter => MetricKind::Counter,
            Kind::Gauge => MetricKind::Gauge,
            _ => MetricKind::Histogram,
        };
        assert_eq!(*kind, want, "{name}");
        let mut keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        let mut documented = family.labels().to_vec();
        keys.sort_unstable();
        documented.sort_unstable();
        assert_eq!(keys, documented, "{name}");
    }

    let n = ("name", "inventory");
    let calls = |layer, outcome| {
        seen.counter(
            "resilience.calls",
            &[("layer", layer), n, ("outcome", outcome)],
        )
    };
    assert_eq!(
        [
            ("metrics", "success"),
            ("metrics", "failure"),
            ("metrics", "ignored")
        ]
        .map(|(l, o)| calls(l, o)),
        [1, 1, 1]
    );
    assert_eq!(calls("circuit_breaker", "failure"), 3);
    let event = |layer, event| {
        seen.counter(
            "resilience.events",
            &[("layer", layer), n, ("event", event)],
        )
    };
    assert_eq!(event("circuit_breaker", "opened"), 1);
    assert_eq!(event("metrics", "rejected_circuit_open"), 1);
    assert_eq!(event("bulkhead", "admitted"), 5);
    assert_eq!(
        seen.counter(
            "resilience.events",
            &[("layer", "retry"), ("name", ""), ("event", "exhausted")]
        ),
        1
    );
    assert_eq!(
        seen.counter("resilience.retry.attempts", &[("name", "")]),
        5
    );
    assert_eq!(
        seen.gauge("resilience.circuit.state", &[n, ("state", "open")]),
        1.0
    );
    assert_eq!(
        seen.gauge("resilience.circuit.state", &[n, ("state", "closed")]),
        0.0
    );
    assert_eq!(seen.gauge("resilience.bulkhead.limit", &[n]), 4.0);
    assert_eq!(
        seen.gauge("resilience.in_flight", &[("layer", "metrics"), n]),
        0.0
    );
    let mut durations = seen.histogram("resilience.call.duration", &[n]);
    durations.sort_by(f64::total_cmp);
    assert_eq!(durations.len(), 3, "{durations:?}");
    for (got, want) in durations.iter().zip([0.002, 0.014, 0.018]) {
        assert!(close(*got, want), "{got} for {want}");
    }
}

#[tokio::test(start_paused = true)]
async fn histograms_get_only_what_was_recorded_since_the_last_publish() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (svc, registry) = stack("inventory");
    let n = [("name", "inventory")];
    let publish = || {
        metrics::with_local_recorder(&recorder, || registry.publish());
        Seen::read(&snapshotter)
    };
    run(&svc).await;
    assert_eq!(publish().histogram("resilience.call.duration", &n).len(), 3);

    // Nothing new: counters still at their totals, no new durations.
    let seen = publish();
    assert_eq!(
        seen.histogram("resilience.call.duration", &n),
        Vec::<f64>::new()
    );
    assert_eq!(
        seen.counter(
            "resilience.calls",
            &[("layer", "metrics"), n[0], ("outcome", "success")]
        ),
        1
    );

    // One more call: one more duration; the counters' totals move on.
    let _ = svc.clone().oneshot(Call::Ok(250)).await;
    let seen = publish();
    let durations = seen.histogram("resilience.call.duration", &n);
    assert_eq!(durations.len(), 1);
    // Rejected by the open breaker: no time passes behind it.
    assert!(durations[0] < 0.001, "{durations:?}");
    assert_eq!(
        seen.counter(
            "resilience.calls",
            &[("layer", "metrics"), n[0], ("outcome", "ignored")]
        ),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn publish_every_publishes_on_tokio_time() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (metrics_layer, handle) = MetricsLayer::new("ticks");
    let registry = Registry::new();
    registry.register(handle);
    let svc = metrics_layer.layer(service_fn(|_: ()| async {
        Ok::<_, steadfast::BoxError>(())
    }));
    let task = tokio::spawn(registry.publish_every(Duration::from_secs(10)));
    let success = |seen: &Seen| {
        seen.counter(
            "resilience.calls",
            &[
                ("layer", "metrics"),
                ("name", "ticks"),
                ("outcome", "success"),
            ],
        )
    };

    // The first tick is at once.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(success(&Seen::read(&snapshotter)), 0);
    svc.clone().oneshot(()).await.unwrap();
    svc.clone().oneshot(()).await.unwrap();
    // Not yet published.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(success(&Seen::read(&snapshotter)), 0);
    // The next tick, 10 s after the first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = Seen::read(&snapshotter);
    assert_eq!(success(&seen), 2);
    assert_eq!(
        seen.histogram("resilience.call.duration", &[("name", "ticks")])
            .len(),
        2
    );
    task.abort();
}
