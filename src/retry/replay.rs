//! Sending a request again: the [`Replay`] trait and its implementations.

use std::fmt;

use crate::deadline::{CarriesDeadline, Deadline};

/// Why a request cannot be sent more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotReplayable {
    /// Repeating it could do the work twice: a non-idempotent HTTP method
    /// (POST, PATCH, …) without an `Idempotency-Key`.
    Unsafe,
    /// Its body cannot be produced again: a streaming `reqwest` body, an
    /// `http` body larger than the replay cap, or a body that failed.
    Unreplayable,
}

/// How the retry layer sends a request again.
///
/// `prepare` turns the caller's request into the first attempt and keeps
/// what later attempts need (a `Stash`); `replay` makes each later attempt
/// from it. Implementations: [`CloneRequest`] (any `Req: Clone`),
/// [`CloneWithDeadline`] (`Req: Clone + CarriesDeadline`), `HttpReplay`
/// (`http::Request<B>`, feature `http`) and `ReqwestReplay`
/// (`reqwest::Request`, feature `reqwest`).
pub trait Replay<Req> {
    /// The request the inner service receives.
    type Request;
    /// What is kept between attempts.
    type Stash;

    /// The deadline `req` carries, read before the first attempt.
    fn deadline(&self, req: &Req) -> Option<Deadline>;

    /// The first attempt, and a stash to make later ones — or why there
    /// will be none.
    fn prepare(&self, req: Req) -> (Self::Request, Result<Self::Stash, NotReplayable>);

    /// The request for attempt number `attempt` (2 is the first retry), or
    /// `None` when it can no longer be made.
    fn replay(&self, stash: &mut Self::Stash, attempt: u32) -> Option<Self::Request>;

    /// Called on each retry's request just before it is sent, after the
    /// backoff sleep: the place to write what changes with time (the
    /// built-in replays write the time left as `grpc-timeout`). Does nothing
    /// by default.
    #[inline]
    fn before_retry(&self, request: &mut Self::Request) {
        let _ = request;
    }
}

/// Replays any `Req: Clone` by cloning it before the first attempt.
///
/// Every request is taken as safe to repeat: the retry predicate decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    type Request = Req;
    type Stash = Req;

    #[inline]
    fn deadline(&self, _req: &Req) -> Option<Deadline> {
        None
    }

    #[inline]
    fn prepare(&self, req: Req) -> (Req, Result<Req, NotReplayable>) {
        let stash = req.clone();
        (req, Ok(stash))
    }

    #[inline]
    fn replay(&self, stash: &mut Req, _attempt: u32) -> Option<Req> {
        Some(stash.clone())
    }
}

/// [`CloneRequest`] for request types that carry a [`Deadline`] through
/// [`CarriesDeadline`]: retry then never sleeps past it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneWithDeadline;

impl<Req: Clone + CarriesDeadline> Replay<Req> for CloneWithDeadline {
    type Request = Req;
    type Stash = Req;

    #[inline]
    fn deadline(&self, req: &Req) -> Option<Deadline> {
        req.deadline()
    }

    #[inline]
    fn prepare(&self, req: Req) -> (Req, Result<Req, NotReplayable>) {
        CloneRequest.prepare(req)
    }

    #[inline]
    fn replay(&self, stash: &mut Req, attempt: u32) -> Option<Req> {
        CloneRequest.replay(stash, attempt)
    }

