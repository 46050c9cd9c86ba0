//! The client side: give every non-idempotent request an `Idempotency-Key`.
//!
//! [`IdempotencyKeyLayer`] adds an `Idempotency-Key` header to each
//! request whose method is in its set (POST and PATCH by default) and that
//! has none yet: `http::Request<B>`, `reqwest::Request` (feature
//! `reqwest`), or any request type that implements [`KeyedRequest`]. A key the caller set is kept as it is.
//! The key is a fresh random UUIDv4 written as an RFC 8941 sf-string
//! (`"0f8e…"`), as the IETF httpapi draft asks;
//! [`unquoted`](IdempotencyKeyLayer::unquoted) writes the bare UUID for
//! servers that expect that, and [`MakeKey`] plugs in any other scheme.
//!
//! # Why, and the ordering with retry
//!
//! Sending a POST again is only safe when the server can recognise the
//! repeat, which is what the key is for: a server running an idempotency
//! layer runs a keyed request once and answers repeats with the stored
//! response. So [`RetryLayer::http`] retries a POST or a PATCH only when it
//! carries a key.
//!
//! Put this layer **outside** the retry layer: it then adds the key once
//! per call, before the first attempt, and every retry of that call sends
//! the same key. Inside retry, each attempt would get a key of its own and
//! the server would run every attempt.
//!
//! ```text
//! IdempotencyKey → Deadline → Retry → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use steadfast::idempotency::client::IdempotencyKeyLayer;
//! use steadfast::retry::{body::ReplayBody, Backoff, RetryConfig, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // A backend that answers with the key it received.
//! let backend = tower::service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
//!     let key = req.headers().get("idempotency-key").cloned();
//!     Ok::<_, std::io::Error>(http::Response::new(key))
//! });
//! let config = RetryConfig::builder().backoff(Backoff::fixed(Duration::from_millis(100))).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(IdempotencyKeyLayer::new()) // outside retry: one key per call
//!     .layer(RetryLayer::http(config))
//!     .service(backend);
//!
//! let post = http::Request::post("http://shop/orders").body(Full::new(Bytes::from("{}")))?;
//! let key = svc.clone().oneshot(post).await?.into_body().expect("a POST gets a key");
//! // `"xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"`: a quoted UUIDv4.
//! assert_eq!(key.len(), 38);
//! assert_eq!(&key.as_bytes()[15..16], b"4");
//!
//! let get = http::Request::get("http://shop/orders/1").body(Full::new(Bytes::new()))?;
//! assert!(svc.oneshot(get).await?.into_body().is_none()); // a GET is idempotent already
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! The layer never fails: its error is the inner service's, and requests go
//! on to the inner service unchanged but for the header.
//!
//! # Randomness
//!
//! [`UuidV4`] draws its 16 bytes from a fast per-thread generator
//! ([`rand`]'s `SmallRng`) seeded from the operating system's randomness
//! (through the standard library's hash keys). Keys are unique in practice,
//! not secret: a server must scope keys by client (its principal), never
//! trust a key alone.
//!
//! [`RetryLayer::http`]: crate::retry::RetryLayer::http

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Method};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tower_layer::Layer;
use tower_service::Service;

use super::key::IDEMPOTENCY_KEY;

/// A request the key layer can give an `Idempotency-Key`: its method, its
/// path and its headers.
///
/// Implemented for `http::Request<B>` and `reqwest::Request` (feature
/// `reqwest`); implement it for another client's request type to put
/// [`IdempotencyKeyLayer`] in front of that client.
///
/// Any other request type is a compile error that names this trait
/// ("`u32` cannot carry an `Idempotency-Key`: it does not implement
/// `KeyedRequest`"):
///
/// ```compile_fail,E0277
/// use steadfast::idempotency::IdempotencyKeyLayer;
/// use tower::Layer;
/// # fn assert_service<S: tower::Service<u32>>(_: S) {}
///
/// let svc = IdempotencyKeyLayer::new()
///     .layer(tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_service(svc);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry an `Idempotency-Key`: it does not implement `KeyedRequest`",
    label = "the key layer cannot read the method or set the headers of this request type",
    note = "`IdempotencyKeyLayer` needs requests that implement `steadfast::idempotency::KeyedRequest`: `http::Request<B>` and `reqwest::Request` (feature `reqwest`), or your own"
)]
pub trait KeyedRequest {
    /// The request method: only the layer's methods get a key.
    fn method(&self) -> &Method;

    /// The path of the request's URL, for [`MakeKey`]s that build keys
    /// from it.
    fn path(&self) -> &str;

    /// The request headers: a request that has an `Idempotency-Key` keeps
    /// it.
    fn headers(&self) -> &HeaderMap;

