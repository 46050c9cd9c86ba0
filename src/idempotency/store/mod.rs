//! Where the server layer keeps claims and stored responses.
//!
//! A request with an `Idempotency-Key` goes through these steps against a
//! [`Store`]:
//!
//! 1. Make a [`ClaimToken`] ([`ClaimToken::random`]), then
//!    [`claim`](Store::claim) the key with it. The caller makes the token
//!    *before* the round trip, so a claim cancelled while in flight (the
//!    store applied it, the reply never arrived) can still be released by
//!    that token; a release of a claim that never landed is a no-op. The
//!    first request gets [`Claim::Claimed`]; a repeat while it runs gets
//!    [`Claim::InProgress`]; a repeat after it finished gets
//!    [`Claim::Completed`] with the stored response; a store with no room
//!    left for a new claim (every entry a running claim) answers
//!    [`Claim::Full`]. The caller compares the [`Fingerprint`] it gets back
//!    with its own to spot a key reused for a different request.
//! 2. Run the handler, [`extend`](Store::extend)ing the claim (a lease)
//!    while it runs, so a handler longer than the lock timeout keeps its key.
//! 3. [`complete`](Store::complete) the claim with the response, or
//!    [`release`](Store::release) it (a 5xx, a cancelled handler) so the
//!    client may retry.
//!
//! A claim holds for its `lock_timeout` unless extended: a handler that
//! panicked or a server that died does not keep the key forever. Once the
//! lock timeout passes, the key may be claimed again, and the old
//! [`ClaimToken`] can no longer complete, extend or release it while the new
//! claim holds, so a late writer never overwrites a newer claim. A late
//! writer whose claim lapsed *without* anyone taking the key still stores
//! its response: the work ran, and nobody else is running it.
//!
//! # Stores
//!
//! * [`MemoryStore`]: the embedded default, for one process. Sharded, with
//!   TTL expiry and bounds on entries and bytes; it never evicts a running
//!   claim.
//! * `RedisStore` (feature `redis`): shared by many server replicas.
//!
//! Keys are [`StoreKey`]s: the principal's scope and the client's key joined
//! so that two scopes can never produce the same store key.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use steadfast::idempotency::store::{
//!     Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreKey, StoredResponse,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::idempotency::store::StoreError> {
//! let store = MemoryStore::new();
//! let key = StoreKey::new("client-42", "8e03978e-40d5-43e8-bc93-6894a57f9324");
//! let fingerprint = Fingerprint([7; 32]);
//! let lock = Duration::from_secs(60);
//!
//! let token = ClaimToken::random();
//! assert_eq!(
//!     store.claim(&key, &token, fingerprint, lock).await?,
//!     Claim::Claimed(token.clone()),
//! );
//! // A repeat while the first request runs: 409.
//! assert_eq!(
//!     store.claim(&key, &ClaimToken::random(), fingerprint, lock).await?,
//!     Claim::InProgress { fingerprint },
//! );
//! // The handler runs long: renew the lease.
//! assert!(store.extend(&key, &token, fingerprint, lock).await?);
//!
//! let response = StoredResponse::new(201, Bytes::from_static(b"created"))
//!     .with_headers([("content-type", "text/plain")]);
//! let ttl = Duration::from_secs(24 * 60 * 60);
//! assert!(store.complete(&key, &token, fingerprint, response.clone(), ttl).await?);
//!
//! // A repeat after completion: the stored response, byte for byte.
//! assert_eq!(
//!     store.claim(&key, &ClaimToken::random(), fingerprint, lock).await?,
//!     Claim::Completed { fingerprint, response },
//! );
//! # Ok(())
//! # }
//! ```

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::BoxError;

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod response;

pub use self::memory::{MemoryStore, MemoryStoreBuilder, MemoryStoreStats};
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use self::response::{StoredHeaders, StoredResponse};

/// The key under which a request is stored: the principal's scope and the
/// Idempotency-Key, joined unambiguously.
///
/// The scope's length comes first, so `("a:b", "c")` and `("a", "b:c")` give
/// different keys. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKey(String);

impl StoreKey {
    /// Joins `scope` and `key` as `"{scope.len()}:{scope}:{key}"`.
    ///
    /// ```
    /// use steadfast::idempotency::store::StoreKey;
    ///
    /// assert_eq!(StoreKey::new("tenant", "k1").as_str(), "6:tenant:k1");
    /// assert_ne!(StoreKey::new("a:b", "c"), StoreKey::new("a", "b:c"));
    /// ```
    pub fn new(scope: &str, key: &str) -> Self {
        use fmt::Write;

        let mut s = String::with_capacity(scope.len().saturating_add(key.len()).saturating_add(24));
        // Writing to a String cannot fail.
        let _ = write!(s, "{}:{}:{}", scope.len(), scope, key);
        Self(s)
    }

