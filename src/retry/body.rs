//! (stub: replaced by the body work)
#![allow(
    missing_docs,
    dead_code,
    unreachable_pub,
    missing_debug_implementations
)]
use crate::BoxError;
use std::pin::Pin;
use std::task::{Context, Poll};
pub struct ReplayBody<B> {
    b: Option<B>,
}
pub struct ReplayHandle<B> {
    b: std::marker::PhantomData<B>,
}
impl<B> ReplayBody<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    pub fn new(body: B, _cap: usize) -> (ReplayBody<B>, ReplayHandle<B>) {
        (
            ReplayBody { b: Some(body) },
            ReplayHandle {
                b: std::marker::PhantomData,
            },
        )
    }
}
impl<B> ReplayHandle<B> {
    pub fn can_replay(&self) -> bool {
        false
    }
    pub fn replay(&self) -> Option<ReplayBody<B>> {
        None
    }
}
impl<B> http_body::Body for ReplayBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = BoxError;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        Poll::Ready(None)
    }
}
