//! Ready-made key functions for [`KeyedRateLimitLayer`](super::KeyedRateLimitLayer)
//! over `http::Request`s: the caller (a principal in a header, the client's
//! IP address), or the backend (the authority, for clients).
//!
//! Each is a [`KeyOf`] for `http::Request<B>`; a closure
//! `Fn(&Req) -> K` works as well.

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{HeaderName, HeaderValue};
use http::Request;

pub use crate::key::keys::{authority, AuthorityKey, ByAuthority, HasAuthority};

use super::KeyOf;

/// Keys a request by the value of one header: a principal such as an API
/// key, a tenant id, or a verified user id that an authentication layer
/// outside put there. Requests without the header share one limit (the key
/// `None`).
///
/// Put it behind whatever checks the header: keyed on a header the caller
/// chooses freely, a limit per key is a limit per made-up value (the key cap
/// still bounds the memory).
///
/// ```
/// use std::time::Duration;
/// use steadfast::rate_limit::{keys::ByHeader, KeyedRateLimitLayer};
///
/// let layer = KeyedRateLimitLayer::builder(100, Duration::from_secs(1), ByHeader::new("x-api-key"))
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct ByHeader {
    name: HeaderName,
}

impl ByHeader {
    /// Keys by the header `name`.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name; use
    /// [`from_name`](Self::from_name) for a name read at run time.
    pub fn new(name: &'static str) -> Self {
        Self {
            name: HeaderName::from_static(name),
        }
    }

    /// Keys by the header `name`.
    pub fn from_name(name: HeaderName) -> Self {
        Self { name }
    }
}

impl<B> KeyOf<Request<B>> for ByHeader {
    type Key = Option<HeaderValue>;

    #[inline]
    fn key_of(&self, req: &Request<B>) -> Option<HeaderValue> {
        req.headers().get(&self.name).cloned()
    }
}

/// Keys a request by the client's IP address, from the request's
/// extensions: an [`IpAddr`] or a [`SocketAddr`] put there by the server
/// or a layer outside. IPv6 addresses are cut to their first 64 bits by
/// default (one host usually holds a whole /64; see
/// [`ipv6_prefix`](Self::ipv6_prefix)). Requests with neither share one
/// limit (the key `None`).
///
/// axum puts the peer address in `ConnectInfo<SocketAddr>` (with
/// `into_make_service_with_connect_info`); key on it with
/// [`ByExtension`]: `ByExtension::new(|c: &ConnectInfo<SocketAddr>| c.0.ip())`.
/// Behind a proxy, the address is the proxy's: key on the header it sets
/// (after checking it) with [`ByHeader`].
#[derive(Debug, Clone, Copy)]
pub struct ByClientIp {
    v6_prefix: u8,
}

impl Default for ByClientIp {
    fn default() -> Self {
        Self::new()
    }
}

impl ByClientIp {
    /// Keys by client IP, IPv6 addresses by their /64.
    pub const fn new() -> Self {
        Self { v6_prefix: 64 }
    }

    /// Keys IPv6 addresses by their first `bits` bits (0 to 128; larger
    /// values count as 128).
    pub const fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = if bits > 128 { 128 } else { bits };
        self
    }

    fn cut(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = match self.v6_prefix {
                    0 => 0,
                    n => u128::MAX << (128 - u32::from(n)),
                };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }
}

impl<B> KeyOf<Request<B>> for ByClientIp {
    type Key = Option<IpAddr>;

    #[inline]
    fn key_of(&self, req: &Request<B>) -> Option<IpAddr> {
        let ext = req.extensions();
        let ip = ext
            .get::<IpAddr>()
            .copied()
            .or_else(|| ext.get::<SocketAddr>().map(SocketAddr::ip))?;
        Some(self.cut(ip))
    }
}

/// Keys a request by a value read from one of its extensions, of type `T`,
/// through `read`; requests without it share one limit (the key `None`).
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use std::time::Duration;
/// use steadfast::rate_limit::{keys::ByExtension, KeyedRateLimitLayer};
///
/// // As axum's `ConnectInfo<SocketAddr>` would be read.
/// #[derive(Clone)]
/// struct ConnectInfo<T>(T);
///
/// let key = ByExtension::new(|c: &ConnectInfo<SocketAddr>| c.0.ip());
/// let layer = KeyedRateLimitLayer::builder(10, Duration::from_secs(1), key).build().unwrap();
/// # let _ = layer;
/// ```
pub struct ByExtension<T, G> {
    read: G,
    _extension: PhantomData<fn(&T)>,
}

impl<T, G> ByExtension<T, G> {
    /// Keys by `read(extension)`.
    pub const fn new<K>(read: G) -> Self
    where
        G: Fn(&T) -> K,
    {
        Self {
            read,
            _extension: PhantomData,
        }
    }
}

impl<T, G: Clone> Clone for ByExtension<T, G> {
    fn clone(&self) -> Self {
        Self {
            read: self.read.clone(),
            _extension: PhantomData,
        }
    }
}

impl<T, G> fmt::Debug for ByExtension<T, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByExtension")
            .field("extension", &std::any::type_name::<T>())
            .finish()
    }
}

impl<B, T, K, G> KeyOf<Request<B>> for ByExtension<T, G>
where
    T: Send + Sync + 'static,
    G: Fn(&T) -> K,
{
    type Key = Option<K>;

    #[inline]
    fn key_of(&self, req: &Request<B>) -> Option<K> {
        req.extensions().get::<T>().map(&self.read)
    }
}
