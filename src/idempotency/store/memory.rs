//! `MemoryStore`: the embedded store, sharded mutexes over hash maps.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{ready, Future};
use std::hash::{BuildHasher, RandomState};
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Claim, ClaimToken, Fingerprint, Store, StoreError, StoreKey, StoredResponse};
use crate::InvalidConfig;

/// The default bound on entries.
const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The most shards a store may have.
const MAX_SHARDS: usize = 1 << 16;
/// How many unexpired claims eviction passes over, looking for a completed
/// or expired entry, before it gives up and evicts the oldest claim.
const MAX_SKIPPED_CLAIMS: usize = 32;
/// Expired entries at the front of a shard's queue purged on each insert.
const SWEEP_PER_INSERT: usize = 2;

/// The embedded [`Store`]: claims and responses in this process's memory.
///
/// Keys are spread over shards, each a [`std::sync::Mutex`] around a hash
/// map; no lock is held across an `.await` (every method does its work at
/// once and returns a ready future). Clones share the same entries.
///
/// * Entries expire on [`tokio::time`]: a claim after its lock timeout, a
///   response after its TTL. Expired entries count as absent; they are purged
///   when their key is next used, from the oldest end on each insert, and by
///   eviction.
/// * At most [`max_entries`](MemoryStoreBuilder::max_entries) are kept
///   (default 100,000). When a shard is full, the oldest entry in it is
///   evicted, preferring expired entries and stored responses over claims
///   that still hold: a running request keeps its claim unless the shard
///   holds nothing else near its oldest end. The bound is split evenly
///   over the shards, so a shard that fills first evicts while the store as
///   a whole may hold a little less than the bound.
///
/// For many server replicas, use a shared store such as `RedisStore`.
/// See the [module docs](super).
///
/// ```
/// use steadfast::idempotency::store::MemoryStore;
///
/// let store = MemoryStore::builder().max_entries(10_000).shards(8).build()?;
/// assert_eq!(store.stats().entries, 0);
/// # Ok::<(), steadfast::InvalidConfig>(())
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    hasher: RandomState,
    max_entries: usize,
}

/// What [`MemoryStore::stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStoreStats {
    /// Entries held, claims and responses, including expired ones not yet
    /// purged.
    pub entries: usize,
    /// An estimate of the bytes they take: each entry's key, its stored
    /// response
    /// ([`StoredResponse::size`]) and a fixed per-entry overhead for the map
    /// slot and queue item. The map's spare capacity is not counted.
    pub bytes: usize,
}

/// Builds a [`MemoryStore`]. See [`MemoryStore::builder`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_entries: usize,
    shards: Option<usize>,
}

struct Shard {
    map: HashMap<Arc<str>, Slot>,
    /// Keys in insertion order, for eviction and sweeping.
    order: VecDeque<Queued>,
    bytes: usize,
    cap: usize,
}

/// A key in the eviction queue. It shares its `Arc` with the map's key while
/// the entry lives; an item whose `Arc` is not the map's is stale (the key
/// was removed, maybe inserted again) and is skipped.
struct Queued {
    key: Arc<str>,
    /// The sweep does not look the entry up before then (`None`: never). It
    /// starts as the insertion time; once the sweep finds the entry
    /// completed, whose expiry no longer changes, it is that expiry.
    recheck: Option<Instant>,
}

struct Slot {
    /// `None`: never (the duration overflowed the clock).
    expires: Option<Instant>,
    state: State,
}

enum State {
    Claimed {
        token: ClaimToken,
        fingerprint: Fingerprint,
    },
    Completed {
        fingerprint: Fingerprint,
        response: Compact,
    },
}

/// A stored response with its headers packed in one allocation, so a replay
/// touches one block of memory for them instead of three per header.
struct Compact {
    status: u16,
    /// Per header: the name's and the value's lengths (`u64`, little endian),
    /// then the name and the value.
    headers: Box<[u8]>,
    body: Bytes,
    /// [`StoredResponse::size`] of the response, as counted in the stats.
    size: usize,
}

/// The fixed cost of one entry, beyond its key's bytes and its response.
const ENTRY_OVERHEAD: usize = mem::size_of::<Arc<str>>()
    + 2 * mem::size_of::<usize>() // the key's reference counts
    + mem::size_of::<Slot>()
    + 1 // the hash map's control byte
    + mem::size_of::<Queued>();

// === impl MemoryStore ===

impl MemoryStore {
    /// A store with the defaults: at most 100,000 entries, four shards per
    /// CPU (rounded up to a power of two).
    pub fn new() -> Self {
        Self::with_config(DEFAULT_MAX_ENTRIES, default_shards())
    }

