//! [`Collect`](crate::metrics::Collect) for the bulkhead's handle and
//! snapshot: what the exporters write for it (the families and events are
//! listed in the [`metrics`](crate::metrics#metric-families) module docs).

use super::{BulkheadHandle, BulkheadSnapshot};
use crate::metrics::export::{collect_with, BULKHEAD_LIMIT, BULKHEAD_WAITING, IN_FLIGHT};
use crate::metrics::Samples;

/// The `layer` label of the bulkhead's samples.
const LAYER: &str = "bulkhead";

fn collect(out: &mut Samples, s: &BulkheadSnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.events(
        LAYER,
        name,
        &[
            ("admitted", s.admitted),
            ("waited", s.waited),
            ("rejected_queue_full", s.rejected_queue_full),
            ("rejected_wait_timed_out", s.rejected_wait_timed_out),
            ("cancelled_waiting", s.cancelled_waiting),
        ],
    );
    out.gauge(&IN_FLIGHT, &[LAYER, name], s.in_flight as f64);
    out.gauge(&BULKHEAD_WAITING, &[name], s.waiting as f64);
    out.gauge(&BULKHEAD_LIMIT, &[name], s.max_concurrent as f64);
}

collect_with!(collect: BulkheadSnapshot, BulkheadHandle);
