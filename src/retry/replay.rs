//! Sending a request again: the [`Replay`] trait and its implementations.

use std::fmt;

use crate::deadline::{CarriesDeadline, Deadline};

/// Why a request cannot be sent more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotReplayable {
    /// Never to be repeated, whatever the failure. The built-in replays do
    /// not use it: a request that is not safe to repeat keeps its stash and
    /// reports [`Replay::idempotent`] `false` instead, so that a failure
    /// proving it was never sent can still be retried.
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
/// (`http::Request<B>`, feature `http`, and `reqwest::Request`, feature
/// `reqwest`) and `ReqwestReplay` (`reqwest::Request`).
///
/// A request type the replay does not know is a compile error that names
/// this trait ("the retry layer cannot replay a `u32` with `HttpReplay`"):
///
/// ```compile_fail,E0277
/// use steadfast::retry::{RetryConfig, RetryLayer};
/// use tower::Layer;
/// # fn assert_service<S: tower::Service<u32>>(_: S) {}
///
/// let svc = RetryLayer::http(RetryConfig::default())
///     .layer(tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_service(svc);
/// ```
#[diagnostic::on_unimplemented(
    message = "the retry layer cannot replay a `{Req}` with `{Self}`",
    label = "`{Self}` does not implement `Replay<{Req}>`",
    note = "`Retry` sends a request again through a `steadfast::retry::Replay`: `CloneRequest` replays any `Req: Clone`, `CloneWithDeadline` any `Req: Clone + CarriesDeadline`, `HttpReplay` (`RetryLayer::http`, `RetryLayer::grpc`) `http::Request<B>` and `reqwest::Request` (feature `reqwest`)",
    note = "pick a replay with `RetryLayer::with_replay`, or implement `Replay<{Req}>` for your own"
)]
pub trait Replay<Req> {
    /// The request the inner service receives.
    type Request;
    /// What is kept between attempts.
    type Stash;

    /// The deadline `req` carries, read before the first attempt. The
    /// built-in replays that read one take the earlier of the request's
    /// and the deadline in scope ([`Deadline::current`]); the retry layer
    /// puts it back in scope around each retry's `call`.
    fn deadline(&self, req: &Req) -> Option<Deadline>;

    /// The first attempt, and a stash to make later ones — or why there
    /// will be none.
    fn prepare(&self, req: Req) -> (Self::Request, Result<Self::Stash, NotReplayable>);

    /// The request for a call that will not be retried (the preset stack
    /// with retries off): converted as [`prepare`](Self::prepare) converts
    /// it, with nothing kept. By default `prepare`'s request, its stash
    /// dropped; the built-in replays copy nothing (`HttpReplay` clones no
    /// head, a `reqwest::Request` is not `try_clone`d).
    #[inline]
    fn convert(&self, req: Req) -> Self::Request {
        self.prepare(req).0
    }

    /// The request for attempt number `attempt` (2 is the first retry), or
    /// `None` when it can no longer be made.
    fn replay(&self, stash: &mut Self::Stash, attempt: u32) -> Option<Self::Request>;

    /// `true` when the request may be repeated after any retryable failure:
    /// repeating it cannot do its work twice (an idempotent method, an
    /// `Idempotency-Key`, a method marked idempotent). `false` limits the
    /// retries to failures that prove the server did not process it
    /// ([`RetryOn::not_processed`](super::RetryOn::not_processed)), or an
    /// attempt timeout with
    /// [`retry_timeouts`](super::RetryConfigBuilder::retry_timeouts).
    ///
    /// `true` by default: a replay of plain `Clone` requests leaves the
    /// decision to the retry predicate.
    #[inline]
    fn idempotent(&self, stash: &Self::Stash) -> bool {
        let _ = stash;
        true
    }

