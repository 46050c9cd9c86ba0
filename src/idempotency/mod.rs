//! Idempotency keys: make "retry a POST" safe end to end.
//!
//! A client sends a non-idempotent request (a POST that creates an order)
//! with an `Idempotency-Key` header and may send it again, with the same
//! key, when it does not know whether the first attempt went through. On
//! the server, [`IdempotencyLayer`] runs each keyed request **at most once**
//! and answers every repeat with the response of the first. This follows
//! the IETF httpapi draft "The Idempotency-Key HTTP Header Field" and the
//! behaviour Stripe made familiar.
//!
//! # The protocol
//!
//! For a request whose method is handled (POST and PATCH by default,
//! [`IdempotencyLayerBuilder::methods`]):
//!
//! | situation | answer |
//! |---|---|
//! | no key, key optional (default) | passes straight through, unprotected |
//! | no key, [`require_key`](IdempotencyLayerBuilder::require_key) | **400**, the handler does not run |
//! | key malformed: not an RFC 8941 sf-string or token, empty, over 255 bytes, control characters, or two `Idempotency-Key` headers | **400** |
//! | body larger than [`max_request_body`](IdempotencyLayerBuilder::max_request_body) (1 MiB) | **413** |
//! | first request with the key | the handler runs; its response (status, headers, body) is stored for the [`ttl`](IdempotencyLayerBuilder::ttl) (24 h) and returned |
//! | repeat, same fingerprint, first one finished | the stored response, byte for byte, plus `Idempotent-Replayed: true` |
//! | repeat while the first still runs | **409** with `Retry-After: 1`, or with [`wait_for_result`](IdempotencyLayerBuilder::wait_for_result) the first one's response once it is stored (409 if it takes longer than the bound) |
//! | same key, different fingerprint | **422** |
//! | the store fails or is unreachable | **503** with `Retry-After: 1`; the handler never runs unprotected |
//! | the store is full of requests still running ([`Claim::Full`](store::Claim::Full)) | **503** with `Retry-After: 1`, counted as [`shed`](IdempotencyStats::shed): new work is shed, running work is never evicted |
//!
//! A keyed response is read whole (up to the cap) before it is sent, so it
//! can be stored: keyed endpoints should not stream long responses.
//!
//! The fingerprint is the SHA-256 of the method, the path and query, and the
//! body, so a key reused for a different request is caught instead of
//! answered with an unrelated response. Errors are short
//! `application/problem+json` bodies (RFC 9457).
//!
//! What frees a key so the client can try again:
//!
//! - a **5xx** response (returned as is, not stored): the handler failed,
//!   the client should retry;
//! - the inner service returning an error;
//! - a response too large to store ([`max_response_body`], 1 MiB) or with
//!   trailers: returned whole, not stored;
//! - the request being **dropped before its handler began** (while its body
//!   is read or its claim is in flight; the client went away, a timeout
//!   outside cancelled it). The claim token is made before the claim's
//!   round trip, so even a claim the store applied after the caller gave
//!   up is released. `Drop` cannot await, so the release is polled once in
//!   place (enough for an in-memory store), then handed to the
//!   [`spawn_release_with`](IdempotencyLayerBuilder::spawn_release_with)
//!   spawner or the current Tokio runtime;
//! - with [`OnDisconnect::Abandon`], the request being dropped *after* its
//!   handler began: the handler's future is dropped and the key released;
//! - a handler that **panics** or a server that dies: the claim has its own
//!   [`lock_timeout`](IdempotencyLayerBuilder::lock_timeout) (60 s), after
//!   which the key is free again.
//!
//! What does **not** free a key:
//!
//! - a request dropped after its handler began, by default
//!   ([`OnDisconnect::Complete`]): the rest of it (the handler, storing its
//!   response) runs in a task of its own, for at most the lock timeout; a
//!   retry gets 409 while it runs, then the stored response;
//! - a handler running longer than the lock timeout: while it runs, the
//!   layer renews its claim every `lock_timeout / 3`
//!   ([`Store::extend`](store::Store::extend)), polled beside the handler
//!   (the handler never waits on the store). So a handler that hangs keeps
//!   its key as long as its request is alive; bound it with a timeout
//!   *inside* this layer (the timeout's error releases the key);
//! - a failed write of a successful response: the write is retried (3
//!   attempts, 25 ms then 100 ms apart, within the lock); if every attempt
//!   fails the claim is kept until its lock timeout (a retry gets 409
//!   meanwhile), logged at `error` with a short hash of the key (never the
//!   key), and counted in
//!   [`store_write_failures`](IdempotencyStats::store_write_failures).
//!
//! A request waiting with [`wait_for_result`](IdempotencyLayerBuilder::wait_for_result)
//! whose first request frees the key (a 5xx, a drop) claims it itself and
//! runs the handler, as a retry would.
//!
//! Any other response (1xx–4xx) is stored: a 400 for a bad order will be a
//! 400 again, and the client must not get a different answer by retrying.
//!
//! # Guarantees
//!
//! With one store shared by every replica, a keyed request's handler runs
//! at most once while its key holds a claim or a stored response; the
//! failures that break that, and so can still run a handler twice, are
//! exactly these:
//!
//! - **The process dies mid-handler** (crash, kill, deploy without drain).
//!   With a [`MemoryStore`](store::MemoryStore) the claim dies with it and a
//!   retry reaching the new process runs the handler again; with Redis the
//!   claim outlives the process but is no longer renewed, so a retry after
//!   its lock timeout runs the handler again. Nothing records how far the
//!   handler got: make handlers that must not repeat transactional.
//! - **The store is unreachable for longer than the lock timeout while a
//!   handler runs.** Renewals fail, the claim expires, and a retry on
//!   another replica (or after the store comes back empty) claims the key
//!   and runs again. (A lone renewal that finds the key free claims it
//!   back, so a Redis restart *within* the lock timeout is survived.) The
//!   same holds for a handler longer than the lock timeout driven outside
//!   a Tokio runtime, where no renewal runs at all.
//! - **A store that loses a claim or a response**: a Redis failover that
//!   loses acknowledged writes (replication is asynchronous), a Redis
//!   restarted without persistence while no renewal is due, a Redis
//!   `maxmemory` policy that evicts these keys (use `noeviction`), or a
//!   stored response evicted from a full `MemoryStore` before its TTL
//!   ([`evicted_responses`](store::MemoryStoreStats::evicted_responses)).
//!   A stored response that is gone is a key whose retry runs again.
//! - **A response that cannot be stored**: over
//!   [`max_response_body`], with trailers, or (`MemoryStore`) larger than
//!   its shard's byte share; or a write that failed three times. The key
//!   frees itself at its lock timeout (at once for the first two), and a
//!   retry after that runs again.
//! - **[`OnDisconnect::Abandon`]**, or a detached request that ran past the
//!   lock timeout ([`detached_timed_out`](IdempotencyStats::detached_timed_out)),
//!   or one dropped without a Tokio runtime or spawner to finish it: its
//!   handler is cancelled part way and its key released.
//! - **A retry after the TTL** (24 h by default), or with another
//!   principal (another `Authorization`, see below), or to a replica with
//!   another store: a new key as far as the layer can tell.
//!
//! A running claim is never evicted to make room (a full store sheds new
//! claims with 503 instead), and a key whose handler succeeded is never
//! released because storing its response failed.
//!
//! [`IdempotencyLayer::handle`] counts what the layer did about these:
//! requests shed, requests detached and cut off, writes that failed after
//! success, lease renewals and leases lost.
//!
//! # Principals
//!
//! Keys are chosen by clients, so two clients can pick the same key. Keys
//! are therefore scoped by a **principal**: the store key is the pair
//! (principal, key), and one client can never be answered with another's
//! stored response. Pass your own with
//! [`principal`](IdempotencyLayer::principal), e.g. the authenticated
//! account id:
//!
//! ```
//! # use steadfast::idempotency::IdempotencyLayer;
//! # fn with<St: steadfast::idempotency::store::Store>(store: St) {
//! let layer = IdempotencyLayer::new(store).principal(|parts: &http::request::Parts| {
//!     parts.headers.get("x-api-key")?.to_str().ok().map(str::to_owned)
//! });
//! # let _ = layer; }
//! ```
//!
//! The default, [`AuthorizationPrincipal`], is the SHA-256 of the
//! `Authorization` header, so credentials never reach the store in clear
//! and clients with different credentials never share keys. **The risk:**
//! requests *without* `Authorization` (and any for which your principal
//! returns `None`) share one anonymous scope, where anyone who learns or
//! guesses another anonymous client's key, and sends the same request
//! (method, path and body; anything else gets 422), gets its response
//! replayed. Keys are random UUIDs in practice (122 random bits from
//! `IdempotencyKeyLayer`), but if anonymous requests reach the layer,
//! use [`require_key`](IdempotencyLayerBuilder::require_key) together with
//! authentication in front of it, or a principal that never returns `None`
//! for them (e.g. a session id). Also note that one client with two
//! different `Authorization` values (a rotated token) has two scopes.
//!
//! # Choosing a store
//!
//! The layer keeps claims and responses in a [`Store`](store::Store):
//! atomic claim, extend, complete and release, each checked against a
//! random claim token, so a late handler whose claim expired cannot
//! overwrite a newer one (though it still stores its response when nobody
//! took the key meanwhile). An in-memory store is right for one server process; when several
//! replicas serve the same clients they must share one store (Redis), or
//! a retry that lands on another replica runs again. Stored responses take
//! memory (or Redis space) for the whole TTL: cap each with
//! [`max_response_body`], and the memory store as a whole with its bounds on
//! entries and bytes ([`MemoryStoreBuilder`](store::MemoryStoreBuilder)).
//!
//! # With the client layer and retry
//!
//! The client's `IdempotencyKeyLayer` gives each non-idempotent call one
//! key that every retry of that call carries, and the retry layer repeats a
//! POST after a timeout or a lost answer only when it carries a key
//! (without one, only after a failure that proves it was never sent, such
//! as a refused connection). Together: an attempt whose answer was
//! lost (timeout, reset connection) is sent again with the same key; if the
//! first attempt reached the handler, the retry gets its stored response
//! (`Idempotent-Replayed: true`) or a 409 while it runs (retry it after
//! `Retry-After`); if it failed with a 5xx, the key was freed and the retry
//! runs the handler afresh.
//!
//! ```text
//! client: IdempotencyKey → Deadline → Retry → … → network → server: IdempotencyLayer → handler
//! ```
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use steadfast::idempotency::{IdempotencyBody, IdempotencyLayer};
//! use tower::{Layer, ServiceExt};
//! use steadfast::idempotency::store::MemoryStore;
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryStore::new();
//! let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
//! let handler = tower::service_fn({
//!     let runs = runs.clone();
//!     move |_req: Request<IdempotencyBody<Full<Bytes>>>| {
//!         let n = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
//!         async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(format!("order {n}"))))) }
//!     }
//! });
//! let svc = IdempotencyLayer::new(store).layer(handler);
//!
//! let post = || {
//!     Request::post("/orders")
//!         .header("idempotency-key", "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"")
//!         .body(Full::new(Bytes::from_static(b"{\"sku\":42}")))
//!         .unwrap()
//! };
//! let first = svc.clone().oneshot(post()).await?;
//! let again = svc.clone().oneshot(post()).await?;
//! assert_eq!(again.headers()["idempotent-replayed"], "true");
//! assert_eq!(first.into_body().collect().await?.to_bytes(), "order 1");
//! assert_eq!(again.into_body().collect().await?.to_bytes(), "order 1");
//! assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
//! # Ok(())
//! # }
//! ```
//!
//! With axum, add it to a router: `Router::new().route("/orders",
//! post(create_order)).layer(IdempotencyLayer::new(store))`.
//!
//! # Errors
//!
//! The server service adds no error of its own: its error type is the
//! inner service's, passed through (and the claim released).
//!
//! [`OnDisconnect::Complete`] needs a Tokio runtime to finish a dropped
//! request (`tokio::runtime::Handle::try_current`, or the
//! [`spawn_release_with`](IdempotencyLayerBuilder::spawn_release_with)
//! spawner; feature `http` enables `tokio/rt`); without either it falls
//! back to abandoning the request, with a `warn` log.
//!
//! Everything the layer decides itself is an HTTP answer from the table
//! above (400, 409, 413, 422, 503), so a client sees the protocol, not a
//! dropped connection.
//! Settings are checked once: [`IdempotencyLayerBuilder::build`] returns an
//! [`InvalidConfig`](crate::InvalidConfig) naming the field (a zero
//! `lock_timeout`, `ttl` or `wait_for_result`, or no methods).
//!
//! # Clone
//!
//! Every service the layer makes, and every clone of those, shares the
//! layer's store and settings: one `IdempotencyLayer` (one store) per set
//! of endpoints that share keys. A [`MemoryStore`](store::MemoryStore)'s
//! clones share its entries; each clone of the service has its own inner
//! service.
//!
//! [`max_response_body`]: IdempotencyLayerBuilder::max_response_body

pub mod client;
pub mod key;
mod server;
pub mod store;

pub use self::client::{IdempotencyKeyLayer, KeyedRequest, MakeKey, SetIdempotencyKey, UuidV4};
pub use self::key::{IdempotencyKey, InvalidKey};
pub use self::server::future;
pub use self::server::{
    AuthorizationPrincipal, ExtractPrincipal, Idempotency, IdempotencyBody, IdempotencyEvent,
    IdempotencyEventKind, IdempotencyHandle, IdempotencyLayer, IdempotencyLayerBuilder,
    IdempotencyStats, OnDisconnect,
};
