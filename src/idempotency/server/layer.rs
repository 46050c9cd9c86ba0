use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tower_layer::Layer;

use super::events::{IdempotencyEvent, IdempotencyEventKind};
use super::principal::{AuthorizationPrincipal, ExtractPrincipal};
use super::service::Idempotency;
use crate::idempotency::store::Store;
use crate::metrics::listener::Listeners;
use crate::InvalidConfig;

/// Hands a release that did not finish at once to a runtime; see
/// [`IdempotencyLayerBuilder::spawn_release_with`].
pub(crate) type Spawner = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// The layer's settings, shared by every service it makes.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) methods: Vec<Method>,
    pub(crate) require_key: bool,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) ttl: Duration,
    pub(crate) wait_for_result: Option<Duration>,
    pub(crate) spawner: Option<Spawner>,
    pub(crate) on_disconnect: OnDisconnect,
    pub(crate) counters: Arc<Counters>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) listeners: Listeners<IdempotencyEvent>,
}

/// What happens to a keyed request whose response future is dropped (the
/// client went away, a timeout outside cancelled it) after its handler
/// began; see [`IdempotencyLayerBuilder::on_disconnect`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnDisconnect {
    /// The rest of the request (the handler, storing its response) is
    /// spawned on the current Tokio runtime and driven to completion,
    /// bounded by the lock timeout: a retry gets the stored response, or 409
    /// while it finishes. Without a runtime (and no
    /// [`spawn_release_with`](IdempotencyLayerBuilder::spawn_release_with)
    /// spawner), falls back to [`Abandon`](Self::Abandon). The default.
    #[default]
    Complete,
    /// The handler's future is dropped with the request and the key is
    /// released: a retry runs the handler again (it may have done part or
    /// all of its work).
    Abandon,
}

/// The layer's counters, name and listeners, shared by its services and
/// handles.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) claims: AtomicU64,
    pub(crate) replays: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) mismatches: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) detached: AtomicU64,
    pub(crate) detached_timed_out: AtomicU64,
    pub(crate) store_write_failures: AtomicU64,
    pub(crate) lease_renewals: AtomicU64,
    pub(crate) leases_lost: AtomicU64,
    name: Option<Arc<str>>,
    listeners: Listeners<IdempotencyEvent>,
}

