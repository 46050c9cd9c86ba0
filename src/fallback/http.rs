//! A fixed `http::Response` as the fallback: [`StaticResponse`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::policy::{Failed, Recover};
use crate::error::BoxError;

/// A fixed response — a status, headers and a body — built afresh for each
/// fallback as an `http::Response<B>` for any body `B: From<Bytes>`
/// (`http_body_util::Full<Bytes>`, `axum::body::Body`, `reqwest::Body`).
/// See the module docs.
///
/// Clones share the head and body (an `Arc`): the layer clones it into each
/// call's future, one reference count per call.
#[derive(Clone)]
pub struct StaticResponse {
    inner: Arc<Head>,
}

#[derive(Clone)]
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl StaticResponse {
    /// A response with `status` and `body`, and no headers yet.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            inner: Arc::new(Head {
                status,
                headers: HeaderMap::new(),
                body: body.into(),
            }),
        }
    }

    /// Adds a header, e.g. a `Warning`-style header that tells the caller
    /// the answer is a fallback. A header of the same name set before is
    /// kept (both are sent).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        Arc::make_mut(&mut self.inner).headers.append(name, value);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.inner.body
    }

    /// A fresh `http::Response` with this status, these headers and this
    /// body (the body's bytes are shared, not copied).
    pub fn to_response<B: From<Bytes>>(&self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.inner.body.clone()));
        *response.status_mut() = self.inner.status;
        *response.headers_mut() = self.inner.headers.clone();
        response
    }
}

impl fmt::Debug for StaticResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticResponse")
            .field("status", &self.inner.status)
            .field("headers", &self.inner.headers)
            .field("body_len", &self.inner.body.len())
            .finish()
    }
}

impl<K, B: From<Bytes>> Recover<K, http::Response<B>> for StaticResponse {
    type Response = http::Response<B>;

    #[inline(always)]
    fn pass(&self, _: K, response: http::Response<B>) -> http::Response<B> {
        response
    }

    fn recover(
        &self,
        _: K,
        _: Failed<'_, http::Response<B>>,
    ) -> Option<Result<http::Response<B>, BoxError>> {
        Some(Ok(self.to_response()))
    }
}
