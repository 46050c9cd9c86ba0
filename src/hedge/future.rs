//! The response future of [`Hedge`](super::Hedge).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::handle::Skip;
use super::policy::{judge, Judged, Next};
use super::service::Shared;
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::retry::budget::Pending;
use crate::retry::{Replay, RetryOn, Withdrawal};

/// What a call needs to hedge: a clone of the inner service (readied before
/// each hedge) and the replay's stash. `None` in the future for a call that
/// will send no hedge (not safe to repeat, not replayable, or no hedge left
/// before the deadline).
pub(crate) struct Spare<S, St> {
    pub(crate) service: S,
    pub(crate) stash: St,
}

/// A hedge in flight.
struct Attempt<F> {
    future: Pin<Box<F>>,
    /// 2 for the first hedge.
    number: u32,
    /// Given back if an inner layer rejects the hedge: it never reached the
    /// backend.
    withdrawal: Option<Withdrawal>,
}

/// A hedge decided (budget withdrawn, request made) and waiting for the
/// inner service to be ready. Dropping it refunds the withdrawal.
struct Readying<R> {
    request: R,
    pending: Option<Pending>,
    reason: &'static str,
}

/// What a call keeps once it hedges: boxed, made when the first hedge is
/// due or the first attempt ends non-fatal, so the future of a call that
/// is answered in time carries none of it.
struct Hedging<F, R, Res> {
    hedges: Vec<Attempt<F>>,
    readying: Option<Readying<R>>,
    /// The newest non-fatal result (or rejection), returned if no attempt
    /// gives an answer.
    last: Option<Result<Res, BoxError>>,
    /// `last` is a rejection by a layer inside, not a backend's answer.
    last_not_sent: bool,
    /// Attempts sent, the first included.
    sent: u32,
    /// No more hedges: the limit, the budget, the deadline, a server's
    /// pushback or a readiness error.
    done: bool,
    /// A non-fatal result asked for the next hedge at once.
    early: bool,
}

pin_project! {
    /// The response future of [`Hedge`](super::Hedge): the first attempt,
    /// and the hedges sent while it has not answered; the first acceptable
    /// answer wins.
    ///
    /// Dropping it at any point cancels the call: every attempt in flight is
    /// dropped, and a budget withdrawal for a hedge not sent yet is
    /// refunded. Nothing is counted as a failure.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, On, Rp, Req>
    where
        Rp: Replay<Req>,
        S: Service<Rp::Request>,
    {
        // The first attempt, inline; `None` once it ended.
        #[pin]
        first: Option<S::Future>,
        // The next hedge's timer (or, while a hedge waits for the service to
        // be ready, the deadline); made at the first poll that finds the
        // first attempt pending.
        #[pin]
        timer: Option<Sleep>,
        shared: Arc<Shared<On, Rp>>,
        spare: Option<Spare<S, Rp::Stash>>,
        hedging: Option<Box<Hedging<S::Future, Rp::Request, S::Response>>>,
        deadline: Option<Deadline>,
        // When the first attempt was first found pending, for the latency
        // percentile.
        started: Option<Instant>,
        // The first hedge's timer was considered (set, or not for the
        // deadline).
        armed: bool,
        _req: PhantomData<fn(Req)>,
    }
}

impl<S, On, Rp, Req> ResponseFuture<S, On, Rp, Req>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    #[inline]
    pub(crate) fn new(
        future: S::Future,
        shared: Arc<Shared<On, Rp>>,
        spare: Option<Spare<S, Rp::Stash>>,
        deadline: Option<Deadline>,
    ) -> Self {
        Self {
            first: Some(future),
            timer: None,
            shared,
            spare,
            hedging: None,
            deadline,
            started: None,
            armed: false,
            _req: PhantomData,
        }
    }
}

