//! [`RestoreBody`]: [`HttpReplay`] that hands the inner service the
//! caller's body type back, and [`FromReplayBody`], the body types it can
//! do that for. The reasoning is on [`RestoreBody`] (this module is
//! private).

use super::body::ReplayBody;
use super::replay::{HttpReplay, HttpStash, NotReplayable, Replay};
use super::RetryLayer;
use crate::deadline::Deadline;
use crate::error::BoxError;

/// A request body type that can be rebuilt around the retry layer's
/// [`ReplayBody`], so that [`RestoreBody`] gives the inner service the body
/// type it expects.
///
/// Implemented for `tonic::body::Body` (feature `tonic`) and for
/// `http_body_util`'s `BoxBody<Bytes, BoxError>` and
/// `UnsyncBoxBody<Bytes, BoxError>`. For a body type of
/// your own that can wrap any `http_body::Body<Data = Bytes>` (a boxed body),
/// implement it by wrapping:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{combinators::UnsyncBoxBody, BodyExt};
/// use steadfast::retry::{body::ReplayBody, FromReplayBody};
/// use steadfast::BoxError;
///
/// struct MyBody(UnsyncBoxBody<Bytes, BoxError>);
/// # impl http_body::Body for MyBody {
/// #     type Data = Bytes;
/// #     type Error = BoxError;
/// #     fn poll_frame(
/// #         mut self: std::pin::Pin<&mut Self>,
/// #         cx: &mut std::task::Context<'_>,
/// #     ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
/// #         std::pin::Pin::new(&mut self.0).poll_frame(cx)
/// #     }
/// # }
///
/// impl FromReplayBody for MyBody {
///     fn from_replay_body(body: ReplayBody<Self>) -> Self {
///         MyBody(body.boxed_unsync())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be rebuilt from a `ReplayBody<{Self}>`, so `RestoreBody` cannot hand the inner service its own body type",
    label = "this body type does not implement `FromReplayBody`",
    note = "`tonic::body::Body` (feature `tonic`) and `http_body_util`'s `BoxBody<Bytes, BoxError>` and `UnsyncBoxBody<Bytes, BoxError>` implement it; for another body type, implement `FromReplayBody`, or use `HttpReplay` (leave out `.restore_body()`), whose inner service takes `http::Request<ReplayBody<B>>`"
)]
pub trait FromReplayBody: Sized {
    /// Wraps the body of one attempt (the first, or a replay) into `Self`.
    fn from_replay_body(body: ReplayBody<Self>) -> Self;
}

/// `BoxBody::new`: the replay body, boxed — the body type of a hyper
/// client built for `BoxBody<Bytes, BoxError>`.
impl FromReplayBody for http_body_util::combinators::BoxBody<bytes::Bytes, BoxError> {
    #[inline]
    fn from_replay_body(body: ReplayBody<Self>) -> Self {
        Self::new(body)
    }
}

/// `UnsyncBoxBody::new`: the replay body, boxed.
impl FromReplayBody for http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError> {
    #[inline]
    fn from_replay_body(body: ReplayBody<Self>) -> Self {
        Self::new(body)
    }
}

#[cfg(feature = "tonic")]
impl FromReplayBody for tonic::body::Body {
    /// `tonic::body::Body::new`: the replay body, boxed.
    #[inline]
    fn from_replay_body(body: ReplayBody<Self>) -> Self {
        tonic::body::Body::new(body)
    }
}

/// [`HttpReplay`] that hands the inner service the caller's body type `B`
/// again (`http::Request<B>`, not `http::Request<ReplayBody<B>>`), for
/// bodies that implement [`FromReplayBody`] — `tonic::body::Body` with
/// feature `tonic`, so a `RetryLayer` sits over a tonic `Channel` as it is.
///
/// Made by [`RetryLayer::restore_body`] or `RetryLayer::tonic` (feature
/// `tonic`).
///
/// # Why
///
/// [`HttpReplay`] hands the inner service `http::Request<ReplayBody<B>>`:
/// the body it buffers for replay is a type of its own. A hyper client can
/// be built for that type, but a client whose body type is fixed cannot — a
/// tonic `Channel` takes `http::Request<tonic::body::Body>` and nothing
/// else, and a generated tonic client hands its inner service exactly that
/// type. `RestoreBody` is [`HttpReplay`] with one step more: each attempt's
/// replay body is wrapped back into `B` ([`FromReplayBody`]), so the inner
/// service receives the type the caller sent.
///
/// Everything else is [`HttpReplay`]'s: the same safe-to-repeat rule
/// (idempotent methods, `Idempotency-Key`, [`Idempotent`](super::Idempotent),
/// [`idempotent_paths`](RestoreBody::idempotent_paths)), the same capped
/// buffer, `grpc-previous-rpc-attempts` on every gRPC retry, and the time
/// left written as `grpc-timeout` just before each retry is sent.
///
/// ```
/// # #[cfg(feature = "tonic")] {
/// use steadfast::retry::{RetryConfig, RetryLayer};
///
/// // Services that take and pass on `http::Request<tonic::body::Body>`:
/// // put the layer over a tonic `Channel`, no `map_request`.
/// let layer = RetryLayer::tonic(RetryConfig::default())
///     .idempotent_paths(["/shop.Products/GetProduct"]);
/// // The same, spelled out.
/// let same = RetryLayer::grpc(RetryConfig::default())
///     .idempotent_paths(["/shop.Products/GetProduct"])
///     .restore_body();
/// # let _ = (layer, same);
/// # }
/// ```
///
/// # Cost
///
/// Rebuilding `B` is the body type's business: `tonic::body::Body::new`
/// boxes the replay body, one allocation per attempt, as tonic does for
/// every body it wraps.
#[derive(Debug, Clone)]
pub struct RestoreBody {
    replay: HttpReplay,
}

