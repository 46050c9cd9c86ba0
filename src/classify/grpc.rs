use std::error::Error;
use std::fmt;

use http::{HeaderMap, StatusCode};

use super::{Classify, HttpResponseHead, Outcome};

/// A gRPC status code, as carried in the `grpc-status` header.
///
/// Our own small copy, so the library needs no tonic dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// 0: not an error.
    Ok = 0,
    /// 1: the caller cancelled.
    Cancelled = 1,
    /// 2: unknown error.
    Unknown = 2,
    /// 3: the client sent an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline passed before the operation finished.
    DeadlineExceeded = 4,
    /// 5: an entity was not found.
    NotFound = 5,
    /// 6: an entity already exists.
    AlreadyExists = 6,
    /// 7: the caller may not do this.
    PermissionDenied = 7,
    /// 8: a resource (quota, memory) ran out.
    ResourceExhausted = 8,
    /// 9: the system is not in a state for this operation.
    FailedPrecondition = 9,
    /// 10: aborted, usually by a concurrency conflict.
    Aborted = 10,
    /// 11: past the valid range.
    OutOfRange = 11,
    /// 12: not implemented by the server.
    Unimplemented = 12,
    /// 13: internal error.
    Internal = 13,
    /// 14: the service is unavailable; the usual transient error.
    Unavailable = 14,
    /// 15: unrecoverable data loss.
    DataLoss = 15,
    /// 16: no valid credentials.
    Unauthenticated = 16,
}

impl GrpcCode {
    pub(crate) const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code for a numeric value; values outside 0..=16 are `Unknown`, as
    /// the gRPC spec asks.
    pub const fn from_i32(value: i32) -> Self {
        if value >= 0 && value <= 16 {
            Self::ALL[value as usize]
        } else {
            GrpcCode::Unknown
        }
    }

    /// Parses a `grpc-status` header value: a decimal number from 0 to 16
    /// without leading zeros. Anything else gives `Unknown`; never panics.
    pub fn from_header_bytes(bytes: &[u8]) -> Self {
        match bytes {
            [d] if d.is_ascii_digit() => Self::from_i32(i32::from(d - b'0')),
            [b'1', d] if d.is_ascii_digit() => Self::from_i32(10 + i32::from(d - b'0')),
            _ => GrpcCode::Unknown,
        }
    }

