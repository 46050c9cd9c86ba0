//! [`Collect`](crate::metrics::Collect) for the hedge layer's handle and
//! snapshot: what the exporters write for it (the families and events are
//! listed in the [`metrics`](crate::metrics#metric-families) module docs).

use super::{HedgeHandle, HedgeSnapshot};
use crate::metrics::export::{collect_with, HEDGE_DELAY, RETRY_BUDGET_AVAILABLE};
use crate::metrics::Samples;

/// The `layer` label of the hedge layer's samples.
const LAYER: &str = "hedge";

fn collect(out: &mut Samples, s: &HedgeSnapshot) {
    let name = s.name.as_deref().unwrap_or("");
    out.events(
        LAYER,
        name,
        &[
            ("call", s.calls),
            ("hedge", s.hedges),
            ("hedge_won", s.hedges_won),
            ("budget_refused", s.refused_by_budget),
            ("deadline_reached", s.deadline_reached),
            ("skipped_unsafe", s.skipped_unsafe),
            ("skipped_unreplayable", s.skipped_unreplayable),
        ],
    );
    out.gauge(&HEDGE_DELAY, &[name], s.delay.as_secs_f64());
    if let Some(budget) = &s.budget {
        out.gauge(&RETRY_BUDGET_AVAILABLE, &[name], budget.available as f64);
    }
}

collect_with!(collect: HedgeSnapshot, HedgeHandle);
