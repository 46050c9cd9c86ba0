//! Who a request comes from: the scope its keys live in.

use http::request::Parts;

use super::fingerprint::sha256;

/// Names the principal (the client) a request comes from, so that keys are
/// scoped per client: two clients that pick the same key never see each
/// other's responses.
///
/// `None` means the request has no principal: it shares the one anonymous
/// scope with every other request without one. Implemented for closures
/// `Fn(&http::request::Parts) -> Option<String>`; the default is
/// [`AuthorizationPrincipal`].
///
/// See the [module docs](crate::idempotency#principals).
pub trait ExtractPrincipal: Clone + Send + Sync + 'static {
    /// The principal of the request with head `parts`, or `None`.
    fn principal(&self, parts: &Parts) -> Option<String>;
}

impl<F> ExtractPrincipal for F
where
    F: Fn(&Parts) -> Option<String> + Clone + Send + Sync + 'static,
{
    fn principal(&self, parts: &Parts) -> Option<String> {
        self(parts)
    }
}

/// The default principal: the SHA-256 of the request's `Authorization`
/// header (hex), so credentials are never written to the store in clear.
/// Requests without `Authorization` share the anonymous scope.
///
/// See the [module docs](crate::idempotency#principals).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorizationPrincipal;

impl ExtractPrincipal for AuthorizationPrincipal {
    fn principal(&self, parts: &Parts) -> Option<String> {
        let value = parts.headers.get(http::header::AUTHORIZATION)?;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = sha256(value.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Some(hex)
    }
}

/// The store scope of a principal: principals and the anonymous scope can
/// never collide.
pub(crate) fn scope_of(principal: Option<String>) -> String {
    match principal {
        Some(p) => format!("p:{p}"),
        None => String::from("anonymous"),
    }
}
