//! One breaker per key: [`KeyedCircuitBreakerLayer`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::marker::PhantomData;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::config::CircuitBreakerConfig;
use super::error::BreakerError;
use super::future::ResponseFuture;
use super::handle::CircuitBreakerHandle;
use super::service::{admit, Node, Nodes};
use super::state::Core;
use crate::classify::{Classify, ErrorsAsFailures};
use crate::error::{BoxError, InvalidConfig};
use crate::key::PassThrough;
use crate::sync::{lock, AtomicU64, Mutex};

const MAX_SHARDS: usize = 16;

/// What the table keeps of a key: two 64-bit SipHash-1-3 hashes of it under
/// independent random seeds. `shard` picks the shard, `slot` the place in
/// the shard's table; equality compares both, all 128 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    shard: u64,
    slot: u64,
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.slot);
    }
}

struct Entry<C> {
    node: Arc<Node<C>>,
    last_used: u64,
}

struct Shard<C> {
    map: HashMap<Fingerprint, Entry<C>, BuildHasherDefault<PassThrough>>,
    cap: usize,
    last_sweep: u64,
}

struct Keyed<K, F, C> {
    _key: PhantomData<fn(&K)>,
    config: CircuitBreakerConfig,
    classifier: C,
    key_fn: F,
    hashers: [RandomState; 2],
    shards: Box<[Mutex<Shard<C>>]>,
    overflow: Nodes<C>,
    idle: u64,
    base: tokio::time::Instant,
    overflowed: AtomicU64,
    evicted: AtomicU64,
}

impl<K, F, C> Keyed<K, F, C> {
    fn now(&self) -> u64 {
        let d = tokio::time::Instant::now().saturating_duration_since(self.base);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, fp: Fingerprint) -> &Mutex<Shard<C>> {
        &self.shards[(fp.shard % self.shards.len() as u64) as usize]
    }
}

impl<K: Hash, F, C: Clone> Keyed<K, F, C> {
    fn fingerprint(&self, key: &K) -> Fingerprint {
        Fingerprint {
            shard: self.hashers[0].hash_one(key),
            slot: self.hashers[1].hash_one(key),
        }
    }

    /// The breaker for `key`: existing, new, or — when the key's shard is
    /// full of recently used keys — the shared overflow breaker. The key
    /// itself is dropped here: only its fingerprint is kept.
    fn node_for(&self, key: K) -> Arc<Node<C>> {
        let fp = self.fingerprint(&key);
        drop(key);
        let now = self.now();
        let mut shard = lock(self.shard(fp));
        if let Some(entry) = shard.map.get_mut(&fp) {
            entry.last_used = now;
            return entry.node.clone();
        }
        let full = shard.map.len() >= shard.cap;
        let since_sweep = now.saturating_sub(shard.last_sweep);
        if (full && since_sweep >= self.idle / 8) || since_sweep >= self.idle {
            shard.last_sweep = now;
            let before = shard.map.len();
            let idle = self.idle;
            shard
                .map
                .retain(|_, e| now.saturating_sub(e.last_used) < idle);
            let evicted = before - shard.map.len();
            if evicted > 0 {
                self.evicted.fetch_add(evicted as u64, Relaxed);
            }
        }
        if shard.map.len() >= shard.cap {
            drop(shard);
            self.overflowed.fetch_add(1, Relaxed);
            return self.overflow.local().clone();
        }
        let node = Node::single(
            Arc::new(Core::new_compact(&self.config)),
            self.classifier.clone(),
        );
        shard.map.insert(
            fp,
            Entry {
                node: node.clone(),
                last_used: now,
            },
        );
        node
    }
}

/// Builds a [`KeyedCircuitBreakerLayer`]; made by
/// [`KeyedCircuitBreakerLayer::builder`].
pub struct KeyedCircuitBreakerBuilder<K, F, C = ErrorsAsFailures> {
    _key: PhantomData<fn() -> K>,
    config: CircuitBreakerConfig,
    classifier: C,
    key_fn: F,
    max_keys: usize,
    idle_timeout: Duration,
}