    fn before_retry(&self, request: &mut Req) {
        // Tell the next hop what is left now, not what was left at the first
        // attempt (gRPC: `grpc-timeout`).
        if let Some(deadline) = request.deadline() {
            request.propagate_timeout(deadline.remaining());
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_impl::{HttpReplay, HttpStash};

#[cfg(feature = "http")]
mod http_impl {
    use std::fmt;

    use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
    use http::{HeaderMap, Method};

    use super::{NotReplayable, Replay};
    use crate::deadline::{CarriesDeadline, Deadline};
    use crate::error::BoxError;
    use crate::retry::body::{ReplayBody, ReplayHandle};

    use crate::idempotency::key::IDEMPOTENCY_KEY;
    const GRPC_PREVIOUS_RPC_ATTEMPTS: HeaderName =
        HeaderName::from_static("grpc-previous-rpc-attempts");

    /// `true` for the methods RFC 9110 calls idempotent.
    pub(crate) fn is_idempotent(method: &Method) -> bool {
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        )
    }

    pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
        headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    }

    /// `true` when repeating the request cannot do its work twice: an
    /// idempotent method, an `Idempotency-Key`, or a gRPC call (gRPC's retry
    /// design lets the retry codes decide).
    pub(crate) fn is_safe(method: &Method, headers: &HeaderMap) -> bool {
        is_idempotent(method) || headers.contains_key(IDEMPOTENCY_KEY) || is_grpc(headers)
    }

    /// Replays `http::Request<B>` for any body: the body is buffered as it is
    /// sent, up to a cap, and replayed from the buffer.
    ///
    /// The inner service receives `http::Request<ReplayBody<B>>`. Only
    /// requests that are safe to repeat are retried: idempotent methods
    /// (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), requests carrying an
    /// `Idempotency-Key`, and gRPC calls (`content-type: application/grpc*`),
    /// which get `grpc-previous-rpc-attempts` on every retry. A body larger
    /// than the cap streams through once and the request is not retried.
    #[derive(Debug, Clone, Copy)]
    pub struct HttpReplay {
        cap: usize,
    }

    impl HttpReplay {
        /// Buffers at most `cap` bytes of each request body.
        pub const fn new(cap: usize) -> Self {
            Self { cap }
        }

        /// The body cap in bytes.
        pub const fn cap(&self) -> usize {
            self.cap
        }
    }

    /// The head of an `http::Request` and a handle on its buffered body.
    pub struct HttpStash<B> {
        parts: http::request::Parts,
        body: ReplayHandle<B>,
        grpc: bool,
    }

    impl<B> fmt::Debug for HttpStash<B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HttpStash")
                .field("method", &self.parts.method)
                .field("uri", &self.parts.uri)
                .field("grpc", &self.grpc)
                .finish_non_exhaustive()
        }
    }

    impl<B> Replay<http::Request<B>> for HttpReplay
    where
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        type Request = http::Request<ReplayBody<B>>;
        type Stash = HttpStash<B>;

        #[inline]
        fn deadline(&self, req: &http::Request<B>) -> Option<Deadline> {
            req.deadline()
        }

        fn prepare(
            &self,
            req: http::Request<B>,
        ) -> (Self::Request, Result<Self::Stash, NotReplayable>) {
            let (parts, body) = req.into_parts();
            if !is_safe(&parts.method, &parts.headers) {
                // Never replayed: a cap of zero buffers nothing.
                let (body, _) = ReplayBody::new(body, 0);
                return (
                    http::Request::from_parts(parts, body),
                    Err(NotReplayable::Unsafe),
                );
            }
            let (body, handle) = ReplayBody::new(body, self.cap);
            let grpc = is_grpc(&parts.headers);
            let stash = HttpStash {
                parts: parts.clone(),
                body: handle,
                grpc,
            };
            (http::Request::from_parts(parts, body), Ok(stash))
        }

        fn replay(&self, stash: &mut Self::Stash, attempt: u32) -> Option<Self::Request> {
            let body = stash.body.replay()?;
            let mut req = http::Request::from_parts(stash.parts.clone(), body);
            if stash.grpc {
                let previous = attempt.saturating_sub(1);
                req.headers_mut()
                    .insert(GRPC_PREVIOUS_RPC_ATTEMPTS, HeaderValue::from(previous));
            }
            Some(req)
        }

        fn before_retry(&self, request: &mut Self::Request) {
            // The time left now, after the backoff, not at the first attempt.
            if let Some(deadline) = request.deadline() {
                request.propagate_timeout(deadline.remaining());
            }
        }
    }
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_impl::ReqwestReplay;

#[cfg(feature = "reqwest")]
mod reqwest_impl {
    use super::http_impl::is_safe;
    use super::{NotReplayable, Replay};
    use crate::deadline::Deadline;

    /// Replays `reqwest::Request` through [`reqwest::Request::try_clone`].
    ///
    /// A request with a streaming body cannot be cloned: it is sent once and
    /// not retried. The same safe-method rule as
    /// [`HttpReplay`](super::HttpReplay) applies. `reqwest::Request` has no
    /// public extensions, so it carries no [`Deadline`].
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ReqwestReplay;

    impl Replay<reqwest::Request> for ReqwestReplay {
        type Request = reqwest::Request;
        type Stash = reqwest::Request;

        #[inline]
        fn deadline(&self, _req: &reqwest::Request) -> Option<Deadline> {
            None
        }

        fn prepare(
            &self,
            req: reqwest::Request,
        ) -> (reqwest::Request, Result<reqwest::Request, NotReplayable>) {
            if !is_safe(req.method(), req.headers()) {
                return (req, Err(NotReplayable::Unsafe));
            }
            match req.try_clone() {
                Some(stash) => (req, Ok(stash)),
                None => (req, Err(NotReplayable::Unreplayable)),
            }
        }

        fn replay(&self, stash: &mut reqwest::Request, _attempt: u32) -> Option<reqwest::Request> {
            stash.try_clone()
        }
    }
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotReplayable::Unsafe => "not safe to repeat",
            NotReplayable::Unreplayable => "body cannot be sent again",
        })
    }
}
