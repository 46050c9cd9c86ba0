//! One limit per key: [`KeyedRateLimitLayer`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::error::RateLimited;
use super::future::ResponseFuture;
use super::gcra::Rate;
use super::layer::check;
use super::shared::Rejected;
use crate::deadline::scope_now;
use crate::error::{BoxError, InvalidConfig};
use crate::key::{KeyOf, PassThrough};
use crate::metrics::listener::Listeners;
use crate::metrics::CachePadded;
use crate::sync::{lock, AtomicU64, Mutex};

const SHARDS: usize = 16;

/// The keys a keyed limiter holds at most, unless told otherwise.
const DEFAULT_MAX_KEYS: usize = 65_536;

/// The largest `max_keys`: 16 million keys, about 600 MB.
const MAX_KEYS: usize = 1 << 24;

struct Shard {
    /// Fingerprint → `tat`.
    tats: HashMap<u64, u64, BuildHasherDefault<PassThrough>>,
    cap: usize,
    last_sweep: u64,
}

pub(crate) struct Keyed<F> {
    key_fn: F,
    rate: Rate,
    hasher: RandomState,
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    /// The `tat` every key beyond the cap shares.
    overflow: CachePadded<AtomicU64>,
    origin: Instant,
    name: Option<Arc<str>>,
    on_rejection: Listeners<Rejected>,
    rejected: AtomicU64,
    overflowed: AtomicU64,
    evicted: AtomicU64,
}

impl<F> Keyed<F> {
    #[inline]
    fn nanos(&self, now: Instant) -> u64 {
        super::gcra::nanos_since(self.origin, now)
    }

    /// Sweeps the recovered keys out of `shard`; returns how many went.
    fn sweep(&self, shard: &mut Shard, now: u64) -> usize {
        shard.last_sweep = now;
        let before = shard.tats.len();
        shard.tats.retain(|_, tat| *tat > now);
        let evicted = before - shard.tats.len();
        if evicted > 0 {
            self.evicted.fetch_add(evicted as u64, Relaxed);
        }
        evicted
    }

    /// Takes a cell of the limit of the key with fingerprint `fp` at `now`,
    /// or says how long until one conforms.
    #[inline]
    fn acquire(&self, fp: u64, now: u64) -> Result<(), u64> {
        // Bits the table itself does not use: it takes the top 7 bits for its
        // control bytes and the low ones for the bucket.
        let shard = &self.shards[(fp >> 32) as usize % self.shards.len()];
        let mut shard = lock(shard);
        if let Some(tat) = shard.tats.get_mut(&fp) {
            let next = self.rate.conform(*tat, now)?;
            *tat = next;
            return Ok(());
        }
        // A new key (or one forgotten after it recovered): its first call
        // conforms, since the burst is at least one.
        if shard.tats.len() >= shard.cap {
            let since = now.saturating_sub(shard.last_sweep);
            if since >= self.rate.span / 8 {
                self.sweep(&mut shard, now);
            }
        }
        if shard.tats.len() >= shard.cap {
            drop(shard);
            return self.acquire_overflow(now);
        }
        let next = self.rate.conform(0, now)?;
        shard.tats.insert(fp, next);
        Ok(())
    }

    #[cold]
    fn acquire_overflow(&self, now: u64) -> Result<(), u64> {
        self.overflowed.fetch_add(1, Relaxed);
        let mut tat = self.overflow.load(Relaxed);
        loop {
            let next = self.rate.conform(tat, now)?;
            match self
                .overflow
                .compare_exchange_weak(tat, next, AcqRel, Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn reject(&self, wait: u64) -> RateLimited {
        self.rejected.fetch_add(1, Relaxed);
        let limited = RateLimited::new(Duration::from_nanos(wait.max(1)), Duration::ZERO);
        tracing::debug!(
            target: "steadfast::rate_limit",
            layer = "rate_limit",
            name = self.name.as_deref().unwrap_or(""),
            event = "rejected",
            keyed = true,
            retry_after_ms = u64::try_from(limited.retry_after().as_millis()).unwrap_or(u64::MAX),
            "keyed rate limiter rejected a call"
        );
        if !self.on_rejection.is_empty() {
            let event = Rejected::new(self.name.clone(), limited);
            self.on_rejection
                .call("rate_limit", self.name.as_deref(), &event);
        }
        limited
    }
}

/// Builds a [`KeyedRateLimitLayer`]; made by
/// [`KeyedRateLimitLayer::builder`].
pub struct KeyedRateLimitBuilder<F> {
    key_fn: F,
    rate: u64,
    period: Duration,
    burst: Option<u64>,
    max_keys: usize,
    name: Option<Arc<str>>,
    on_rejection: Listeners<Rejected>,
}

impl<F> fmt::Debug for KeyedRateLimitBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitBuilder")
            .field("rate", &self.rate)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .field("max_keys", &self.max_keys)
            .field("name", &self.name)
            .finish()
    }
}

impl<F> KeyedRateLimitBuilder<F> {
    /// How many calls an idle key may make at once (default: the rate).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The most keys kept at once (default 65,536; at most 16,777,216),
    /// about 36 bytes each. Keys beyond it share one overflow limit; see
    /// the [`KeyedRateLimitLayer`] docs.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// A name for the limiter's events, snapshot and listener events.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Called on every call the limiter rejects, outside any lock; see
    /// [`RateLimitBuilder::on_rejection`](super::RateLimitBuilder::on_rejection).
    pub fn on_rejection<G>(mut self, f: G) -> Self
    where
        G: Fn(&Rejected) + Send + Sync + 'static,
    {
        self.on_rejection.push(Arc::new(f));
        self
    }

