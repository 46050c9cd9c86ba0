//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::budget::Pending;
use super::handle::Skip;
use super::policy::{RetryOn, Verdict};
use super::replay::{NotReplayable, Replay};
use super::service::Shared;
use crate::deadline::Deadline;
use crate::error::{cause_ref, is_attempt_timeout, is_own_rejection, BoxError};
use crate::mix::splitmix64;
use crate::rejection::{CircuitOpen, DeadlineExceeded};

/// What a call keeps once it has retried at least once: boxed, made on the
/// first retry, so the happy path's future carries none of it (the next
/// request alone is hundreds of bytes for an `http::Request`).
struct RetryState<R> {
    rng: SmallRng,
    previous_delay: Duration,
    waited_for_circuit: bool,
    pending: Option<Pending>,
    next: Option<R>,
}

pin_project! {
    #[project = StateProj]
    // The timers are boxed: a tokio `Sleep` is 96 bytes, and held inline it
    // would make every response future that large, though only a call that
    // is retried ever sleeps (and it allocates its `RetryState` then too).
    enum State<F> {
        Calling { #[pin] future: F },
        Sleeping { sleep: Pin<Box<Sleep>> },
        // Waiting for the service to be ready for the next attempt; if it
        // is not ready at once and the call has a deadline, a timer at the
        // deadline bounds the wait.
        Readying { until: Option<Pin<Box<Sleep>>> },
    }
}

pin_project! {
    /// The response future of [`Retry`](super::Retry): runs attempts until
    /// one is not retried, sleeping between them.
    ///
    /// Dropping it at any point cancels the call: the attempt in flight is
    /// dropped and a budget withdrawal for an attempt not yet sent is
    /// refunded.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, On, Rp, Req>
    where
        Rp: Replay<Req>,
        S: Service<Rp::Request>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        shared: Arc<Shared<On, Rp>>,
        stash: Result<Rp::Stash, NotReplayable>,
        attempts: u32,
        deadline: Option<Deadline>,
        // When the attempt in flight started, if attempts are timed.
        started: Option<Instant>,
        retry: Option<Box<RetryState<Rp::Request>>>,
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
        service: S,
        shared: Arc<Shared<On, Rp>>,
        stash: Result<Rp::Stash, NotReplayable>,
        deadline: Option<Deadline>,
        started: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Calling { future },
            service,
            shared,
            stash,
            attempts: 1,
            deadline,
            started,
            retry: None,
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
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Sleeping { .. } => "sleeping",
            State::Readying { .. } => "readying",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What the result of an attempt means, before budget and replay checks.
enum Next {
    Return,
    Skip(Skip),
    Retry { delay: Delay, reason: &'static str },
}

enum Delay {
    Backoff,
    Throttled,
    Server(Duration),
}

fn seed_rng<On, Rp>(shared: &Shared<On, Rp>) -> SmallRng {
    let n = shared.rng_seq.fetch_add(1, Ordering::Relaxed);
    SmallRng::seed_from_u64(splitmix64(shared.seed ^ splitmix64(n)))
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
        // The common case inline: the first attempt's result is not retried.
        if let StateProj::Calling { future } = this.state.as_mut().project() {
            let result = ready!(future.poll(cx)).map_err(Into::into);
            if let Some(started) = *this.started {
                time_attempt(this.shared, started);
            }
            if result.is_ok() && this.shared.on.verdict(&result) == Verdict::Done {
                return Poll::Ready(result);
            }
            if let Some(result) = decide(&mut this, result) {
                return Poll::Ready(result);
            }
        }
        drive(&mut this, cx)
    }
}

/// Records how long the attempt that just finished took.
#[inline]
fn time_attempt<On, Rp>(shared: &Shared<On, Rp>, started: Instant) {
    if let Some(histogram) = &shared.stats.attempt_duration {
        histogram.record(Instant::now().saturating_duration_since(started));
    }
}

/// Runs the call from wherever it is: sleeping, readying the service for a
/// retry, or waiting on an attempt.
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
    loop {
        match this.state.as_mut().project() {
            StateProj::Calling { future } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(started) = *this.started {
                    time_attempt(this.shared, started);
                }
                if let Some(result) = decide(this, result) {
                    return Poll::Ready(result);
                }
            }
            StateProj::Sleeping { sleep } => {
                ready!(sleep.as_mut().poll(cx));
                this.state.set(State::Readying { until: None });
            }
            StateProj::Readying { until } => {
                let ready = match this.service.poll_ready(cx) {
                    Poll::Ready(ready) => ready,
                    Poll::Pending => {
                        // Not past the deadline: the layer that set it may
                        // rely on this (the preset's deadline has no timer
                        // of its own when an attempt timeout covers it).
                        if let Some(deadline) = *this.deadline {
                            let sleep = until.get_or_insert_with(|| {
                                Box::pin(tokio::time::sleep_until(deadline.instant()))
                            });
                            if sleep.as_mut().poll(cx).is_ready() {
                                // Nothing was sent: the withdrawal goes
                                // back (Pending's drop).
                                let expired: BoxError = Box::new(DeadlineExceeded::new(None));
                                return Poll::Ready(skip(
                                    this.shared,
                                    Skip::Deadline,
                                    *this.attempts,
                                    Err(expired),
                                ));
                            }
                        }
                        return Poll::Pending;
                    }
                };
                if let Err(e) = ready {
                    // Nothing was sent: the withdrawal goes back (Pending's drop).
                    return Poll::Ready(Err(e.into()));
                }
                let retry = this
                    .retry
                    .as_mut()
                    .expect("retry ResponseFuture: the retry state is made before readying");
                let mut request = retry
                    .next
                    .take()
                    .expect("retry ResponseFuture: a next request is set before readying");
                this.shared
                    .replay
                    .before_retry(&mut request, *this.deadline);
                if let Some(pending) = retry.pending.take() {
                    pending.spend();
                }
                // Counted when sent: a retry abandoned during the backoff
                // is not a retry.
                this.shared.stats.retry();
                *this.attempts += 1;
                // The call's deadline in scope again, as for the first
                // attempt: the layers inside read it there.
                let service = &mut *this.service;
                let _scope = this.deadline.map(Deadline::enter);
                if this.started.is_some() {
                    *this.started = Some(Instant::now());
                }
                let future = service.call(request);
                this.state.set(State::Calling { future });
            }
        }
    }
}

