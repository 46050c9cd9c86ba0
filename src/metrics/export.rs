//! What the exporters export: the table of metric [`Family`]s, the
//! [`Collect`] trait every handle implements, and the [`Samples`] it writes.

use std::fmt;
use std::time::Duration;

use super::histogram::HistogramSnapshot;

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A count that only goes up (since the layer was made).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of durations.
    Histogram,
}

impl Kind {
    /// The name Prometheus gives it: `counter`, `gauge`, `histogram`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How two series with the same labels (two handles with one name) add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merge {
    /// Counts, in-flight gauges, histograms: the sum.
    Sum,
    /// Rates: the highest.
    Max,
}

/// One metric family: its names in both exporters, its kind, unit and
/// labels. Every family is listed in [`families`] and in the table of the
/// [module docs](crate::metrics#metric-families).
#[derive(Debug)]
pub struct Family {
    otel: &'static str,
    prometheus: &'static str,
    kind: Kind,
    unit: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    merge: Merge,
}

impl Family {
    /// The OpenTelemetry-style name, used by the `metrics` exporter
    /// (`resilience.calls`).
    pub const fn otel_name(&self) -> &'static str {
        self.otel
    }

    /// The Prometheus name (`resilience_calls_total`); a histogram's samples
    /// add `_bucket`, `_sum` and `_count` to it.
    pub const fn prometheus_name(&self) -> &'static str {
        self.prometheus
    }

    /// Counter, gauge or histogram.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// The unit in UCUM as OpenTelemetry writes it: `s`, `1` (a ratio or a
    /// 0/1 flag), or a count in braces (`{call}`).
    pub const fn unit(&self) -> &'static str {
        self.unit
    }

    /// The label names, in the order the samples carry them (a histogram's
    /// `le` not included).
    pub const fn labels(&self) -> &'static [&'static str] {
        self.labels
    }

    /// One line on what it counts (the Prometheus `HELP`, the `metrics`
    /// description).
    pub const fn help(&self) -> &'static str {
        self.help
    }

    pub(crate) const fn merge(&self) -> Merge {
        self.merge
    }
}

/// Families are the same when their names are.
impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        self.prometheus == other.prometheus
    }
}

impl Eq for Family {}

macro_rules! families {
    ($($id:ident: $otel:literal, $prom:literal, $kind:ident, $unit:literal, [$($label:literal),*], $merge:ident, $help:literal;)*) => {
        $(
            pub(crate) static $id: Family = Family {
                otel: $otel,
                prometheus: $prom,
                kind: Kind::$kind,
                unit: $unit,
                labels: &[$($label),*],
                help: $help,
                merge: Merge::$merge,
            };
        )*
        static ALL: &[&Family] = &[$(&$id),*];
    };
}