impl<S, On, Rp, Req> fmt::Debug for ResponseFuture<S, On, Rp, Req>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sent, hedges) = self
            .hedging
            .as_ref()
            .map_or((1, 0), |h| (h.sent, h.hedges.len()));
        f.debug_struct("ResponseFuture")
            .field("first_in_flight", &self.first.is_some())
            .field("hedges_in_flight", &hedges)
            .field("sent", &sent)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<S, On, Rp, Req> Future for ResponseFuture<S, On, Rp, Req>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
    S::Error: Into<BoxError>,
    On: RetryOn<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The common case inline: no hedge yet, the first attempt answers.
        if this.hedging.is_none() {
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                match first.poll(cx) {
                    Poll::Ready(result) => {
                        let result = result.map_err(Into::into);
                        this.first.set(None);
                        let judged = judge(&this.shared.on, &result);
                        if judged == Judged::Answer || this.spare.is_none() {
                            return Poll::Ready(finish(&mut this, result, 1));
                        }
                        return first_not_answer(&mut this, cx, result, judged);
                    }
                    Poll::Pending => {
                        if this.spare.is_none() {
                            return Poll::Pending;
                        }
                        if !*this.armed {
                            arm_first(&mut this);
                        }
                        let due = this
                            .timer
                            .as_mut()
                            .as_pin_mut()
                            .is_some_and(|timer| timer.poll(cx).is_ready());
                        if !due {
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
        drive(&mut this, cx)
    }
}

/// The first attempt is pending: start the timer of the first hedge (the
/// one clock read of a call that is answered in time).
#[cold]
#[inline(never)]
fn arm_first<S, On, Rp, Req>(this: &mut ResponseFutureProj<'_, S, On, Rp, Req>)
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    let now = Instant::now();
    let shared: &Shared<On, Rp> = this.shared;
    *this.armed = true;
    if shared.delay.tracker().is_some() {
        *this.started = Some(now);
    }
    match wake_at(now, shared.delay.at(now), *this.deadline) {
        Some(wake) => this.timer.set(Some(crate::runtime::sleep_until(
            "steadfast::hedge::Hedge",
            wake,
        ))),
        // No hedge by the delay before the deadline; a non-fatal result
        // may still send one at once.
        None => shared.stats.skip(Skip::Deadline),
    }
}

/// `now + delay`, unless that is at or after the deadline.
#[inline]
fn wake_at(now: Instant, delay: Duration, deadline: Option<Deadline>) -> Option<Instant> {
    let wake = now.checked_add(delay)?;
    match deadline {
        Some(deadline) if wake >= deadline.instant() => None,
        _ => Some(wake),
    }
}

/// The first attempt ended non-fatal (or rejected) before any hedge.
#[cold]
#[inline(never)]
fn first_not_answer<S, On, Rp, Req>(
    this: &mut ResponseFutureProj<'_, S, On, Rp, Req>,
    cx: &mut Context<'_>,
    result: Result<S::Response, BoxError>,
    judged: Judged,
) -> Poll<Result<S::Response, BoxError>>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
    S::Error: Into<BoxError>,
    On: RetryOn<S::Response>,
{
    if judged == Judged::NotSent {
        // Rejected by a layer inside and nothing else in flight: fail fast.
        return Poll::Ready(finish(this, result, 1));
    }
    if !*this.armed {
        // Answered at the first poll: the next hedge goes at once (its send
        // sets the timer of the one after), or its timer starts now.
        if judged == Judged::NonFatal(Next::Now) {
            *this.armed = true;
            if this.shared.delay.tracker().is_some() {
                *this.started = Some(Instant::now());
            }
        } else {
            arm_first(this);
        }
    }
    hedging(this);
    let h = this.hedging.as_deref_mut().expect("hedging state");
    note(h, result, judged, this.timer.as_mut(), *this.deadline);
    drive(this, cx)
}

/// The hedging state, made on first use.
fn hedging<'a, S, On, Rp, Req>(
    this: &'a mut ResponseFutureProj<'_, S, On, Rp, Req>,
) -> &'a mut Hedging<S::Future, Rp::Request, S::Response>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    this.hedging.get_or_insert_with(|| {
        Box::new(Hedging {
            hedges: Vec::new(),
            readying: None,
            last: None,
            last_not_sent: false,
            sent: 1,
            done: false,
            early: false,
        })
    })
}