/// Decides what a finished attempt leads to: `Some(result)` to return it,
/// `None` when a retry has been set up (the state is now sleeping or
/// readying).
#[inline(never)]
fn decide<S, On, Rp, Req>(
    this: &mut ResponseFutureProj<'_, S, On, Rp, Req>,
    result: Result<S::Response, BoxError>,
) -> Option<Result<S::Response, BoxError>>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request>,
    On: RetryOn<S::Response>,
{
    let shared: &Shared<On, Rp> = this.shared;
    let config = &shared.config;

    // What the result asks for.
    let waited = this.retry.as_ref().is_some_and(|r| r.waited_for_circuit);
    let next = match &result {
        Ok(_) => classify(shared.on.verdict(&result)),
        Err(e) => match cause_ref::<CircuitOpen>(e.as_ref()) {
            Some(open) if config.wait_for_open_circuit && !waited => match open.retry_after() {
                Some(after) => Next::Retry {
                    delay: Delay::Server(after),
                    reason: "circuit open",
                },
                None => Next::Return,
            },
            Some(_) => Next::Return,
            None if is_own_rejection(e.as_ref()) => Next::Return,
            None => classify(shared.on.verdict(&result)),
        },
    };
    let (delay_kind, reason) = match next {
        Next::Return => return Some(result),
        Next::Skip(why) => return Some(skip(shared, why, *this.attempts, result)),
        Next::Retry { delay, reason } => (delay, reason),
    };

    // May it be sent again at all?
    if *this.attempts >= config.max_attempts {
        return Some(skip(shared, Skip::Exhausted, *this.attempts, result));
    }
    let stash = match this.stash.as_mut() {
        Ok(stash) => stash,
        Err(NotReplayable::Unsafe) => {
            return Some(skip(shared, Skip::Unsafe, *this.attempts, result))
        }
        Err(NotReplayable::Unreplayable) => {
            return Some(skip(shared, Skip::Unreplayable, *this.attempts, result))
        }
    };
    // A request that is not safe to repeat goes again only when the failure
    // proves the server did not process it (or, when asked, after a
    // timeout).
    if !shared.replay.idempotent(stash) && !may_repeat_unsafe(shared, &result) {
        return Some(skip(shared, Skip::Unsafe, *this.attempts, result));
    }

    // How long to wait, and does that fit?
    let state = this.retry.get_or_insert_with(|| {
        Box::new(RetryState {
            rng: seed_rng(shared),
            previous_delay: Duration::ZERO,
            waited_for_circuit: false,
            pending: None,
            next: None,
        })
    });
    let retry_number = *this.attempts;
    let delay = match delay_kind {
        Delay::Backoff => config
            .backoff
            .delay(retry_number, state.previous_delay, &mut state.rng),
        Delay::Throttled => {
            config
                .throttled_backoff
                .delay(retry_number, state.previous_delay, &mut state.rng)
        }
        Delay::Server(after) => {
            if after > config.max_server_delay {
                return Some(skip(shared, Skip::ServerHint, *this.attempts, result));
            }
            after
        }
    };
    let now = Instant::now();
    let wake = now.checked_add(delay);
    if let Some(deadline) = this.deadline {
        if wake.is_none_or(|wake| wake >= deadline.instant()) {
            return Some(skip(shared, Skip::Deadline, *this.attempts, result));
        }
    }
    let Some(wake) = wake else {
        return Some(skip(shared, Skip::Exhausted, *this.attempts, result));
    };

    // The budget, last: a withdrawal is only made for a retry
    // that will happen.
    let pending = match &config.budget {
        None => None,
        Some(budget) => match budget.try_withdraw_at(now) {
            Some(withdrawal) => Some(Pending::new(budget.clone(), withdrawal)),
            None => return Some(skip(shared, Skip::Budget, *this.attempts, result)),
        },
    };
    let Some(request) = shared.replay.replay(stash, retry_number + 1) else {
        // The body outgrew the cap (or failed) while it was sent.
        drop(pending);
        return Some(skip(shared, Skip::Unreplayable, *this.attempts, result));
    };

    if matches!(delay_kind, Delay::Server(_)) && reason == "circuit open" {
        state.waited_for_circuit = true;
    }
    state.previous_delay = delay;
    state.pending = pending;
    tracing::debug!(
        target: "steadfast::retry",
        layer = "retry",
        name = shared.stats.name.as_deref().unwrap_or(""),
        event = "retry",
        attempt = retry_number + 1,
        reason,
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "retrying"
    );
    if !config.on_retry.is_empty() {
        let name = shared.stats.name.clone();
        let (attempt, delay) = (retry_number + 1, delay);
        let event = super::Retried {
            name,
            attempt,
            delay,
            reason,
        };
        config
            .on_retry
            .call("retry", shared.stats.name.as_deref(), &event);
    }
    // The failed response (and its body) goes before the next attempt.
    drop(result);
    state.next = Some(request);
    if delay.is_zero() {
        this.state.set(State::Readying { until: None });
    } else {
        this.state.set(State::Sleeping {
            sleep: Box::pin(tokio::time::sleep_until(wake)),
        });
    }
    None
}

