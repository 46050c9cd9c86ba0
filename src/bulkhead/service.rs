use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::{BulkheadFull, FullReason};
use super::future::ResponseFuture;
use super::permit::{Nodes, Permit, Ticket};
use super::policy::{HoldPermit, ReleaseOnResponse};
use super::semaphore::Admission;
use crate::deadline::Deadline;
use crate::deadline::{DeadlineOf, NoDeadline};
use crate::error::BoxError;
use crate::runtime;

pub(super) const LAYER: &str = "steadfast::bulkhead::Bulkhead";

/// A service whose calls in flight are limited; made by [`BulkheadLayer`].
///
/// See the [module docs](super) for the semantics.
///
/// # Clone
///
/// Clones share the limit: it belongs to the layer, and every service the
/// layer makes and every clone of those count against the same slots. In
/// the [`wait_in_poll_ready`](super::BulkheadLayer::wait_in_poll_ready)
/// mode, a clone starts without the slot its original may have reserved.
///
/// The inner service must be `Clone`: a call that waits in the queue takes
/// the readied inner service with it (leaving a clone in its place, which
/// the next `poll_ready` readies) and calls it once a slot is free.
///
/// # Backpressure
///
/// By default `poll_ready` is the inner service's, and a call that finds
/// every slot taken waits (up to `max_wait`) or fails in its response
/// future; with
/// [`wait_in_poll_ready`](super::BulkheadLayer::wait_in_poll_ready),
/// `poll_ready` does the waiting. See the module docs.
///
/// # Panics
///
/// With a non-zero [`max_wait`](super::BulkheadBuilder::max_wait), every
/// `call` panics, before calling the inner service, unless it runs within a
/// Tokio runtime with time enabled (a wait needs tokio's timer):
/// "steadfast::bulkhead::Bulkhead needs a Tokio runtime with time enabled
/// (…)" — on the first call, not when the slots first run out. A bulkhead
/// that never waits never needs a runtime.
/// When the check runs: the crate docs' "Time" section.
///
/// [`BulkheadLayer`]: super::BulkheadLayer
pub struct Bulkhead<S, D = NoDeadline, H = ReleaseOnResponse> {
    inner: S,
    nodes: Nodes,
    /// A non-zero `max_wait`: calls may wait, which needs tokio's timer.
    may_wait: bool,
    /// Only in the `wait_in_poll_ready` mode: boxed so the default mode pays
    /// one pointer for it.
    ready: Option<Box<ReadyWait>>,
    _policy: PhantomData<fn() -> (D, H)>,
}

/// The state of a service that waits in `poll_ready`.
struct ReadyWait {
    /// What `poll_ready` reserved for the next `call`.
    reserved: Option<Reserved>,
    /// The place in the queue while waiting.
    ticket: Option<Ticket>,
    /// When the current wait began.
    since: Instant,
    /// Ends the wait after `max_wait`; kept and reset between waits.
    sleep: Option<Pin<Box<Sleep>>>,
}

enum Reserved {
    Permit(Permit),
    Rejected(BulkheadFull),
}

impl ReadyWait {
    fn new() -> Box<Self> {
        Box::new(Self {
            reserved: None,
            ticket: None,
            since: Instant::now(),
            sleep: None,
        })
    }
}

/// Waits for a slot and reserves it, or reserves the rejection.
fn poll_reserve(wait: &mut ReadyWait, nodes: &Nodes, cx: &mut Context<'_>) -> Poll<()> {
    if wait.reserved.is_some() {
        return Poll::Ready(());
    }
    let shared = nodes.shared();
    if wait.ticket.is_none() {
        if let Some(permit) = nodes.try_acquire() {
            wait.reserved = Some(Reserved::Permit(permit));
            return Poll::Ready(());
        }
        if shared.max_wait.is_zero() {
            let full = shared.reject(FullReason::QueueFull, Duration::ZERO);
            wait.reserved = Some(Reserved::Rejected(full));
            return Poll::Ready(());
        }
        match shared
            .sem
            .acquire_or_enqueue(shared.max_waiting, cx.waker())
        {
            Admission::Acquired => {
                wait.reserved = Some(Reserved::Permit(nodes.acquired()));
                return Poll::Ready(());
            }
            Admission::Full => {
                let full = shared.reject(FullReason::QueueFull, Duration::ZERO);
                wait.reserved = Some(Reserved::Rejected(full));
                return Poll::Ready(());
            }
            Admission::Queued(id) => {
                let now = Instant::now();
                let until = Deadline::after_from(now, shared.max_wait).instant();
                wait.ticket = Some(Ticket::new(nodes.local().clone(), id));
                wait.since = now;
                match &mut wait.sleep {
                    Some(sleep) => sleep.as_mut().reset(until),
                    None => wait.sleep = Some(Box::pin(runtime::sleep_until(LAYER, until))),
                }
            }
        }
    }
    let Some(ticket) = &mut wait.ticket else {
        return Poll::Ready(());
    };
    // The queue first: a slot handed over as the wait runs out is taken.
    if let Poll::Ready(permit) = ticket.poll(cx) {
        wait.ticket = None;
        wait.reserved = Some(Reserved::Permit(permit));
        return Poll::Ready(());
    }
    let timed_out = match &mut wait.sleep {
        Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
        None => true,
    };
    if !timed_out {
        return Poll::Pending;
    }
    wait.reserved = Some(match ticket.cancel() {
        Some(permit) => Reserved::Permit(permit),
        None => {
            let waited = Instant::now().saturating_duration_since(wait.since);
            Reserved::Rejected(shared.reject(FullReason::WaitTimedOut, waited))
        }
    });
    wait.ticket = None;
    Poll::Ready(())
}

