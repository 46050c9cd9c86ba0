//! What went wrong ([`Failed`]), what the fallback gets from the request
//! ([`RequestKey`]), and what it does about it ([`Recover`]).

use std::error::Error;
use std::fmt;

use crate::error::BoxError;
use crate::rejection::Rejection;

/// What went wrong with a call, as the fallback sees it.
///
/// `Error` borrows the error: the layer keeps it, so that a fallback that
/// fails itself can report it ([`FallbackFailed::original`]). `Response`
/// hands over the response the classifier called a failure (a 503), by
/// value: pass it on, or replace it. See the module docs.
///
/// [`FallbackFailed::original`]: super::error::FallbackFailed::original
#[non_exhaustive]
pub enum Failed<'a, Res> {
    /// The inner service returned an error: one of this crate's rejections
    /// ([`rejection`](Self::rejection) says which) or a transport error.
    Error(&'a (dyn Error + Send + Sync + 'static)),
    /// The inner service answered, and the classifier called the answer a
    /// [`Failure`](crate::classify::Outcome::Failure).
    Response(Res),
}

impl<'a, Res> Failed<'a, Res> {
    /// The rejection of this crate's in the error's `source()` chain
    /// ([`Rejection::of`]); `None` for a transport error or a response.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            Self::Error(e) => Rejection::of(*e),
            Self::Response(_) => None,
        }
    }

    /// The error, when the inner service returned one.
    pub fn error(&self) -> Option<&'a (dyn Error + Send + Sync + 'static)> {
        match self {
            Self::Error(e) => Some(*e),
            Self::Response(_) => None,
        }
    }

    /// The failed response, when the inner service answered.
    pub fn response(&self) -> Option<&Res> {
        match self {
            Self::Error(_) => None,
            Self::Response(res) => Some(res),
        }
    }

    /// The failed response, by value, when the inner service answered.
    pub fn into_response(self) -> Option<Res> {
        match self {
            Self::Error(_) => None,
            Self::Response(res) => Some(res),
        }
    }

    /// `true` for an error that is one of this crate's rejections.
    pub fn is_rejection(&self) -> bool {
        self.rejection().is_some()
    }
}

impl<Res> fmt::Debug for Failed<'_, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(e) => f.debug_tuple("Error").field(e).finish(),
            Self::Response(_) => f.debug_tuple("Response").finish_non_exhaustive(),
        }
    }
}

impl<Res> fmt::Display for Failed<'_, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(e) => write!(f, "{e}"),
            Self::Response(_) => f.write_str("response classified as a failure"),
        }
    }
}

/// What a fallback takes from the request before the call, so that the
/// request can be moved into the inner service.
///
/// - `()`: nothing, at no cost ([`FallbackLayer::new`]);
/// - [`CloneRequest`]: a clone of the whole request ([`FallbackLayer::with_request`]);
/// - any `Fn(&Req) -> K`: a key ([`FallbackLayer::with_key`]);
/// - `MethodPathQuery` (feature `http`): the key of [`LastGood`].
///
/// The key is taken on every call, the happy path included: its cost (a
/// clone, an allocation for a `String` key) is paid per call.
///
/// [`FallbackLayer::new`]: super::FallbackLayer::new
/// [`FallbackLayer::with_request`]: super::FallbackLayer::with_request
/// [`FallbackLayer::with_key`]: super::FallbackLayer::with_key
#[cfg_attr(feature = "http", doc = "[`LastGood`]: super::LastGood")]
#[cfg_attr(not(feature = "http"), doc = "[`LastGood`]: super")]
pub trait RequestKey<Req> {
    /// What is taken.
    type Key;

    /// Takes it from `req`, before the call.
    fn key(&self, req: &Req) -> Self::Key;
}

impl<Req> RequestKey<Req> for () {
    type Key = ();

    #[inline(always)]
    fn key(&self, _: &Req) {}
}

impl<Req, K, F> RequestKey<Req> for F
where
    F: Fn(&Req) -> K,
{
    type Key = K;

    #[inline]
    fn key(&self, req: &Req) -> K {
        self(req)
    }
}

/// Takes a clone of the request before the call; see
/// [`FallbackLayer::with_request`](super::FallbackLayer::with_request).
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

impl<Req: Clone> RequestKey<Req> for CloneRequest {
    type Key = Req;

    #[inline]
    fn key(&self, req: &Req) -> Req {
        req.clone()
    }
}

/// Decides the response of a call that failed, and shapes the response of
/// one that did not.
///
/// Closures `Fn(Failed<'_, Res>) -> Result<Res, BoxError>` implement it
/// (with the key `()`), as do [`WithKey`] (a closure that also gets the
/// key), `StaticResponse` and `LastGood` (feature `http`). Implement it for
/// a fallback that needs both paths, as `LastGood` does (it records good
/// responses as they pass).
pub trait Recover<K, Res> {
    /// The response the caller gets.
    type Response;

    /// The response of a call that needs no fallback. Called on the happy
    /// path: keep it cheap.
    fn pass(&self, key: K, response: Res) -> Self::Response;

    /// The response of a call that failed as configured.
    ///
    /// `Some(Err(e))`: the fallback failed; the caller gets a
    /// [`FallbackFailed`](super::error::FallbackFailed) with `e` as its
    /// source. `None`: no fallback for this call; the caller gets the
    /// original error as it was. `None` for a [`Failed::Response`] (which
    /// `recover` owns by then) is reported as a `FallbackFailed` too: pass
    /// the response on instead.
    fn recover(&self, key: K, failed: Failed<'_, Res>) -> Option<Result<Self::Response, BoxError>>;
}

impl<F, Res> Recover<(), Res> for F
where
    F: Fn(Failed<'_, Res>) -> Result<Res, BoxError>,
{
    type Response = Res;

    #[inline(always)]
    fn pass(&self, _: (), response: Res) -> Res {
        response
    }

    fn recover(&self, _: (), failed: Failed<'_, Res>) -> Option<Result<Res, BoxError>> {
        Some(self(failed))
    }
}

/// A fallback closure `Fn(K, Failed<'_, Res>) -> Result<Res, BoxError>`
/// that also gets what was taken from the request; made by
/// [`FallbackLayer::with_request`](super::FallbackLayer::with_request) and
/// [`FallbackLayer::with_key`](super::FallbackLayer::with_key).
#[derive(Clone, Copy)]
pub struct WithKey<F>(pub(crate) F);

impl<F> fmt::Debug for WithKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WithKey(..)")
    }
}

impl<F, K, Res> Recover<K, Res> for WithKey<F>
where
    F: Fn(K, Failed<'_, Res>) -> Result<Res, BoxError>,
{
    type Response = Res;

    #[inline(always)]
    fn pass(&self, _: K, response: Res) -> Res {
        response
    }

    fn recover(&self, key: K, failed: Failed<'_, Res>) -> Option<Result<Res, BoxError>> {
        Some((self.0)(key, failed))
    }
}