    /// Checks the values and builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field: as
    /// [`RateLimitBuilder::build`](super::RateLimitBuilder::build) for
    /// `rate_limit.rate`, `rate_limit.period` and `rate_limit.burst`, and
    /// `keyed_rate_limit.max_keys` for 0 or more than 16,777,216.
    pub fn build(self) -> Result<KeyedRateLimitLayer<F>, InvalidConfig> {
        let (interval, burst) = check(self.rate, self.period, self.burst)?;
        if self.max_keys == 0 || self.max_keys > MAX_KEYS {
            return Err(InvalidConfig::new(
                "keyed_rate_limit.max_keys",
                format!("must be 1 to {MAX_KEYS}, got {}", self.max_keys),
            ));
        }
        let shards = self.max_keys.min(SHARDS);
        let (cap, extra) = (self.max_keys / shards, self.max_keys % shards);
        Ok(KeyedRateLimitLayer {
            shared: Arc::new(Keyed {
                key_fn: self.key_fn,
                rate: Rate::new(interval, burst),
                hasher: RandomState::new(),
                shards: (0..shards)
                    .map(|i| {
                        CachePadded(Mutex::new(Shard {
                            tats: HashMap::default(),
                            cap: cap + usize::from(i < extra),
                            last_sweep: 0,
                        }))
                    })
                    .collect(),
                overflow: CachePadded(AtomicU64::new(0)),
                origin: Instant::now(),
                name: self.name,
                on_rejection: self.on_rejection,
                rejected: AtomicU64::new(0),
                overflowed: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        })
    }
}

/// Applies a rate limit per key — per caller, per tenant, per backend —
/// shared by every service it makes.
///
/// A keyed limiter rejects at once (it does not queue): a server answers
/// the caller who is over its limit with `429`, and holding a request per
/// caller would hand memory to whoever sends the most.
///
/// # What is kept per key
///
/// A key is hashed (SipHash-1-3 under a random seed) and only its 64-bit
/// fingerprint is kept, with the key's `tat` (its GCRA theoretical arrival time):
/// 16 bytes per key in a `HashMap`, about 36 bytes per key with the table's
/// control bytes and spare capacity, in 16 shards, each behind its own lock
/// (held for a lookup and a compare, never across an `.await`).
///
/// A key whose limit has fully recovered (`tat <= now`) behaves exactly
/// like a key never seen, so it can be forgotten without changing any
/// decision: that is the idle eviction, and it needs no timeout. A shard
/// that is full sweeps out its recovered keys, at most once per eighth of
/// the time a burst takes to recover (so a flood of new keys cannot make
/// every call sweep). A new key that still finds its shard full of keys
/// in use shares one **overflow** limit, of the same rate, with every other
/// such key: `max_keys` bounds the memory whatever keys an attacker
/// sends, and the overflow limit bounds what those keys get through.
///
/// # Clone
///
/// Every clone of the layer and of its services shares the keys and their
/// limits.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use steadfast::rate_limit::{error::RateLimited, KeyedRateLimitLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// // Each user: 1 call a second. The key function reads the request.
/// let layer = KeyedRateLimitLayer::builder(1, Duration::from_secs(1), |(user, _): &(&str, u32)| {
///     user.to_string()
/// })
/// .max_keys(10_000)
/// .build()?;
/// let svc = layer.layer(service_fn(|(_, n): (&str, u32)| async move { Ok::<_, std::io::Error>(n) }));
///
/// assert_eq!(svc.clone().oneshot(("ann", 1)).await?, 1);
/// assert_eq!(svc.clone().oneshot(("bob", 2)).await?, 2); // a limit of his own
/// let err = svc.clone().oneshot(("ann", 3)).await.unwrap_err();
/// assert!(err.is::<RateLimited>());
/// assert_eq!(layer.handle().keys(), 2);
/// # Ok(())
/// # }
/// ```
pub struct KeyedRateLimitLayer<F> {
    shared: Arc<Keyed<F>>,
}

impl<F> KeyedRateLimitLayer<F> {
    /// A builder for `rate` calls per `period` per key, with the key of each
    /// request from `key_fn`: a closure `Fn(&Req) -> K` with `K: Hash`, or
    /// one of the ready-made `keys` (feature `http`).
    pub fn builder(rate: u64, period: Duration, key_fn: F) -> KeyedRateLimitBuilder<F> {
        KeyedRateLimitBuilder {
            key_fn,
            rate,
            period,
            burst: None,
            max_keys: DEFAULT_MAX_KEYS,
            name: None,
            on_rejection: Listeners::new(),
        }
    }

    /// A handle on the keys and counters.
    pub fn handle(&self) -> KeyedRateLimitHandle
    where
        F: Send + Sync + 'static,
    {
        KeyedRateLimitHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<F> Clone for KeyedRateLimitLayer<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F> fmt::Debug for KeyedRateLimitLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("name", &self.shared.name)
            .field("rate", &self.shared.rate)
            .finish()
    }
}

impl<S, F> Layer<S> for KeyedRateLimitLayer<F> {
    type Service = KeyedRateLimit<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A handle on a [`KeyedRateLimitLayer`]'s keys and counters. The limiter
/// keeps no per-key handles: keys are stored as fingerprints.
pub struct KeyedRateLimitHandle {
    shared: Arc<dyn KeyedStats>,
}

/// The part of [`Keyed`] a handle reads, without its key function's type.
trait KeyedStats: Send + Sync {
    fn snapshot(&self) -> KeyedRateLimitSnapshot;
    fn keys(&self) -> usize;
    fn evict_recovered(&self);
}

impl<F: Send + Sync> KeyedStats for Keyed<F> {
    fn snapshot(&self) -> KeyedRateLimitSnapshot {
        KeyedRateLimitSnapshot {
            name: self.name.clone(),
            interval: Duration::from_nanos(self.rate.interval),
            burst: self.rate.span / self.rate.interval,
            keys: self.keys() as u64,
            rejected: self.rejected.load(Relaxed),
            overflowed: self.overflowed.load(Relaxed),
            evicted: self.evicted.load(Relaxed),
        }
    }

    fn keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    fn evict_recovered(&self) {
        let now = self.nanos(Instant::now());
        for shard in self.shards.iter() {
            self.sweep(&mut lock(shard), now);
        }
    }
}

impl KeyedRateLimitHandle {
    /// The keys held now (recovered keys may still be among them until a
    /// sweep).
    pub fn keys(&self) -> usize {
        self.shared.keys()
    }

    /// Forgets every key whose limit has fully recovered, now (sweeps also
    /// happen on their own when a shard fills up).
    pub fn evict_recovered(&self) {
        self.shared.evict_recovered();
    }

    /// The counters, read now.
    pub fn snapshot(&self) -> KeyedRateLimitSnapshot {
        self.shared.snapshot()
    }
}

impl Clone for KeyedRateLimitHandle {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl fmt::Debug for KeyedRateLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitHandle")
            .field("keys", &self.keys())
            .finish()
    }
}

/// A keyed rate limiter's counters at one moment; from
/// [`KeyedRateLimitHandle::snapshot`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedRateLimitSnapshot {
    /// The limiter's name, if it has one.
    pub name: Option<Arc<str>>,
    /// The time between two admitted calls of one key once its burst is
    /// spent.
    pub interval: Duration,
    /// The calls an idle key may make at once.
    pub burst: u64,
    /// Keys held now.
    pub keys: u64,
    /// Calls rejected.
    pub rejected: u64,
    /// Calls of new keys that found the table full and shared the overflow
    /// limit.
    pub overflowed: u64,
    /// Keys forgotten after their limit recovered.
    pub evicted: u64,
}

impl fmt::Display for KeyedRateLimitSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "burst {} every {:?} per key | {} keys | rejected {} | overflowed {} | evicted {}",
            self.burst, self.interval, self.keys, self.rejected, self.overflowed, self.evicted,
        )
    }
}

