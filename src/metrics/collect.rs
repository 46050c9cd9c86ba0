//! [`Collect`] for every layer's handle and snapshot: the one place that
//! reads snapshot fields for the exporters, one function per snapshot type.
//!
//! The `layer` label is the module's name; `name` the instance's name, ""
//! when it has none; `event` is one of the names listed in the module docs
//! of [`metrics`](crate::metrics#events).

use std::sync::Arc;

use super::export::{
    Collect, Samples, Value, ATTEMPT_DURATION, BULKHEAD_LIMIT, BULKHEAD_WAITING, CALLS,
    CALL_DURATION, CIRCUIT_FAILURE_RATE, CIRCUIT_KEYS, CIRCUIT_SLOW_CALL_RATE, CIRCUIT_STATE,
    EVENTS, IN_FLIGHT, RETRY_ATTEMPTS, RETRY_BUDGET_AVAILABLE,
};
use super::handle::{MetricsHandle, MetricsSnapshot};
use crate::bulkhead::{BulkheadHandle, BulkheadSnapshot};
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerSnapshot, CircuitState};
use crate::retry::{RetryHandle, RetrySnapshot};
use crate::stack::{ResilienceHandle, ResilienceSnapshot};

/// The `layer` label of each layer.
pub(crate) mod layer {
    pub(crate) const METRICS: &str = "metrics";
    pub(crate) const CIRCUIT_BREAKER: &str = "circuit_breaker";
    pub(crate) const RETRY: &str = "retry";
    pub(crate) const BULKHEAD: &str = "bulkhead";
    #[cfg(feature = "http")]
    pub(crate) const IDEMPOTENCY: &str = "idempotency";
}

/// A snapshot's name as a label value, whichever way the snapshot keeps it.
trait AsName {
    fn as_name(&self) -> &str;
}

impl AsName for Arc<str> {
    fn as_name(&self) -> &str {
        self
    }
}

impl AsName for Option<String> {
    fn as_name(&self) -> &str {
        self.as_deref().unwrap_or("")
    }
}

impl AsName for Option<Arc<str>> {
    fn as_name(&self) -> &str {
        self.as_deref().unwrap_or("")
    }
}

/// Writes the `resilience.events` counters of one layer instance.
fn events(out: &mut Samples, layer: &str, name: &str, counts: &[(&str, u64)]) {
    for (event, n) in counts {
        out.counter(&EVENTS, &[layer, name, event], *n);
    }
}

/// Writes the `resilience.calls` counters of one layer instance:
/// successes, failures, ignored, cancelled.
fn calls(out: &mut Samples, layer: &str, name: &str, counts: [u64; 4]) {
    for (outcome, n) in ["success", "failure", "ignored", "cancelled"]
        .into_iter()
        .zip(counts)
    {
        out.counter(&CALLS, &[layer, name, outcome], n);
    }
}

/// `Collect` for a snapshot type and its handle, through the snapshot's
/// adapter.
macro_rules! collect_with {
    ($adapter:ident: $snapshot:ty, $handle:ty) => {
        impl Collect for $snapshot {
            fn collect(&self, out: &mut Samples) {
                $adapter(out, self);
            }
        }

        impl Collect for $handle {
            fn collect(&self, out: &mut Samples) {
                $adapter(out, &self.snapshot());
            }
        }
    };
}

// === MetricsLayer ===

fn metrics(out: &mut Samples, s: &MetricsSnapshot) {
    let (layer, name) = (layer::METRICS, s.name.as_name());
    calls(
        out,
        layer,
        name,
        [s.successes, s.failures, s.ignored, s.cancelled],
    );
    events(
        out,
        layer,
        name,
        &[
            ("rejected_circuit_open", s.rejected_circuit_open),
            ("rejected_bulkhead_full", s.rejected_bulkhead_full),
            ("deadline_exceeded", s.deadline_exceeded),
            ("timed_out", s.timed_out),
        ],
    );
    out.gauge(&IN_FLIGHT, &[layer, name], s.in_flight as f64);
    out.push(
        &CALL_DURATION,
        &[name],
        Value::Histogram(s.duration.clone()),
    );
}

collect_with!(metrics: MetricsSnapshot, MetricsHandle);

// === CircuitBreaker ===

