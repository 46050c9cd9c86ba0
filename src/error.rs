//! Errors shared by every layer: [`BoxError`], [`InvalidConfig`] and helpers
//! that find a typed error anywhere in a `source()` chain.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;

/// The boxed error type returned by layers that add failures of their own.
///
/// It is the same alias tower uses, so errors pass between tower layers and
/// ours without conversion.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A configuration value broke a rule; returned by every `build()`.
///
/// The message names the field and the rule, e.g.
/// ``invalid `circuit_breaker.failure_rate`: must be in (0, 100], got 150``.
///
/// ```
/// use steadfast::circuit_breaker::CircuitBreakerConfig;
///
/// let err = CircuitBreakerConfig::builder().failure_rate(150.0).build().unwrap_err();
/// assert_eq!(err.field(), "circuit_breaker.failure_rate");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl InvalidConfig {
    pub(crate) fn new(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The dotted name of the offending field, e.g. `circuit_breaker.minimum_calls`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the value broke, e.g. `must be at least 1, got 0`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl Error for InvalidConfig {}

/// How deep the helpers here follow a `source()` chain: a bound against a
/// hostile or cyclic chain (an error whose `source()` is itself), far beyond
/// any real one.
pub(crate) const MAX_CHAIN_DEPTH: usize = 64;

/// `err`, then each error in its `source()` chain, at most
/// [`MAX_CHAIN_DEPTH`] in all.
pub(crate) fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source()).take(MAX_CHAIN_DEPTH)
}

/// An error that can be looked at as a `&(dyn Error + 'static)`, so that
/// [`Rejection::of(&err)`](crate::Rejection::of) takes it as it is.
///
/// Implemented for [`BoxError`] and the other boxed `dyn Error`s, for
/// `dyn Error` itself, for `Box<E>` of any error, for `std::io::Error`,
/// and for references to any of these (so `Rejection::of(&err)` works
/// whether `err` is a `BoxError` or a `&dyn Error`).
///
/// # Why not every `Error`?
///
/// A blanket `impl<E: Error> AsError for E` would cover every error type,
/// but Rust then refuses the impl for [`BoxError`] (std could one day make
/// `Box<dyn Error + Send + Sync>` an `Error` itself, and the two would
/// overlap). [`BoxError`] is what every layer of this crate returns, so it
/// wins. For another error type — your own, or one from a transport — add
/// the one-line impl, or pass it as a `&dyn Error`:
///
/// ```
/// use std::error::Error;
/// use steadfast::{AsError, Rejection};
///
/// #[derive(Debug)]
/// struct CallFailed(steadfast::BoxError);
/// # impl std::fmt::Display for CallFailed {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("call failed") }
/// # }
/// impl Error for CallFailed {
///     fn source(&self) -> Option<&(dyn Error + 'static)> {
///         Some(self.0.as_ref())
///     }
/// }
///
/// impl AsError for CallFailed {
///     fn as_error(&self) -> &(dyn Error + 'static) {
///         self
///     }
/// }
///
/// let err = CallFailed(steadfast::Elapsed::new(std::time::Duration::from_secs(2)).into());
/// assert!(Rejection::of(&err).is_some());
/// // Without the impl, as a `&dyn Error`:
/// assert!(Rejection::of(&err as &dyn Error).is_some());
/// ```
#[diagnostic::on_unimplemented(
    message = "`Rejection::of` cannot read `{Self}` as an error chain",
    label = "`{Self}` does not implement `steadfast::AsError`",
    note = "pass it as a `&dyn std::error::Error` (`&err as &dyn std::error::Error`), or implement `AsError` for it in one line: `fn as_error(&self) -> &(dyn Error + 'static) {{ self }}`"
)]
pub trait AsError {
    /// `self` as a trait object whose `source()` chain can be walked.
    fn as_error(&self) -> &(dyn Error + 'static);
}

macro_rules! as_error_for_dyn {
    ($($ty:ty),* $(,)?) => {$(
        impl AsError for $ty {
            fn as_error(&self) -> &(dyn Error + 'static) {
                self
            }
        }

        impl AsError for Box<$ty> {
            fn as_error(&self) -> &(dyn Error + 'static) {
                &**self
            }
        }
    )*};
}

as_error_for_dyn!(
    dyn Error + 'static,
    dyn Error + Send + 'static,
    dyn Error + Send + Sync + 'static,
);

impl<E: Error + 'static> AsError for Box<E> {
    fn as_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}

impl AsError for std::io::Error {
    fn as_error(&self) -> &(dyn Error + 'static) {
        self
    }
}

/// A `tonic::Status` holding one of our errors as its source (what the gRPC
/// preset returns with feature `tonic`).
#[cfg(feature = "tonic")]
impl AsError for tonic::Status {
    fn as_error(&self) -> &(dyn Error + 'static) {
        self
    }
}

impl<T: AsError + ?Sized> AsError for &T {
    fn as_error(&self) -> &(dyn Error + 'static) {
        (**self).as_error()
    }
}

/// Returns `true` if `err` or any error in its `source()` chain is an `E`.
///
/// Layers wrap and box errors, so `err.is::<E>()` only looks at the outermost
/// one; this walks the chain (at most 64 errors deep).
///
/// ```
/// use steadfast::{is_caused_by, BoxError};
/// use steadfast::circuit_breaker::error::CircuitOpen;
///
/// fn fell_back(err: &BoxError) -> bool {
///     is_caused_by::<CircuitOpen>(err.as_ref())
/// }
/// # let _ = fell_back;
/// ```
pub fn is_caused_by<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    cause_ref::<E>(err).is_some()
}

/// Finds the first `E` in `err` or its `source()` chain (at most 64 errors
/// deep).
pub fn cause_ref<'a, E: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a E> {
    chain(err).find_map(|e| e.downcast_ref::<E>())
}

/// `true` when the error is a rejection produced by one of this crate's own
/// layers (not a failure of the backend). Such errors classify as
/// [`Outcome::Ignored`](crate::classify::Outcome::Ignored) in the breaker.
///
/// `Elapsed` (a per-attempt timeout) is *not* one: a backend that does not
/// answer in time has failed.
pub(crate) fn is_own_rejection(err: &(dyn Error + 'static)) -> bool {
    crate::rejection::Rejection::of(err).is_some_and(|r| !r.is_backend_failure())
}

/// `true` when `err`, or an error in its `source()` chain, says an attempt
/// ran out of time: our [`Elapsed`](crate::rejection::Elapsed), or (feature
/// `tonic`) tonic's own `TimeoutExpired`, which a tonic `Channel` raises
/// when the request's `grpc-timeout` passes.
///
/// The one test for "the attempt timed out": the retry layer (which never
/// repeats a call that is not safe to repeat after one, unless
/// `retry_timeouts`) and the gRPC status mapping
/// ([`GrpcCode::of_error`](crate::classify::GrpcCode::of_error)) read it,
/// so that the two timers, ours and tonic's, mean the same wherever one of
/// them fires first.
pub(crate) fn is_attempt_timeout(err: &(dyn Error + 'static)) -> bool {
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        if is_attempt_timeout_link(e) {
            return true;
        }
        current = e.source();
    }
    false
}

/// One link of [`is_attempt_timeout`]'s chain.
#[inline]
pub(crate) fn is_attempt_timeout_link(e: &(dyn Error + 'static)) -> bool {
    #[cfg(feature = "tonic")]
    if e.is::<tonic::TimeoutExpired>() {
        return true;
    }
    e.is::<crate::rejection::Elapsed>()
}