impl Counters {
    fn new(name: Option<Arc<str>>, listeners: Listeners<IdempotencyEvent>) -> Self {
        Self {
            name,
            listeners,
            ..Self::default()
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The layer's name as the `name` field of its `tracing` events.
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// Counts `kind` and hands it to the listeners (the caller emits the
    /// `tracing` event, with what it knows of the cause).
    pub(crate) fn report(&self, kind: IdempotencyEventKind) {
        Self::add(match kind {
            IdempotencyEventKind::Replay => &self.replays,
            IdempotencyEventKind::Conflict => &self.conflicts,
            IdempotencyEventKind::Mismatch => &self.mismatches,
            IdempotencyEventKind::Shed => &self.shed,
            IdempotencyEventKind::StoreError => &self.store_errors,
            IdempotencyEventKind::LeaseLost => &self.leases_lost,
            IdempotencyEventKind::StoreWriteFailure => &self.store_write_failures,
            IdempotencyEventKind::DetachedTimedOut => &self.detached_timed_out,
        });
        if !self.listeners.is_empty() {
            let event = IdempotencyEvent {
                name: self.name.clone(),
                kind,
            };
            self.listeners
                .call("idempotency", self.name.as_deref(), &event);
        }
    }
}

/// Reads an [`IdempotencyLayer`]'s counters; from
/// [`IdempotencyLayer::handle`]. Clones read the same counters.
///
/// See the [module docs](crate::idempotency).
#[derive(Debug, Clone)]
pub struct IdempotencyHandle {
    counters: Arc<Counters>,
    name: Option<Arc<str>>,
}

/// What the layer counted since it was built; from
/// [`IdempotencyHandle::snapshot`]. Each counter is read on its own (no
/// lock), so the snapshot is not one instant's.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyStats {
    /// The layer's name, shared with the layer (no copy).
    pub name: Option<Arc<str>>,
    /// Keys claimed: keyed requests whose handler this layer ran (or began
    /// to run).
    pub claims: u64,
    /// Repeats answered with a stored response (marked
    /// `idempotent-replayed: true`).
    pub replays: u64,
    /// Repeats answered 409 because the first request with the key was
    /// still running (after waiting, with
    /// [`wait_for_result`](IdempotencyLayerBuilder::wait_for_result)).
    pub conflicts: u64,
    /// Requests answered 422 because their key was used before for a
    /// different request (method, path or body).
    pub mismatches: u64,
    /// Store operations the layer awaited that failed: a claim (answered
    /// 503), a renewal, a release, each attempt to store a response, and a
    /// stored response that could not be read back (answered 503).
    ///
    /// Evictions are the store's business: see
    /// [`MemoryStoreStats::evicted_responses`](crate::idempotency::store::MemoryStoreStats::evicted_responses).
    pub store_errors: u64,
    /// New keyed requests answered 503 because the store was full of
    /// running claims ([`Claim::Full`](crate::idempotency::store::Claim::Full)).
    pub shed: u64,
    /// Requests dropped after their handler began and driven to completion
    /// in a task of their own ([`OnDisconnect::Complete`]).
    pub detached: u64,
    /// Of those, the ones cut off at the lock timeout (their key released).
    pub detached_timed_out: u64,
    /// Responses of handlers that succeeded that the store failed to keep
    /// after every attempt; their keys stay claimed until the claim expires.
    pub store_write_failures: u64,
    /// Claims extended while their handler ran.
    pub lease_renewals: u64,
    /// Leases found taken by another claim (or response) while the handler
    /// ran; the handler's response is then not stored.
    pub leases_lost: u64,
}

impl IdempotencyHandle {
    /// The layer's name, if it has one
    /// ([`IdempotencyLayerBuilder::name`]).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The counters now.
    pub fn snapshot(&self) -> IdempotencyStats {
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        IdempotencyStats {
            name: self.name.clone(),
            claims: get(&c.claims),
            replays: get(&c.replays),
            conflicts: get(&c.conflicts),
            mismatches: get(&c.mismatches),
            store_errors: get(&c.store_errors),
            shed: get(&c.shed),
            detached: get(&c.detached),
            detached_timed_out: get(&c.detached_timed_out),
            store_write_failures: get(&c.store_write_failures),
            lease_renewals: get(&c.lease_renewals),
            leases_lost: get(&c.leases_lost),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("methods", &self.methods)
            .field("require_key", &self.require_key)
            .field("max_request_body", &self.max_request_body)
            .field("max_response_body", &self.max_response_body)
            .field("lock_timeout", &self.lock_timeout)
            .field("ttl", &self.ttl)
            .field("wait_for_result", &self.wait_for_result)
            .field("spawner", &self.spawner.is_some())
            .field("on_disconnect", &self.on_disconnect)
            .field("name", &self.name)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            methods: vec![Method::POST, Method::PATCH],
            require_key: false,
            max_request_body: 1024 * 1024,
            max_response_body: 1024 * 1024,
            lock_timeout: Duration::from_secs(60),
            ttl: Duration::from_secs(24 * 60 * 60),
            wait_for_result: None,
            spawner: None,
            on_disconnect: OnDisconnect::Complete,
            counters: Arc::default(),
            name: None,
            listeners: Listeners::new(),
        }
    }
}

/// Runs each keyed request at most once and answers repeats with the stored
/// response; makes [`Idempotency`] services.
///
/// Defaults: POST and PATCH are handled, the key is optional, bodies are
/// capped at 1 MiB both ways, claims last 60 s, responses are kept 24 h, a
/// repeat while the first runs gets 409 at once, and the principal is
/// [`AuthorizationPrincipal`].
///
/// See the [module docs](crate::idempotency).
#[derive(Clone)]
pub struct IdempotencyLayer<St, P = AuthorizationPrincipal> {
    store: St,
    principal: P,
    config: Arc<Config>,
}

impl<St, P> fmt::Debug for IdempotencyLayer<St, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<St: Store> IdempotencyLayer<St> {
    /// A layer keeping claims and responses in `store`, with the defaults.
    pub fn new(store: St) -> Self {
        Self {
            store,
            principal: AuthorizationPrincipal,
            config: Arc::new(Config::default()),
        }
    }

