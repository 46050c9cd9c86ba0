//! Which finished attempts are retried: [`RetryOn`] and its [`Verdict`].

use std::fmt;
use std::time::Duration;

use crate::classify::{is_not_sent, Classify, ErrorsAsFailures, Outcome};
use crate::error::BoxError;

/// What to do with a finished attempt.
///
/// Rejections by this crate's own layers (`CircuitOpen`, …) never reach a
/// [`RetryOn`]: the retry layer returns them as they are (see the module
/// docs for the one opt-in exception).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Return the result: a success, or a failure that is not retryable.
    Done,
    /// A retryable failure: try again after the backoff's next delay.
    Retry,
    /// The backend asked callers to slow down (HTTP 429, gRPC
    /// RESOURCE_EXHAUSTED): try again after the *throttled* backoff's delay.
    RetryThrottled,
    /// The server said when to try again (`Retry-After`,
    /// `grpc-retry-pushback-ms`). A delay longer than `max_server_delay` or
    /// the time left before the deadline ends the retries instead.
    RetryAfter(Duration),
    /// A retryable failure the server asked not to retry (a negative
    /// `grpc-retry-pushback-ms`): return it, counted as a give-up.
    GiveUp,
}

impl Verdict {
    /// `true` for the verdicts that ask for another attempt.
    pub const fn is_retry(self) -> bool {
        matches!(
            self,
            Verdict::Retry | Verdict::RetryThrottled | Verdict::RetryAfter(_)
        )
    }
}

/// Decides, for each finished attempt, whether it is retried.
///
/// Errors reach it boxed ([`BoxError`]), as the retry layer returns them.
/// Implemented by [`RetryFailures`] (a classifier's failures), [`RetryIf`] (a
/// predicate), `HttpRetryOn` and `GrpcRetryOn` (feature `http`), and by any
/// `Fn(&Result<Res, BoxError>) -> Verdict`.
#[diagnostic::on_unimplemented(
    message = "the retry layer cannot judge a `{Res}` response with `{Self}`",
    label = "`{Self}` does not implement `RetryOn<{Res}>`",
    note = "`HttpRetryOn` and `GrpcRetryOn` judge responses that implement `steadfast::classify::HttpResponseHead`: `http::Response<B>` and `reqwest::Response` (feature `reqwest`); `RetryFailures<C>` and `RetryIf<F>` any response their classifier or predicate takes",
    note = "for other responses use `RetryLayer::new`, `RetryLayer::retry_if` or `RetryLayer::with_policy`"
)]
pub trait RetryOn<Res> {
    /// The verdict on one finished attempt.
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict;

    /// `true` when `result` proves the server did not process the request,
    /// so that a retryable failure may be retried even for a request that is
    /// not safe to repeat (a POST without an `Idempotency-Key`, a gRPC call
    /// not marked idempotent).
    ///
    /// Asked only after [`verdict`](Self::verdict) asked for a retry, and
    /// only for such requests. The default: an error that
    /// [`is_not_sent`] recognises (connection refused, a connector failure,
    /// HTTP/2 `REFUSED_STREAM`, [`NotSent`](crate::classify::NotSent)).
    /// `GrpcRetryOn` adds its retry codes, as gRPC's retry design does.
    #[inline]
    fn not_processed(&self, result: &Result<Res, BoxError>) -> bool {
        matches!(result, Err(e) if is_not_sent(e.as_ref()))
    }
}

impl<F, Res> RetryOn<Res> for F
where
    F: Fn(&Result<Res, BoxError>) -> Verdict,
{
    #[inline]
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict {
        self(result)
    }
}

/// Retries every attempt a [`Classify`] calls a [`Failure`](Outcome::Failure).
///
/// The default for generic services is `RetryFailures<ErrorsAsFailures>`:
/// every `Err` is retried.
#[derive(Clone, Copy, Default)]
pub struct RetryFailures<C = ErrorsAsFailures> {
    classifier: C,
}

impl<C> RetryFailures<C> {
    /// Retries what `classifier` calls a failure.
    pub const fn new(classifier: C) -> Self {
        Self { classifier }
    }
}

impl<C> fmt::Debug for RetryFailures<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFailures")
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<C, Res> RetryOn<Res> for RetryFailures<C>
where
    C: Classify<Res, BoxError>,
{
    #[inline]
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict {
        match self.classifier.classify(result) {
            Outcome::Failure => Verdict::Retry,
            Outcome::Success | Outcome::Ignored => Verdict::Done,
        }
    }
}

/// Retries every attempt for which a predicate returns `true`.
///
/// ```
/// use steadfast::retry::{RetryIf, RetryOn, Verdict};
/// use steadfast::BoxError;
///
/// // Retry errors and empty answers.
/// let on = RetryIf::new(|res: &Result<Vec<u8>, BoxError>| match res {
///     Ok(body) => body.is_empty(),
///     Err(_) => true,
/// });
/// assert_eq!(on.verdict(&Ok(vec![])), Verdict::Retry);
/// assert_eq!(on.verdict(&Ok(vec![1])), Verdict::Done);
/// ```
#[derive(Clone, Copy)]
pub struct RetryIf<F> {
    predicate: F,
}