    /// A builder to set the bound on entries and the number of shards.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_entries: DEFAULT_MAX_ENTRIES,
            shards: None,
        }
    }

    /// The entries held and an estimate of the memory they take, summed over
    /// the shards (each locked in turn, so the sum is not one instant's).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use steadfast::idempotency::store::{Fingerprint, MemoryStore, Store, StoreKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), steadfast::idempotency::store::StoreError> {
    /// let store = MemoryStore::new();
    /// store.claim(&StoreKey::new("s", "k"), Fingerprint([0; 32]), Duration::from_secs(60)).await?;
    /// let stats = store.stats();
    /// assert_eq!(stats.entries, 1);
    /// assert!(stats.bytes > 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> MemoryStoreStats {
        self.inner
            .shards
            .iter()
            .fold(MemoryStoreStats::default(), |acc, shard| {
                let shard = lock(shard);
                MemoryStoreStats {
                    entries: acc.entries.saturating_add(shard.map.len()),
                    bytes: acc.bytes.saturating_add(shard.bytes),
                }
            })
    }

    /// The bound on entries this store keeps.
    pub fn max_entries(&self) -> usize {
        self.inner.max_entries
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inner.shards.len()
    }

    fn with_config(max_entries: usize, shards: usize) -> Self {
        // Every shard holds at least one entry: no more shards than entries.
        let shards = shards.min(prev_power_of_two(max_entries)).max(1);
        let base = max_entries / shards;
        let extra = max_entries % shards;
        let shards: Box<[Mutex<Shard>]> = (0..shards)
            .map(|i| Mutex::new(Shard::new(base + usize::from(i < extra))))
            .collect();
        Self {
            inner: Arc::new(Inner {
                mask: shards.len() - 1,
                shards,
                hasher: RandomState::new(),
                max_entries,
            }),
        }
    }

    fn shard(&self, key: &StoreKey) -> MutexGuard<'_, Shard> {
        // Truncating the hash is intended: only its low bits pick the shard.
        let i = (self.inner.hasher.hash_one(key.as_str()) as usize) & self.inner.mask;
        lock(&self.inner.shards[i])
    }

    fn claim_now(&self, key: &StoreKey, fingerprint: Fingerprint, lock_timeout: Duration) -> Claim {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let key = key.as_str();
        if let Some(slot) = shard.map.get(key) {
            if !slot.expired(now) {
                return match &slot.state {
                    State::Claimed { fingerprint, .. } => Claim::InProgress {
                        fingerprint: *fingerprint,
                    },
                    State::Completed {
                        fingerprint,
                        response,
                    } => Claim::Completed {
                        fingerprint: *fingerprint,
                        response: response.unpack(),
                    },
                };
            }
            shard.remove(key);
        }
        let token = ClaimToken::random();
        let state = State::Claimed {
            token: token.clone(),
            fingerprint,
        };
        shard.insert(key, state, now.checked_add(lock_timeout), now);
        Claim::Claimed(token)
    }

    fn complete_now(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let key = key.as_str();
        match shard.holder(key, token, now) {
            Holder::Token => {
                let shard = &mut *shard;
                if let Some(slot) = shard.map.get_mut(key) {
                    let old = slot.cost(key);
                    slot.state = State::Completed {
                        fingerprint,
                        response: Compact::pack(response),
                    };
                    slot.expires = now.checked_add(ttl);
                    shard.bytes = shard
                        .bytes
                        .saturating_sub(old)
                        .saturating_add(slot.cost(key));
                }
                true
            }
            Holder::Expired => {
                shard.remove(key);
                false
            }
            Holder::Other => false,
        }
    }

    fn get_now(&self, key: &StoreKey) -> Option<Claim> {
        let now = Instant::now();
        let shard = self.shard(key);
        let slot = shard.map.get(key.as_str())?;
        if slot.expired(now) {
            return None;
        }
        Some(match &slot.state {
            State::Claimed { fingerprint, .. } => Claim::InProgress {
                fingerprint: *fingerprint,
            },
            State::Completed {
                fingerprint,
                response,
            } => Claim::Completed {
                fingerprint: *fingerprint,
                response: response.unpack(),
            },
        })
    }

    fn release_now(&self, key: &StoreKey, token: &ClaimToken) -> bool {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let key = key.as_str();
        match shard.holder(key, token, now) {
            Holder::Token => {
                shard.remove(key);
                true
            }
            Holder::Expired => {
                shard.remove(key);
                false
            }
            Holder::Other => false,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_entries", &self.inner.max_entries)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        ready(Ok(self.claim_now(key, fingerprint, lock_timeout)))
    }

    fn complete(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: StoredResponse,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.complete_now(
            key,
            token,
            fingerprint,
            response,
            ttl,
        )))
    }

    fn release(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.release_now(key, token)))
    }

    fn get(
        &self,
        key: &StoreKey,
    ) -> impl Future<Output = Result<Option<Claim>, StoreError>> + Send {
        ready(Ok(self.get_now(key)))
    }
}

