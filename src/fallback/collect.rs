//! [`Collect`](crate::metrics::Collect) for the fallback's handle and
//! snapshot: its events in `resilience.events` (listed in the
//! [`metrics`](crate::metrics#events) module docs).

use super::{FallbackHandle, FallbackSnapshot};
use crate::metrics::export::collect_with;
use crate::metrics::Samples;

fn collect(out: &mut Samples, s: &FallbackSnapshot) {
    out.events(
        "fallback",
        "",
        &[
            ("served", s.served),
            ("failed", s.failed),
            ("declined", s.declined),
        ],
    );
}

collect_with!(collect: FallbackSnapshot, FallbackHandle);
