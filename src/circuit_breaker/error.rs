//! Errors produced by the circuit breaker: [`BreakerError`], the error type
//! of [`CircuitBreaker`](super::CircuitBreaker) and
//! [`KeyedCircuitBreaker`](super::KeyedCircuitBreaker), and the rejection
//! [`CircuitOpen`] (defined in the shared core, so that other layers can
//! recognise it).

use std::error::Error;
use std::fmt;
use std::ops::Deref;

use crate::error::BoxError;
pub use crate::rejection::CircuitOpen;

/// The error of a circuit-breaker service: the breaker refused the call
/// ([`CircuitOpen`]), or the inner service failed.
///
/// A rejection is held in place, not boxed: an open breaker refuses a call
/// without a heap allocation. It reads like a [`BoxError`]:
///
/// - it dereferences to `dyn Error + Send + Sync`, so `downcast_ref`, `is`,
///   `source` and [`is_caused_by`](crate::is_caused_by)`(&*err)` work as on
///   a box;
/// - it converts into [`BoxError`] (and `Box<dyn Error>`) with `From`, so
///   `?`, `.into()` and every layer or client that asks for
///   `Into<BoxError>` (tower's, tonic's, this crate's) take it; the inner
///   error comes out as it was, unwrapped, and only a rejection is boxed
///   then.
///
/// It does not implement [`std::error::Error`] itself: that would make the
/// conversion into [`BoxError`] wrap it instead of unwrapping it (the same
/// choice `anyhow::Error` makes).
///
/// ```
/// use steadfast::circuit_breaker::error::{BreakerError, CircuitOpen};
/// use steadfast::circuit_breaker::CircuitState;
///
/// let err = BreakerError::from(CircuitOpen::new(CircuitState::ForcedOpen, None));
/// assert!(err.downcast_ref::<CircuitOpen>().is_some());
/// assert!(steadfast::is_caused_by::<CircuitOpen>(&*err));
/// let boxed: steadfast::BoxError = err.into();
/// assert!(boxed.is::<CircuitOpen>());
/// ```
pub enum BreakerError {
    /// The breaker refused the call; the inner service was not called.
    Open(CircuitOpen),
    /// The inner service's error, converted with `Into`.
    Inner(BoxError),
}

impl BreakerError {
    /// The rejection, when the breaker refused the call.
    pub fn circuit_open(&self) -> Option<&CircuitOpen> {
        match self {
            Self::Open(open) => Some(open),
            Self::Inner(_) => None,
        }
    }

    /// `true` when the breaker refused the call.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open(_))
    }

    /// The error as a [`BoxError`]: the inner error as it was, or the
    /// rejection boxed.
    pub fn into_box(self) -> BoxError {
        match self {
            Self::Open(open) => Box::new(open),
            Self::Inner(err) => err,
        }
    }
}

impl From<CircuitOpen> for BreakerError {
    fn from(open: CircuitOpen) -> Self {
        Self::Open(open)
    }
}

impl Deref for BreakerError {
    type Target = dyn Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Open(open) => open,
            Self::Inner(err) => &**err,
        }
    }
}

impl AsRef<dyn Error + Send + Sync + 'static> for BreakerError {
    fn as_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &**self
    }
}

impl fmt::Display for BreakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl fmt::Debug for BreakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<BreakerError> for Box<dyn Error + Send + Sync + 'static> {
    fn from(err: BreakerError) -> Self {
        err.into_box()
    }
}

impl From<BreakerError> for Box<dyn Error + Send + 'static> {
    fn from(err: BreakerError) -> Self {
        err.into_box()
    }
}

impl From<BreakerError> for Box<dyn Error + 'static> {
    fn from(err: BreakerError) -> Self {
        err.into_box()
    }
}

impl crate::error::AsError for BreakerError {
    fn as_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}
