//! [`Collect`](crate::metrics::Collect) for the preset's handle and
//! snapshot: every piece's samples, and the keyed breakers' own.

use crate::circuit_breaker::collect::LAYER as CIRCUIT_BREAKER;
use crate::metrics::export::CIRCUIT_KEYS;
use crate::metrics::{Collect, Samples};

use super::{ResilienceHandle, ResilienceSnapshot};

/// `keyed_name`: the name of the keyed breakers (their snapshot has none).
fn collect(out: &mut Samples, s: &ResilienceSnapshot, keyed_name: &str) {
    if let Some(fb) = &s.fallback {
        fb.collect(out);
    }
    if let Some(m) = &s.metrics {
        m.collect(out);
    }
    if let Some(l) = &s.rate_limit {
        l.collect(out);
    }
    if let Some(r) = &s.retry {
        r.collect(out);
    }
    if let Some(h) = &s.hedge {
        h.collect(out);
    }
    if let Some(b) = &s.bulkhead {
        b.collect(out);
    }
    if let Some(b) = &s.circuit_breaker {
        b.collect(out);
    }
    if let Some(k) = &s.keyed_circuit_breakers {
        out.gauge(&CIRCUIT_KEYS, &[keyed_name], k.keys as f64);
        out.events(
            CIRCUIT_BREAKER,
            keyed_name,
            &[("overflowed", k.overflowed), ("evicted", k.evicted)],
        );
    }
}

impl Collect for ResilienceSnapshot {
    fn collect(&self, out: &mut Samples) {
        collect(out, self, "");
    }
}

impl Collect for ResilienceHandle {
    fn collect(&self, out: &mut Samples) {
        let keyed_name = self
            .keyed_circuit_breakers()
            .map(|k| k.overflow().name().unwrap_or("").to_owned());
        collect(out, &self.snapshot(), keyed_name.as_deref().unwrap_or(""));
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::bulkhead::BulkheadLayer;
    use crate::chaos::FaultLayer;
    use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    use crate::metrics::export::EVENTS;
    use crate::metrics::MetricsLayer;
    use crate::retry::{RetryConfig, RetryLayer};

    /// The `(layer, event)` pairs the events table of the metrics module
    /// docs lists.
    fn documented_events() -> BTreeSet<(String, String)> {
        let docs = include_str!("../metrics/mod.rs");
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
        let bulkhead = BulkheadLayer::new(1).unwrap();
        bulkhead.handle().collect(&mut out);
        crate::adaptive::AdaptiveLimitLayer::new(
            bulkhead.handle(),
            crate::adaptive::Gradient::new(),
        )
        .unwrap()
        .handle()
        .collect(&mut out);
        crate::hedge::HedgeLayer::new(crate::hedge::HedgeConfig::default())
            .handle()
            .collect(&mut out);
        let every_second = std::time::Duration::from_secs(1);
        crate::rate_limit::RateLimitLayer::new(1, every_second)
            .unwrap()
            .handle()
            .collect(&mut out);
        crate::rate_limit::KeyedRateLimitLayer::builder(1, every_second, |_: &()| ())
            .build()
            .unwrap()
            .handle()
            .collect(&mut out);
        crate::fallback::FallbackLayer::new(|_: crate::fallback::Failed<'_, ()>| Ok(()))
            .pair()
            .1
            .collect(&mut out);
        FaultLayer::<()>::builder()
            .seed(1)
            .build()
            .unwrap()
            .handle()
            .collect(&mut out);
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
}
