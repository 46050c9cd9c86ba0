//! Header names that more than one layer reads, in the shared core: the
//! layers re-export them where their users look (`idempotency::key`).

use http::HeaderName;

/// The `Idempotency-Key` header name: set by the client key layer, read by
/// the server layer and by retry (a keyed request is safe to repeat).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