impl<F> RetryIf<F> {
    /// Retries when `predicate` returns `true`.
    pub const fn new(predicate: F) -> Self {
        Self { predicate }
    }
}

impl<F> fmt::Debug for RetryIf<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryIf").finish_non_exhaustive()
    }
}

impl<F, Res> RetryOn<Res> for RetryIf<F>
where
    F: Fn(&Result<Res, BoxError>) -> bool,
{
    #[inline]
    fn verdict(&self, result: &Result<Res, BoxError>) -> Verdict {
        if (self.predicate)(result) {
            Verdict::Retry
        } else {
            Verdict::Done
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_impl::{GrpcRetryOn, HttpRetryOn};

#[cfg(feature = "http")]
// An HTTP-date in `Retry-After` is wall-clock time by definition: the one
// place the crate reads the system clock.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
mod http_impl {
    use std::fmt;

    use http::StatusCode;

    use super::{RetryOn, Verdict};
    use crate::classify::hints::{self, Pushback};
    use crate::classify::{GrpcCode, HttpResponseHead};
    use crate::error::BoxError;

    /// Reads the wall clock, for `Retry-After` HTTP-dates.
    pub(crate) type WallClock = fn() -> std::time::SystemTime;

    fn system_now() -> std::time::SystemTime {
        // An HTTP-date is wall-clock time by definition.
        std::time::SystemTime::now()
    }

    /// The HTTP retry rule: transport errors and the statuses 408, 429, 502,
    /// 503 and 504 are retried (500 only when asked), honouring `Retry-After`.
    ///
    /// A 429 without `Retry-After` waits the *throttled* backoff (slower than
    /// the normal one: the server is overloaded, not broken). Whether the
    /// request may be repeated after such a failure (idempotent method or an
    /// `Idempotency-Key`) is decided by the replay side,
    /// [`HttpReplay`](super::super::HttpReplay): a request that is not safe
    /// to repeat is retried only after an error that proves it was never
    /// sent ([`RetryOn::not_processed`]'s default) — no status proves that
    /// for plain HTTP.
    ///
    /// ```
    /// use steadfast::retry::{HttpRetryOn, RetryOn, Verdict};
    /// use std::time::Duration;
    ///
    /// let on = HttpRetryOn::new().retry_status(500);
    /// let res = http::Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
    /// assert_eq!(on.verdict(&Ok(res)), Verdict::RetryAfter(Duration::from_secs(2)));
    /// let res = http::Response::builder().status(404).body(()).unwrap();
    /// assert_eq!(on.verdict(&Ok(res)), Verdict::Done);
    /// ```
    #[derive(Clone, Copy)]
    pub struct HttpRetryOn {
        /// Statuses 400..=599 as bits.
        statuses: [u64; 4],
        wall_clock: WallClock,
    }

    impl HttpRetryOn {
        /// 408, 429, 502, 503 and 504, and transport errors.
        pub fn new() -> Self {
            let mut on = Self {
                statuses: [0; 4],
                wall_clock: system_now,
            };
            for code in [408, 429, 502, 503, 504] {
                on = on.retry_status(code);
            }
            on
        }

        /// Also retries `status` (400..=599; other values are ignored).
        pub fn retry_status(mut self, status: u16) -> Self {
            if let Some(i) = Self::index(status) {
                self.statuses[i / 64] |= 1 << (i % 64);
            }
            self
        }

        /// Stops retrying `status`.
        pub fn no_retry_status(mut self, status: u16) -> Self {
            if let Some(i) = Self::index(status) {
                self.statuses[i / 64] &= !(1 << (i % 64));
            }
            self
        }

        /// `true` when `status` is retried.
        pub fn retries_status(&self, status: StatusCode) -> bool {
            Self::index(status.as_u16())
                .is_some_and(|i| self.statuses[i / 64] & (1 << (i % 64)) != 0)
        }

        /// The wall clock `Retry-After` dates are measured against (tests
        /// fix it; the default is the system clock).
        pub fn wall_clock(mut self, now: fn() -> std::time::SystemTime) -> Self {
            self.wall_clock = now;
            self
        }

        fn index(status: u16) -> Option<usize> {
            (400..=599)
                .contains(&status)
                .then(|| usize::from(status - 400))
        }
    }

    impl Default for HttpRetryOn {
        fn default() -> Self {
            Self::new()
        }
    }

    impl fmt::Debug for HttpRetryOn {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let codes: Vec<u16> = (400..=599)
                .filter(|c| self.retries_status(StatusCode::from_u16(*c).unwrap_or(StatusCode::OK)))
                .collect();
            f.debug_struct("HttpRetryOn")
                .field("statuses", &codes)
                .finish()
        }
    }

    impl<R: HttpResponseHead> RetryOn<R> for HttpRetryOn {
        fn verdict(&self, result: &Result<R, BoxError>) -> Verdict {
            let res = match result {
                Ok(res) => res,
                Err(_) => return Verdict::Retry,
            };
            let status = res.status();
            if !self.retries_status(status) {
                return Verdict::Done;
            }
            if let Some(after) = hints::retry_after(res.headers(), (self.wall_clock)()) {
                return Verdict::RetryAfter(after);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                Verdict::RetryThrottled
            } else {
                Verdict::Retry
            }
        }
    }

    /// The gRPC retry rule: the `grpc-status` codes in a set (UNAVAILABLE by
    /// default) and transport errors are retried, honouring
    /// `grpc-retry-pushback-ms`.
    ///
    /// gRPC calls are POSTs, so a call that is not marked idempotent
    /// ([`Idempotent`](super::super::Idempotent), an idempotent path, an
    /// `Idempotency-Key`) is retried only on the retry codes and on errors
    /// that prove it was never sent ([`RetryOn::not_processed`]): never
    /// after an attempt timeout or a reset mid-call.
    ///
    /// Only a response *head* is read: a trailers-only response (how a
    /// server fails a call at once) carries `grpc-status` there, and a
    /// proxy's non-200 status maps to a code as the gRPC spec says. A call
    /// whose status only arrives in the trailers has been committed and is
    /// not retried, as gRPC's own retry design requires.
    /// RESOURCE_EXHAUSTED, when added to the set, waits the throttled backoff.
    ///
    /// ```
    /// use steadfast::classify::GrpcCode;
    /// use steadfast::retry::{GrpcRetryOn, RetryOn, Verdict};
    ///
    /// let on = GrpcRetryOn::new();
    /// let res = http::Response::builder().header("grpc-status", "14").body(()).unwrap();
    /// assert_eq!(on.verdict(&Ok(res)), Verdict::Retry);
    /// let res = http::Response::builder()
    ///     .header("grpc-status", "14")
    ///     .header("grpc-retry-pushback-ms", "-1")
    ///     .body(())
    ///     .unwrap();
    /// assert_eq!(on.verdict(&Ok(res)), Verdict::GiveUp);
    /// ```
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct GrpcRetryOn {
        codes: u32,
    }

    impl GrpcRetryOn {
        /// Retries UNAVAILABLE and transport errors.
        pub const fn new() -> Self {
            Self {
                codes: 1 << GrpcCode::Unavailable as u32,
            }
        }

        /// Also retries `code`.
        pub const fn retry_code(mut self, code: GrpcCode) -> Self {
            self.codes |= 1 << code as u32;
            self
        }

        /// Stops retrying `code`.
        pub const fn no_retry_code(mut self, code: GrpcCode) -> Self {
            self.codes &= !(1 << code as u32);
            self
        }

        /// `true` when `code` is retried.
        pub const fn retries_code(&self, code: GrpcCode) -> bool {
            self.codes & (1 << code as u32) != 0
        }
    }

    impl Default for GrpcRetryOn {
        fn default() -> Self {
            Self::new()
        }
    }

    impl fmt::Debug for GrpcRetryOn {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let codes: Vec<GrpcCode> = GrpcCode::ALL
                .iter()
                .copied()
                .filter(|c| self.retries_code(*c))
                .collect();
            f.debug_struct("GrpcRetryOn")
                .field("codes", &codes)
                .finish()
        }
    }

    impl<R: HttpResponseHead> RetryOn<R> for GrpcRetryOn {
        /// A response whose head carries one of the retry codes proves the
        /// call was not processed (gRPC's retry design: the codes a service
        /// lists as retryable are the ones it answers without acting); an
        /// error, only when [`is_not_sent`](crate::classify::is_not_sent)
        /// says so.
        fn not_processed(&self, result: &Result<R, BoxError>) -> bool {
            match result {
                Ok(res) => GrpcCode::from_response_head(res.status(), res.headers())
                    .is_some_and(|code| self.retries_code(code)),
                Err(e) => crate::classify::is_not_sent(e.as_ref()),
            }
        }

        fn verdict(&self, result: &Result<R, BoxError>) -> Verdict {
            let res = match result {
                Ok(res) => res,
                Err(_) => return Verdict::Retry,
            };
            let code = match GrpcCode::from_response_head(res.status(), res.headers()) {
                Some(code) if self.retries_code(code) => code,
                _ => return Verdict::Done,
            };
            match hints::grpc_retry_pushback(res.headers()) {
                Some(Pushback::DoNotRetry) => Verdict::GiveUp,
                Some(Pushback::RetryAfter(after)) => Verdict::RetryAfter(after),
                None if code == GrpcCode::ResourceExhausted => Verdict::RetryThrottled,
                None => Verdict::Retry,
            }
        }
    }
}