    /// The request headers, to add the key to.
    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl<B> KeyedRequest for http::Request<B> {
    #[inline]
    fn method(&self) -> &Method {
        http::Request::method(self)
    }

    #[inline]
    fn path(&self) -> &str {
        self.uri().path()
    }

    #[inline]
    fn headers(&self) -> &HeaderMap {
        http::Request::headers(self)
    }

    #[inline]
    fn headers_mut(&mut self) -> &mut HeaderMap {
        http::Request::headers_mut(self)
    }
}

#[cfg(feature = "reqwest")]
impl KeyedRequest for reqwest::Request {
    #[inline]
    fn method(&self) -> &Method {
        reqwest::Request::method(self)
    }

    #[inline]
    fn path(&self) -> &str {
        self.url().path()
    }

    #[inline]
    fn headers(&self) -> &HeaderMap {
        reqwest::Request::headers(self)
    }

    #[inline]
    fn headers_mut(&mut self) -> &mut HeaderMap {
        reqwest::Request::headers_mut(self)
    }
}

/// Makes the `Idempotency-Key` value of a request that has none.
///
/// It is called once per call (not per retry), with the request, whatever
/// its type ([`KeyedRequest`]). Closures `FnMut(&dyn KeyedRequest) ->
/// HeaderValue` implement it.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use http::HeaderValue;
/// use steadfast::idempotency::{client::IdempotencyKeyLayer, KeyedRequest};
///
/// // Keys "order-1", "order-2", … (for a test double; use unique keys in production).
/// let next = AtomicU64::new(1);
/// let layer = IdempotencyKeyLayer::with_maker(move |_: &dyn KeyedRequest| {
///     let n = next.fetch_add(1, Ordering::Relaxed);
///     HeaderValue::try_from(format!("\"order-{n}\"")).expect("ASCII")
/// });
/// # let _ = layer;
/// ```
pub trait MakeKey {
    /// The key for this request, written as the header value to send.
    fn make_key(&mut self, request: &dyn KeyedRequest) -> HeaderValue;
}

impl<F> MakeKey for F
where
    F: FnMut(&dyn KeyedRequest) -> HeaderValue,
{
    fn make_key(&mut self, request: &dyn KeyedRequest) -> HeaderValue {
        self(request)
    }
}

/// The default [`MakeKey`]: a fresh random UUIDv4, lowercase and
/// hyphenated, quoted as an RFC 8941 sf-string (`"…"`) unless
/// [`unquoted`](UuidV4::unquoted).
///
/// See the [module docs](self) for where the randomness comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UuidV4 {
    unquoted: bool,
}

impl UuidV4 {
    /// Quoted UUIDs: `"0f8e6c1a-3b2d-4c5e-9f70-1a2b3c4d5e6f"`.
    pub const fn new() -> Self {
        Self { unquoted: false }
    }

    /// Bare UUIDs instead: `0f8e6c1a-3b2d-4c5e-9f70-1a2b3c4d5e6f`.
    pub const fn unquoted(self) -> Self {
        Self { unquoted: true }
    }

    /// Whether the UUIDs are written without quotes.
    pub const fn is_unquoted(&self) -> bool {
        self.unquoted
    }
}

impl MakeKey for UuidV4 {
    fn make_key(&mut self, _request: &dyn KeyedRequest) -> HeaderValue {
        let mut buf = [0u8; 38];
        let uuid = if self.unquoted {
            write_uuid(&mut buf[..36], random_uuid_v4());
            &buf[..36]
        } else {
            buf[0] = b'"';
            write_uuid(&mut buf[1..37], random_uuid_v4());
            buf[37] = b'"';
            &buf[..]
        };
        HeaderValue::from_bytes(uuid).expect("a UUID is hex digits, hyphens and quotes")
    }
}

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(seeded_rng());
}

/// A generator seeded from the standard library's per-thread hash keys,
/// which come from the operating system's randomness.
fn seeded_rng() -> SmallRng {
    use std::hash::{BuildHasher, RandomState};
    let mut seed = <SmallRng as SeedableRng>::Seed::default();
    for (i, chunk) in seed.as_mut().chunks_mut(8).enumerate() {
        let word = RandomState::new().hash_one(i).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    SmallRng::from_seed(seed)
}

/// 16 random bytes with the version (4) and variant (`10`) bits set.
fn random_uuid_v4() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    RNG.with(|rng| rng.borrow_mut().fill_bytes(&mut bytes));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

/// Writes `uuid` as 36 lowercase hyphenated hex characters into `out`.
fn write_uuid(out: &mut [u8], uuid: [u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = 0;
    for (i, byte) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(byte >> 4)];
        out[at + 1] = HEX[usize::from(byte & 0x0f)];
        at += 2;
    }
}

