//! [`Collect`](crate::metrics::Collect) for the rate limiter's handle and
//! snapshot: what the exporters write for it (the families and events are
//! listed in the [`metrics`](crate::metrics#metric-families) module docs).

use super::{KeyedRateLimitHandle, KeyedRateLimitSnapshot, RateLimitHandle, RateLimitSnapshot};
use crate::metrics::export::{
    collect_with, RATE_LIMIT_AVAILABLE, RATE_LIMIT_KEYS, RATE_LIMIT_WAITING,
};
use crate::metrics::Samples;

const LAYER: &str = "rate_limit";

fn collect(out: &mut Samples, s: &RateLimitSnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.events(
        LAYER,
        name,
        &[
            ("waited", s.waited),
            ("rejected", s.rejected),
            ("rejected_after_waiting", s.rejected_after_waiting),
            ("cancelled_waiting", s.cancelled_waiting),
        ],
    );
    out.gauge(&RATE_LIMIT_AVAILABLE, &[name], s.available as f64);
    out.gauge(&RATE_LIMIT_WAITING, &[name], s.waiting as f64);
}

collect_with!(collect: RateLimitSnapshot, RateLimitHandle);

fn collect_keyed(out: &mut Samples, s: &KeyedRateLimitSnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.events(
        LAYER,
        name,
        &[
            ("rejected", s.rejected),
            ("overflowed", s.overflowed),
            ("evicted", s.evicted),
        ],
    );
    out.gauge(&RATE_LIMIT_KEYS, &[name], s.keys as f64);
}

collect_with!(collect_keyed: KeyedRateLimitSnapshot, KeyedRateLimitHandle);