/// For a request that is not safe to repeat: does `result` allow another
/// attempt?
fn may_repeat_unsafe<On, Rp, Res>(shared: &Shared<On, Rp>, result: &Result<Res, BoxError>) -> bool
where
    On: RetryOn<Res>,
{
    if shared.on.not_processed(result) {
        return true;
    }
    // An attempt timeout: ours (`Elapsed`) or, for tonic, the `Channel`'s own
    // `grpc-timeout` timer, which may fire first.
    shared.config.retry_timeouts && matches!(result, Err(e) if is_attempt_timeout(e.as_ref()))
}

#[inline]
fn classify(verdict: Verdict) -> Next {
    match verdict {
        Verdict::Retry => Next::Retry {
            delay: Delay::Backoff,
            reason: "retryable failure",
        },
        Verdict::RetryThrottled => Next::Retry {
            delay: Delay::Throttled,
            reason: "throttled",
        },
        Verdict::RetryAfter(after) => Next::Retry {
            delay: Delay::Server(after),
            reason: "server hint",
        },
        Verdict::GiveUp => Next::Skip(Skip::ServerHint),
        Verdict::Done => Next::Return,
    }
}

#[cold]
fn skip<On, Rp, T>(shared: &Shared<On, Rp>, why: Skip, attempts: u32, result: T) -> T {
    shared.stats.skip(why);
    tracing::debug!(
        target: "steadfast::retry",
        layer = "retry",
        name = shared.stats.name.as_deref().unwrap_or(""),
        event = "give_up",
        attempt = attempts,
        attempts,
        reason = why.as_str(),
        "not retrying"
    );
    let listeners = &shared.config.on_give_up;
    if !listeners.is_empty() {
        let (name, reason) = (shared.stats.name.clone(), why.as_str());
        let event = super::GaveUp {
            name,
            attempts,
            reason,
        };
        listeners.call("retry", shared.stats.name.as_deref(), &event);
    }
    result
}
