use http::{HeaderMap, StatusCode};

use super::{Classify, Outcome};

/// The head of an HTTP response: what [`HttpClassifier`] and
/// [`GrpcClassifier`](super::GrpcClassifier) look at.
///
/// Implemented for `http::Response<B>`, `http::response::Parts` and
/// `reqwest::Response` (feature `reqwest`); implement it for other client
/// response types to classify them the same way.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an HTTP response head",
    label = "`{Self}` does not implement `HttpResponseHead`",
    note = "the HTTP and gRPC classifiers and retry rules read a status and headers through `steadfast::classify::HttpResponseHead`: `http::Response<B>`, `http::response::Parts` and `reqwest::Response` (feature `reqwest`) implement it"
)]
pub trait HttpResponseHead {
    /// The response status.
    fn status(&self) -> StatusCode;
    /// The response headers.
    fn headers(&self) -> &HeaderMap;
}

impl<B> HttpResponseHead for http::Response<B> {
    #[inline]
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }
    #[inline]
    fn headers(&self) -> &HeaderMap {
        http::Response::headers(self)
    }
}

impl HttpResponseHead for http::response::Parts {
    #[inline]
    fn status(&self) -> StatusCode {
        self.status
    }
    #[inline]
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// 100..=999 as bits.
const WORDS: usize = 15;

#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusSet([u64; WORDS]);

impl StatusSet {
    const EMPTY: Self = Self([0; WORDS]);

    const fn index(code: u16) -> usize {
        (code as usize).saturating_sub(100)
    }

    const fn with(mut self, code: u16) -> Self {
        let i = Self::index(code);
        if i < WORDS * 64 {
            self.0[i / 64] |= 1 << (i % 64);
        }
        self
    }

    const fn without(mut self, code: u16) -> Self {
        let i = Self::index(code);
        if i < WORDS * 64 {
            self.0[i / 64] &= !(1 << (i % 64));
        }
        self
    }

    const fn contains(&self, code: u16) -> bool {
        let i = Self::index(code);
        i < WORDS * 64 && self.0[i / 64] & (1 << (i % 64)) != 0
    }

    const fn with_range(mut self, from: u16, to: u16) -> Self {
        let mut c = from;
        while c <= to {
            self = self.with(c);
            c += 1;
        }
        self
    }
}

/// Classifies HTTP responses: transport errors, 5xx, 408 and 429 are
/// failures; other 4xx are ignored (the client's fault, not the backend's);
/// everything else is a success.
///
/// Each status can be moved to another class:
///
/// ```
/// use http::StatusCode;
/// use steadfast::classify::{Classify, HttpClassifier, Outcome};
///
/// let classify = HttpClassifier::new()
///     .success(StatusCode::NOT_IMPLEMENTED) // a 501 is an answer, not an outage
///     .failure(StatusCode::CONFLICT);
///
/// let res = http::Response::builder().status(501).body(()).unwrap();
/// assert_eq!(classify.classify(&Ok::<_, ()>(res)), Outcome::Success);
/// assert_eq!(classify.outcome_of(StatusCode::CONFLICT), Outcome::Failure);
/// assert_eq!(classify.outcome_of(StatusCode::NOT_FOUND), Outcome::Ignored);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HttpClassifier {
    failures: StatusSet,
    ignored: StatusSet,
}

impl HttpClassifier {
    /// The default classes: 5xx, 408, 429 fail; other 4xx are ignored.
    pub const fn new() -> Self {
        Self {
            failures: StatusSet::EMPTY.with_range(500, 599).with(408).with(429),
            ignored: StatusSet::EMPTY
                .with_range(400, 499)
                .without(408)
                .without(429),
        }
    }

    /// Counts `status` as a failure of the backend.
    pub const fn failure(mut self, status: StatusCode) -> Self {
        self.failures = self.failures.with(status.as_u16());
        self.ignored = self.ignored.without(status.as_u16());
        self
    }

    /// Counts `status` as a success.
    pub const fn success(mut self, status: StatusCode) -> Self {
        self.failures = self.failures.without(status.as_u16());
        self.ignored = self.ignored.without(status.as_u16());
        self
    }

    /// Counts `status` as neither success nor failure.
    pub const fn ignore(mut self, status: StatusCode) -> Self {
        self.failures = self.failures.without(status.as_u16());
        self.ignored = self.ignored.with(status.as_u16());
        self
    }

    /// The outcome a response with `status` gets.
    pub const fn outcome_of(&self, status: StatusCode) -> Outcome {
        let code = status.as_u16();
        if self.failures.contains(code) {
            Outcome::Failure
        } else if self.ignored.contains(code) {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list =
            |set: &StatusSet| -> Vec<u16> { (100..=999).filter(|c| set.contains(*c)).collect() };
        f.debug_struct("HttpClassifier")
            .field("failures", &list(&self.failures))
            .field("ignored", &list(&self.ignored))
            .finish()
    }
}

impl<R: HttpResponseHead, E> Classify<R, E> for HttpClassifier {
    #[inline]
    fn classify(&self, result: &Result<R, E>) -> Outcome {
        match result {
            Ok(res) => self.outcome_of(res.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(feature = "reqwest")]
impl HttpResponseHead for reqwest::Response {
    #[inline]
    fn status(&self) -> StatusCode {
        reqwest::Response::status(self)
    }
    #[inline]
    fn headers(&self) -> &HeaderMap {
        reqwest::Response::headers(self)
    }
}