families! {
    CALLS: "resilience.calls", "resilience_calls_total", Counter, "{call}", ["layer", "name", "outcome"], Sum,
        "Finished calls by outcome: success, failure, ignored (neither), cancelled (dropped before the result).";
    EVENTS: "resilience.events", "resilience_events_total", Counter, "{event}", ["layer", "name", "event"], Sum,
        "What the layers did: rejections, retries and give-ups by reason, transitions, sheds.";
    RETRY_ATTEMPTS: "resilience.retry.attempts", "resilience_retry_attempts_total", Counter, "{attempt}", ["name"], Sum,
        "Attempts the retry layer sent: first attempts and retries.";
    IN_FLIGHT: "resilience.in_flight", "resilience_in_flight", Gauge, "{call}", ["layer", "name"], Sum,
        "Calls started and not yet finished (metrics) or holding a slot (bulkhead).";
    BULKHEAD_WAITING: "resilience.bulkhead.waiting", "resilience_bulkhead_waiting", Gauge, "{call}", ["name"], Sum,
        "Calls waiting in the bulkhead's queue for a slot.";
    BULKHEAD_LIMIT: "resilience.bulkhead.limit", "resilience_bulkhead_limit", Gauge, "{call}", ["name"], Sum,
        "The bulkhead's limit on calls in flight.";
    CIRCUIT_STATE: "resilience.circuit.state", "resilience_circuit_state", Gauge, "1", ["name", "state"], Sum,
        "1 for the breaker's current state, 0 for the others.";
    CIRCUIT_FAILURE_RATE: "resilience.circuit.failure_rate", "resilience_circuit_failure_rate", Gauge, "1", ["name"], Max,
        "Failures over calls in the breaker's current window, 0 to 1; absent while the window is empty.";
    CIRCUIT_SLOW_CALL_RATE: "resilience.circuit.slow_call_rate", "resilience_circuit_slow_call_rate", Gauge, "1", ["name"], Max,
        "Slow calls over calls in the breaker's current window, 0 to 1; absent while the window is empty.";
    CIRCUIT_KEYS: "resilience.circuit.keys", "resilience_circuit_keys", Gauge, "{breaker}", ["name"], Sum,
        "Keys with a breaker of their own, for breakers kept one per key.";
    RETRY_BUDGET_AVAILABLE: "resilience.retry.budget.available", "resilience_retry_budget_available", Gauge, "{retry}", ["name"], Sum,
        "Retries the retry budget would allow now (for a hedge layer, hedges).";
    RATE_LIMIT_AVAILABLE: "resilience.rate_limit.available", "resilience_rate_limit_available", Gauge, "{call}", ["name"], Sum,
        "Calls the rate limiter would admit at once now.";
    RATE_LIMIT_WAITING: "resilience.rate_limit.waiting", "resilience_rate_limit_waiting", Gauge, "{call}", ["name"], Sum,
        "Calls waiting in the rate limiter's queue for their turn.";
    RATE_LIMIT_KEYS: "resilience.rate_limit.keys", "resilience_rate_limit_keys", Gauge, "{key}", ["name"], Sum,
        "Keys with a limit of their own, for rate limiters kept one per key.";
    HEDGE_DELAY: "resilience.hedge.delay", "resilience_hedge_delay_seconds", Gauge, "s", ["name"], Max,
        "The hedge layer's delay in force: the fixed delay, or the latest percentile estimate.";
    ADAPTIVE_LIMIT: "resilience.adaptive.limit", "resilience_adaptive_limit", Gauge, "{call}", ["name"], Sum,
        "The limit an adaptive limit last gave its bulkhead.";
    ADAPTIVE_RTT: "resilience.adaptive.rtt", "resilience_adaptive_rtt_seconds", Gauge, "s", ["name", "window"], Max,
        "An adaptive limit's round-trip estimates: short (recent average) and long (windowed minimum).";
    CALL_DURATION: "resilience.call.duration", "resilience_call_duration_seconds", Histogram, "s", ["name"], Sum,
        "How long finished calls took through the metrics layer, whatever the outcome.";
    ATTEMPT_DURATION: "resilience.attempt.duration", "resilience_attempt_duration_seconds", Histogram, "s", ["name"], Sum,
        "How long each attempt of the retry layer took.";
}

/// Every metric family the exporters know, in the order they write them.
pub fn families() -> &'static [&'static Family] {
    ALL
}

/// The `le` bounds of exported histograms, in seconds, as Prometheus
/// writes them; `+Inf` follows. Counts are read with
/// [`HistogramSnapshot::count_at_or_below`].
pub(crate) const BUCKET_BOUNDS: [(&str, Duration); 16] = [
    ("0.0005", Duration::from_micros(500)),
    ("0.001", Duration::from_millis(1)),
    ("0.0025", Duration::from_micros(2_500)),
    ("0.005", Duration::from_millis(5)),
    ("0.01", Duration::from_millis(10)),
    ("0.025", Duration::from_millis(25)),
    ("0.05", Duration::from_millis(50)),
    ("0.1", Duration::from_millis(100)),
    ("0.25", Duration::from_millis(250)),
    ("0.5", Duration::from_millis(500)),
    ("1", Duration::from_secs(1)),
    ("2.5", Duration::from_millis(2_500)),
    ("5", Duration::from_secs(5)),
    ("10", Duration::from_secs(10)),
    ("30", Duration::from_secs(30)),
    ("60", Duration::from_secs(60)),
];

/// Anything whose metrics can be exported: every layer's handle and
/// snapshot, a [`Registry`](super::Registry) of them.
///
/// `collect` writes the current values into `out`, one
/// [`Sample`] per series; it reads counters and takes no lock on any call
/// path. Object safe: a [`Registry`](super::Registry) keeps
/// `Arc<dyn Collect>`.
pub trait Collect: Send + Sync {
    /// Writes this source's samples into `out`.
    fn collect(&self, out: &mut Samples);
}

