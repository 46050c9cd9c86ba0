//! How long the slot is held: one of the two choices a
//! [`BulkheadLayer`](super::BulkheadLayer) makes through type parameters (the
//! other, where a queued call's deadline comes from, is
//! [`DeadlineOf`](crate::deadline::DeadlineOf)).

use super::permit::Permit;

/// How long a call keeps its slot once the inner service has answered.
///
/// [`ReleaseOnResponse`] (the default) frees it as the response arrives;
/// `ReleaseOnBodyEnd` (feature `http`) moves it into the response body.
/// Implement it to hold the slot in a response type of your own, e.g. a
/// stream: keep the [`Permit`] in it, and drop the permit when it is done.
pub trait HoldPermit<Resp> {
    /// The response the bulkhead returns.
    type Response;

    /// Attaches `permit` to `response`, or drops it to free the slot now.
    fn hold(response: Resp, permit: Permit) -> Self::Response;
}

/// Frees the slot when the inner service's response future finishes: the
/// response passes through unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseOnResponse;

impl<Resp> HoldPermit<Resp> for ReleaseOnResponse {
    type Response = Resp;

    #[inline]
    fn hold(response: Resp, permit: Permit) -> Resp {
        drop(permit);
        response
    }
}

/// Holds the slot until the HTTP response's body has been read to its end,
/// failed, or been dropped: the body is wrapped in a
/// [`ResponseBody`](super::body::ResponseBody).
///
/// For responses that stream: a download counts against the limit for as
/// long as it runs, not just until its headers arrive.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseOnBodyEnd;

#[cfg(feature = "http")]
impl<B: http_body::Body> HoldPermit<http::Response<B>> for ReleaseOnBodyEnd {
    type Response = http::Response<super::body::ResponseBody<B>>;

    #[inline]
    fn hold(response: http::Response<B>, permit: Permit) -> Self::Response {
        response.map(|body| super::body::ResponseBody::new(body, permit))
    }
}
