//! [`Collect`](super::Collect) for the metrics layer's handle and snapshot. Each layer
//! writes its own samples the same way, in its `collect.rs`; the families
//! and events are listed in the [module docs](crate::metrics#metric-families).

use super::export::{collect_with, CALL_DURATION, IN_FLIGHT};
use super::handle::{MetricsHandle, MetricsSnapshot};
use super::{Samples, Value};

/// The `layer` label of the metrics layer's samples.
const LAYER: &str = "metrics";

fn collect(out: &mut Samples, s: &MetricsSnapshot) {
    let name: &str = &s.name;
    out.calls(
        LAYER,
        name,
        [s.successes, s.failures, s.ignored, s.cancelled],
    );
    out.events(
        LAYER,
        name,
        &[
            ("rejected_circuit_open", s.rejected_circuit_open),
            ("rejected_bulkhead_full", s.rejected_bulkhead_full),
            ("rejected_rate_limited", s.rejected_rate_limited),
            ("deadline_exceeded", s.deadline_exceeded),
            ("timed_out", s.timed_out),
        ],
    );
    out.gauge(&IN_FLIGHT, &[LAYER, name], s.in_flight as f64);
    out.push(
        &CALL_DURATION,
        &[name],
        Value::Histogram(s.duration.clone()),
    );
}

collect_with!(collect: MetricsSnapshot, MetricsHandle);