/// The states written as `resilience.circuit.state`, one series each.
const STATES: [CircuitState; 5] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::ForcedOpen,
    CircuitState::Disabled,
];

fn circuit_breaker(out: &mut Samples, s: &CircuitBreakerSnapshot) {
    let (layer, name) = (layer::CIRCUIT_BREAKER, s.name.as_name());
    calls(
        out,
        layer,
        name,
        [s.successes, s.failures, s.ignored, s.cancelled],
    );
    events(
        out,
        layer,
        name,
        &[
            ("rejected", s.rejected),
            ("slow_call", s.slow_calls),
            ("late", s.late),
            ("opened", s.opened),
            ("half_opened", s.half_opened),
            ("closed", s.closed),
        ],
    );
    for state in STATES {
        let on = if state == s.state { 1.0 } else { 0.0 };
        out.gauge(&CIRCUIT_STATE, &[name, state.as_str()], on);
    }
    if !STATES.contains(&s.state) {
        out.gauge(&CIRCUIT_STATE, &[name, s.state.as_str()], 1.0);
    }
    if let Some(percent) = s.failure_rate {
        out.gauge(&CIRCUIT_FAILURE_RATE, &[name], percent / 100.0);
    }
    if let Some(percent) = s.slow_call_rate {
        out.gauge(&CIRCUIT_SLOW_CALL_RATE, &[name], percent / 100.0);
    }
}

collect_with!(circuit_breaker: CircuitBreakerSnapshot, CircuitBreakerHandle);

// === Retry ===

fn retry(out: &mut Samples, s: &RetrySnapshot) {
    let (layer, name) = (layer::RETRY, s.name.as_name());
    out.counter(&RETRY_ATTEMPTS, &[name], s.attempts);
    events(
        out,
        layer,
        name,
        &[
            ("retry", s.retries),
            ("budget_refused", s.refused_by_budget),
            ("skipped_unsafe", s.skipped_unsafe),
            ("skipped_unreplayable", s.skipped_unreplayable),
            ("exhausted", s.exhausted),
            ("deadline_reached", s.deadline_reached),
            ("server_hint", s.server_hint),
        ],
    );
    if let Some(budget) = &s.budget {
        out.gauge(&RETRY_BUDGET_AVAILABLE, &[name], budget.available as f64);
    }
    if let Some(attempts) = &s.attempt_duration {
        out.push(
            &ATTEMPT_DURATION,
            &[name],
            Value::Histogram(attempts.clone()),
        );
    }
}

collect_with!(retry: RetrySnapshot, RetryHandle);

// === Bulkhead ===

fn bulkhead(out: &mut Samples, s: &BulkheadSnapshot) {
    let (layer, name) = (layer::BULKHEAD, s.name.as_name());
    events(
        out,
        layer,
        name,
        &[
            ("admitted", s.admitted),
            ("waited", s.waited),
            ("rejected_queue_full", s.rejected_queue_full),
            ("rejected_wait_timed_out", s.rejected_wait_timed_out),
            ("cancelled_waiting", s.cancelled_waiting),
        ],
    );
    out.gauge(&IN_FLIGHT, &[layer, name], s.in_flight as f64);
    out.gauge(&BULKHEAD_WAITING, &[name], s.waiting as f64);
    out.gauge(&BULKHEAD_LIMIT, &[name], s.max_concurrent as f64);
}

collect_with!(bulkhead: BulkheadSnapshot, BulkheadHandle);

// === Idempotency (server) ===

#[cfg(feature = "http")]
fn idempotency(out: &mut Samples, s: &crate::idempotency::IdempotencyStats) {
    events(
        out,
        layer::IDEMPOTENCY,
        s.name.as_name(),
        &[
            ("claim", s.claims),
            ("replay", s.replays),
            ("conflict", s.conflicts),
            ("mismatch", s.mismatches),
            ("store_error", s.store_errors),
            ("shed", s.shed),
            ("detached", s.detached),
            ("detached_timed_out", s.detached_timed_out),
            ("store_write_failure", s.store_write_failures),
            ("lease_renewal", s.lease_renewals),
            ("lease_lost", s.leases_lost),
        ],
    );
}

#[cfg(feature = "http")]
collect_with!(idempotency: crate::idempotency::IdempotencyStats, crate::idempotency::IdempotencyHandle);

// === The preset stack ===

