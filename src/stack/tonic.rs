//! [`GrpcStatusLayer`]: our errors as the `tonic::Status` a gRPC caller
//! expects. The reasoning is on the layer (this module is private).

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::classify::own_error_in;
use crate::error::BoxError;

/// Turns this crate's own errors into a boxed `tonic::Status` with the
/// right code: [`GrpcStatus`].
///
/// # Why
///
/// A generated tonic client turns whatever error its inner service returns
/// into a `Status` with `Status::from_error`: a boxed `Status` is taken as
/// it is; anything else is searched for a `Status` (and a few transport
/// errors) along its `source()` chain, and becomes `Status { code: Unknown }`
/// when none is found. Without this layer a `CircuitOpen` from the breaker
/// reaches a tonic caller as `Unknown: circuit open; next probe in 4.6s` —
/// the right words under the wrong code, and a caller that branches on
/// `status.code()` (to fail over on UNAVAILABLE, to give up on
/// DEADLINE_EXCEEDED) cannot tell a rejection from a bug.
///
/// [`GrpcStatus`] answers our errors with a boxed `Status` instead, with the
/// code from [`GrpcCode::of_error`] (one table for both):
///
/// | error | `Status` code |
/// |---|---|
/// | `CircuitOpen`, `BulkheadFull` | UNAVAILABLE (never sent; try later or elsewhere) |
/// | `RateLimited` | RESOURCE_EXHAUSTED (never sent; over the rate limit) |
/// | `DeadlineExceeded`, `Elapsed` | DEADLINE_EXCEEDED |
/// | `tonic::TimeoutExpired` | DEADLINE_EXCEEDED (tonic itself says CANCELLED) |
///
/// The message is our error's `Display`, and the `Status`'s source is the
/// error itself, so `is_caused_by::<CircuitOpen>(&status)` and
/// `status.source()` still find it. Every other error passes through
/// unchanged, for tonic to map as it always has.
///
/// tonic's `Channel` enforces the request's `grpc-timeout` on its own
/// (`TimeoutExpired`), and with a deadline-aware per-attempt timeout that
/// limit is our attempt timer's: either can fire first. Mapped the same,
/// the caller sees DEADLINE_EXCEEDED whichever won.
///
/// # Example
///
/// Put it outermost, over every layer whose errors it should map, so that a
/// generated tonic client (or any caller that looks for a `Status`) sees
/// UNAVAILABLE for an open breaker and a full bulkhead, and
/// DEADLINE_EXCEEDED for timeouts:
///
/// ```
/// use std::time::Duration;
/// use steadfast::circuit_breaker::{error::CircuitOpen, CircuitBreakerLayer};
/// use steadfast::stack::GrpcStatusLayer;
/// use steadfast::is_caused_by;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let breaker = CircuitBreakerLayer::default();
/// breaker.handle().force_open();
/// let svc = ServiceBuilder::new()
///     .layer(GrpcStatusLayer::new())
///     .layer(breaker)
///     .service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
///
/// let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
/// // What a generated client does with the error: a boxed `Status` is taken as it is.
/// let status = tonic::Status::from_error(err);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.message(), "circuit forced open");
/// assert!(is_caused_by::<CircuitOpen>(&status));
/// # Ok(())
/// # }
/// ```
///
/// [`GrpcCode::of_error`]: crate::classify::GrpcCode::of_error
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcStatusLayer {
    _priv: (),
}

impl GrpcStatusLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for GrpcStatusLayer {
    type Service = GrpcStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcStatus::new(inner)
    }
}

/// Answers this crate's own errors with a boxed `tonic::Status`; made by
/// [`GrpcStatusLayer`].
///
/// Responses and every other error pass through as they are; the response
/// future is [`GrpcStatusFuture`], with no allocation unless an error is
/// mapped.
///
/// # Clone
///
/// A plain wrapper: clones share nothing but the inner service's sharing.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's, its errors mapped the same way.
///
/// See [`GrpcStatusLayer`] for the mapping.
#[derive(Debug, Clone)]
pub struct GrpcStatus<S> {
    inner: S,
}

impl<S> GrpcStatus<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    define_inner_service_accessors!();
}

impl<S, Req> Service<Req> for GrpcStatus<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = GrpcStatusFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(map_error)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        GrpcStatusFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`GrpcStatus`]: the inner future, its error
    /// mapped.
    pub struct GrpcStatusFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F> fmt::Debug for GrpcStatusFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcStatusFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for GrpcStatusFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(self.project().inner.poll(cx));
        Poll::Ready(result.map_err(map_error))
    }
}

#[cold]
fn map_error<E: Into<BoxError>>(err: E) -> BoxError {
    match try_status_from(err.into()) {
        Ok(status) => Box::new(status),
        Err(err) => err,
    }
}

/// `err` as a `tonic::Status` when it is one of this crate's own errors (or
/// has one in its `source()` chain), with the code of
/// [`GrpcCode::of_error`](crate::classify::GrpcCode::of_error), our error's
/// `Display` as the message and `err` as the source; otherwise `err` back,
/// untouched (a `Status` included).
///
/// What [`GrpcStatus`] does to each error, for code that builds its own
/// `Status` (a server handler that calls another service through our
/// layers, say).
///
/// ```
/// use std::time::Duration;
/// use steadfast::stack::try_status_from;
/// use steadfast::timeout::error::Elapsed;
/// use steadfast::BoxError;
///
/// let late: BoxError = Box::new(Elapsed::new(Duration::from_millis(300)));
/// let status = try_status_from(late).unwrap();
/// assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
/// assert_eq!(status.message(), "attempt timed out after 300ms");
///
/// let other: BoxError = std::io::Error::other("connection reset").into();
/// assert_eq!(try_status_from(other).unwrap_err().to_string(), "connection reset");
/// ```
pub fn try_status_from(err: BoxError) -> Result<tonic::Status, BoxError> {
    if err.is::<tonic::Status>() {
        // Already what tonic looks for first.
        return Err(err);
    }
    let (code, message) = match own_error_in(err.as_ref()) {
        Some((code, own)) => (code, own.to_string()),
        None => return Err(err),
    };
    let mut status = tonic::Status::new(tonic::Code::from_i32(code.as_i32()), message);
    let source: Arc<dyn Error + Send + Sync + 'static> = Arc::from(err);
    status.set_source(source);
    Ok(status)
}
