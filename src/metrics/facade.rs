//! The `metrics` facade exporter (feature `metrics`): publishes a
//! [`Registry`]'s snapshots to the installed recorder.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics::{Label, Unit};

use super::export::{families, Family, Kind, Sample, Value};
use super::histogram::HistogramSnapshot;
use super::Registry;

/// What the facade exporter remembers between publishes.
#[derive(Default)]
pub(super) struct State {
    described: AtomicBool,
    /// Each histogram series' snapshot as last published, keyed by family
    /// and label values.
    published: Mutex<HashMap<(&'static str, Vec<String>), HistogramSnapshot>>,
}

fn unit(family: &Family) -> Option<Unit> {
    match family.unit() {
        "s" => Some(Unit::Seconds),
        "1" => None,
        _ => Some(Unit::Count),
    }
}

fn describe() {
    for family in families() {
        let (name, help) = (family.otel_name(), family.help());
        match (family.kind(), unit(family)) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

fn labels(sample: &Sample) -> Vec<Label> {
    sample
        .labels()
        .map(|(k, v)| Label::new(k, v.to_owned()))
        .collect()
}

/// Records the values of `delta` as bucket midpoints, in seconds (the
/// overflow bucket as the maximum), with their counts.
fn record(histogram: &metrics::Histogram, delta: &HistogramSnapshot) {
    for (lower, upper, count) in delta.buckets() {
        let value = match upper {
            Some(upper) => lower + (upper - lower) / 2,
            None => delta.max(),
        };
        histogram.record_many(
            value.as_secs_f64(),
            usize::try_from(count).unwrap_or(usize::MAX),
        );
    }
}

impl Registry {
    /// Publishes every registered source's samples to the `metrics`
    /// recorder installed now (global or thread-local).
    ///
    /// Counters are set to their totals (`Counter::absolute`), gauges to
    /// their values, and each histogram is given the values recorded since
    /// the last publish, one per bucket midpoint (within 3.125 % of the
    /// true values) with its count. The first publish describes every
    /// metric (unit and help) once.
    ///
    /// The last published histograms are kept per registry: publish each
    /// series from one registry (and one registry from one task), or the
    /// recorder gets its durations more than once.
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn publish(&self) {
        let state = self.facade();
        if !state.described.swap(true, Ordering::Relaxed) {
            describe();
        }
        let samples = self.samples();
        let mut published = state
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (family, series) in samples.by_family() {
            let name = family.otel_name();
            for sample in &series {
                match sample.value() {
                    Value::Counter(n) => metrics::counter!(name, labels(sample)).absolute(*n),
                    Value::Gauge(v) => metrics::gauge!(name, labels(sample)).set(*v),
                    Value::Histogram(h) => {
                        let key = (
                            family.prometheus_name(),
                            sample.labels().map(|(_, v)| v.to_owned()).collect(),
                        );
                        let delta = match published.get(&key) {
                            Some(earlier) => h.since(earlier),
                            None => h.clone(),
                        };
                        if delta.count() > 0 {
                            record(&metrics::histogram!(name, labels(sample)), &delta);
                        }
                        published.insert(key, h.clone());
                    }
                }
            }
        }
    }

    /// [`publish`](Self::publish)es now and then every `period` (tokio
    /// time; a missed tick is skipped), forever: spawn it, and abort the
    /// task to stop.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use steadfast::metrics::{MetricsLayer, Registry};
    ///
    /// let (_layer, handle) = MetricsLayer::new("inventory");
    /// let registry = Registry::new();
    /// registry.register(handle);
    /// let task = tokio::spawn(registry.publish_every(Duration::from_secs(10)));
    /// # task.abort();
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// The future panics if `period` is zero, and outside a tokio runtime
    /// with the time driver.
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn publish_every(&self, period: Duration) -> impl Future<Output = ()> + Send + 'static {
        let registry = self.clone();
        async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                registry.publish();
            }
        }
    }
}
