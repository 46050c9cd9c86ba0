//! [`Collect`](crate::metrics::Collect) for the server layer's handle and
//! stats: what the exporters write for it (the events are listed in the
//! [`metrics`](crate::metrics#events) module docs).

use super::{IdempotencyHandle, IdempotencyStats};
use crate::metrics::export::collect_with;
use crate::metrics::Samples;

/// The `layer` label of the idempotency layer's samples.
const LAYER: &str = "idempotency";

fn collect(out: &mut Samples, s: &IdempotencyStats) {
    out.events(
        LAYER,
        s.name.as_deref().unwrap_or(""),
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

collect_with!(collect: IdempotencyStats, IdempotencyHandle);