impl<T: Collect + ?Sized> Collect for &T {
    fn collect(&self, out: &mut Samples) {
        (**self).collect(out);
    }
}

impl<T: Collect + ?Sized> Collect for std::sync::Arc<T> {
    fn collect(&self, out: &mut Samples) {
        (**self).collect(out);
    }
}

/// `Collect` for a snapshot type and for its handle, through a function
/// `fn(&mut Samples, &Snapshot)`: each layer writes its own samples in its
/// `collect.rs`.
macro_rules! collect_with {
    ($adapter:path: $snapshot:ty, $handle:ty) => {
        impl $crate::metrics::Collect for $snapshot {
            fn collect(&self, out: &mut $crate::metrics::Samples) {
                $adapter(out, self);
            }
        }

        impl $crate::metrics::Collect for $handle {
            fn collect(&self, out: &mut $crate::metrics::Samples) {
                $adapter(out, &self.snapshot());
            }
        }
    };
}
pub(crate) use collect_with;

/// A sample's value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value (never NaN).
    Gauge(f64),
    /// A histogram of durations.
    Histogram(HistogramSnapshot),
}

/// One series at one moment: a family, its label values, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    family: &'static Family,
    values: Vec<String>,
    value: Value,
}

impl Sample {
    /// The family.
    pub fn family(&self) -> &'static Family {
        self.family
    }

    /// The labels, `(name, value)`, in the family's order.
    pub fn labels(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.family
            .labels
            .iter()
            .copied()
            .zip(self.values.iter().map(String::as_str))
    }

    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Adds `other`, a sample of the same series, into this one.
    fn absorb(&mut self, other: Value) {
        self.value = match (std::mem::replace(&mut self.value, Value::Counter(0)), other) {
            (Value::Counter(a), Value::Counter(b)) => Value::Counter(a.wrapping_add(b)),
            (Value::Gauge(a), Value::Gauge(b)) => Value::Gauge(match self.family.merge() {
                Merge::Sum => a + b,
                Merge::Max => a.max(b),
            }),
            (Value::Histogram(mut a), Value::Histogram(b)) => {
                a.merge(&b);
                Value::Histogram(a)
            }
            (a, _) => a,
        };
    }
}

/// The samples [`Collect::collect`] writes, in the order written.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    samples: Vec<Sample>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Collects every source into one set.
    pub fn from_sources(sources: &[&dyn Collect]) -> Self {
        let mut out = Self::new();
        for source in sources {
            source.collect(&mut out);
        }
        out
    }

    /// The samples, in the order written.
    pub fn iter(&self) -> std::slice::Iter<'_, Sample> {
        self.samples.iter()
    }

    /// How many samples were written.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// `true` when none was written.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds one sample; `values` are the label values in the family's
    /// order. A NaN gauge is dropped.
    pub(crate) fn push(&mut self, family: &'static Family, values: &[&str], value: Value) {
        debug_assert_eq!(values.len(), family.labels.len(), "{}", family.prometheus);
        debug_assert_eq!(
            family.kind,
            match value {
                Value::Counter(_) => Kind::Counter,
                Value::Gauge(_) => Kind::Gauge,
                Value::Histogram(_) => Kind::Histogram,
            },
            "{}",
            family.prometheus
        );
        if matches!(value, Value::Gauge(v) if v.is_nan()) {
            return;
        }
        self.samples.push(Sample {
            family,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            value,
        });
    }

    pub(crate) fn counter(&mut self, family: &'static Family, values: &[&str], n: u64) {
        self.push(family, values, Value::Counter(n));
    }

    pub(crate) fn gauge(&mut self, family: &'static Family, values: &[&str], v: f64) {
        self.push(family, values, Value::Gauge(v));
    }

    /// Writes the `resilience.events` counters of one layer instance: one
    /// `(event, count)` pair each.
    pub(crate) fn events(&mut self, layer: &str, name: &str, counts: &[(&str, u64)]) {
        for (event, n) in counts {
            self.counter(&EVENTS, &[layer, name, event], *n);
        }
    }

    /// Writes the `resilience.calls` counters of one layer instance:
    /// successes, failures, ignored, cancelled.
    pub(crate) fn calls(&mut self, layer: &str, name: &str, counts: [u64; 4]) {
        for (outcome, n) in ["success", "failure", "ignored", "cancelled"]
            .into_iter()
            .zip(counts)
        {
            self.counter(&CALLS, &[layer, name, outcome], n);
        }
    }

    /// The samples grouped by family, in the order of [`families`]; series
    /// with the same labels (two sources with one name) are added up
    /// (counters, histograms, count gauges) or the highest kept (rates).
    pub(crate) fn by_family(&self) -> Vec<(&'static Family, Vec<Sample>)> {
        let mut groups: Vec<(&'static Family, Vec<Sample>)> =
            ALL.iter().map(|f| (*f, Vec::new())).collect();
        for sample in &self.samples {
            let Some((_, series)) = groups
                .iter_mut()
                .find(|(f, _)| std::ptr::eq(*f, sample.family))
            else {
                continue;
            };
            match series.iter_mut().find(|s| s.values == sample.values) {
                Some(same) => same.absorb(sample.value.clone()),
                None => series.push(sample.clone()),
            }
        }
        groups.retain(|(_, series)| !series.is_empty());
        groups
    }
}