/// The methods that get a key unless told otherwise: POST and PATCH.
fn default_methods() -> Arc<[Method]> {
    Arc::from([Method::POST, Method::PATCH])
}

/// Adds an `Idempotency-Key` to requests that need one; wraps services in
/// [`SetIdempotencyKey`].
///
/// See the [module docs](self).
#[derive(Clone)]
pub struct IdempotencyKeyLayer<M = UuidV4> {
    maker: M,
    methods: Arc<[Method]>,
}

impl IdempotencyKeyLayer {
    /// Quoted random UUIDv4 keys on POST and PATCH requests.
    pub fn new() -> Self {
        Self::with_maker(UuidV4::new())
    }

    /// Writes the UUIDs without quotes, for servers that expect a bare key.
    pub fn unquoted(self) -> Self {
        Self {
            maker: self.maker.unquoted(),
            methods: self.methods,
        }
    }
}

impl Default for IdempotencyKeyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> IdempotencyKeyLayer<M> {
    /// Keys made by `maker` on POST and PATCH requests.
    pub fn with_maker(maker: M) -> Self {
        Self {
            maker,
            methods: default_methods(),
        }
    }

    /// Adds keys to requests with these methods instead of POST and PATCH.
    /// An empty set turns the layer off.
    pub fn methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = Method>,
    {
        self.methods = methods.into_iter().collect();
        self
    }

    /// The methods that get a key.
    pub fn method_set(&self) -> &[Method] {
        &self.methods
    }
}

impl<M> fmt::Debug for IdempotencyKeyLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyKeyLayer")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

impl<S, M: Clone> Layer<S> for IdempotencyKeyLayer<M> {
    type Service = SetIdempotencyKey<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        SetIdempotencyKey {
            inner,
            maker: self.maker.clone(),
            methods: self.methods.clone(),
        }
    }
}

/// Adds an `Idempotency-Key` made by `M` to requests that need one; made by
/// [`IdempotencyKeyLayer`].
///
/// See the [module docs](self).
///
/// # Clone
///
/// Clones share the method set and each get a clone of the maker: a
/// stateful closure keeps its state per clone. [`UuidV4`] has no state (its
/// generator is per thread), so clones never repeat each other's keys.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's.
#[derive(Clone)]
pub struct SetIdempotencyKey<S, M = UuidV4> {
    inner: S,
    maker: M,
    methods: Arc<[Method]>,
}

// === impl SetIdempotencyKey ===

impl<S> SetIdempotencyKey<S> {
    /// Adds quoted random UUIDv4 keys to POST and PATCH requests sent to
    /// `inner`.
    pub fn new(inner: S) -> Self {
        IdempotencyKeyLayer::new().layer(inner)
    }
}

impl<S, M> SetIdempotencyKey<S, M> {
    define_inner_service_accessors!();
}

impl<S: fmt::Debug, M> fmt::Debug for SetIdempotencyKey<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetIdempotencyKey")
            .field("inner", &self.inner)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

impl<S, M, Req> Service<Req> for SetIdempotencyKey<S, M>
where
    S: Service<Req>,
    M: MakeKey,
    Req: KeyedRequest,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, mut req: Req) -> Self::Future {
        if self.methods.contains(req.method()) && !req.headers().contains_key(&IDEMPOTENCY_KEY) {
            let key = self.maker.make_key(&req);
            req.headers_mut().insert(IDEMPOTENCY_KEY, key);
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post() -> http::Request<()> {
        http::Request::post("/").body(()).unwrap()
    }

    #[test]
    fn uuid_shape() {
        let mut maker = UuidV4::new();
        for _ in 0..100 {
            let value = maker.make_key(&post());
            let s = value.to_str().unwrap();
            assert_eq!(s.len(), 38);
            assert!(s.starts_with('"') && s.ends_with('"'));
            let uuid = &s[1..37];
            for (i, c) in uuid.char_indices() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    assert_eq!(c, '-');
                } else {
                    assert!(matches!(c, '0'..='9' | 'a'..='f'), "{uuid}");
                }
            }
            assert_eq!(&uuid[14..15], "4");
            assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
        }
    }

    #[test]
    fn write_uuid_layout() {
        let mut out = [0u8; 36];
        let uuid = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5,
            0x96, 0x87,
        ];
        write_uuid(&mut out, uuid);
        assert_eq!(&out, b"01234567-89ab-cdef-f0e1-d2c3b4a59687");
    }

    #[test]
    fn keys_differ() {
        let mut maker = UuidV4::new().unquoted();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(maker.make_key(&post())));
        }
    }
}
