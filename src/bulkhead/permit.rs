//! What every service of one layer shares, and the guards that hold a slot.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::error::{BulkheadFull, FullReason};
use super::semaphore::Semaphore;
use crate::metrics::listener::Listeners;
use crate::metrics::{stripe_count, sum, thread_stripe, Count, Striped};

/// The state every service of one layer, and every clone, shares.
pub(crate) struct Shared {
    pub(crate) sem: Semaphore,
    pub(crate) stats: Striped<Stats>,
    pub(crate) name: Option<Arc<str>>,
    /// How long a call may wait for a slot; zero: not at all.
    pub(crate) max_wait: Duration,
    /// How many callers may wait at once (`usize::MAX`: no bound).
    pub(crate) max_waiting: usize,
    pub(crate) on_rejection: Listeners<Rejected>,
}

/// A call the bulkhead rejected, as given to the
/// [`on_rejection`](super::BulkheadBuilder::on_rejection) listeners.
#[derive(Debug, Clone)]
pub struct Rejected {
    name: Option<Arc<str>>,
    full: BulkheadFull,
}

impl Rejected {
    /// The bulkhead's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The rejection the caller gets: its reason, the limit, how long the
    /// call waited.
    pub fn error(&self) -> &BulkheadFull {
        &self.full
    }
    /// Why the call was rejected.
    pub fn reason(&self) -> FullReason {
        self.full.reason()
    }
}

/// Counters, one set per stripe.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) admitted: Count,
    pub(crate) waited: Count,
    pub(crate) queue_full: Count,
    pub(crate) wait_timed_out: Count,
    pub(crate) cancelled: Count,
}

/// Totals of [`Stats`].
pub(crate) struct Totals {
    pub(crate) admitted: u64,
    pub(crate) waited: u64,
    pub(crate) queue_full: u64,
    pub(crate) wait_timed_out: u64,
    pub(crate) cancelled: u64,
}

impl Shared {
    pub(crate) fn totals(&self) -> Totals {
        let s = &self.stats;
        Totals {
            admitted: sum(s, |c| &c.admitted),
            waited: sum(s, |c| &c.waited),
            queue_full: sum(s, |c| &c.queue_full),
            wait_timed_out: sum(s, |c| &c.wait_timed_out),
            cancelled: sum(s, |c| &c.cancelled),
        }
    }

    /// Counts with the calling thread's stripe.
    fn count(&self, field: impl Fn(&Stats) -> &Count) {
        let stripe = thread_stripe();
        field(self.stats.get(stripe)).incr(stripe);
    }

    /// Counts a call that got a slot on the slow path without waiting.
    fn count_admitted(&self) {
        self.count(|s| &s.admitted);
    }

    /// Counts a call that was handed a slot after waiting for it.
    pub(crate) fn count_waited(&self) {
        self.count(|s| &s.admitted);
        self.count(|s| &s.waited);
    }

    /// Counts, reports and builds a rejection.
    #[cold]
    #[inline(never)]
    pub(crate) fn reject(&self, reason: FullReason, waited: Duration) -> BulkheadFull {
        match reason {
            FullReason::QueueFull => self.count(|s| &s.queue_full),
            FullReason::WaitTimedOut => self.count(|s| &s.wait_timed_out),
        }
        let max_concurrent = self.sem.limit();
        tracing::debug!(
            target: "steadfast::bulkhead",
            layer = "bulkhead",
            name = self.name.as_deref().unwrap_or(""),
            event = "rejected",
            bulkhead = self.name.as_deref().unwrap_or(""),
            reason = reason.as_str(),
            max_concurrent,
            waiting = self.sem.waiting(),
            waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            "bulkhead rejected a call"
        );
        let full = BulkheadFull::new(reason, max_concurrent, waited);
        if !self.on_rejection.is_empty() {
            let event = Rejected {
                name: self.name.clone(),
                full: full.clone(),
            };
            self.on_rejection
                .call("bulkhead", self.name.as_deref(), &event);
        }
        full
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("max_concurrent", &self.sem.limit())
            .field("in_flight", &self.sem.in_flight())
            .field("waiting", &self.sem.waiting())
            .field("max_wait", &self.max_wait)
            .field("max_waiting", &self.max_waiting)
            .finish()
    }
}

