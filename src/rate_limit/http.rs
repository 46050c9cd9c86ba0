//! Server side: a [`RateLimited`] rejection as `429 Too Many Requests` with
//! `Retry-After`, and optionally the IETF `RateLimit` / `RateLimit-Policy`
//! headers.
//!
//! Put [`TooManyRequestsLayer`] **outside** the limiter. A call the limiter
//! refuses then comes back as a response, not an error:
//!
//! * status `429 Too Many Requests`;
//! * `Retry-After: <seconds>`: the rejection's
//!   [`retry_after`](RateLimited::retry_after), rounded **up** to whole
//!   seconds (a client that waits that long finds a cell free);
//! * with a [`RateLimitPolicy`], the headers of
//!   [draft-ietf-httpapi-ratelimit-headers] as structured fields:
//!   `RateLimit-Policy: "name";q=<quota>;w=<window>` and
//!   `RateLimit: "name";r=0;t=<seconds>`.
//!
//! Every other error passes through unchanged. This crate's retry layer
//! ([`RetryLayer::http`](crate::retry::RetryLayer::http)) retries a 429 and
//! waits at least its `Retry-After`, so a steadfast client and a steadfast
//! server cooperate with no configuration.
//!
//! For axum, whose services must not fail, map the rest of the errors
//! too: `HandleErrorLayer` with [`too_many_requests`] for the rejections.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use steadfast::rate_limit::http::{RateLimitPolicy, TooManyRequestsLayer};
//! use steadfast::rate_limit::RateLimitLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let svc = ServiceBuilder::new()
//!     .layer(TooManyRequestsLayer::new().policy(RateLimitPolicy::new("api", 1, Duration::from_secs(2))?))
//!     .layer(RateLimitLayer::new(1, Duration::from_secs(2))?)
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, std::io::Error>(Response::new(String::from("hello")))
//!     }));
//!
//! assert_eq!(svc.clone().oneshot(Request::new(())).await?.status(), StatusCode::OK);
//! let res = svc.clone().oneshot(Request::new(())).await?;
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "2");
//! assert_eq!(res.headers()["ratelimit-policy"], r#""api";q=1;w=2"#);
//! assert_eq!(res.headers()["ratelimit"], r#""api";r=0;t=2"#);
//! # Ok(())
//! # }
//! ```
//!
//! [draft-ietf-httpapi-ratelimit-headers]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::error::RateLimited;
use crate::error::{cause_ref, BoxError, InvalidConfig};

/// The `RateLimit` header of draft-ietf-httpapi-ratelimit-headers.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The `RateLimit-Policy` header of draft-ietf-httpapi-ratelimit-headers.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// A quota policy to advertise in the IETF `RateLimit-Policy` header: `quota`
/// calls per `window`, under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    name: Arc<str>,
    policy: HeaderValue,
}

impl RateLimitPolicy {
    /// `quota` calls per `window` (whole seconds, rounded up), named `name`.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `rate_limit.policy.name` when `name` is
    /// empty or holds a character a structured-field string cannot (`"`,
    /// `\`, or anything outside printable ASCII), and
    /// `rate_limit.policy.window` for a zero window.
    pub fn new(name: &str, quota: u64, window: Duration) -> Result<Self, InvalidConfig> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(InvalidConfig::new(
                "rate_limit.policy.name",
                format!("must be non-empty printable ASCII without `\"` or `\\`, got {name:?}"),
            ));
        }
        if window.is_zero() {
            return Err(InvalidConfig::new(
                "rate_limit.policy.window",
                "must be non-zero",
            ));
        }
        let text = format!("\"{name}\";q={quota};w={}", ceil_secs(window));
        let policy = HeaderValue::from_str(&text).map_err(|_| {
            InvalidConfig::new("rate_limit.policy.name", "is not a valid header value")
        })?;
        Ok(Self {
            name: name.into(),
            policy,
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ratelimit(&self, reset: u64) -> HeaderValue {
        let text = format!("\"{}\";r=0;t={reset}", self.name);
        // The name was checked; digits and punctuation are valid too.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Whole seconds, rounded up: what a client must wait at least.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// The `429 Too Many Requests` response for `limited`, with `Retry-After`
/// (seconds, rounded up) and an empty body: for `HandleErrorLayer` in axum,
/// or wherever a service builds its own responses.
///
/// ```
/// use std::time::Duration;
/// use steadfast::rate_limit::{error::RateLimited, http::too_many_requests};
///
/// let res: http::Response<String> = too_many_requests(&RateLimited::new(Duration::from_millis(1500), Duration::ZERO));
/// assert_eq!(res.status(), http::StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(res.headers()["retry-after"], "2");
/// ```
pub fn too_many_requests<B: Default>(limited: &RateLimited) -> Response<B> {
    response(limited, None)
}

fn response<B: Default>(limited: &RateLimited, policy: Option<&RateLimitPolicy>) -> Response<B> {
    let secs = ceil_secs(limited.retry_after()).max(1);
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = res.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    if let Some(policy) = policy {
        headers.insert(RATELIMIT_POLICY, policy.policy.clone());
        headers.insert(RATELIMIT, policy.ratelimit(secs));
    }
    res
}

/// Turns [`RateLimited`] rejections into `429 Too Many Requests`; see the
/// [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct TooManyRequestsLayer {
    policy: Option<Arc<RateLimitPolicy>>,
}

impl TooManyRequestsLayer {
    /// `429` with `Retry-After` for every [`RateLimited`] in an error's
    /// chain.
    pub const fn new() -> Self {
        Self { policy: None }
    }

    /// Also writes the IETF `RateLimit-Policy` and `RateLimit` headers on
    /// each `429`.
    pub fn policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }
}

impl<S> Layer<S> for TooManyRequestsLayer {
    type Service = TooManyRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TooManyRequests {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Turns [`RateLimited`] rejections into `429 Too Many Requests`; made by
/// [`TooManyRequestsLayer`]. See the [module docs](self).
#[derive(Clone)]
pub struct TooManyRequests<S> {
    inner: S,
    policy: Option<Arc<RateLimitPolicy>>,
}

impl<S> TooManyRequests<S> {
    define_inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for TooManyRequests<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TooManyRequests")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, Req, B> Service<Req> for TooManyRequests<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            policy: self.policy.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`TooManyRequests`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        policy: Option<Arc<RateLimitPolicy>>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(res) => Poll::Ready(Ok(res)),
            Err(e) => {
                let e: BoxError = e.into();
                match cause_ref::<RateLimited>(e.as_ref()) {
                    Some(limited) => Poll::Ready(Ok(response(limited, this.policy.as_deref()))),
                    None => Poll::Ready(Err(e)),
                }
            }
        }
    }
}