// === impl Bulkhead ===

impl<S, D, H> Bulkhead<S, D, H> {
    pub(crate) fn from_nodes(inner: S, nodes: Nodes, wait_in_poll_ready: bool) -> Self {
        Self {
            may_wait: !nodes.shared().max_wait.is_zero(),
            inner,
            nodes,
            ready: wait_in_poll_ready.then(ReadyWait::new),
            _policy: PhantomData,
        }
    }

    /// A handle on the bulkhead this service shares.
    pub fn handle(&self) -> super::BulkheadHandle {
        super::BulkheadHandle::new(self.nodes.shared().clone())
    }

    define_inner_service_accessors!();
}

impl<S: Clone, D, H> Clone for Bulkhead<S, D, H> {
    fn clone(&self) -> Self {
        // A clone starts without the slot `poll_ready` may have reserved.
        Self {
            inner: self.inner.clone(),
            nodes: self.nodes.clone(),
            may_wait: self.may_wait,
            ready: self.ready.as_ref().map(|_| ReadyWait::new()),
            _policy: PhantomData,
        }
    }
}

impl<S: fmt::Debug, D, H> fmt::Debug for Bulkhead<S, D, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("bulkhead", self.nodes.shared())
            .field("wait_in_poll_ready", &self.ready.is_some())
            .finish()
    }
}

fn refresh_deadline<D: DeadlineOf<Req> + Default, Req>(req: &mut Req, deadline: Deadline) {
    D::default().refresh(req, deadline);
}

/// Every slot is taken (or owed to waiters): reject, or join the queue.
#[inline(never)]
fn call_slow<S, D, H, Req>(this: &mut Bulkhead<S, D, H>, req: Req) -> ResponseFuture<S, Req, H>
where
    S: Service<Req> + Clone,
    D: DeadlineOf<Req> + Default,
{
    let shared = this.nodes.shared();
    if shared.max_wait.is_zero() {
        return ResponseFuture::rejected(shared.reject(FullReason::QueueFull, Duration::ZERO));
    }
    let now = Instant::now();
    let deadline = D::default().deadline_of(&req);
    let until = Deadline::after_from(now, shared.max_wait).earliest(deadline);
    if until.is_expired_at(now) {
        // The request's deadline has passed: it cannot wait at all.
        return ResponseFuture::rejected(shared.reject(FullReason::WaitTimedOut, Duration::ZERO));
    }
    match shared
        .sem
        .acquire_or_enqueue(shared.max_waiting, Waker::noop())
    {
        Admission::Acquired => ResponseFuture::called(this.inner.call(req), this.nodes.acquired()),
        Admission::Full => {
            ResponseFuture::rejected(shared.reject(FullReason::QueueFull, Duration::ZERO))
        }
        Admission::Queued(id) => {
            // The readied service goes with the call; its clone stays.
            let clone = this.inner.clone();
            let service = mem::replace(&mut this.inner, clone);
            let ticket = Ticket::new(this.nodes.local().clone(), id);
            // After the wait, the next hop is told the time left then.
            let refresh =
                deadline.map(|d| (d, refresh_deadline::<D, Req> as fn(&mut Req, Deadline)));
            ResponseFuture::waiting(
                service,
                req,
                ticket,
                shared.clone(),
                now,
                until.instant(),
                refresh,
            )
        }
    }
}

impl<S, D, H, Req> Service<Req> for Bulkhead<S, D, H>
where
    // First, so that the compiler names it when `.oneshot(req)` does not
    // resolve for a deadline-aware bulkhead.
    D: DeadlineOf<Req> + Default,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    H: HoldPermit<S::Response>,
{
    type Response = H::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(wait) = &mut self.ready {
            // The slot first, as tower's `ConcurrencyLimit` does; a call that
            // will be rejected needs no ready inner service.
            ready!(poll_reserve(wait, &self.nodes, cx));
            if let Some(Reserved::Rejected(_)) = wait.reserved {
                return Poll::Ready(Ok(()));
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        if self.may_wait {
            // A wait needs the timer: check on every call, not only when the
            // slots first run out.
            runtime::assert_timer(LAYER);
        }
        if let Some(wait) = &mut self.ready {
            let reserved = wait.reserved.take().expect(
                "Bulkhead::call before poll_ready returned Ready: \
                 a wait_in_poll_ready service reserves its slot in poll_ready",
            );
            return match reserved {
                Reserved::Permit(permit) => ResponseFuture::called(self.inner.call(req), permit),
                Reserved::Rejected(full) => ResponseFuture::rejected(full),
            };
        }
        match self.nodes.try_acquire() {
            Some(permit) => ResponseFuture::called(self.inner.call(req), permit),
            None => call_slow(self, req),
        }
    }
}
