//! Keys for the layers kept one per key (the keyed circuit breaker, the
//! keyed rate limiter): the [`KeyOf`] trait and, with feature `http`, the
//! ready-made [`keys`]. Part of the shared core; each keyed layer
//! re-exports them.

/// Computes the key of a request for a keyed layer ([`KeyedCircuitBreakerLayer`](crate::circuit_breaker::KeyedCircuitBreakerLayer), [`KeyedRateLimitLayer`](crate::rate_limit::KeyedRateLimitLayer)): which
/// breaker the request goes through.
///
/// Every `Fn(&Req) -> K` is one; implement it by hand for a key that
/// serves several request types at once, as `keys::ByAuthority` (feature `http`) does for
/// `http::Request` and `reqwest::Request`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot compute a key for `{Req}`",
    label = "no `KeyOf<{Req}>` implementation",
    note = "a keyed layer (breaker, rate limit) needs a `Fn(&{Req}) -> K` or a type implementing `KeyOf<{Req}>`; `keys::ByAuthority` keys `http::Request` and `reqwest::Request`"
)]
pub trait KeyOf<Req> {
    /// The key: one breaker per distinct value.
    type Key;

    /// The key of `req`.
    fn key_of(&self, req: &Req) -> Self::Key;
}

impl<F, Req, K> KeyOf<Req> for F
where
    F: Fn(&Req) -> K,
{
    type Key = K;

    #[inline]
    fn key_of(&self, req: &Req) -> K {
        self(req)
    }
}

/// Ready-made key functions for the keyed layers
/// ([`KeyedCircuitBreakerLayer`](crate::circuit_breaker::KeyedCircuitBreakerLayer),
/// [`KeyedRateLimitLayer`](crate::rate_limit::KeyedRateLimitLayer)).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod keys {
    use http::uri::{Authority, PathAndQuery, Scheme};
    use http::Request;

    /// The key of [`authority`]: scheme and authority (host and port),
    /// compared case-insensitively.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct AuthorityKey {
        scheme: Option<Scheme>,
        authority: Option<Authority>,
    }

    impl AuthorityKey {
        /// The scheme, if the request URI had one.
        pub fn scheme(&self) -> Option<&Scheme> {
            self.scheme.as_ref()
        }
        /// The authority, from the URI or else the `Host` header.
        pub fn authority(&self) -> Option<&Authority> {
            self.authority.as_ref()
        }
    }

    /// Keys an `http::Request` by scheme + authority: one breaker per
    /// backend host. Falls back to the `Host` header for a relative URI.
    /// Cloning the parts shares their bytes; no allocation.
    pub fn authority<B>(req: &Request<B>) -> AuthorityKey {
        let uri = req.uri();
        let authority = uri.authority().cloned().or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        });
        AuthorityKey {
            scheme: uri.scheme().cloned(),
            authority,
        }
    }

    /// Keys requests by scheme + authority, like [`authority`], for every
    /// request type at once: `http::Request<B>` for any body `B`, and
    /// `reqwest::Request` (feature `reqwest`; its URL's host and port are
    /// parsed into an [`AuthorityKey`], which allocates, where an
    /// `http::Request`'s key shares the URI's bytes).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct ByAuthority;

    /// A request whose backend host [`ByAuthority`] can read:
    /// `http::Request<B>` and `reqwest::Request` (feature `reqwest`).
    /// Sealed. One `KeyOf` implementation covers them all, so a service keyed
    /// by authority still infers its request type from the call.
    pub trait HasAuthority: sealed::Sealed {
        /// The request's scheme and authority.
        fn authority_key(&self) -> AuthorityKey;
    }

    mod sealed {
        pub trait Sealed {}
    }

    impl<Req: HasAuthority> super::KeyOf<Req> for ByAuthority {
        type Key = AuthorityKey;

        #[inline]
        fn key_of(&self, req: &Req) -> AuthorityKey {
            req.authority_key()
        }
    }

    impl<B> sealed::Sealed for Request<B> {}

    impl<B> HasAuthority for Request<B> {
        #[inline]
        fn authority_key(&self) -> AuthorityKey {
            authority(self)
        }
    }

    #[cfg(feature = "reqwest")]
    impl sealed::Sealed for reqwest::Request {}

    #[cfg(feature = "reqwest")]
    impl HasAuthority for reqwest::Request {
        fn authority_key(&self) -> AuthorityKey {
            let url = self.url();
            let authority = url.host_str().and_then(|host| {
                // `host_str` keeps an IPv6 address's brackets.
                let text = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                Authority::try_from(text).ok()
            });
            AuthorityKey {
                scheme: Scheme::try_from(url.scheme()).ok(),
                authority,
            }
        }
    }

    /// Keys a request by its path: for gRPC, one breaker per method
    /// (`/package.Service/Method`).
    pub fn path<B>(req: &Request<B>) -> Option<PathAndQuery> {
        req.uri().path_and_query().cloned()
    }
}

/// A [`Hasher`](std::hash::Hasher) for keys that are already keyed hashes
/// (the fingerprints of the keyed layers): `write_u64` passes the value
/// through, so a map lookup hashes nothing twice.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
