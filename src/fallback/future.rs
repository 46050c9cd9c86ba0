//! The response future of [`Fallback`](super::Fallback).

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use super::error::FallbackFailed;
use super::handle::{Ran, Stats};
use super::policy::{Failed, Recover};
use crate::classify::Classify;
use crate::error::BoxError;
use crate::rejection::Rejection;

/// Which errors make the fallback run (responses: the classifier says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct On {
    /// This crate's rejections ([`Rejection::of`] finds one).
    pub(crate) rejections: bool,
    /// Every other error of the inner service.
    pub(crate) errors: bool,
}

impl On {
    pub(crate) const DEFAULT: Self = Self {
        rejections: true,
        errors: true,
    };

    #[inline]
    fn error(self, err: &BoxError) -> Option<&'static str> {
        match Rejection::of(err) {
            Some(rejection) if self.rejections => Some(rejection.as_str()),
            None if self.errors => Some("error"),
            _ => None,
        }
    }
}

pin_project! {
    /// The response future of [`Fallback`](super::Fallback): the inner
    /// future, then, if its outcome is one the layer is configured for, the
    /// fallback. Dropping it before the inner future finishes drops the
    /// inner future and never runs the fallback. See the module docs.
    pub struct ResponseFuture<F, P, C, K> {
        #[pin]
        inner: F,
        policy: P,
        classifier: C,
        // Taken when the inner future is done.
        key: Option<K>,
        on: On,
        stats: Option<Arc<Stats>>,
    }
}

impl<F, P, C, K> ResponseFuture<F, P, C, K> {
    #[inline]
    pub(crate) fn new(
        inner: F,
        policy: P,
        classifier: C,
        key: K,
        on: On,
        stats: Option<Arc<Stats>>,
    ) -> Self {
        Self {
            inner,
            policy,
            classifier,
            key: Some(key),
            on,
            stats,
        }
    }
}

impl<F, P, C, K> fmt::Debug for ResponseFuture<F, P, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.key.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, P, C, K, Res, E> Future for ResponseFuture<F, P, C, K>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    P: Recover<K, Res>,
    C: Classify<Res, BoxError>,
{
    type Output = Result<P::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx)).map_err(Into::into);
        let Some(key) = this.key.take() else {
            polled_after_completion()
        };
        // The happy path is a response the classifier does not call a
        // failure (errors are not classified); everything else goes to one
        // cold function.
        if result.is_err() || this.classifier.classify(&result).is_failure() {
            return Poll::Ready(on_failure(
                this.policy,
                key,
                result,
                *this.on,
                this.stats.as_deref(),
            ));
        }
        let Ok(response) = result else {
            unreachable!("an error took the branch above")
        };
        Poll::Ready(Ok(this.policy.pass(key, response)))
    }
}

/// A failed response or an error: the fallback, if configured for it.
#[cold]
#[inline(never)]
fn on_failure<P, K, Res>(
    policy: &P,
    key: K,
    result: Result<Res, BoxError>,
    on: On,
    stats: Option<&Stats>,
) -> Result<P::Response, BoxError>
where
    P: Recover<K, Res>,
{
    match result {
        Ok(response) => counted(stats, recover_response(policy, key, response)),
        Err(err) => match on.error(&err) {
            Some(reason) => counted(stats, recover_error(policy, key, err, reason)),
            None => Err(err),
        },
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("fallback ResponseFuture polled after completion")
}

/// Runs the fallback for an error; the error is kept for the caller.
fn recover_error<P, K, Res>(
    policy: &P,
    key: K,
    err: BoxError,
    reason: &'static str,
) -> (Ran, Result<P::Response, BoxError>)
where
    P: Recover<K, Res>,
{
    event(reason);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        policy.recover(key, Failed::Error(err.as_ref()))
    }));
    settle(ran, Some(err))
}

/// How a run of the fallback ended, for the caller and the counters. A
/// failure or panic of the fallback carries `cause`, what made it run (an
/// error; `None` for a failed response); a fallback that declined hands
/// `cause` back as it was, or says it declined.
fn settle<R>(
    ran: std::thread::Result<Option<Result<R, BoxError>>>,
    cause: Option<BoxError>,
) -> (Ran, Result<R, BoxError>) {
    match ran {
        Ok(Some(Ok(response))) => (Ran::Served, Ok(response)),
        Ok(Some(Err(e))) => (Ran::Failed, Err(failed(FallbackFailed::error(e, cause)))),
        Ok(None) => (
            Ran::Declined,
            Err(cause.unwrap_or_else(|| failed(FallbackFailed::declined()))),
        ),
        Err(payload) => (
            Ran::Failed,
            Err(failed(FallbackFailed::panic(&*payload, cause))),
        ),
    }
}

/// Counts how a run of the fallback ended, then hands its result on.
fn counted<R>(stats: Option<&Stats>, (ran, result): (Ran, R)) -> R {
    if let Some(stats) = stats {
        stats.count(ran);
    }
    result
}

/// Runs the fallback for a response the classifier called a failure.
fn recover_response<P, K, Res>(
    policy: &P,
    key: K,
    response: Res,
) -> (Ran, Result<P::Response, BoxError>)
where
    P: Recover<K, Res>,
{
    event("response");
    let ran = catch_unwind(AssertUnwindSafe(|| {
        policy.recover(key, Failed::Response(response))
    }));
    settle(ran, None)
}

fn event(reason: &'static str) {
    tracing::debug!(
        target: "steadfast::fallback",
        layer = "fallback",
        name = "",
        event = "fallback",
        reason,
        "running the fallback"
    );
}

fn failed(err: FallbackFailed) -> BoxError {
    tracing::warn!(
        target: "steadfast::fallback",
        layer = "fallback",
        name = "",
        event = "fallback_failed",
        panicked = err.panicked(),
        "the fallback failed"
    );
    Box::new(err)
}