    /// The code the gRPC spec assigns to a response with HTTP status
    /// `status` that carries no `grpc-status` (an intermediary answered).
    pub fn from_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            200 => GrpcCode::Ok,
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502 | 503 | 504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }

    /// The code in the response's headers: `grpc-status` if present (a
    /// trailers-only response), else derived from a non-200 HTTP status,
    /// else `None` (the status will come in trailers).
    pub fn from_response_head(status: StatusCode, headers: &HeaderMap) -> Option<Self> {
        if let Some(v) = headers.get("grpc-status") {
            return Some(Self::from_header_bytes(v.as_bytes()));
        }
        if status != StatusCode::OK {
            return Some(Self::from_http_status(status));
        }
        None
    }

    /// The code a gRPC caller should see for an error of this crate's
    /// layers, found anywhere in `err`'s `source()` chain; `None` for every
    /// other error.
    ///
    /// | error | code |
    /// |---|---|
    /// | `CircuitOpen`, `BulkheadFull` | `Unavailable`: never sent, try again later |
    /// | `RateLimited` | `ResourceExhausted`: over the rate limit, try again after a while |
    /// | `DeadlineExceeded`, `Elapsed` | `DeadlineExceeded` |
    /// | tonic's `TimeoutExpired` (feature `tonic`) | `DeadlineExceeded`, as `Elapsed`: the `Channel`'s twin of our attempt timer (tonic itself says `Cancelled`) |
    ///
    /// The first of these errors in the chain decides. The table behind
    /// `GrpcStatusLayer` (feature `tonic`), for services that build their
    /// own `Status` or trailers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::circuit_breaker::{error::CircuitOpen, CircuitState};
    /// use steadfast::classify::GrpcCode;
    /// use steadfast::timeout::error::Elapsed;
    /// use steadfast::BoxError;
    ///
    /// let open: BoxError = Box::new(CircuitOpen::new(CircuitState::Open, None));
    /// assert_eq!(GrpcCode::of_error(open.as_ref()), Some(GrpcCode::Unavailable));
    /// let late: BoxError = Box::new(Elapsed::new(Duration::from_millis(300)));
    /// assert_eq!(GrpcCode::of_error(late.as_ref()), Some(GrpcCode::DeadlineExceeded));
    /// let other: BoxError = std::io::Error::other("connection reset").into();
    /// assert_eq!(GrpcCode::of_error(other.as_ref()), None);
    /// ```
    pub fn of_error(err: &(dyn Error + 'static)) -> Option<Self> {
        own_error_in(err).map(|(code, _)| code)
    }

    /// The numeric value.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

/// The first error of this crate's layers in `err`'s chain, with the gRPC
/// code it maps to: the one table behind [`GrpcCode::of_error`] and the
/// tonic status mapping.
pub(crate) fn own_error_in<'a>(
    err: &'a (dyn Error + 'static),
) -> Option<(GrpcCode, &'a (dyn Error + 'static))> {
    use crate::error::is_attempt_timeout_link;
    use crate::rejection::{BulkheadFull, CircuitOpen, DeadlineExceeded, RateLimited};

    let mut current: Option<&'a (dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        let code = if e.is::<CircuitOpen>() || e.is::<BulkheadFull>() {
            Some(GrpcCode::Unavailable)
        } else if e.is::<RateLimited>() {
            Some(GrpcCode::ResourceExhausted)
        } else if e.is::<DeadlineExceeded>() || is_attempt_timeout_link(e) {
            Some(GrpcCode::DeadlineExceeded)
        } else {
            None
        };
        if let Some(code) = code {
            return Some((code, e));
        }
        current = e.source();
    }
    None
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Classifies gRPC responses by the `grpc-status` in their headers.
///
/// UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL and UNKNOWN
/// (and transport errors) are failures; OK is a success; every other code is
/// ignored (the caller's problem, not the backend's).
///
/// Only the response head is read: a trailers-only response (how servers
/// answer calls that fail at once) carries `grpc-status` there, and a
/// non-200 HTTP status from a proxy is mapped as the gRPC spec says. A
/// response whose head has neither is a success so far — its status arrives
/// in the trailers, after the breaker has recorded the call.
///
/// ```
/// use steadfast::classify::{Classify, GrpcClassifier, GrpcCode, Outcome};
///
/// let classify = GrpcClassifier::new().failure(GrpcCode::Aborted);
/// let res = http::Response::builder().header("grpc-status", "10").body(()).unwrap();
/// assert_eq!(classify.classify(&Ok::<_, ()>(res)), Outcome::Failure);
/// assert_eq!(classify.outcome_of(GrpcCode::NotFound), Outcome::Ignored);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
}

impl GrpcClassifier {
    /// The default failure codes.
    pub const fn new() -> Self {
        Self {
            failures: GrpcCode::Unavailable.bit()
                | GrpcCode::DeadlineExceeded.bit()
                | GrpcCode::ResourceExhausted.bit()
                | GrpcCode::Internal.bit()
                | GrpcCode::Unknown.bit(),
        }
    }

    /// Counts `code` as a failure.
    pub const fn failure(mut self, code: GrpcCode) -> Self {
        self.failures |= code.bit();
        self
    }

    /// Stops counting `code` as a failure (it becomes ignored, or a success
    /// for `Ok`).
    pub const fn not_failure(mut self, code: GrpcCode) -> Self {
        self.failures &= !code.bit();
        self
    }

    /// The outcome of a call that ended with `code`.
    pub const fn outcome_of(&self, code: GrpcCode) -> Outcome {
        if self.failures & code.bit() != 0 {
            Outcome::Failure
        } else if matches!(code, GrpcCode::Ok) {
            Outcome::Success
        } else {
            Outcome::Ignored
        }
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failures: Vec<GrpcCode> = GrpcCode::ALL
            .iter()
            .copied()
            .filter(|c| self.failures & c.bit() != 0)
            .collect();
        f.debug_struct("GrpcClassifier")
            .field("failures", &failures)
            .finish()
    }
}

impl<R: HttpResponseHead, E> Classify<R, E> for GrpcClassifier {
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        match result {
            Ok(res) => match GrpcCode::from_response_head(res.status(), res.headers()) {
                Some(code) => self.outcome_of(code),
                None => Outcome::Success,
            },
            Err(_) => Outcome::Failure,
        }
    }
}