    /// Called on each retry's request just before it is sent, after the
    /// backoff sleep, with the call's `deadline` (as
    /// [`deadline`](Self::deadline) read it before the first attempt): the
    /// place to write what changes with time (the built-in replays write
    /// the time left as `grpc-timeout`, or as a `reqwest::Request`'s
    /// timeout). Does nothing by default.
    #[inline]
    fn before_retry(&self, request: &mut Self::Request, deadline: Option<Deadline>) {
        let _ = (request, deadline);
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
    fn convert(&self, req: Req) -> Req {
        req
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
        crate::deadline::in_force(req.deadline())
    }

    #[inline]
    fn prepare(&self, req: Req) -> (Req, Result<Req, NotReplayable>) {
        CloneRequest.prepare(req)
    }

    #[inline]
    fn convert(&self, req: Req) -> Req {
        req
    }

    #[inline]
    fn replay(&self, stash: &mut Req, attempt: u32) -> Option<Req> {
        CloneRequest.replay(stash, attempt)
    }

    #[inline]
    fn before_retry(&self, request: &mut Req, deadline: Option<Deadline>) {
        refresh_deadline(request, deadline);
    }
}

/// Tells the next hop what is left now, after the backoff, not what was
/// left at the first attempt (gRPC: `grpc-timeout`; reqwest: the request's
/// timeout).
#[inline]
pub(super) fn refresh_deadline<Req: CarriesDeadline>(
    request: &mut Req,
    deadline: Option<Deadline>,
) {
    if let Some(deadline) = deadline {
        request.propagate_timeout(deadline.remaining());
    }
}

/// Marks one request as safe to repeat, whatever its method: insert it in
/// an `http::Request`'s extensions (a tonic `Request`'s extensions are
/// carried into them) and the retry layer treats the call as idempotent.
///
/// For whole gRPC methods, `HttpReplay::idempotent_paths` (feature `http`)
/// does the same by path.
///
/// ```
/// use steadfast::retry::Idempotent;
///
/// # #[cfg(feature = "http")] {
/// let mut req = http::Request::post("http://products/shop.Products/Get").body(()).unwrap();
/// req.extensions_mut().insert(Idempotent);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Idempotent;

#[cfg(feature = "http")]
pub use self::http_impl::{HttpReplay, HttpStash};

#[cfg(feature = "http")]
mod http_impl {
    use std::fmt;
    use std::sync::Arc;

    use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
    use http::{HeaderMap, Method};

    use super::{NotReplayable, Replay};
    use crate::deadline::{CarriesDeadline, Deadline};
    use crate::error::BoxError;
    use crate::retry::body::{ReplayBody, ReplayHandle};

    use crate::headers::IDEMPOTENCY_KEY;
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

    /// `true` when repeating the request cannot do its work twice by its
    /// method or key: an idempotent method or an `Idempotency-Key`.
    pub(crate) fn is_safe(method: &Method, headers: &HeaderMap) -> bool {
        is_idempotent(method) || headers.contains_key(IDEMPOTENCY_KEY)
    }

    /// Replays `http::Request<B>` for any body: the body is buffered as it is
    /// sent, up to a cap, and replayed from the buffer.
    ///
    /// The inner service receives `http::Request<ReplayBody<B>>`. A request
    /// is safe to repeat ([`Replay::idempotent`]) when its method is
    /// idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), it carries an
    /// `Idempotency-Key`, its extensions hold [`Idempotent`](super::Idempotent),
    /// or its path is one of [`idempotent_paths`](Self::idempotent_paths).
    /// Any other request — a POST without a key, and so every gRPC call not
    /// marked — is retried only when the failure proves the server did not
    /// process it (see the [module docs](crate::retry)). Such a request's
    /// body is kept only for gRPC (a retry code comes after the message was
    /// sent); a plain HTTP one can be sent again only while its body is
    /// unread ([`ReplayBody::unread_only`]), which is the case after a
    /// refused connection. gRPC calls
    /// (`content-type: application/grpc*`) get `grpc-previous-rpc-attempts`
    /// on every retry. A body larger than the cap streams through once and
    /// the request is not retried.
    ///
    /// It replays `reqwest::Request` too (feature `reqwest`), by
    /// `try_clone`: the same rule for what is safe to repeat (no
    /// extensions there, so no `Idempotent` marker), a streaming body sent
    /// once, and each retry's timeout set to the time left before the
    /// deadline ([`CarriesDeadline`](crate::deadline::CarriesDeadline)).
    #[derive(Debug, Clone)]
    pub struct HttpReplay {
        cap: usize,
        /// Sorted, for a binary search; `None` when empty.
        idempotent_paths: Option<Arc<[Box<str>]>>,
    }

    impl HttpReplay {
        /// Buffers at most `cap` bytes of each request body.
        pub const fn new(cap: usize) -> Self {
            Self {
                cap,
                idempotent_paths: None,
            }
        }

        /// The body cap in bytes.
        pub const fn cap(&self) -> usize {
            self.cap
        }

