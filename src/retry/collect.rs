//! [`Collect`](crate::metrics::Collect) for the retry layer's handle and
//! snapshot: what the exporters write for it (the families and events are
//! listed in the [`metrics`](crate::metrics#metric-families) module docs).

use super::{RetryHandle, RetrySnapshot};
use crate::metrics::export::{
    collect_with, ATTEMPT_DURATION, RETRY_ATTEMPTS, RETRY_BUDGET_AVAILABLE,
};
use crate::metrics::{Samples, Value};

/// The `layer` label of the retry layer's samples.
const LAYER: &str = "retry";

fn collect(out: &mut Samples, s: &RetrySnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.counter(&RETRY_ATTEMPTS, &[name], s.attempts);
    out.events(
        LAYER,
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

collect_with!(collect: RetrySnapshot, RetryHandle);