    /// The joined key, as stores write it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of method, path-and-query and body (computed by the server
/// layer), 32 bytes.
///
/// A repeat whose fingerprint differs from the stored one reuses the key for
/// a different request (422). See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// SHA-256 of the method, the path and query, and the body, each
    /// prefixed with its length so that no two different requests share an
    /// input.
    ///
    /// ```
    /// use steadfast::idempotency::store::Fingerprint;
    ///
    /// let a = Fingerprint::of("POST", "/orders?dry=1", b"{}");
    /// assert_eq!(a, Fingerprint::of("POST", "/orders?dry=1", b"{}"));
    /// assert_ne!(a, Fingerprint::of("POST", "/orders?dry=0", b"{}"));
    /// assert_ne!(a, Fingerprint::of("PUT", "/orders?dry=1", b"{}"));
    /// assert_ne!(a, Fingerprint::of("POST", "/orders?dry=1", b"{ }"));
    /// ```
    pub fn of(method: &str, path_and_query: &str, body: &[u8]) -> Self {
        use sha2::{Digest, Sha256};

        let mut hasher = Sha256::new();
        for part in [method.as_bytes(), path_and_query.as_bytes(), body] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }
}

/// Proof of a claim: a random token; completing or releasing needs it, so a
/// late writer cannot touch a newer claim.
///
/// See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub u128);

impl ClaimToken {
    /// A fresh random token (128 bits from a per-thread generator seeded
    /// from the operating system's randomness through
    /// [`RandomState`]).
    ///
    /// ```
    /// use steadfast::idempotency::store::ClaimToken;
    ///
    /// assert_ne!(ClaimToken::random(), ClaimToken::random());
    /// ```
    pub fn random() -> Self {
        thread_local! {
            static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::seed_from_u64(seed()));
        }
        RNG.try_with(|rng| Self(rng.borrow_mut().random()))
            // The thread is being torn down: a generator of its own.
            .unwrap_or_else(|_| Self(SmallRng::seed_from_u64(seed()).random()))
    }
}

/// A seed that differs per call and per process.
fn seed() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(SEQ.fetch_add(1, Ordering::Relaxed))
}

/// What [`Store::claim`] found. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The key was free: the caller owns it, under the token it passed
    /// (returned here), until it completes or releases, or `lock_timeout`
    /// passes without an [`extend`](Store::extend).
    Claimed(ClaimToken),
    /// Another request holds the claim (still running).
    InProgress {
        /// The fingerprint of the request holding the claim.
        fingerprint: Fingerprint,
    },
    /// A response is stored.
    Completed {
        /// The fingerprint of the request that produced the response.
        fingerprint: Fingerprint,
        /// The stored response.
        response: StoredResponse,
    },
    /// The key was free but the store has no room for a new claim: every
    /// entry it could evict to make room is a running claim, and a store
    /// never evicts one (its retry would run the handler again). The server
    /// layer answers 503 with `Retry-After` (shedding new work instead of
    /// repeating old work).
    Full,
}

/// The store could not be reached or answered garbage: the layer fails
/// closed (503).
///
/// See the [module docs](self).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<BoxError>,
}

impl StoreError {
    /// An error with a message (lowercase, no final period), e.g.
    /// `"redis answered an unknown claim state"`.
    pub fn new(msg: impl Into<String>) -> Self {
        Self {
            message: msg.into(),
            source: None,
        }
    }

    /// An error with a message and the error that caused it, returned by
    /// [`source`](Error::source).
    ///
    /// ```
    /// use std::error::Error;
    /// use steadfast::idempotency::store::StoreError;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    /// let err = StoreError::with_source("cannot reach the store", io);
    /// assert_eq!(err.to_string(), "cannot reach the store");
    /// assert!(err.source().unwrap().is::<std::io::Error>());
    /// ```
    pub fn with_source(msg: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            message: msg.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Where the server layer keeps claims and responses. Every method is atomic
/// with respect to the others for one key.
///
/// See the [module docs](self).
pub trait Store: Clone + Send + Sync + 'static {
    /// Claims `key` under `token` (made by the caller, see
    /// [`ClaimToken::random`]) for `fingerprint`, unless it is claimed
    /// (unexpired) or completed (unexpired); [`Claim::Full`] when there is
    /// no room for a new claim.
    fn claim(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Renews the lease of a running claim: the claim of `token` now holds
    /// for `lock_timeout` from now.
    ///
    /// * The key holds `token`'s claim (even one whose lock timeout passed,
    ///   if the store still has it): its expiry is pushed; `Ok(true)`.
    /// * The key is free (absent, expired, e.g. the store restarted and
    ///   lost it): it is claimed again for `token` and `fingerprint`;
    ///   `Ok(true)`, or `Ok(false)` when there is no room.
    /// * Another claim or a stored response holds it: `Ok(false)` (the
    ///   lease is lost).
    fn extend(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores `response` for `ttl` if `token` still holds the claim, or if
    /// the claim lapsed and nobody else took the key (it is absent, or
    /// holds `token`'s expired claim or an expired entry): the handler ran,
    /// and nobody else is running it.
    ///
    /// `Ok(false)` when it was not stored: another unexpired claim or a
    /// response from another claim holds the key, or the store refused the
    /// response (a [`MemoryStore`] refuses one larger than its byte share,
    /// and then leaves the claim to its lock timeout). A store that can tell
    /// answers `Ok(true)` to a repeat of a write that already landed.
    fn complete(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Frees the claim if `token` holds it (a 5xx, a cancelled handler);
    /// `Ok(false)` otherwise, e.g. for a claim that never landed.
    fn release(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// What `key` holds now, without claiming it: `None` when it is free
    /// (absent or expired), [`Claim::InProgress`] while a claim runs,
    /// [`Claim::Completed`] once a response is stored. Never returns
    /// [`Claim::Claimed`] or [`Claim::Full`].
    fn get(&self, key: &StoreKey)
        -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send;
}
