//! The error of [`Fallback`](super::Fallback) when the fallback itself fails.

use std::any::Any;
use std::error::Error;
use std::fmt;

use crate::error::BoxError;

/// The fallback failed: it returned an error, or it panicked.
///
/// The fallback's own error is the [`source()`](Error::source); the
/// failure that made it run stays reachable with [`original`](Self::original).
/// A panic of the fallback is caught and reported here
/// ([`panicked`](Self::panicked)), with its message when the payload is a
/// `&str` or a `String` (what `panic!` makes). See the module docs.
#[derive(Debug)]
pub struct FallbackFailed {
    cause: Cause,
    original: Original,
}

#[derive(Debug)]
enum Cause {
    Error(BoxError),
    Panic(Option<String>),
    /// The fallback declined a response it had been given.
    Declined,
}

#[derive(Debug)]
enum Original {
    Error(BoxError),
    Response,
}

impl FallbackFailed {
    fn new(cause: Cause, original: Option<BoxError>) -> Self {
        Self {
            cause,
            original: original.map_or(Original::Response, Original::Error),
        }
    }

    /// The fallback returned `err`; `original` is the call's error, `None`
    /// when the call's response was classified as a failure.
    pub(crate) fn error(err: BoxError, original: Option<BoxError>) -> Self {
        Self::new(Cause::Error(err), original)
    }

    /// The fallback panicked with `payload`.
    pub(crate) fn panic(payload: &(dyn Any + Send), original: Option<BoxError>) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        Self::new(Cause::Panic(message), original)
    }

    /// The fallback declined a failed response.
    pub(crate) fn declined() -> Self {
        Self::new(Cause::Declined, None)
    }

    /// `true` when the fallback panicked (the panic was caught).
    pub fn panicked(&self) -> bool {
        matches!(self.cause, Cause::Panic(_))
    }

    /// The panic's message, when the fallback panicked with a `&str` or a
    /// `String` payload.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.cause {
            Cause::Panic(message) => message.as_deref(),
            _ => None,
        }
    }

    /// The error that made the fallback run; `None` when it ran for a
    /// response the classifier called a failure.
    pub fn original(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match &self.original {
            Original::Error(e) => Some(e.as_ref()),
            Original::Response => None,
        }
    }

    /// The error that made the fallback run, by value; `None` when it ran
    /// for a response the classifier called a failure.
    pub fn into_original(self) -> Option<BoxError> {
        match self.original {
            Original::Error(e) => Some(e),
            Original::Response => None,
        }
    }
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Error(e) => write!(f, "fallback failed: {e}")?,
            Cause::Panic(Some(message)) => write!(f, "fallback panicked: {message}")?,
            Cause::Panic(None) => f.write_str("fallback panicked")?,
            Cause::Declined => f.write_str("fallback declined a failed response")?,
        }
        match &self.original {
            Original::Error(e) => write!(f, " (after: {e})"),
            Original::Response => f.write_str(" (after a failed response)"),
        }
    }
}

impl Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.cause {
            Cause::Error(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}