        /// Treats requests to these exact paths as safe to repeat, whatever
        /// their method: for gRPC, the methods that are idempotent
        /// (`"/shop.Products/Get"`). Replaces any earlier list.
        ///
        /// ```
        /// use steadfast::retry::HttpReplay;
        ///
        /// let replay = HttpReplay::new(64 * 1024)
        ///     .idempotent_paths(["/shop.Products/Get", "/shop.Products/List"]);
        /// assert!(replay.is_idempotent_path("/shop.Products/Get"));
        /// assert!(!replay.is_idempotent_path("/shop.Orders/Create"));
        /// ```
        pub fn idempotent_paths<I, P>(mut self, paths: I) -> Self
        where
            I: IntoIterator<Item = P>,
            P: Into<Box<str>>,
        {
            let mut paths: Vec<Box<str>> = paths.into_iter().map(Into::into).collect();
            paths.sort_unstable();
            paths.dedup();
            self.idempotent_paths = (!paths.is_empty()).then(|| paths.into());
            self
        }

        /// `true` when `path` is one of [`idempotent_paths`](Self::idempotent_paths).
        pub fn is_idempotent_path(&self, path: &str) -> bool {
            self.idempotent_paths
                .as_deref()
                .is_some_and(|paths| paths.binary_search_by(|p| (**p).cmp(path)).is_ok())
        }

        /// Safe to repeat by method, key or path.
        pub(crate) fn is_safe_to_repeat(
            &self,
            method: &Method,
            headers: &HeaderMap,
            path: &str,
        ) -> bool {
            is_safe(method, headers) || self.is_idempotent_path(path)
        }

        fn is_idempotent(&self, parts: &http::request::Parts) -> bool {
            self.is_safe_to_repeat(&parts.method, &parts.headers, parts.uri.path())
                || parts.extensions.get::<super::Idempotent>().is_some()
        }
    }

    /// The head of an `http::Request` and a handle on its buffered body.
    pub struct HttpStash<B> {
        parts: http::request::Parts,
        body: ReplayHandle<B>,
        grpc: bool,
        idempotent: bool,
    }

    impl<B> fmt::Debug for HttpStash<B> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HttpStash")
                .field("method", &self.parts.method)
                .field("uri", &self.parts.uri)
                .field("grpc", &self.grpc)
                .field("idempotent", &self.idempotent)
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
            crate::deadline::in_force(req.deadline())
        }

        fn prepare(
            &self,
            req: http::Request<B>,
        ) -> (Self::Request, Result<Self::Stash, NotReplayable>) {
            let (parts, body) = req.into_parts();
            let grpc = is_grpc(&parts.headers);
            let idempotent = self.is_idempotent(&parts);
            // A request that is not safe to repeat goes again only after a
            // failure that proves it was not processed. For gRPC that can be
            // a retry code, after the message was sent: keep it. For plain
            // HTTP only an error before sending (a refused connection)
            // proves it, and then the body was never read: copy nothing.
            let (body, handle) = if idempotent || grpc {
                ReplayBody::new(body, self.cap)
            } else {
                ReplayBody::unread_only(body)
            };
            let stash = HttpStash {
                grpc,
                idempotent,
                parts: parts.clone(),
                body: handle,
            };
            (http::Request::from_parts(parts, body), Ok(stash))
        }

        #[inline]
        fn convert(&self, req: http::Request<B>) -> Self::Request {
            // Never sent again: nothing kept, the head not copied.
            req.map(|body| ReplayBody::unread_only(body).0)
        }

        #[inline]
        fn idempotent(&self, stash: &Self::Stash) -> bool {
            stash.idempotent
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

        #[inline]
        fn before_retry(&self, request: &mut Self::Request, deadline: Option<Deadline>) {
            super::refresh_deadline(request, deadline);
        }
    }
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_impl::ReqwestReplay;

#[cfg(feature = "reqwest")]
mod reqwest_impl {
    use super::{HttpReplay, NotReplayable, Replay};
    use crate::deadline::{CarriesDeadline, Deadline};

    /// `reqwest::Request` through [`reqwest::Request::try_clone`]: a request
    /// with a streaming body cannot be cloned, so it is sent once and not
    /// retried. Safe to repeat by method, `Idempotency-Key` or
    /// [`idempotent_paths`](HttpReplay::idempotent_paths) (reqwest requests
    /// have no public extensions, so no [`Idempotent`](super::Idempotent)).
    /// The deadline is the request's timeout, and each retry gets the time
    /// left as its timeout ([`CarriesDeadline`]).
    impl Replay<reqwest::Request> for HttpReplay {
        type Request = reqwest::Request;
        type Stash = reqwest::Request;

