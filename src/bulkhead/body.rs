//! A response body that holds its call's bulkhead slot until it ends.
//!
//! With [`BulkheadLayer::hold_until_body_end`], the bulkhead wraps each
//! response body in a [`ResponseBody`]. The slot is freed as soon as the
//! body is done, whichever comes first:
//!
//! * the last frame has been read (`poll_frame` returned `None`, or the body
//!   reports [`is_end_stream`](http_body::Body::is_end_stream) after a frame),
//! * reading it failed,
//! * it is dropped unread.
//!
//! A body that is empty from the start frees the slot at once.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use steadfast::bulkhead::BulkheadLayer;
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let layer = BulkheadLayer::new(1)?.hold_until_body_end();
//! let handle = layer.handle();
//! let svc = layer.layer(service_fn(|_: ()| async {
//!     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from("report"))))
//! }));
//!
//! let response = svc.oneshot(()).await?;
//! assert_eq!(handle.in_flight(), 1); // the body is still unread
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "report");
//! assert_eq!(handle.in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! [`BulkheadLayer::hold_until_body_end`]: super::BulkheadLayer::hold_until_body_end
#![cfg_attr(docsrs, doc(cfg(feature = "http")))]

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::permit::Permit;

pin_project! {
    /// A response body holding a bulkhead slot until it ends or is dropped.
    ///
    /// See the [module docs](self).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B: Body> ResponseBody<B> {
    /// Wraps `inner`, holding `permit` until the body ends. An empty body
    /// frees it at once.
    pub fn new(inner: B, permit: Permit) -> Self {
        let permit = (!inner.is_end_stream()).then_some(permit);
        Self { inner, permit }
    }
}

impl<B> ResponseBody<B> {
    /// Whether this body still holds its slot.
    pub fn holds_slot(&self) -> bool {
        self.permit.is_some()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The wrapped body; frees the slot.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let done = match &frame {
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) | None => true,
        };
        if done {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("holds_slot", &self.permit.is_some())
            .finish()
    }
}