impl<K, F, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerBuilder<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerBuilder")
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl<K, F, C> KeyedCircuitBreakerBuilder<K, F, C> {
    /// The configuration every per-key breaker gets. Default:
    /// [`CircuitBreakerConfig::default`].
    pub fn config(mut self, config: CircuitBreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// The classifier every per-key breaker uses.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerBuilder<K, F, C2> {
        KeyedCircuitBreakerBuilder {
            _key: PhantomData,
            config: self.config,
            classifier,
            key_fn: self.key_fn,
            max_keys: self.max_keys,
            idle_timeout: self.idle_timeout,
        }
    }

    /// At most this many keys get a breaker of their own (1 to 1,000,000;
    /// default 1,024). Keys beyond the cap share one overflow breaker, so
    /// memory stays bounded even when a client picks the keys: about 2 KB
    /// per key, whatever the key's length (see the layer's `# Memory` docs).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// A key unused for this long may be evicted to make room. Default 5 min.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Checks the values and builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] for a `max_keys` of 0 or over 1,000,000, or a zero
    /// `idle_timeout`.
    pub fn build(self) -> Result<KeyedCircuitBreakerLayer<K, F, C>, InvalidConfig>
    where
        C: Clone,
    {
        if self.max_keys == 0 || self.max_keys > 1_000_000 {
            return Err(InvalidConfig::new(
                "keyed_circuit_breaker.max_keys",
                format!("must be 1 to 1,000,000, got {}", self.max_keys),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(InvalidConfig::new(
                "keyed_circuit_breaker.idle_timeout",
                "must be greater than zero",
            ));
        }
        let shards = self.max_keys.min(MAX_SHARDS);
        let base_cap = self.max_keys / shards;
        let extra = self.max_keys % shards;
        let overflow = Nodes::new(Arc::new(Core::new(&self.config)), self.classifier.clone());
        Ok(KeyedCircuitBreakerLayer {
            shared: Arc::new(Keyed {
                _key: PhantomData,
                config: self.config,
                classifier: self.classifier,
                key_fn: self.key_fn,
                hashers: [RandomState::new(), RandomState::new()],
                shards: (0..shards)
                    .map(|i| {
                        Mutex::new(Shard {
                            map: HashMap::default(),
                            cap: base_cap + usize::from(i < extra),
                            last_sweep: 0,
                        })
                    })
                    .collect(),
                overflow,
                idle: u64::try_from(self.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
                base: tokio::time::Instant::now(),
                overflowed: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        })
    }
}

pub use crate::key::KeyOf;

/// A circuit breaker per key computed from each request: one failing host
/// (or method) does not open the breaker for the others.
///
/// All services the layer makes, and their clones, share the same set of
/// breakers.
///
/// # Memory
///
/// At most [`max_keys`](KeyedCircuitBreakerBuilder::max_keys) keys get a
/// breaker of their own. When a key's shard is full, keys idle for longer
/// than the [`idle_timeout`](KeyedCircuitBreakerBuilder::idle_timeout) are
/// evicted; if none is, the new key shares one *overflow* breaker instead of
/// pushing out a busy one. Eviction never resets a breaker that is in use,
/// so a client that can choose keys (a `Host` header, say) can neither grow
/// memory nor close a breaker by flooding new keys.
///
/// The bound holds in bytes, not only in keys:
///
/// * **Keys are not stored.** The layer keeps a 128-bit fingerprint of each
///   key — two SipHash-1-3 hashes under independent random seeds — and drops
///   the key itself in `call`, so a 60 KiB key costs what an 8-byte one
///   does. Two keys share a breaker only if both hashes collide: with `n`
///   keys about `n² / 2¹²⁹` (10⁻²⁷ for a million keys), and the seeds are
///   secret, so a client cannot aim for a collision.
/// * **A key's breaker is compact.** It has one set of counters (atomic
///   adds) and one set of time-window buckets, not a set per core as the
///   unkeyed breaker does: each key sees a share of the traffic, so it pays
///   less for contention and its size does not grow with the core count.
///
/// One key of its own costs about **1.8 KB** with the default config (a
/// time window of 10 buckets; 1,835 to 1,843 bytes measured, table slot
/// included), **1.5 KB** with consecutive failures only (1,549 to 1,555
/// bytes), plus 1 byte per
/// call of a [`Window::count`](super::Window::count) window and 16 bytes per
/// bucket of a time window beyond 10 — on any number of cores and for keys
/// of any length. `tests/keyed_circuit_breaker_memory` checks that
/// 1,000,000 distinct 1 KiB keys under a cap of 10,000 hold at most
/// 10,000 × 2,048 bytes plus 1 MiB, and that the figure is the same on one
/// core as on all of them. Most of a key's bytes are its breaker's
/// cache-line-aligned state, shared with the unkeyed breaker's layout.
///
/// For `http::Request`, `keys::authority` (one breaker per backend host)
/// and `keys::path` (one per gRPC method) are ready-made (feature `http`); any
/// `Fn(&Req) -> K` works:
///
/// ```
/// use steadfast::circuit_breaker::{CircuitBreakerConfig, KeyedCircuitBreakerLayer};
///
/// struct Query {
///     tenant: String,
///     sql: String,
/// }
///
/// # fn main() -> Result<(), steadfast::InvalidConfig> {
/// let layer = KeyedCircuitBreakerLayer::builder(|q: &Query| q.tenant.clone())
///     .config(CircuitBreakerConfig::builder().consecutive_failures(5).build()?)
///     .max_keys(256)
///     .build()?;
/// let handle = layer.handle();
/// assert!(handle.is_empty());
/// # Ok(())
/// # }
/// ```
pub struct KeyedCircuitBreakerLayer<K, F, C = ErrorsAsFailures> {
    shared: Arc<Keyed<K, F, C>>,
}

impl<K, F> KeyedCircuitBreakerLayer<K, F, ErrorsAsFailures> {
    /// A builder with `key_fn` computing each request's key; defaults:
    /// [`CircuitBreakerConfig::default`], [`ErrorsAsFailures`], 1,024 keys,
    /// 5 min idle timeout.
    pub fn builder<Req>(key_fn: F) -> KeyedCircuitBreakerBuilder<K, F, ErrorsAsFailures>
    where
        F: Fn(&Req) -> K,
        K: Hash + Eq,
    {
        Self::keyed_by(key_fn)
    }

    /// A builder keyed by `key_of`, a [`KeyOf`] that need not be a closure:
    /// one value that keys several request types, such as
    /// `keys::ByAuthority` (feature `http`). Same defaults as
    /// [`builder`](Self::builder).
    pub fn keyed_by(key_fn: F) -> KeyedCircuitBreakerBuilder<K, F, ErrorsAsFailures>
    where
        K: Hash + Eq,
    {
        KeyedCircuitBreakerBuilder {
            _key: PhantomData,
            config: CircuitBreakerConfig::default(),
            classifier: ErrorsAsFailures,
            key_fn,
            max_keys: 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// A handle on the set of breakers.
    pub fn handle(&self) -> KeyedCircuitBreakerHandle<K, F, C> {
        KeyedCircuitBreakerHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<K, F, C> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("shards", &self.shared.shards.len())
            .finish()
    }
}

impl<S, K, F, C> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreaker<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A handle on a [`KeyedCircuitBreakerLayer`]'s breakers.
pub struct KeyedCircuitBreakerHandle<K, F, C = ErrorsAsFailures> {
    shared: Arc<Keyed<K, F, C>>,
}

impl<K, F, C> Clone for KeyedCircuitBreakerHandle<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedCircuitBreakerHandle<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerHandle")
            .field("keys", &self.len())
            .finish()
    }
}

impl<K, F, C> KeyedCircuitBreakerHandle<K, F, C> {
    /// How many keys have a breaker of their own.
    pub fn len(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// `true` when no key has a breaker yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The breaker shared by keys that found no room.
    pub fn overflow(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shared.overflow.core().clone())
    }

    /// Calls routed to the overflow breaker because their key found no room.
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Relaxed)
    }

    /// Keys evicted for being idle.
    pub fn evicted(&self) -> u64 {
        self.shared.evicted.load(Relaxed)
    }

    /// Evicts every key idle for longer than the idle timeout now, instead of
    /// waiting for the next insert to do it.
    pub fn evict_idle(&self) {
        let now = self.shared.now();
        let idle = self.shared.idle;
        for shard in self.shared.shards.iter() {
            let mut shard = lock(shard);
            let before = shard.map.len();
            shard
                .map
                .retain(|_, e| now.saturating_sub(e.last_used) < idle);
            shard.last_sweep = now;
            let n = before - shard.map.len();
            self.shared.evicted.fetch_add(n as u64, Relaxed);
        }
    }
}

impl<K: Hash + Eq, F, C: Clone> KeyedCircuitBreakerHandle<K, F, C> {
    /// The breaker of `key`, if it has one of its own.
    pub fn get(&self, key: &K) -> Option<CircuitBreakerHandle> {
        let fp = self.shared.fingerprint(key);
        let shard = lock(self.shared.shard(fp));
        shard
            .map
            .get(&fp)
            .map(|e| CircuitBreakerHandle::new(e.node.core.clone()))
    }
}

/// A service with a circuit breaker per key; made by
/// [`KeyedCircuitBreakerLayer`].
///
/// # Clone
///
/// Clones share the layer's breakers.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's: the key, and so the breaker, is
/// known only in `call`, where a refused call fails in its response future
/// with [`CircuitOpen`](super::error::CircuitOpen).
pub struct KeyedCircuitBreaker<S, K, F, C = ErrorsAsFailures> {
    inner: S,
    shared: Arc<Keyed<K, F, C>>,
}

// === impl KeyedCircuitBreaker ===

impl<S, K, F, C> KeyedCircuitBreaker<S, K, F, C> {
    define_inner_service_accessors!();

    /// A handle on the set of breakers.
    pub fn handle(&self) -> KeyedCircuitBreakerHandle<K, F, C> {
        KeyedCircuitBreakerHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S: Clone, K, F, C> Clone for KeyedCircuitBreaker<S, K, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedCircuitBreaker<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq,
    F: KeyOf<Req, Key = K>,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = S::Response;
    type Error = BreakerError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| BreakerError::Inner(e.into()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.shared.key_fn.key_of(&req);
        let node = self.shared.node_for(key);
        match admit(&node) {
            Ok(guard) => ResponseFuture::called(self.inner.call(req), guard),
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

#[cfg(feature = "http")]
pub use crate::key::keys;