/// `keyed_name`: the name of the keyed breakers (their snapshot has none).
fn resilience(out: &mut Samples, s: &ResilienceSnapshot, keyed_name: &str) {
    if let Some(r) = &s.retry {
        retry(out, r);
    }
    if let Some(b) = &s.bulkhead {
        bulkhead(out, b);
    }
    if let Some(b) = &s.circuit_breaker {
        circuit_breaker(out, b);
    }
    if let Some(k) = &s.keyed_circuit_breakers {
        out.gauge(&CIRCUIT_KEYS, &[keyed_name], k.keys as f64);
        events(
            out,
            layer::CIRCUIT_BREAKER,
            keyed_name,
            &[("overflowed", k.overflowed), ("evicted", k.evicted)],
        );
    }
}

impl Collect for ResilienceSnapshot {
    fn collect(&self, out: &mut Samples) {
        resilience(out, self, "");
    }
}

impl Collect for ResilienceHandle {
    fn collect(&self, out: &mut Samples) {
        let keyed_name = self
            .keyed_circuit_breakers()
            .map(|k| k.overflow().name().unwrap_or("").to_owned());
        resilience(out, &self.snapshot(), keyed_name.as_deref().unwrap_or(""));
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::bulkhead::BulkheadLayer;
    use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    use crate::metrics::MetricsLayer;
    use crate::retry::{RetryConfig, RetryLayer};

    /// The `(layer, event)` pairs the events table of the module docs lists.
    fn documented_events() -> BTreeSet<(String, String)> {
        let docs = include_str!("mod.rs");
        let table = docs
            .split("//! | layer | events |")
            .nth(1)
            .expect("the events table");
        table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("//! |"))
            .flat_map(|row| {
                let cells: Vec<&str> = row.split('|').collect();
                let layer = cells[1].trim().trim_matches('`').to_owned();
                // Every `code` span of the second cell up to a parenthesis.
                let events = cells[2].split('(').next().unwrap_or("");
                events
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|e| (layer.clone(), e.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn emitted_events(samples: &Samples) -> BTreeSet<(String, String)> {
        samples
            .iter()
            .filter(|s| std::ptr::eq(s.family(), &EVENTS))
            .map(|s| {
                let get = |l| s.label(l).unwrap().to_owned();
                (get("layer"), get("event"))
            })
            .collect()
    }

    #[test]
    fn every_event_is_documented_and_every_documented_event_is_emitted() {
        let mut out = Samples::new();
        MetricsLayer::new("m").1.collect(&mut out);
        CircuitBreakerLayer::new(CircuitBreakerConfig::default())
            .handle()
            .collect(&mut out);
        RetryLayer::new(RetryConfig::default())
            .handle()
            .collect(&mut out);
        BulkheadLayer::new(1).unwrap().handle().collect(&mut out);
        #[cfg(feature = "http")]
        {
            use crate::idempotency::{store::MemoryStore, IdempotencyLayer};
            IdempotencyLayer::new(MemoryStore::new())
                .handle()
                .collect(&mut out);
            let (_, stack) = crate::ResilienceLayer::http()
                .circuit_breaker_per_authority(CircuitBreakerConfig::builder())
                .build()
                .unwrap();
            stack.collect(&mut out);
        }
        let emitted = emitted_events(&out);
        let documented = documented_events();
        #[cfg(feature = "http")]
        assert_eq!(emitted, documented);
        #[cfg(not(feature = "http"))]
        assert!(emitted.is_subset(&documented), "{emitted:?}");
        assert!(documented.len() > 20, "{documented:?}");
    }

    #[test]
    fn circuit_state_is_one_for_the_current_state_only() {
        let handle = CircuitBreakerLayer::new(CircuitBreakerConfig::default()).handle();
        handle.force_open();
        let mut out = Samples::new();
        handle.collect(&mut out);
        let states: Vec<(String, f64)> = out
            .iter()
            .filter(|s| std::ptr::eq(s.family(), &CIRCUIT_STATE))
            .map(|s| match s.value() {
                Value::Gauge(v) => (s.label("state").unwrap().to_owned(), *v),
                v => panic!("{v:?}"),
            })
            .collect();
        assert_eq!(states.len(), 5);
        for (state, v) in states {
            assert_eq!(v, f64::from(u8::from(state == "forced_open")), "{state}");
        }
    }
}