impl<'a> IntoIterator for &'a Samples {
    type Item = &'a Sample;
    type IntoIter = std::slice::Iter<'a, Sample>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    /// The families table of the module docs, one row per family, as the
    /// table above writes it.
    fn row(f: &Family) -> String {
        let labels: Vec<String> = f.labels().iter().map(|l| format!("`{l}`")).collect();
        format!(
            "//! | `{}` | `{}` | {} | `{}` | {} | {} |",
            f.otel_name(),
            f.prometheus_name(),
            f.kind(),
            f.unit(),
            labels.join(", "),
            f.help()
        )
    }

    #[test]
    fn collect_is_object_safe_and_the_registry_is_shareable() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<super::super::Registry>();
        shareable::<Samples>();
        let registry = super::super::Registry::new();
        let sources: [&dyn Collect; 1] = [&registry];
        assert!(Samples::from_sources(&sources).is_empty());
    }

    #[test]
    fn the_docs_table_is_the_families_table() {
        let docs = include_str!("mod.rs");
        let table: Vec<&str> = docs
            .split("//! | OpenTelemetry name | Prometheus name | type | unit | labels | what |")
            .nth(1)
            .expect("the families table")
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("//! |"))
            .collect();
        let expected: Vec<String> = families().iter().map(|f| row(f)).collect();
        assert_eq!(table, expected);
    }

    #[test]
    fn prometheus_names_follow_from_otel_names() {
        for f in families() {
            let mut name = f.otel_name().replace('.', "_");
            if f.unit() == "s" {
                name.push_str("_seconds");
            }
            if f.kind() == Kind::Counter {
                name.push_str("_total");
            }
            assert_eq!(f.prometheus_name(), name);
            assert!(f.otel_name().starts_with("resilience."));
            assert!(!f.help().contains('\n'));
        }
        let mut names: Vec<_> = families().iter().map(|f| f.otel_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), families().len(), "a name twice");
    }

    #[test]
    fn bucket_bounds_rise_and_read_as_their_durations() {
        for w in BUCKET_BOUNDS.windows(2) {
            assert!(w[0].1 < w[1].1);
        }
        for (text, d) in BUCKET_BOUNDS {
            assert_eq!(text.parse::<f64>().unwrap(), d.as_secs_f64(), "{text}");
        }
    }

    #[test]
    fn series_with_the_same_labels_add_up_and_rates_keep_the_highest() {
        let mut out = Samples::new();
        out.counter(&CALLS, &["metrics", "a", "success"], 2);
        out.counter(&CALLS, &["metrics", "a", "success"], 3);
        out.counter(&CALLS, &["metrics", "b", "success"], 7);
        out.gauge(&CIRCUIT_FAILURE_RATE, &["a"], 0.25);
        out.gauge(&CIRCUIT_FAILURE_RATE, &["a"], 0.5);
        out.gauge(&CIRCUIT_FAILURE_RATE, &["b"], f64::NAN);
        let groups = out.by_family();
        assert_eq!(groups.len(), 2);
        let values: Vec<Vec<&Value>> = groups
            .iter()
            .map(|(_, s)| s.iter().map(Sample::value).collect())
            .collect();
        assert_eq!(
            values,
            [
                vec![&Value::Counter(5), &Value::Counter(7)],
                vec![&Value::Gauge(0.5)]
            ]
        );
    }
}