// === impl MemoryStoreBuilder ===

impl MemoryStoreBuilder {
    /// The most entries (claims and responses) kept, at least 1; default
    /// 100,000. When full, the oldest entry is evicted; see [`MemoryStore`].
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The number of shards: a power of two from 1 to 65,536; default four
    /// per CPU, rounded up to a power of two. A store never has more shards
    /// than [`max_entries`](Self::max_entries), so it uses fewer when the
    /// bound is small.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `idempotency.memory_store.max_entries` when it
    /// is 0, or `idempotency.memory_store.shards` when it is not a power of
    /// two from 1 to 65,536.
    ///
    /// ```
    /// use steadfast::idempotency::store::MemoryStore;
    ///
    /// let err = MemoryStore::builder().shards(3).build().unwrap_err();
    /// assert_eq!(err.field(), "idempotency.memory_store.shards");
    /// ```
    pub fn build(self) -> Result<MemoryStore, InvalidConfig> {
        if self.max_entries == 0 {
            return Err(InvalidConfig::new(
                "idempotency.memory_store.max_entries",
                "must be at least 1, got 0",
            ));
        }
        let shards = match self.shards {
            Some(n) if n == 0 || n > MAX_SHARDS || !n.is_power_of_two() => {
                return Err(InvalidConfig::new(
                    "idempotency.memory_store.shards",
                    format!("must be a power of two from 1 to {MAX_SHARDS}, got {n}"),
                ));
            }
            Some(n) => n,
            None => default_shards(),
        };
        Ok(MemoryStore::with_config(self.max_entries, shards))
    }
}

// === impl Shard ===

/// Who holds a key, as seen by a token.
enum Holder {
    /// The token's claim, unexpired.
    Token,
    /// An expired entry: purge it.
    Expired,
    /// Someone else, or nobody.
    Other,
}

impl Shard {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    fn holder(&self, key: &str, token: &ClaimToken, now: Instant) -> Holder {
        match self.map.get(key) {
            Some(slot) if slot.expired(now) => Holder::Expired,
            Some(Slot {
                state: State::Claimed { token: held, .. },
                ..
            }) if held == token => Holder::Token,
            _ => Holder::Other,
        }
    }

    fn insert(&mut self, key: &str, state: State, expires: Option<Instant>, now: Instant) {
        self.sweep(now);
        while self.map.len() >= self.cap && !self.map.is_empty() {
            self.evict_one(now);
        }
        let slot = Slot { expires, state };
        self.bytes = self.bytes.saturating_add(slot.cost(key));
        let key: Arc<str> = Arc::from(key);
        self.order.push_back(Queued {
            key: key.clone(),
            recheck: Some(now),
        });
        if let Some(old) = self.map.insert(key.clone(), slot) {
            // Callers remove a key before inserting it again; stay exact anyway.
            self.bytes = self.bytes.saturating_sub(old.cost(&key));
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(slot.cost(key));
        }
        self.compact();
    }

    /// Purges a few expired entries from the oldest end.
    fn sweep(&mut self, now: Instant) {
        for _ in 0..SWEEP_PER_INSERT {
            let Some(front) = self.order.front_mut() else {
                return;
            };
            if front.recheck.is_none_or(|at| now < at) {
                return;
            }
            match self.map.get_key_value(&*front.key) {
                Some((key, slot)) if Arc::ptr_eq(key, &front.key) => {
                    if !slot.expired(now) {
                        if let State::Completed { .. } = slot.state {
                            front.recheck = slot.expires;
                        }
                        return;
                    }
                    if let Some(front) = self.order.pop_front() {
                        self.remove(&front.key);
                    }
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Evicts one entry: the oldest expired entry or stored response within
    /// reach, else the oldest claim.
    fn evict_one(&mut self, now: Instant) {
        let mut skipped: Vec<Queued> = Vec::new();
        let mut evicted = false;
        while let Some(item) = self.order.pop_front() {
            let Some(slot) = live(&self.map, &item) else {
                continue; // stale
            };
            if slot.expired(now) || matches!(slot.state, State::Completed { .. }) {
                self.remove(&item.key);
                evicted = true;
                break;
            }
            skipped.push(item);
            if skipped.len() >= MAX_SKIPPED_CLAIMS {
                break;
            }
        }
        if !evicted && !skipped.is_empty() {
            let oldest = skipped.remove(0);
            self.remove(&oldest.key);
            evicted = true;
        }
        for item in skipped.into_iter().rev() {
            self.order.push_front(item);
        }
        if !evicted {
            // Every entry has a queue item, so this is unreachable; never
            // loop forever if that ever breaks.
            if let Some(key) = self.map.keys().next().cloned() {
                self.remove(&key);
            }
        }
    }

    /// Drops stale queue items once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > self.map.len().saturating_mul(2).saturating_add(32) {
            let map = &self.map;
            self.order.retain(|item| live(map, item).is_some());
        }
    }
}

/// The entry `item` stands for, if it is still the one in the map.
fn live<'a>(map: &'a HashMap<Arc<str>, Slot>, item: &Queued) -> Option<&'a Slot> {
    match map.get_key_value(&*item.key) {
        Some((key, slot)) if Arc::ptr_eq(key, &item.key) => Some(slot),
        _ => None,
    }
}