        #[inline]
        fn deadline(&self, req: &reqwest::Request) -> Option<Deadline> {
            crate::deadline::in_force(req.deadline())
        }

        fn prepare(
            &self,
            req: reqwest::Request,
        ) -> (reqwest::Request, Result<reqwest::Request, NotReplayable>) {
            match req.try_clone() {
                Some(stash) => (req, Ok(stash)),
                None => (req, Err(NotReplayable::Unreplayable)),
            }
        }

        #[inline]
        fn convert(&self, req: reqwest::Request) -> reqwest::Request {
            req
        }

        #[inline]
        fn idempotent(&self, stash: &reqwest::Request) -> bool {
            self.is_safe_to_repeat(stash.method(), stash.headers(), stash.url().path())
        }

        #[inline]
        fn replay(&self, stash: &mut reqwest::Request, _attempt: u32) -> Option<reqwest::Request> {
            stash.try_clone()
        }

        #[inline]
        fn before_retry(&self, request: &mut reqwest::Request, deadline: Option<Deadline>) {
            super::refresh_deadline(request, deadline);
        }
    }

    /// Replays `reqwest::Request` as [`HttpReplay`] does, for
    /// [`RetryLayer::reqwest`](crate::retry::RetryLayer::reqwest) and
    /// `ResilienceLayer::reqwest()`: one `Replay` impl only, so the request
    /// type of a service built on it is inferred (`svc.ready().await?.call(req)`).
    /// Safe to repeat by method, `Idempotency-Key` or
    /// [`idempotent_paths`](Self::idempotent_paths).
    ///
    /// ```
    /// use steadfast::retry::ReqwestReplay;
    ///
    /// let replay = ReqwestReplay::new().idempotent_paths(["/orders/search"]);
    /// assert!(replay.is_idempotent_path("/orders/search"));
    /// ```
    #[derive(Debug, Clone)]
    pub struct ReqwestReplay {
        /// What it forwards to; the body cap does not apply (a
        /// `reqwest::Request` is replayed by `try_clone`).
        http: HttpReplay,
    }

    impl ReqwestReplay {
        /// Replays requests that are safe to repeat by method or key.
        pub const fn new() -> Self {
            Self {
                http: HttpReplay::new(0),
            }
        }

        /// Treats requests to these exact paths as safe to repeat, whatever
        /// their method (see [`HttpReplay::idempotent_paths`]). Replaces any
        /// earlier list.
        pub fn idempotent_paths<I, P>(self, paths: I) -> Self
        where
            I: IntoIterator<Item = P>,
            P: Into<Box<str>>,
        {
            Self {
                http: self.http.idempotent_paths(paths),
            }
        }

        /// `true` when `path` is one of [`idempotent_paths`](Self::idempotent_paths).
        pub fn is_idempotent_path(&self, path: &str) -> bool {
            self.http.is_idempotent_path(path)
        }
    }

    impl Default for ReqwestReplay {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Replay<reqwest::Request> for ReqwestReplay {
        type Request = reqwest::Request;
        type Stash = reqwest::Request;

        #[inline]
        fn deadline(&self, req: &reqwest::Request) -> Option<Deadline> {
            <HttpReplay as Replay<reqwest::Request>>::deadline(&self.http, req)
        }

        #[inline]
        fn prepare(
            &self,
            req: reqwest::Request,
        ) -> (reqwest::Request, Result<reqwest::Request, NotReplayable>) {
            <HttpReplay as Replay<reqwest::Request>>::prepare(&self.http, req)
        }

        #[inline]
        fn convert(&self, req: reqwest::Request) -> reqwest::Request {
            req
        }

        #[inline]
        fn idempotent(&self, stash: &reqwest::Request) -> bool {
            <HttpReplay as Replay<reqwest::Request>>::idempotent(&self.http, stash)
        }

        #[inline]
        fn replay(&self, stash: &mut reqwest::Request, attempt: u32) -> Option<reqwest::Request> {
            <HttpReplay as Replay<reqwest::Request>>::replay(&self.http, stash, attempt)
        }

        #[inline]
        fn before_retry(&self, request: &mut reqwest::Request, deadline: Option<Deadline>) {
            <HttpReplay as Replay<reqwest::Request>>::before_retry(&self.http, request, deadline);
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