    /// A builder starting from the defaults, to change them.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::idempotency::store::MemoryStore;
    /// use steadfast::idempotency::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::builder(MemoryStore::new())
    ///     .require_key()
    ///     .ttl(Duration::from_secs(3600))
    ///     .build()?;
    /// # let _ = layer;
    /// let err = IdempotencyLayer::builder(MemoryStore::new())
    ///     .lock_timeout(Duration::ZERO)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "idempotency.lock_timeout");
    /// # Ok::<(), steadfast::InvalidConfig>(())
    /// ```
    pub fn builder(store: St) -> IdempotencyLayerBuilder<St> {
        IdempotencyLayerBuilder {
            store,
            principal: AuthorizationPrincipal,
            config: Config::default(),
        }
    }
}

impl<St, P> IdempotencyLayer<St, P> {
    /// Scopes keys by `principal` instead of the hash of `Authorization`
    /// (the same as [`IdempotencyLayerBuilder::principal`]; a principal
    /// needs no check, so it can be set on a built layer).
    ///
    /// ```
    /// use steadfast::idempotency::store::MemoryStore;
    /// use steadfast::idempotency::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::default()).principal(
    ///     |parts: &http::request::Parts| {
    ///         parts.headers.get("x-api-key")?.to_str().ok().map(str::to_owned)
    ///     },
    /// );
    /// # let _ = layer;
    /// ```
    pub fn principal<P2: ExtractPrincipal>(self, principal: P2) -> IdempotencyLayer<St, P2> {
        IdempotencyLayer {
            store: self.store,
            principal,
            config: self.config,
        }
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// A handle on the layer's counters (shared by every service it makes).
    ///
    /// ```
    /// use steadfast::idempotency::store::MemoryStore;
    /// use steadfast::idempotency::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new());
    /// assert_eq!(layer.handle().snapshot().shed, 0);
    /// ```
    pub fn handle(&self) -> IdempotencyHandle {
        IdempotencyHandle {
            counters: self.config.counters.clone(),
            name: self.config.name.clone(),
        }
    }
}

/// Builds an [`IdempotencyLayer`]; see [`IdempotencyLayer::builder`].
#[derive(Clone)]
pub struct IdempotencyLayerBuilder<St, P = AuthorizationPrincipal> {
    store: St,
    principal: P,
    config: Config,
}

impl<St, P> fmt::Debug for IdempotencyLayerBuilder<St, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<St, P> IdempotencyLayerBuilder<St, P> {
    /// Scopes keys by `principal` instead of the hash of `Authorization`.
    ///
    /// A closure works: `.principal(|parts: &http::request::Parts| api_key_of(parts))`.
    pub fn principal<P2: ExtractPrincipal>(self, principal: P2) -> IdempotencyLayerBuilder<St, P2> {
        IdempotencyLayerBuilder {
            store: self.store,
            principal,
            config: self.config,
        }
    }

    /// The methods whose requests are handled (default POST and PATCH), at
    /// least one; requests with other methods pass straight through, key or
    /// not.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config.methods = methods.into_iter().collect();
        self
    }

    /// Requests with a handled method and no key get 400 instead of passing
    /// through.
    pub fn require_key(mut self) -> Self {
        self.config.require_key = true;
        self
    }

    /// The largest request body buffered for the fingerprint (default
    /// 1 MiB); larger bodies get 413 and the handler does not run.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.config.max_request_body = bytes;
        self
    }