/// Keeps a result that is not the answer, and notes what it means for the
/// next hedge.
fn note<F, R, Res>(
    h: &mut Hedging<F, R, Res>,
    result: Result<Res, BoxError>,
    judged: Judged,
    timer: Pin<&mut Option<Sleep>>,
    deadline: Option<Deadline>,
) {
    match judged {
        Judged::Answer => unreachable!("steadfast::hedge: an answer is returned, not noted"),
        Judged::NotSent => {
            // A backend's result is worth more than our own rejection.
            if h.last.is_none() || h.last_not_sent {
                h.last = Some(result);
                h.last_not_sent = true;
            }
        }
        Judged::NonFatal(next) => {
            h.last = Some(result);
            h.last_not_sent = false;
            match next {
                Next::Now => h.early = true,
                Next::Timer => {}
                Next::After(after) => {
                    if h.readying.is_none() {
                        // The next hedge waits for the server's delay; none
                        // when that is at or after the deadline.
                        match wake_at(Instant::now(), after.min(HOUR), deadline) {
                            Some(wake) => {
                                if let Some(timer) = timer.as_pin_mut() {
                                    timer.reset(wake);
                                }
                            }
                            None => h.done = true,
                        }
                    }
                }
                Next::Never => h.done = true,
            }
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Runs a call that hedges, or may: polls every attempt, readies and sends
/// the next hedge when it is due, and returns the first answer.
#[inline(never)]
fn drive<S, On, Rp, Req>(
    this: &mut ResponseFutureProj<'_, S, On, Rp, Req>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, BoxError>>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
    S::Error: Into<BoxError>,
    On: RetryOn<S::Response>,
{
    hedging(this);
    loop {
        // Every attempt in flight, the first one first.
        if let Some(first) = this.first.as_mut().as_pin_mut() {
            if let Poll::Ready(result) = first.poll(cx) {
                this.first.set(None);
                let result = result.map_err(Into::into);
                let judged = judge(&this.shared.on, &result);
                if judged == Judged::Answer {
                    return Poll::Ready(finish(this, result, 1));
                }
                let h = this.hedging.as_deref_mut().expect("hedging state");
                note(h, result, judged, this.timer.as_mut(), *this.deadline);
            }
        }
        let h = this.hedging.as_deref_mut().expect("hedging state");
        let mut i = 0;
        while i < h.hedges.len() {
            let Poll::Ready(result) = h.hedges[i].future.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            let attempt = h.hedges.swap_remove(i);
            let result = result.map_err(Into::into);
            let judged = judge(&this.shared.on, &result);
            if judged == Judged::Answer {
                return Poll::Ready(finish(this, result, attempt.number));
            }
            if judged == Judged::NotSent {
                if let (Some(budget), Some(w)) = (&this.shared.config.budget, attempt.withdrawal) {
                    budget.refund(w);
                }
            }
            note(h, result, judged, this.timer.as_mut(), *this.deadline);
        }

        // A hedge waiting for the service: send it once it is ready.
        if h.readying.is_some() {
            let spare = this
                .spare
                .as_mut()
                .expect("a hedge is readied on the spare");
            match spare.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    send(this);
                    continue; // poll the new attempt once
                }
                Poll::Ready(Err(e)) => {
                    // The clone failed: no more hedges (the withdrawal goes
                    // back as the readying hedge is dropped).
                    h.readying = None;
                    h.done = true;
                    if h.last.is_none() || h.last_not_sent {
                        h.last = Some(Err(e.into()));
                        h.last_not_sent = false;
                    }
                    this.timer.set(None);
                }
                Poll::Pending => {
                    let expired = this
                        .timer
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|t| t.poll(cx).is_ready());
                    if expired {
                        // The deadline passed while the service was not
                        // ready: the hedge is not sent, its withdrawal
                        // refunded.
                        this.shared.stats.skip(Skip::Deadline);
                        h.readying = None;
                        h.done = true;
                        this.timer.set(None);
                    }
                }
            }
        }

        // The next hedge, when it is due.
        let h = this.hedging.as_deref_mut().expect("hedging state");
        let can_hedge = !h.done
            && h.readying.is_none()
            && this.spare.is_some()
            && h.sent < this.shared.config.max_attempts;
        if can_hedge {
            let reason = if h.early {
                Some("non-fatal result")
            } else {
                let due = this
                    .timer
                    .as_mut()
                    .as_pin_mut()
                    .is_some_and(|timer| timer.poll(cx).is_ready());
                due.then_some("delay")
            };
            if let Some(reason) = reason {
                h.early = false;
                if start_hedge(this, reason) {
                    continue;
                }
            }
        }

        // Nothing in flight and nothing to wait for: the last result.
        let h = this.hedging.as_deref_mut().expect("hedging state");
        let idle = this.first.is_none() && h.hedges.is_empty() && h.readying.is_none();
        let can_hedge = !h.done
            && this.spare.is_some()
            && h.sent < this.shared.config.max_attempts
            && this.timer.is_some();
        if idle && (!can_hedge || h.last_not_sent) {
            let last = h
                .last
                .take()
                .expect("steadfast::hedge: every finished attempt leaves a result");
            // No attempt gave an answer: not a hedge's win.
            return Poll::Ready(finish(this, last, 1));
        }
        return Poll::Pending;
    }
}

/// Decides the next hedge: checks the deadline and the budget, makes the
/// request. `true` when it now waits for the service (`readying`); `false`
/// when no hedge will go (counted, `done` set).
fn start_hedge<S, On, Rp, Req>(
    this: &mut ResponseFutureProj<'_, S, On, Rp, Req>,
    reason: &'static str,
) -> bool
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    let shared: &Shared<On, Rp> = this.shared;
    let h = this.hedging.as_deref_mut().expect("hedging state");
    let spare = this.spare.as_mut().expect("checked by the caller");
    let now = Instant::now();
    let stop = |h: &mut Hedging<_, _, _>, timer: Pin<&mut Option<Sleep>>, why| {
        shared.stats.skip(why);
        h.done = true;
        let mut timer = timer;
        timer.set(None);
        false
    };
    if (*this.deadline).is_some_and(|d| d.is_expired_at(now)) {
        return stop(h, this.timer.as_mut(), Skip::Deadline);
    }
    let pending = match &shared.config.budget {
        None => None,
        Some(budget) => match budget.try_withdraw_at(now) {
            Some(w) => Some(Pending::new(budget.clone(), w)),
            None => return stop(h, this.timer.as_mut(), Skip::Budget),
        },
    };
    let Some(request) = shared.replay.replay(&mut spare.stash, h.sent + 1) else {
        drop(pending);
        return stop(h, this.timer.as_mut(), Skip::Unreplayable);
    };
    h.readying = Some(Readying {
        request,
        pending,
        reason,
    });
    // While the service is not ready, the timer bounds the wait by the
    // deadline.
    match (*this.deadline, this.timer.as_mut().as_pin_mut()) {
        (Some(deadline), Some(timer)) => timer.reset(deadline.instant()),
        (Some(deadline), None) => this
            .timer
            .set(Some(tokio::time::sleep_until(deadline.instant()))),
        (None, _) => this.timer.set(None),
    }
    true
}

