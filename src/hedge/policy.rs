//! What a finished attempt means for the call: the answer, or a non-fatal
//! result after which the next hedge may go.

use std::time::Duration;

use crate::error::BoxError;
use crate::rejection::Rejection;
use crate::retry::{RetryOn, Verdict};

/// What one finished attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    /// The answer: a success, or a failure that is not retryable. The other
    /// attempts are cancelled.
    Answer,
    /// A retryable failure (gRPC A6's "non-fatal" status): the other
    /// attempts go on, and the next hedge goes as `Next` says.
    NonFatal(Next),
    /// A rejection by one of this crate's layers inside (`CircuitOpen`,
    /// `BulkheadFull`, `RateLimited`): the attempt never reached the
    /// backend. The other attempts go on; no hedge goes early for it.
    NotSent,
}

/// When the next hedge goes after a non-fatal result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// At once (`Verdict::Retry`).
    Now,
    /// When its timer says: the backend asked to slow down
    /// (`Verdict::RetryThrottled`).
    Timer,
    /// After the server's delay (`Verdict::RetryAfter`).
    After(Duration),
    /// Never: the server asked for no more attempts (`Verdict::GiveUp`).
    Never,
}

/// Judges one finished attempt by `on`'s verdict.
#[inline]
pub(crate) fn judge<On, Res>(on: &On, result: &Result<Res, BoxError>) -> Judged
where
    On: RetryOn<Res>,
{
    if let Err(e) = result {
        if Rejection::of(e.as_ref()).is_some_and(|r| r.is_not_sent()) {
            return Judged::NotSent;
        }
    }
    match on.verdict(result) {
        Verdict::Retry => Judged::NonFatal(Next::Now),
        Verdict::RetryThrottled => Judged::NonFatal(Next::Timer),
        Verdict::RetryAfter(after) => Judged::NonFatal(Next::After(after)),
        Verdict::GiveUp => Judged::NonFatal(Next::Never),
        Verdict::Done => Judged::Answer,
    }
}
