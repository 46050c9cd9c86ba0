//! [`Collect`](crate::metrics::Collect) for the fault layer's handle and
//! snapshot: what it injected, as `resilience.events` (the events are
//! listed in the [`metrics`](crate::metrics#events) module docs). The
//! per-window counts stay in the snapshot.

use super::{FaultHandle, FaultSnapshot};
use crate::metrics::export::collect_with;
use crate::metrics::Samples;

/// The `layer` label of the fault layer's samples.
const LAYER: &str = "chaos";

fn collect(out: &mut Samples, s: &FaultSnapshot) {
    out.events(
        LAYER,
        s.name.as_deref().unwrap_or(""),
        &[
            ("passed", s.passed),
            ("delayed", s.delayed),
            ("injected_error", s.errors),
            ("injected_response", s.responses),
            ("hang", s.hangs),
            ("refused", s.refused),
            ("reset", s.reset),
        ],
    );
}

collect_with!(collect: FaultSnapshot, FaultHandle);