/// What a permit holds on to: the shared state, through an `Arc` of its
/// own stripe, so that the per-call reference counts of two cores land on
/// different cache lines.
pub(crate) struct Node {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stripe: usize,
}

/// One [`Node`] per stripe.
pub(crate) struct Nodes(Arc<[Arc<Node>]>);

impl Clone for Nodes {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Nodes {
    pub(crate) fn new(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        Self(
            (0..stripe_count())
                .map(|stripe| {
                    Arc::new(Node {
                        shared: shared.clone(),
                        stripe,
                    })
                })
                .collect(),
        )
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0[0].shared
    }

    /// The calling thread's node.
    #[inline]
    pub(crate) fn local(&self) -> &Arc<Node> {
        match self.0.get(thread_stripe()) {
            Some(node) => node,
            None => &self.0[0],
        }
    }

    /// Takes a slot without waiting, if one is free and nobody queues for one.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let node = self.local();
        let shared = &node.shared;
        if shared.sem.try_acquire() {
            shared.stats.get(node.stripe).admitted.incr(node.stripe);
            Some(Permit { node: node.clone() })
        } else {
            None
        }
    }

    /// The permit for a slot the semaphore's slow path just took for the
    /// calling thread.
    pub(crate) fn acquired(&self) -> Permit {
        let node = self.local();
        node.shared.count_admitted();
        Permit { node: node.clone() }
    }
}

/// One slot of a bulkhead, held for as long as this value lives.
///
/// The bulkhead's response future holds it until the inner call finishes;
/// a [`HoldPermit`](super::HoldPermit) policy may move it into the response
/// (as `ReleaseOnBodyEnd`, feature `http`, does: into the body).
/// Dropping it frees the slot, for the oldest waiting caller if there is
/// one.
pub struct Permit {
    node: Arc<Node>,
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.node.shared.sem.release();
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bulkhead", &self.node.shared.name)
            .finish()
    }
}

/// A caller's place in the queue. Dropped while still queued, it leaves the
/// queue; dropped after being handed a slot it never used, it passes the
/// slot on.
pub(crate) struct Ticket {
    node: Option<Arc<Node>>,
    id: u64,
}

impl Ticket {
    pub(crate) fn new(node: Arc<Node>, id: u64) -> Self {
        Self {
            node: Some(node),
            id,
        }
    }

    /// Ready with the slot once the queue hands one over.
    ///
    /// Polling again after `Ready` is a bug in this crate, and answers `Pending`.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        let Some(node) = &self.node else {
            return Poll::Pending;
        };
        if node.shared.sem.poll_waiter(self.id, cx.waker()) {
            node.shared.count_waited();
            Poll::Ready(self.take_permit())
        } else {
            Poll::Pending
        }
    }

    /// Leaves the queue. `Some` if a slot had been handed over already: the
    /// call then goes ahead with it.
    pub(crate) fn cancel(&mut self) -> Option<Permit> {
        let node = self.node.as_ref()?;
        if node.shared.sem.cancel_waiter(self.id) {
            node.shared.count_waited();
            Some(self.take_permit())
        } else {
            self.node = None;
            None
        }
    }

    fn take_permit(&mut self) -> Permit {
        let node = self.node.take().expect("a ticket is spent once");
        Permit { node }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            let shared = &node.shared;
            if shared.sem.cancel_waiter(self.id) {
                // Handed a slot that will never be used: pass it on.
                shared.sem.release();
            }
            shared.count(|s| &s.cancelled);
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("spent", &self.node.is_none())
            .finish()
    }
}