// === impl Slot ===

impl Slot {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// The bytes this entry is counted as.
    fn cost(&self, key: &str) -> usize {
        let response = match &self.state {
            State::Claimed { .. } => 0,
            State::Completed { response, .. } => response.size,
        };
        key.len()
            .saturating_add(ENTRY_OVERHEAD)
            .saturating_add(response)
    }
}

// === impl Compact ===

impl Compact {
    fn pack(response: StoredResponse) -> Self {
        let size = response.size();
        let len = response.headers.iter().fold(0usize, |acc, (name, value)| {
            acc.saturating_add(16)
                .saturating_add(name.len())
                .saturating_add(value.len())
        });
        let mut headers = Vec::with_capacity(len);
        for (name, value) in &response.headers {
            headers.extend_from_slice(&(name.len() as u64).to_le_bytes());
            headers.extend_from_slice(&(value.len() as u64).to_le_bytes());
            headers.extend_from_slice(name.as_bytes());
            headers.extend_from_slice(value);
        }
        Self {
            status: response.status,
            headers: headers.into_boxed_slice(),
            body: response.body,
            size,
        }
    }

    fn unpack(&self) -> StoredResponse {
        let mut headers = Vec::new();
        let mut rest: &[u8] = &self.headers;
        while let Some((name, value, tail)) = next_header(rest) {
            headers.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
            rest = tail;
        }
        StoredResponse {
            status: self.status,
            headers,
            body: self.body.clone(),
        }
    }
}

/// Splits the first packed header off `buf`: name, value, the rest.
fn next_header(buf: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (name_len, rest) = buf.split_first_chunk::<8>()?;
    let (value_len, rest) = rest.split_first_chunk::<8>()?;
    let name_len = usize::try_from(u64::from_le_bytes(*name_len)).ok()?;
    let value_len = usize::try_from(u64::from_le_bytes(*value_len)).ok()?;
    let (name, rest) = rest.split_at_checked(name_len)?;
    let (value, rest) = rest.split_at_checked(value_len)?;
    Some((name, value, rest))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding a shard lock; if one ever did, the shard's
    // map is still consistent enough to use.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn default_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores
        .saturating_mul(4)
        .checked_next_power_of_two()
        .unwrap_or(MAX_SHARDS)
        .min(MAX_SHARDS)
}

/// The largest power of two at most `n` (1 for 0).
fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts() {
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(5), 4);
        assert_eq!(prev_power_of_two(usize::MAX), 1 << (usize::BITS - 1));
        // Fewer shards than entries, and the caps sum to the bound.
        let store = MemoryStore::with_config(5, 64);
        assert_eq!(store.shards(), 4);
        let caps: usize = store.inner.shards.iter().map(|s| lock(s).cap).sum();
        assert_eq!(caps, 5);
    }

    #[test]
    fn packed_responses_unpack_to_the_original() {
        let response = StoredResponse {
            status: 207,
            headers: vec![
                ("content-type".into(), b"text/plain".to_vec()),
                (String::new(), Vec::new()),
                ("x-bin".into(), vec![0, 0xff, b'\n']),
                ("set-cookie".into(), b"a=1".to_vec()),
                ("set-cookie".into(), b"b=2".to_vec()),
            ],
            body: Bytes::from_static(b"body"),
        };
        let packed = Compact::pack(response.clone());
        assert_eq!(packed.size, response.size());
        assert_eq!(packed.unpack(), response);
        let empty = StoredResponse {
            status: 204,
            headers: vec![],
            body: Bytes::new(),
        };
        assert_eq!(Compact::pack(empty.clone()).unpack(), empty);
    }

    #[test]
    fn the_eviction_queue_stays_small_when_keys_are_released() {
        let store = MemoryStore::with_config(1_000, 1);
        for i in 0..10_000 {
            let key = StoreKey::new("s", &i.to_string());
            let Claim::Claimed(token) =
                store.claim_now(&key, Fingerprint([0; 32]), Duration::from_secs(1))
            else {
                panic!("a new key is free");
            };
            assert!(store.release_now(&key, &token));
        }
        let shard = lock(&store.inner.shards[0]);
        assert!(shard.map.is_empty());
        assert!(shard.order.len() <= 33, "{}", shard.order.len());
        assert_eq!(shard.bytes, 0);
    }
}
