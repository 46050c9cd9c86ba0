//! Deciding what a finished call means: [`Outcome`] and the [`Classify`] trait.
//!
//! One classifier decides, for each finished call, whether it was a
//! [`Success`](Outcome::Success), a [`Failure`](Outcome::Failure) of the
//! backend, or [`Ignored`](Outcome::Ignored) (neither: a client error such as
//! a 404, or a rejection produced by one of this crate's own layers). The
//! same classifier feeds the circuit breaker, retry, budget and metrics, so
//! "what is a failure" is configured once.
//!
//! | classifier | for | failures |
//! |---|---|---|
//! | [`ErrorsAsFailures`] | any service (the default) | every `Err` |
//! | `HttpClassifier` (feature `http`) | `http::Response<B>` | transport errors, 5xx, 408, 429 |
//! | `GrpcClassifier` (feature `http`) | gRPC over `http::Response<B>` | transport errors, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNKNOWN |
//!
//! Any `Fn(&Result<Res, Err>) -> Outcome` is a classifier too:
//!
//! ```
//! use steadfast::classify::{Classify, Outcome};
//! use steadfast::BoxError;
//!
//! // A backend that reports overload as `Ok(None)`.
//! let classify = |res: &Result<Option<u32>, BoxError>| match res {
//!     Ok(Some(_)) => Outcome::Success,
//!     Ok(None) | Err(_) => Outcome::Failure,
//! };
//! assert_eq!(classify.classify(&Ok(None)), Outcome::Failure);
//! ```
//!
//! # Was it sent?
//!
//! [`is_not_sent`] tells a failure that proves the server never saw the
//! request (connection refused, a connector failure, HTTP/2
//! `REFUSED_STREAM`, an error wrapped in [`NotSent`]) from one that may have
//! reached it (a timeout, a reset mid-call). Retry reads it before repeating
//! a request that is not safe to repeat; see [`sent`].
//!
//! # Rejections of our own
//!
//! Errors produced by this crate's layers — [`CircuitOpen`] and the rest — are
//! never a failure of the backend. The layers check for them before calling
//! the classifier and count them as [`Outcome::Ignored`], whatever the
//! classifier would say. A call whose future is dropped before it finishes
//! (the caller gave up) is not classified at all.
//!
//! [`CircuitOpen`]: crate::CircuitOpen

#[cfg(feature = "http")]
mod grpc;
#[cfg(feature = "http")]
pub mod hints;
#[cfg(feature = "http")]
mod http;
pub mod sent;

#[cfg(feature = "tonic")]
pub(crate) use self::grpc::own_error_in;
#[cfg(feature = "http")]
pub use self::grpc::{GrpcClassifier, GrpcCode};
#[cfg(feature = "http")]
pub use self::http::{HttpClassifier, HttpResponseHead};
pub use self::sent::{is_not_sent, NotSent};

/// What a finished call means for the health of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The backend did its job.
    Success,
    /// The backend failed; counts towards tripping a breaker and may be retried.
    Failure,
    /// Neither: counted in metrics, but moves no state machine.
    Ignored,
}

impl Outcome {
    /// `true` for [`Outcome::Failure`].
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }
}

/// Classifies a finished call into an [`Outcome`].
///
/// Implemented by [`ErrorsAsFailures`], `HttpClassifier`,
/// `GrpcClassifier` (feature `http`) and every `Fn(&Result<Res, Err>) -> Outcome`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify a `Result<{Res}, {Err}>`",
    label = "`{Self}` does not implement `Classify<{Res}, {Err}>`",
    note = "`HttpClassifier` and `GrpcClassifier` classify responses that implement `steadfast::classify::HttpResponseHead`: `http::Response<B>` and `reqwest::Response` (feature `reqwest`); `ErrorsAsFailures` classifies any result",
    note = "closures `Fn(&Result<Res, Err>) -> Outcome` implement `Classify` too"
)]
pub trait Classify<Res, Err> {
    /// Decides what the finished call means.
    fn classify(&self, result: &Result<Res, Err>) -> Outcome;
}

impl<F, Res, Err> Classify<Res, Err> for F
where
    F: Fn(&Result<Res, Err>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        self(result)
    }
}

/// Every `Ok` is a success and every `Err` a failure: the default for
/// services that are not HTTP or gRPC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorsAsFailures;

impl ErrorsAsFailures {
    /// Creates the classifier.
    pub const fn new() -> Self {
        Self
    }
}

impl<Res, Err> Classify<Res, Err> for ErrorsAsFailures {
    #[inline]
    fn classify(&self, result: &Result<Res, Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}
