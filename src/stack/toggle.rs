//! A piece of the stack that is on or off: [`ToggleLayer`] → [`Toggle`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;

/// A layer that is either `L` or nothing at all; made by the preset for
/// each piece that can be switched off.
///
/// Off, its service calls the inner service directly: one branch per call
/// and no other cost.
#[derive(Clone, Debug)]
pub struct ToggleLayer<L> {
    layer: Option<L>,
}

impl<L> ToggleLayer<L> {
    /// The piece `layer`, switched on.
    pub const fn on(layer: L) -> Self {
        Self { layer: Some(layer) }
    }

    /// The piece switched off.
    pub const fn off() -> Self {
        Self { layer: None }
    }

    /// `layer`, or nothing.
    pub const fn new(layer: Option<L>) -> Self {
        Self { layer }
    }

    /// The piece's layer, when it is on.
    pub fn get(&self) -> Option<&L> {
        self.layer.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for ToggleLayer<L> {
    type Service = Toggle<L, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Toggle {
            inner: match &self.layer {
                Some(layer) => Inner::On {
                    service: layer.layer(inner),
                },
                None => Inner::Off { service: inner },
            },
        }
    }
}

/// A service that is `L`'s service around `S`, or `S` alone; made by
/// [`ToggleLayer`].
///
/// # Clone
///
/// Clones the service it holds.
pub struct Toggle<L: Layer<S>, S> {
    inner: Inner<L::Service, S>,
}

#[derive(Clone)]
enum Inner<A, S> {
    On { service: A },
    Off { service: S },
}

impl<L: Layer<S>, S> Toggle<L, S> {
    /// `true` when the piece is on.
    pub fn is_on(&self) -> bool {
        matches!(self.inner, Inner::On { .. })
    }

    /// The piece's service, when it is on.
    pub fn on_service(&self) -> Option<&L::Service> {
        match &self.inner {
            Inner::On { service } => Some(service),
            Inner::Off { .. } => None,
        }
    }
}

impl<L, S> Clone for Toggle<L, S>
where
    L: Layer<S>,
    L::Service: Clone,
    S: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<L, S> fmt::Debug for Toggle<L, S>
where
    L: Layer<S>,
    L::Service: fmt::Debug,
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::On { service } => f.debug_tuple("On").field(service).finish(),
            Inner::Off { service } => f.debug_tuple("Off").field(service).finish(),
        }
    }
}

impl<L, S, Req> Service<Req> for Toggle<L, S>
where
    L: Layer<S>,
    L::Service: Service<Req>,
    <L::Service as Service<Req>>::Error: Into<BoxError>,
    S: Service<Req, Response = <L::Service as Service<Req>>::Response>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ToggleFuture<<L::Service as Service<Req>>::Future, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            Inner::On { service } => service.poll_ready(cx).map_err(Into::into),
            Inner::Off { service } => service.poll_ready(cx).map_err(Into::into),
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        match &mut self.inner {
            Inner::On { service } => ToggleFuture::on(service.call(req)),
            Inner::Off { service } => ToggleFuture::off(service.call(req)),
        }
    }
}

pin_project! {
    /// The response future of [`Toggle`]: the piece's future, or the inner
    /// service's when the piece is off.
    pub struct ToggleFuture<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<A, B> {
        On { #[pin] future: A },
        Off { #[pin] future: B },
    }
}

impl<A, B> ToggleFuture<A, B> {
    #[inline]
    pub(crate) fn on(future: A) -> Self {
        Self {
            kind: Kind::On { future },
        }
    }

    #[inline]
    pub(crate) fn off(future: B) -> Self {
        Self {
            kind: Kind::Off { future },
        }
    }
}

impl<A, B> fmt::Debug for ToggleFuture<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::On { .. } => "ToggleFuture::On",
            Kind::Off { .. } => "ToggleFuture::Off",
        })
    }
}

impl<A, B, T, EA, EB> Future for ToggleFuture<A, B>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { future } => future.poll(cx).map_err(Into::into),
            KindProj::Off { future } => future.poll(cx).map_err(Into::into),
        }
    }
}