    /// The largest response body stored (default 1 MiB); a larger response
    /// is returned but not stored, and the claim is released.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.config.max_response_body = bytes;
        self
    }

    /// How long a claim holds without completing or being renewed (default
    /// 60 s, more than zero): after it a server that died, or a request no
    /// longer polled, no longer blocks its key. While the handler runs, the
    /// layer renews the claim every `lock_timeout / 3`, so a handler may run
    /// longer than this (bound a handler that may hang with a timeout inside
    /// this layer); a request detached by [`OnDisconnect::Complete`] runs at
    /// most this long.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.config.lock_timeout = timeout;
        self
    }

    /// How long a response is kept for replay (default 24 h, more than
    /// zero).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// A repeat that arrives while the first request runs waits up to `max`
    /// (more than zero) for its result, polling the store with a backoff
    /// from 5 ms to 100 ms, instead of getting 409 at once; 409 when `max`
    /// passes.
    pub fn wait_for_result(mut self, max: Duration) -> Self {
        self.config.wait_for_result = Some(max);
        self
    }

    /// Where to run a release that could not finish synchronously when a
    /// claimed request is dropped (cancelled), and the rest of a request
    /// detached by [`OnDisconnect::Complete`]; e.g.
    /// `.spawn_release_with(|release| { tokio::spawn(release); })`.
    ///
    /// `Drop` cannot await, so a dropped request's release is polled once
    /// on the spot (enough for an in-memory store). A release still pending
    /// after that (a network store) goes to this spawner; without one, it
    /// is spawned on the current Tokio runtime when there is one, else
    /// abandoned, and the key frees itself when its lock timeout passes.
    pub fn spawn_release_with<F>(mut self, spawn: F) -> Self
    where
        F: Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync + 'static,
    {
        self.config.spawner = Some(Arc::new(spawn));
        self
    }

    /// What happens when a keyed request is dropped after its handler began
    /// (default [`OnDisconnect::Complete`]: the handler is driven to
    /// completion in a task and its response stored).
    ///
    /// ```
    /// use steadfast::idempotency::store::MemoryStore;
    /// use steadfast::idempotency::{IdempotencyLayer, OnDisconnect};
    ///
    /// let layer = IdempotencyLayer::builder(MemoryStore::new())
    ///     .on_disconnect(OnDisconnect::Abandon)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), steadfast::InvalidConfig>(())
    /// ```
    pub fn on_disconnect(mut self, on_disconnect: OnDisconnect) -> Self {
        self.config.on_disconnect = on_disconnect;
        self
    }

    /// A name for the layer's snapshot, to tell several layers apart.
    /// Stored once and shared (no copy per request).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Called on every [`IdempotencyEvent`]: a replay, a request the layer
    /// answered itself (409 conflict, 422 mismatch, 503 shed or store
    /// error), a store failure, a lost lease, a response that could not be
    /// stored, a detached request cut off. Called after the event is
    /// counted, outside any lock, on the thread that saw it: keep it short.
    ///
    /// Each call adds a listener; they are called in the order added. A
    /// listener that panics is caught (and reported as a `tracing` error):
    /// the layer goes on and the listeners after it still get the event.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use steadfast::idempotency::store::MemoryStore;
    /// use steadfast::idempotency::{IdempotencyEventKind, IdempotencyLayer};
    ///
    /// let conflicts = Arc::new(AtomicU64::new(0));
    /// let seen = conflicts.clone();
    /// let layer = IdempotencyLayer::builder(MemoryStore::new())
    ///     .on_event(move |e| {
    ///         if e.kind() == IdempotencyEventKind::Conflict {
    ///             seen.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), steadfast::InvalidConfig>(())
    /// ```
    pub fn on_event<F>(mut self, f: F) -> Self
    where
        F: Fn(&IdempotencyEvent) + Send + Sync + 'static,
    {
        self.config.listeners.push(Arc::new(f));
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `idempotency.methods` when no method is
    /// handled, or `idempotency.lock_timeout`, `idempotency.ttl` or
    /// `idempotency.wait_for_result` when it is zero.
    pub fn build(self) -> Result<IdempotencyLayer<St, P>, InvalidConfig> {
        let mut config = self.config;
        // Each layer built counts on its own, even from clones of a builder.
        config.counters = Arc::new(Counters::new(
            config.name.clone(),
            std::mem::take(&mut config.listeners),
        ));
        if config.methods.is_empty() {
            return Err(InvalidConfig::new(
                "idempotency.methods",
                "must name at least one method, got none",
            ));
        }
        let durations = [
            ("idempotency.lock_timeout", Some(config.lock_timeout)),
            ("idempotency.ttl", Some(config.ttl)),
            ("idempotency.wait_for_result", config.wait_for_result),
        ];
        for (field, value) in durations {
            if value == Some(Duration::ZERO) {
                return Err(InvalidConfig::new(field, "must be more than zero, got 0s"));
            }
        }
        Ok(IdempotencyLayer {
            store: self.store,
            principal: self.principal,
            config: Arc::new(config),
        })
    }
}

impl<S, St: Clone, P: Clone> Layer<S> for IdempotencyLayer<St, P> {
    type Service = Idempotency<S, St, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::from_parts(
            inner,
            self.store.clone(),
            self.principal.clone(),
            self.config.clone(),
        )
    }
}