/// Sends the readied hedge and sets the timer of the next one.
fn send<S, On, Rp, Req>(this: &mut ResponseFutureProj<'_, S, On, Rp, Req>)
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    let shared: &Shared<On, Rp> = this.shared;
    let h = this.hedging.as_deref_mut().expect("hedging state");
    let spare = this
        .spare
        .as_mut()
        .expect("a hedge is readied on the spare");
    let Readying {
        mut request,
        pending,
        reason,
    } = h.readying.take().expect("a readied hedge");
    shared.replay.before_retry(&mut request, *this.deadline);
    let number = h.sent + 1;
    h.sent = number;
    // A non-fatal result that came while it was readied is answered by it.
    h.early = false;
    shared.stats.hedge();
    tracing::debug!(
        target: "steadfast::hedge",
        layer = "hedge",
        name = shared.stats.name.as_deref().unwrap_or(""),
        event = "hedge",
        attempt = number,
        reason,
        "hedging"
    );
    let future = {
        // The call's deadline in scope, as for the first attempt: the
        // layers inside read it there.
        let _scope = this.deadline.map(Deadline::enter);
        spare.service.call(request)
    };
    h.hedges.push(Attempt {
        future: Box::pin(future),
        number,
        withdrawal: pending.and_then(Pending::into_withdrawal),
    });
    // The next hedge's timer runs from this one.
    let now = Instant::now();
    let next = (number < shared.config.max_attempts)
        .then(|| wake_at(now, shared.delay.at(now), *this.deadline))
        .flatten();
    match (next, this.timer.as_mut().as_pin_mut()) {
        (Some(wake), Some(timer)) => timer.reset(wake),
        (Some(wake), None) => this.timer.set(Some(tokio::time::sleep_until(wake))),
        (None, _) => {
            if number < shared.config.max_attempts {
                shared.stats.skip(Skip::Deadline);
            }
            h.done = true;
            this.timer.set(None);
        }
    }
}

/// Returns the call's result: records its latency for the percentile and
/// counts a hedge's win.
#[inline]
fn finish<S, On, Rp, Req>(
    this: &mut ResponseFutureProj<'_, S, On, Rp, Req>,
    result: Result<S::Response, BoxError>,
    number: u32,
) -> Result<S::Response, BoxError>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
{
    let shared: &Shared<On, Rp> = this.shared;
    if let Some(tracker) = shared.delay.tracker() {
        if this.spare.is_some() {
            // A call answered at its first poll took no time worth a timer.
            let latency = this.started.map_or(Duration::ZERO, |s| {
                Instant::now().saturating_duration_since(s)
            });
            tracker.record(latency);
        }
    }
    if number > 1 {
        shared.stats.won();
    }
    // The losers go now, not when the caller drops the future.
    this.first.set(None);
    this.timer.set(None);
    *this.hedging = None;
    *this.spare = None;
    result
}