impl RestoreBody {
    /// Buffers at most `cap` bytes of each request body, as
    /// [`HttpReplay::new`].
    pub const fn new(cap: usize) -> Self {
        Self {
            replay: HttpReplay::new(cap),
        }
    }

    /// The body cap in bytes.
    pub const fn cap(&self) -> usize {
        self.replay.cap()
    }

    /// Treats requests to these exact paths as safe to repeat, as
    /// [`HttpReplay::idempotent_paths`]. Replaces any earlier list.
    pub fn idempotent_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Box<str>>,
    {
        Self {
            replay: self.replay.idempotent_paths(paths),
        }
    }

    /// `true` when `path` is one of [`idempotent_paths`](Self::idempotent_paths).
    pub fn is_idempotent_path(&self, path: &str) -> bool {
        self.replay.is_idempotent_path(path)
    }

    /// The [`HttpReplay`] that does the work.
    pub fn http_replay(&self) -> &HttpReplay {
        &self.replay
    }
}

impl From<HttpReplay> for RestoreBody {
    fn from(replay: HttpReplay) -> Self {
        Self { replay }
    }
}

impl<B> Replay<http::Request<B>> for RestoreBody
where
    B: FromReplayBody + http_body::Body,
    B::Error: Into<BoxError>,
{
    type Request = http::Request<B>;
    type Stash = HttpStash<B>;

    #[inline]
    fn deadline(&self, req: &http::Request<B>) -> Option<Deadline> {
        Replay::<http::Request<B>>::deadline(&self.replay, req)
    }

    fn prepare(
        &self,
        req: http::Request<B>,
    ) -> (Self::Request, Result<Self::Stash, NotReplayable>) {
        let (req, stash) = Replay::<http::Request<B>>::prepare(&self.replay, req);
        (req.map(B::from_replay_body), stash)
    }

    #[inline]
    fn convert(&self, req: http::Request<B>) -> Self::Request {
        Replay::<http::Request<B>>::convert(&self.replay, req).map(B::from_replay_body)
    }

    #[inline]
    fn idempotent(&self, stash: &Self::Stash) -> bool {
        Replay::<http::Request<B>>::idempotent(&self.replay, stash)
    }

    fn replay(&self, stash: &mut Self::Stash, attempt: u32) -> Option<Self::Request> {
        let req = Replay::<http::Request<B>>::replay(&self.replay, stash, attempt)?;
        Some(req.map(B::from_replay_body))
    }

    #[inline]
    fn before_retry(&self, request: &mut Self::Request, deadline: Option<Deadline>) {
        // As `HttpReplay`: the time left now, after the backoff.
        super::replay::refresh_deadline(request, deadline);
    }
}

// === impl RetryLayer ===

impl<On: Clone> RetryLayer<On, HttpReplay> {
    /// Hands the inner service the caller's body type again
    /// ([`RestoreBody`]): `http::Request<B>` instead of
    /// `http::Request<ReplayBody<B>>`, for `B: FromReplayBody` —
    /// `tonic::body::Body` (feature `tonic`), so the layer goes over a tonic
    /// `Channel` with no `map_request`. The replay rules, cap and idempotent
    /// paths stay as they are. The counters start afresh; the budget stays
    /// shared.
    ///
    /// ```
    /// use steadfast::retry::{RetryConfig, RetryLayer};
    ///
    /// let layer = RetryLayer::grpc(RetryConfig::default())
    ///     .idempotent_paths(["/shop.Products/GetProduct"])
    ///     .restore_body();
    /// assert!(layer.replay().is_idempotent_path("/shop.Products/GetProduct"));
    /// ```
    pub fn restore_body(self) -> RetryLayer<On, RestoreBody> {
        let replay = RestoreBody::from(self.replay().clone());
        self.with_replay(replay)
    }
}

impl<On: Clone> RetryLayer<On, RestoreBody> {
    /// Treats requests to these exact paths as safe to repeat
    /// ([`RestoreBody::idempotent_paths`]), as
    /// [`RetryLayer::idempotent_paths`] does over [`HttpReplay`]. The
    /// counters start afresh; the budget stays shared.
    pub fn idempotent_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Box<str>>,
    {
        let replay = self.replay().clone().idempotent_paths(paths);
        self.with_replay(replay)
    }
}

#[cfg(feature = "tonic")]
impl RetryLayer<super::GrpcRetryOn, RestoreBody> {
    /// Retries tonic calls through a `Channel` (or any service of
    /// `http::Request<tonic::body::Body>`) by the gRPC rule
    /// ([`GrpcRetryOn`](super::GrpcRetryOn)): [`RetryLayer::grpc`] with
    /// [`restore_body`](RetryLayer::restore_body), so the inner service
    /// receives `http::Request<tonic::body::Body>` and a generated client
    /// takes the wrapped channel as it is.
    pub fn tonic(config: super::RetryConfig) -> Self {
        RetryLayer::grpc(config).restore_body()
    }
}