/// Applies a rate limit per key; made by [`KeyedRateLimitLayer`].
///
/// # Backpressure
///
/// `poll_ready` is the inner service's; a call over its key's limit fails
/// in its response future with [`RateLimited`].
///
/// See [`KeyedRateLimitLayer`] for an example.
pub struct KeyedRateLimit<S, F> {
    inner: S,
    shared: Arc<Keyed<F>>,
}

impl<S, F> KeyedRateLimit<S, F> {
    /// A handle on the keys and counters.
    pub fn handle(&self) -> KeyedRateLimitHandle
    where
        F: Send + Sync + 'static,
    {
        KeyedRateLimitHandle {
            shared: self.shared.clone(),
        }
    }

    define_inner_service_accessors!();
}

impl<S: Clone, F> Clone for KeyedRateLimit<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for KeyedRateLimit<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish()
    }
}

impl<S, F, Req> Service<Req> for KeyedRateLimit<S, F>
where
    F: KeyOf<Req>,
    F::Key: std::hash::Hash,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &*self.shared;
        let fp = shared.hasher.hash_one(shared.key_fn.key_of(&req));
        let now = shared.nanos(scope_now().unwrap_or_else(Instant::now));
        match shared.acquire(fp, now) {
            Ok(()) => ResponseFuture::called(self.inner.call(req)),
            Err(wait) => ResponseFuture::rejected(shared.reject(wait)),
        }
    }
}
