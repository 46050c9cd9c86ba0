//! Opt-in per-call spans: [`CallSpanLayer`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;
use tracing::instrument::{Instrument, Instrumented};
use tracing::{Level, Span};

/// Opens one `tracing` span per call, named `resilience.call` with the
/// field `name`, around the `call` and every poll of its future: the
/// events the layers inside emit for that call (a rejection, a retry, a
/// timeout) nest in it, and so do the service's own.
///
/// Per-call spans are opt-in: no layer of this crate opens one unless this
/// layer is added, outermost where the span should cover the retries:
///
/// ```
/// use steadfast::metrics::CallSpanLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let svc = ServiceBuilder::new()
///     .layer(CallSpanLayer::new("products"))
///     .service(service_fn(|n: u32| async move {
///         tracing::debug!("inside the call's span");
///         Ok::<_, std::io::Error>(n + 1)
///     }));
/// assert_eq!(svc.oneshot(1).await?, 2);
/// # Ok(())
/// # }
/// ```
///
/// The span's level is `DEBUG` unless [`level`](Self::level) says
/// otherwise. While no subscriber wants it, the span is disabled: the call
/// costs one check of the level, nothing is allocated, and the future is
/// the inner one plus a disabled span.
///
/// # Clone
///
/// Clones share the name (an `Arc<str>`, not copied per call).
#[derive(Clone)]
pub struct CallSpanLayer {
    name: Arc<str>,
    level: Level,
}

impl CallSpanLayer {
    /// Spans named `resilience.call` with `name = name`, at `DEBUG`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            level: Level::DEBUG,
        }
    }

    /// The spans' level.
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
}

impl fmt::Debug for CallSpanLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSpanLayer")
            .field("name", &self.name)
            .field("level", &self.level)
            .finish()
    }
}

impl<S> Layer<S> for CallSpanLayer {
    type Service = CallSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallSpan {
            inner,
            name: self.name.clone(),
            level: self.level,
        }
    }
}

/// The service of a [`CallSpanLayer`].
///
/// # Clone
///
/// Clones the inner service and shares the name.
#[derive(Clone)]
pub struct CallSpan<S> {
    inner: S,
    name: Arc<str>,
    level: Level,
}

impl<S> CallSpan<S> {
    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for CallSpan<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSpan")
            .field("inner", &self.inner)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The call's span at `level` (the macros take a constant level).
fn span(level: Level, name: &str) -> Span {
    macro_rules! at {
        ($level:expr) => {
            tracing::span!(target: "steadfast::call", $level, "resilience.call", name)
        };
    }
    match level {
        Level::ERROR => at!(Level::ERROR),
        Level::WARN => at!(Level::WARN),
        Level::INFO => at!(Level::INFO),
        Level::DEBUG => at!(Level::DEBUG),
        _ => at!(Level::TRACE),
    }
}

impl<S, Req> Service<Req> for CallSpan<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let span = span(self.level, &self.name);
        let future = span.in_scope(|| self.inner.call(req));
        future.instrument(span)
    }
}
