//! [`Collect`](crate::metrics::Collect) for the breaker's handle and
//! snapshot: what the exporters write for it (the families and events are
//! listed in the [`metrics`](crate::metrics#metric-families) module docs).

use super::{CircuitBreakerHandle, CircuitBreakerSnapshot, CircuitState};
use crate::metrics::export::{
    collect_with, CIRCUIT_FAILURE_RATE, CIRCUIT_SLOW_CALL_RATE, CIRCUIT_STATE,
};
use crate::metrics::Samples;

/// The `layer` label of the breaker's samples.
pub(crate) const LAYER: &str = "circuit_breaker";

/// The states written as `resilience.circuit.state`, one series each.
const STATES: [CircuitState; 5] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::ForcedOpen,
    CircuitState::Disabled,
];

fn collect(out: &mut Samples, s: &CircuitBreakerSnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.calls(
        LAYER,
        name,
        [s.successes, s.failures, s.ignored, s.cancelled],
    );
    out.events(
        LAYER,
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

collect_with!(collect: CircuitBreakerSnapshot, CircuitBreakerHandle);

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;
    use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    use crate::metrics::{Collect, Value};

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
