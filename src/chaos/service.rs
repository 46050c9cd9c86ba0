use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::error::InjectedRefused;
use super::fault::Kind;
use super::future::ResponseFuture;
use super::layer::Shared;
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::runtime;

const FAULT_SERVICE: &str = "steadfast::chaos::FaultService";

/// Injects faults into calls to the inner service; made by
/// [`FaultLayer`](super::FaultLayer).
///
/// # Clone
///
/// Clones share the layer's random sequence and counters (and everything
/// else the layer made): the faults follow the order in which calls reach
/// any of them.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's. A call that gets a fault which
/// does not reach the inner service (an error, a response, a hang, a
/// refused connection) leaves the readiness it reserved unused.
///
/// # Panics
///
/// A `call` that draws a delay panics unless it runs within a Tokio
/// runtime with time enabled: "steadfast::chaos::FaultService needs a Tokio
/// runtime with time enabled (…)". Calls without a delay work anywhere.
///
/// See the [module docs](super).
pub struct FaultService<S, Res> {
    inner: S,
    shared: Arc<Shared<Res>>,
}

// === impl FaultService ===

impl<S, Res> FaultService<S, Res> {
    pub(super) fn new(inner: S, shared: Arc<Shared<Res>>) -> Self {
        Self { inner, shared }
    }

    define_inner_service_accessors!();
}

impl<S: Clone, Res> Clone for FaultService<S, Res> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, Res> fmt::Debug for FaultService<S, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultService")
            .field("inner", &self.inner)
            .field("layer", &self.shared)
            .finish()
    }
}

impl<S, Res, Req> Service<Req> for FaultService<S, Res>
where
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError>,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Res>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = Instant::now();
        let plan = self.shared.plan(now);
        let sleep = plan.delay.map(|delay| {
            runtime::sleep_until(FAULT_SERVICE, Deadline::after_from(now, delay).instant())
        });
        match plan.fault.map(|f| &f.kind) {
            None | Some(Kind::Delay(_)) => ResponseFuture::pass(sleep, self.inner.call(req)),
            Some(Kind::Reset) => ResponseFuture::reset(sleep, self.inner.call(req)),
            Some(Kind::Error(make)) => ResponseFuture::fail(sleep, make()),
            Some(Kind::Refused) => ResponseFuture::fail(sleep, Box::new(InjectedRefused::new())),
            Some(Kind::Hang) => ResponseFuture::hang(sleep),
            Some(Kind::Respond(make)) => ResponseFuture::respond(sleep, make()),
            #[cfg(feature = "http")]
            Some(Kind::Http { spec, make }) => ResponseFuture::respond(sleep, make(spec)),
        }
    }
}
