//! [`Collect`](crate::metrics::Collect) for the adaptive limit's handle and
//! snapshot (the families and events are listed in the
//! [`metrics`](crate::metrics#metric-families) module docs).

use super::{AdaptiveHandle, AdaptiveSnapshot};
use crate::metrics::export::{collect_with, ADAPTIVE_LIMIT, ADAPTIVE_RTT};
use crate::metrics::Samples;

/// The `layer` label of the adaptive limit's samples.
const LAYER: &str = "adaptive";

fn collect(out: &mut Samples, s: &AdaptiveSnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.events(
        LAYER,
        name,
        &[
            ("sample", s.samples),
            ("skipped", s.skipped),
            ("drop", s.drops),
        ],
    );
    out.gauge(&ADAPTIVE_LIMIT, &[name], s.limit as f64);
    if let Some(rtt) = s.short_rtt {
        out.gauge(&ADAPTIVE_RTT, &[name, "short"], rtt.as_secs_f64());
    }
    if let Some(rtt) = s.long_rtt {
        out.gauge(&ADAPTIVE_RTT, &[name, "long"], rtt.as_secs_f64());
    }
}

collect_with!(collect: AdaptiveSnapshot, AdaptiveHandle);
