//! The two choices a [`BulkheadLayer`](super::BulkheadLayer) makes through
//! type parameters: where a queued call's deadline comes from, and how long
//! the slot is held.

use super::permit::Permit;
use crate::deadline::{CarriesDeadline, Deadline};

/// Where the bulkhead finds the [`Deadline`] of a request: a queued call
/// never waits past it.
///
/// [`IgnoreDeadline`] (the default) works for any request;
/// [`RequestDeadline`] reads [`CarriesDeadline`]. Pick one with
/// [`BulkheadLayer::deadline_aware`](super::BulkheadLayer::deadline_aware).
pub trait WaitDeadline<Req> {
    /// The request's deadline, if it has one.
    fn deadline(req: &Req) -> Option<Deadline>;
}

/// Queued calls wait for at most `max_wait`, whatever the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreDeadline;

impl<Req> WaitDeadline<Req> for IgnoreDeadline {
    #[inline]
    fn deadline(_: &Req) -> Option<Deadline> {
        None
    }
}

/// Queued calls wait for at most `max_wait`, and never past the deadline
/// the request carries ([`CarriesDeadline`]: `http::Request` with feature
/// `http`, or your own type).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestDeadline;

impl<Req: CarriesDeadline> WaitDeadline<Req> for RequestDeadline {
    #[inline]
    fn deadline(req: &Req) -> Option<Deadline> {
        req.deadline()
    }
}

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
