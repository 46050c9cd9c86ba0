//! `MemoryStore`: the embedded store, sharded mutexes over hash maps.

use std::collections::VecDeque;
use std::fmt;
use std::future::{ready, Future};
use std::hash::{BuildHasher, RandomState};
use std::iter;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashTable;
use tokio::time::Instant;

use super::{Claim, ClaimToken, Fingerprint, Store, StoreError, StoreKey, StoredResponse};
use crate::InvalidConfig;

/// The default bound on entries.
const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The default bound on bytes: 256 MiB.
const DEFAULT_MAX_BYTES: usize = 256 << 20;
/// The most shards a store may have.
const MAX_SHARDS: usize = 1 << 16;
/// The least byte share of a shard, where `max_bytes` allows: four times
/// the server layer's default `max_response_body` (1 MiB), so such a
/// response always fits a shard of a store with the default bounds,
/// whatever the core count (256 MiB / 4 MiB: at most 64 shards).
const MIN_SHARD_BYTES: usize = 4 << 20;
/// Expired entries at the front of each of a shard's queues purged on each
/// insert.
const SWEEP_PER_INSERT: usize = 2;
/// How many claims the search for an expired one passes over before the
/// store gives up and refuses a new claim.
const MAX_CLAIMS_SCANNED: usize = 32;

/// The embedded [`Store`]: claims and responses in this process's memory.
///
/// Keys are spread over shards, each a [`std::sync::Mutex`] around a hash
/// table; no lock is held across an `.await` (every method does its work at
/// once and returns a ready future). Clones share the same entries.
///
/// * Entries expire on [`tokio::time`]: a claim after its lock timeout
///   (pushed back by [`extend`](Store::extend)), a response after its TTL.
///   Expired entries count as absent; they are purged when their key is next
///   used, from the oldest end on each insert, and when room is needed.
/// * At most [`max_entries`](MemoryStoreBuilder::max_entries) are kept
///   (default 100,000), taking at most
///   [`max_bytes`](MemoryStoreBuilder::max_bytes) (default 256 MiB, as
///   [`MemoryStoreStats::bytes`] counts them: within a few percent of the
///   heap they hold). The bounds are split evenly over the shards, so a
///   shard that fills first makes room while the store as a whole may hold
///   a little less than the bounds.
/// * **A running claim is never evicted.** To make room, a shard evicts
///   expired entries and stored responses, oldest first, and nothing else.
///   When a shard holds only running claims, a new claim there is refused
///   ([`Claim::Full`], counted in
///   [`refused_claims`](MemoryStoreStats::refused_claims); the server layer
///   answers 503): new work is shed rather than old work run twice.
/// * A response that does not fit its shard's byte share even with every
///   stored response evicted is not stored (counted in
///   [`unstored_responses`](MemoryStoreStats::unstored_responses)), instead
///   of evicting others: its claim stays until its lock timeout, then its
///   key is free. Shards are never made smaller than 4 MiB where
///   `max_bytes` allows, so with the defaults a response of the server
///   layer's default `max_response_body` (1 MiB) always fits.
/// * A stored response evicted before its TTL ran out is a key whose repeat
///   runs the handler again. [`stats`](Self::stats) counts them
///   ([`evicted_responses`](MemoryStoreStats::evicted_responses)): size the
///   bound for a TTL's worth of keyed requests (a small response takes
///   about 250 to 350 bytes, its share of the table's slots included:
///   331 MB for a million) and watch that count.
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
    max_bytes: usize,
}

/// What [`MemoryStore::stats`] reports.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStoreStats {
    /// Entries held, claims and responses, including expired ones not yet
    /// purged.
    pub entries: usize,
    /// Running claims among them (including expired ones not yet purged).
    pub claims: usize,
    /// The bytes they take on the heap: each entry's block (its fingerprint,
    /// key, and the stored response's packed headers and body, with the
    /// block's reference counts), the hash tables' slots (their spare
    /// capacity included) and the eviction queues' items. What the
    /// allocator itself adds per allocation is not counted.
    pub bytes: usize,
    /// Stored responses evicted before their TTL ran out, to keep the
    /// bounds. A repeat of such a key runs the handler again: if this
    /// grows, raise the bounds (or shorten the TTL to what clients need).
    pub evicted_responses: u64,
    /// New claims refused ([`Claim::Full`]) because their shard held
    /// nothing but running claims.
    pub refused_claims: u64,
    /// Responses not stored because they did not fit their shard's byte
    /// share (see [`MemoryStore`]).
    pub unstored_responses: u64,
}

/// Builds a [`MemoryStore`]. See [`MemoryStore::builder`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_entries: usize,
    max_bytes: usize,
    shards: Option<usize>,
}

struct Shard {
    table: HashTable<Entry>,
    /// Stored responses in completion order: what eviction takes.
    responses: VecDeque<Queued>,
    /// Claims in claim order: swept once expired, never evicted.
    claims: VecDeque<Queued>,
    /// How many entries of the table are claims.
    claim_count: usize,
    /// The id of the next entry inserted.
    next_id: u64,
    /// The bytes of the claims' and the responses' blocks.
    claim_bytes: usize,
    response_bytes: usize,
    /// This shard's share of the bounds on entries and bytes.
    cap: usize,
    cap_bytes: usize,
    /// See [`MemoryStoreStats`].
    evicted_responses: u64,
    refused_claims: u64,
    unstored_responses: u64,
}

/// An item of an eviction queue. It names its entry by hash and id; an item
/// whose entry is gone (removed, completed, maybe its key inserted again
/// under a new id) is stale and skipped.
struct Queued {
    hash: u64,
    id: u64,
    /// The sweep does not look the entry up before then (`None`: never): the
    /// entry's expiry when the item was queued (a claim's may have been
    /// extended since; a response's is final).
    recheck: Option<Instant>,
}

/// One key's claim or stored response: 64 bytes in the table.
///
/// Everything a lookup compares or returns is in one allocation, `block`,
/// so a replay touches the table and that block only:
///
/// * a claim: `[fingerprint (32 bytes) | claim token (16) | key]`;
/// * a stored response: `[fingerprint (32 bytes) | length of the packed
///   headers (u64, little endian) | key | packed headers | body]`.
struct Entry {
    /// The key's hash (picks the shard, and the slot in its table).
    hash: u64,
    /// Unique within the shard: ties the entry to its queue item.
    id: u64,
    /// `None`: never (the duration overflowed the clock).
    expires: Option<Instant>,
    block: Arc<[u8]>,
    key_len: usize,
    /// Completed entries only: the response's status.
    status: u16,
    completed: bool,
}

/// Where a claim's token starts, after the fingerprint.
const TOKEN_AT: usize = 32;
/// Where a claim's key starts, after its token.
const CLAIM_KEY_AT: usize = TOKEN_AT + 16;
/// Where a stored response's headers length starts, after the fingerprint.
const HEADERS_LEN_AT: usize = 32;
/// Where a stored response's key starts, after the headers length.
const KEY_AT: usize = HEADERS_LEN_AT + 8;

// === impl MemoryStore ===

impl MemoryStore {
    /// A store with the defaults: at most 100,000 entries and 256 MiB, four
    /// shards per CPU (rounded up to a power of two), at most 64.
    pub fn new() -> Self {
        Self::with_config(DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES, default_shards())
    }

    /// A builder to set the bounds on entries and bytes and the number of
    /// shards.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            shards: None,
        }
    }

    /// The entries held and the memory they take, summed over the shards
    /// (each locked in turn, so the sum is not one instant's).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use steadfast::idempotency::store::{ClaimToken, Fingerprint, MemoryStore, Store, StoreKey};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), steadfast::idempotency::store::StoreError> {
    /// let store = MemoryStore::new();
    /// let (key, token) = (StoreKey::new("s", "k"), ClaimToken::random());
    /// store.claim(&key, &token, Fingerprint([0; 32]), Duration::from_secs(60)).await?;
    /// let stats = store.stats();
    /// assert_eq!((stats.entries, stats.claims), (1, 1));
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
                    entries: acc.entries.saturating_add(shard.table.len()),
                    claims: acc.claims.saturating_add(shard.claim_count),
                    bytes: acc.bytes.saturating_add(shard.bytes()),
                    evicted_responses: acc
                        .evicted_responses
                        .saturating_add(shard.evicted_responses),
                    refused_claims: acc.refused_claims.saturating_add(shard.refused_claims),
                    unstored_responses: acc
                        .unstored_responses
                        .saturating_add(shard.unstored_responses),
                }
            })
    }

    /// The bound on entries this store keeps.
    pub fn max_entries(&self) -> usize {
        self.inner.max_entries
    }

    /// The bound on the bytes this store's entries take, as
    /// [`stats`](Self::stats) counts them.
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inner.shards.len()
    }

    fn with_config(max_entries: usize, max_bytes: usize, shards: usize) -> Self {
        // Every shard holds at least one entry, and 4 MiB where the bound
        // on bytes allows.
        let shards = shards
            .min(prev_power_of_two(max_entries))
            .min(prev_power_of_two(max_bytes / MIN_SHARD_BYTES))
            .max(1);
        let share = |total: usize, i: usize| total / shards + usize::from(i < total % shards);
        let shards: Box<[Mutex<Shard>]> = (0..shards)
            .map(|i| Mutex::new(Shard::new(share(max_entries, i), share(max_bytes, i))))
            .collect();
        Self {
            inner: Arc::new(Inner {
                mask: shards.len() - 1,
                shards,
                hasher: RandomState::new(),
                max_entries,
                max_bytes,
            }),
        }
    }

    /// The key's hash and its shard, locked.
    fn shard(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let hash = self.inner.hasher.hash_one(key);
        // The table uses the hash's low bits (and its top 7); the shard is
        // picked from the bits above the low 32. Truncating is intended.
        let i = ((hash >> 32) as usize) & self.inner.mask;
        (hash, lock(&self.inner.shards[i]))
    }

    fn claim_now(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> Claim {
        let now = Instant::now();
        let key = key.as_str().as_bytes();
        let (hash, mut shard) = self.shard(key);
        if let Some(entry) = shard.find(hash, key) {
            if !entry.expired(now) {
                return entry.view();
            }
            shard.remove(hash, key);
        }
        if shard.insert_claim(hash, key, token, fingerprint, lock_timeout, now) {
            Claim::Claimed(token.clone())
        } else {
            shard.refused_claims = shard.refused_claims.saturating_add(1);
            Claim::Full
        }
    }

    fn extend_now(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> bool {
        let now = Instant::now();
        let key = key.as_str().as_bytes();
        let (hash, mut shard) = self.shard(key);
        if let Some(entry) = shard.table.find_mut(hash, |e| e.is(hash, key)) {
            if entry.claimed_by(token) {
                entry.expires = now.checked_add(lock_timeout);
                return true;
            }
            if !entry.expired(now) {
                return false;
            }
            shard.remove(hash, key);
        }
        shard.insert_claim(hash, key, token, fingerprint, lock_timeout, now)
    }

    fn complete_now(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        response: &StoredResponse,
        ttl: Duration,
    ) -> bool {
        let now = Instant::now();
        let key = key.as_str().as_bytes();
        // Built before the shard is locked: copying a large body does not
        // hold up the shard's other keys.
        let headers = response.packed_headers();
        let headers_len = (headers.len() as u64).to_le_bytes();
        let new = block(&[&fingerprint.0, &headers_len, key, headers, response.body()]);
        let (hash, mut shard) = self.shard(key);
        let ours = match shard.find(hash, key) {
            Some(entry) if entry.claimed_by(token) => true,
            Some(entry) if !entry.expired(now) => return false,
            // Expired, or absent: the claim lapsed and nobody took the key.
            Some(_) => {
                shard.remove(hash, key);
                false
            }
            None => false,
        };
        let cost = block_bytes(new.len());
        let expires = now.checked_add(ttl);
        if ours {
            // The usual case: room without evicting anything; the claim
            // becomes the response in place.
            if let Some(old) =
                shard.complete_in_place(hash, key, new.clone(), cost, expires, response.status())
            {
                drop(new);
                drop(shard);
                drop(old);
                return true;
            }
        }
        // Our claim leaves the table while room is made (so it counts as
        // neither a claim nor evictable), and comes back if there is none.
        let claim = if ours { shard.take(hash, key) } else { None };
        let stored = shard.make_room(now, cost);
        let old = if stored {
            shard.insert(Entry {
                hash,
                id: 0,
                expires,
                block: new,
                key_len: key.len(),
                status: response.status(),
                completed: true,
            });
            claim
        } else {
            shard.unstored_responses = shard.unstored_responses.saturating_add(1);
            if let Some(claim) = claim {
                shard.restore(claim);
            }
            None
        };
        drop(shard);
        // The claim's block is freed after the lock is released.
        drop(old);
        stored
    }

    fn get_now(&self, key: &StoreKey) -> Option<Claim> {
        let now = Instant::now();
        let key = key.as_str().as_bytes();
        let (hash, shard) = self.shard(key);
        let entry = shard.find(hash, key)?;
        (!entry.expired(now)).then(|| entry.view())
    }

    fn release_now(&self, key: &StoreKey, token: &ClaimToken) -> bool {
        let now = Instant::now();
        let key = key.as_str().as_bytes();
        let (hash, mut shard) = self.shard(key);
        match shard.find(hash, key) {
            Some(entry) if entry.claimed_by(token) => {
                let live = !entry.expired(now);
                shard.remove(hash, key);
                live
            }
            Some(entry) if entry.expired(now) => {
                shard.remove(hash, key);
                false
            }
            _ => false,
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
            .field("max_bytes", &self.inner.max_bytes)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    fn claim(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        ready(Ok(self.claim_now(key, token, fingerprint, lock_timeout)))
    }

    fn extend(
        &self,
        key: &StoreKey,
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.extend_now(key, token, fingerprint, lock_timeout)))
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
            &response,
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
    /// 100,000. When full, the oldest stored response is evicted, never a
    /// running claim; see [`MemoryStore`].
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The most bytes the entries may take, as [`MemoryStoreStats::bytes`]
    /// counts them, at least 1; default 256 MiB. To fit a new entry in its
    /// shard's share, the shard's oldest stored responses are evicted (never
    /// a running claim); see [`MemoryStore`]. With large responses this is
    /// the bound that holds, not [`max_entries`](Self::max_entries).
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// The number of shards: a power of two from 1 to 65,536; default four
    /// per CPU, rounded up to a power of two. A store never has more shards
    /// than [`max_entries`](Self::max_entries), nor more than one per 4 MiB
    /// of [`max_bytes`](Self::max_bytes) (at most 64 with the default),
    /// so it uses fewer when a bound is small: a shard's byte share is what
    /// the largest storable response must fit in.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `idempotency.memory_store.max_entries` or
    /// `idempotency.memory_store.max_bytes` when it is 0, or
    /// `idempotency.memory_store.shards` when it is not a power of two from 1
    /// to 65,536.
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
        if self.max_bytes == 0 {
            return Err(InvalidConfig::new(
                "idempotency.memory_store.max_bytes",
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
        Ok(MemoryStore::with_config(
            self.max_entries,
            self.max_bytes,
            shards,
        ))
    }
}

// === impl Shard ===

impl Shard {
    fn new(cap: usize, cap_bytes: usize) -> Self {
        Self {
            table: HashTable::new(),
            responses: VecDeque::new(),
            claims: VecDeque::new(),
            claim_count: 0,
            next_id: 0,
            claim_bytes: 0,
            response_bytes: 0,
            cap,
            cap_bytes,
            evicted_responses: 0,
            refused_claims: 0,
            unstored_responses: 0,
        }
    }

    /// The heap this shard takes: blocks, table and queues.
    fn bytes(&self) -> usize {
        self.fixed_bytes()
            .saturating_add(self.claim_bytes)
            .saturating_add(self.response_bytes)
    }

    /// The table's and the queues' allocations, spare capacity included.
    fn fixed_bytes(&self) -> usize {
        let queued = self
            .responses
            .capacity()
            .saturating_add(self.claims.capacity())
            .saturating_mul(mem::size_of::<Queued>());
        // What the table really allocated: its capacity (items plus room
        // left) shrinks and grows with tombstones, its allocation does not.
        self.table.allocation_size().saturating_add(queued)
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.table.find(hash, |e| e.is(hash, key))
    }

    /// Inserts a claim for `lock_timeout` if there is room; `false`
    /// (nothing changed) if not.
    fn insert_claim(
        &mut self,
        hash: u64,
        key: &[u8],
        token: &ClaimToken,
        fingerprint: Fingerprint,
        lock_timeout: Duration,
        now: Instant,
    ) -> bool {
        let expires = now.checked_add(lock_timeout);
        let block = block(&[&fingerprint.0, &token.0.to_le_bytes(), key]);
        if !self.make_room(now, block_bytes(block.len())) {
            return false;
        }
        self.insert(Entry {
            hash,
            id: 0,
            expires,
            block,
            key_len: key.len(),
            status: 0,
            completed: false,
        });
        true
    }

    /// Makes room for one more entry whose block takes `cost` bytes, by
    /// purging expired entries and evicting stored responses, oldest first;
    /// never a running claim. `false` when there is no room even so, and
    /// then no response was evicted for nothing.
    fn make_room(&mut self, now: Instant, cost: usize) -> bool {
        self.sweep(now);
        // Grow the table and the queues now if the entry needs it, so their
        // growth counts.
        self.table.reserve(1, |e| e.hash);
        self.responses.reserve(1);
        self.claims.reserve(1);
        loop {
            let full = self.table.len() >= self.cap;
            let over = self.bytes().saturating_add(cost) > self.cap_bytes;
            if !full && !over {
                return true;
            }
            // Would it fit with every response gone? If not, evict none.
            let hopeless = over
                && self
                    .fixed_bytes()
                    .saturating_add(self.claim_bytes)
                    .saturating_add(cost)
                    > self.cap_bytes;
            // Expired claims first (no loss), then the oldest response,
            // then a longer search for an expired claim.
            let made = self.purge_expired_claim(now, SWEEP_PER_INSERT)
                || (!hopeless && self.evict_response(now))
                || self.purge_expired_claim(now, MAX_CLAIMS_SCANNED);
            if !made {
                return false;
            }
        }
    }

    /// Turns the claim for `key` into a stored response `block` of `cost`
    /// bytes, in place, if that fits the shard's share without evicting
    /// anything; returns the claim's block, or `None` (nothing changed).
    fn complete_in_place(
        &mut self,
        hash: u64,
        key: &[u8],
        block: Arc<[u8]>,
        cost: usize,
        expires: Option<Instant>,
        status: u16,
    ) -> Option<Arc<[u8]>> {
        // A queue item is about to be pushed: count its growth first.
        self.responses.reserve(1);
        let (bytes, cap_bytes, id) = (self.bytes(), self.cap_bytes, self.next_id);
        let entry = self.table.find_mut(hash, |e| e.is(hash, key))?;
        let old_cost = block_bytes(entry.block.len());
        if bytes.saturating_sub(old_cost).saturating_add(cost) > cap_bytes {
            return None;
        }
        self.next_id = self.next_id.wrapping_add(1);
        let old = mem::replace(&mut entry.block, block);
        entry.id = id;
        entry.completed = true;
        entry.status = status;
        entry.expires = expires;
        self.claim_bytes = self.claim_bytes.saturating_sub(old_cost);
        self.claim_count = self.claim_count.saturating_sub(1);
        self.response_bytes = self.response_bytes.saturating_add(cost);
        self.responses.push_back(Queued {
            hash,
            id,
            recheck: expires,
        });
        // The claim's queue item is stale now.
        self.compact();
        Some(old)
    }

    /// Adds `entry` under a fresh id, queued by its kind.
    fn insert(&mut self, mut entry: Entry) {
        entry.id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let item = Queued {
            hash: entry.hash,
            id: entry.id,
            recheck: entry.expires,
        };
        if entry.completed {
            self.responses.push_back(item);
        } else {
            self.claims.push_back(item);
        }
        self.restore(entry);
        // A completed claim's queue item is stale now.
        self.compact();
    }

    /// Puts back an entry taken out by [`take`](Self::take) (its queue item
    /// is still queued).
    fn restore(&mut self, entry: Entry) {
        self.count(&entry, true);
        self.table.insert_unique(entry.hash, entry, |e| e.hash);
    }

    /// Takes the entry for `key` out of the table.
    fn take(&mut self, hash: u64, key: &[u8]) -> Option<Entry> {
        let (entry, _) = self
            .table
            .find_entry(hash, |e| e.is(hash, key))
            .ok()?
            .remove();
        self.count(&entry, false);
        Some(entry)
    }

    /// Removes the entry for `key`, if any.
    fn remove(&mut self, hash: u64, key: &[u8]) {
        drop(self.take(hash, key));
        self.compact();
    }

    /// Removes the entry a queue item stands for, if it is still there.
    fn remove_queued(&mut self, item: &Queued) {
        if let Ok(found) = self.table.find_entry(item.hash, |e| e.id == item.id) {
            let (entry, _) = found.remove();
            self.count(&entry, false);
        }
        self.compact();
    }

    /// Adds (or takes away) an entry's kind and bytes to the shard's sums.
    fn count(&mut self, entry: &Entry, add: bool) {
        let cost = block_bytes(entry.block.len());
        let (bytes, count) = if entry.completed {
            (&mut self.response_bytes, None)
        } else {
            (&mut self.claim_bytes, Some(&mut self.claim_count))
        };
        if add {
            *bytes = bytes.saturating_add(cost);
            if let Some(n) = count {
                *n = n.saturating_add(1);
            }
        } else {
            *bytes = bytes.saturating_sub(cost);
            if let Some(n) = count {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Purges a few expired entries from the oldest end of each queue.
    fn sweep(&mut self, now: Instant) {
        for _ in 0..SWEEP_PER_INSERT {
            let Some(front) = self.responses.front() else {
                break;
            };
            if front.recheck.is_none_or(|at| now < at) {
                break;
            }
            if let Some(front) = self.responses.pop_front() {
                // Stale, or expired (a response's expiry is final).
                self.remove_queued(&front);
            }
        }
        for _ in 0..SWEEP_PER_INSERT {
            let due = self
                .claims
                .front()
                .is_some_and(|front| front.recheck.is_some_and(|at| at <= now));
            if !due || !self.check_claim(now) {
                break;
            }
        }
    }

    /// Evicts the oldest stored response (expired or not); `false` if there
    /// is none.
    fn evict_response(&mut self, now: Instant) -> bool {
        while let Some(item) = self.responses.pop_front() {
            let Some(entry) = self.live(&item) else {
                continue; // stale
            };
            if !entry.expired(now) {
                self.evicted_responses = self.evicted_responses.saturating_add(1);
            }
            self.remove_queued(&item);
            return true;
        }
        false
    }

    /// Purges an expired claim found within `limit` items of the front of
    /// the claim queue; `false` if none was found.
    fn purge_expired_claim(&mut self, now: Instant, limit: usize) -> bool {
        let mut scanned = 0;
        while scanned < limit && !self.claims.is_empty() {
            scanned += 1;
            let due = self
                .claims
                .front()
                .is_some_and(|item| item.recheck.is_some_and(|at| at <= now));
            if !due {
                // Not expired when queued, so not expired now (an extension
                // only pushes an expiry back): move on without a lookup.
                if let Some(item) = self.claims.pop_front() {
                    self.claims.push_back(item);
                }
                continue;
            }
            if self.check_claim(now) {
                return true;
            }
        }
        false
    }

    /// Looks at the front of the claim queue: purges its claim if expired
    /// (`true`), drops the item if stale, and moves a running claim's item
    /// to the back, to be looked at again when it may have expired.
    fn check_claim(&mut self, now: Instant) -> bool {
        let Some(mut item) = self.claims.pop_front() else {
            return false;
        };
        match self.live(&item) {
            None => false,
            Some(entry) if entry.expired(now) => {
                self.remove_queued(&item);
                true
            }
            Some(entry) => {
                item.recheck = entry.expires;
                self.claims.push_back(item);
                false
            }
        }
    }

    /// The entry `item` stands for, if it is still in the table.
    fn live(&self, item: &Queued) -> Option<&Entry> {
        self.table.find(item.hash, |e| e.id == item.id)
    }

    /// Drops stale queue items once they outnumber the live entries.
    fn compact(&mut self) {
        let claims = self.claim_count;
        let responses = self.table.len().saturating_sub(claims);
        for (queue, live) in [(&mut self.claims, claims), (&mut self.responses, responses)] {
            if queue.len() > live.saturating_mul(2).saturating_add(32) {
                let table = &self.table;
                queue.retain(|item| table.find(item.hash, |e| e.id == item.id).is_some());
            }
        }
    }
}

// === impl Entry ===

impl Entry {
    fn is(&self, hash: u64, key: &[u8]) -> bool {
        self.hash == hash && self.key() == key
    }

    fn key(&self) -> &[u8] {
        let at = if self.completed { KEY_AT } else { CLAIM_KEY_AT };
        self.block
            .get(at..at.saturating_add(self.key_len))
            .unwrap_or_default()
    }

    /// Whether this is a claim held by `token` (expired or not).
    fn claimed_by(&self, token: &ClaimToken) -> bool {
        !self.completed && self.block.get(TOKEN_AT..CLAIM_KEY_AT) == Some(&token.0.to_le_bytes())
    }

    fn fingerprint(&self) -> Fingerprint {
        let mut fp = [0; 32];
        if let Some(stored) = self.block.get(..32) {
            fp.copy_from_slice(stored);
        }
        Fingerprint(fp)
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| now >= at)
    }

    /// What a claim or a read of this unexpired entry returns.
    fn view(&self) -> Claim {
        let fingerprint = self.fingerprint();
        if !self.completed {
            return Claim::InProgress { fingerprint };
        }
        // One allocation: the returned headers and body share the block
        // with the store.
        let mut headers_len = [0; 8];
        if let Some(stored) = self.block.get(HEADERS_LEN_AT..KEY_AT) {
            headers_len.copy_from_slice(stored);
        }
        let headers_len = usize::try_from(u64::from_le_bytes(headers_len)).unwrap_or(usize::MAX);
        let shared = Bytes::from_owner(Arc::clone(&self.block));
        let len = shared.len();
        let headers_at = KEY_AT.saturating_add(self.key_len).min(len);
        let body_at = headers_at.saturating_add(headers_len).min(len);
        Claim::Completed {
            fingerprint,
            response: StoredResponse::from_own_packing(
                self.status,
                shared.slice(headers_at..body_at),
                shared.slice(body_at..),
            ),
        }
    }
}

/// The bytes an `Arc<[u8]>` of `len` bytes allocates: its two reference
/// counts, then the bytes, rounded up to the counts' alignment.
fn block_bytes(len: usize) -> usize {
    const COUNTS: usize = 2 * mem::size_of::<usize>();
    COUNTS.saturating_add(len.div_ceil(COUNTS / 2).saturating_mul(COUNTS / 2))
}

/// One allocation holding `parts` one after the other.
fn block(parts: &[&[u8]]) -> Arc<[u8]> {
    let len = parts
        .iter()
        .fold(0usize, |acc, p| acc.saturating_add(p.len()));
    let mut block: Arc<[u8]> = iter::repeat_n(0, len).collect();
    if let Some(buf) = Arc::get_mut(&mut block) {
        let mut rest = buf;
        for part in parts {
            let (dst, tail) = rest.split_at_mut(part.len().min(rest.len()));
            dst.copy_from_slice(&part[..dst.len()]);
            rest = tail;
        }
    }
    block
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
        let store = MemoryStore::with_config(5, 5 * MIN_SHARD_BYTES, 64);
        assert_eq!(store.shards(), 4);
        let caps: usize = store.inner.shards.iter().map(|s| lock(s).cap).sum();
        assert_eq!(caps, 5);
        let cap_bytes: usize = store.inner.shards.iter().map(|s| lock(s).cap_bytes).sum();
        assert_eq!(cap_bytes, 5 * MIN_SHARD_BYTES);
        // No shard smaller than 4 MiB where the bound allows, whatever the
        // core count: the default 1 MiB response cap always fits.
        for cores in [1, 2, 64, 1024] {
            let store = MemoryStore::with_config(
                DEFAULT_MAX_ENTRIES,
                DEFAULT_MAX_BYTES,
                (cores * 4usize).next_power_of_two(),
            );
            assert!(store.shards() <= 64, "{cores} cores: {}", store.shards());
            for shard in store.inner.shards.iter() {
                assert!(lock(shard).cap_bytes >= MIN_SHARD_BYTES);
            }
        }
        assert_eq!(MemoryStore::with_config(10, 1_000, 64).shards(), 1);
    }

    #[test]
    fn a_replay_shares_one_block_and_reads_back_the_original() {
        let store = MemoryStore::with_config(10, DEFAULT_MAX_BYTES, 1);
        let key = StoreKey::new("s", "k");
        let fp = Fingerprint([9; 32]);
        let response = StoredResponse::new(207, Bytes::from_static(b"body")).with_headers([
            ("content-type", &b"text/plain"[..]),
            ("", b""),
            ("x-bin", &[0, 0xff, b'\n']),
        ]);
        let token = ClaimToken(1);
        let claimed = store.claim_now(&key, &token, fp, Duration::from_secs(1));
        assert_eq!(claimed, Claim::Claimed(token.clone()));
        assert!(store.complete_now(&key, &token, fp, &response, Duration::from_secs(9)));
        let Claim::Completed {
            fingerprint,
            response: replayed,
        } = store.claim_now(
            &key,
            &ClaimToken(2),
            Fingerprint([0; 32]),
            Duration::from_secs(1),
        )
        else {
            panic!("the response is stored");
        };
        assert_eq!(fingerprint, fp);
        assert_eq!(replayed, response);
        // The replay's body lies inside the store's block, after the headers.
        let shard = lock(&store.inner.shards[0]);
        let entry = shard.find(
            store.inner.hasher.hash_one(key.as_str().as_bytes()),
            key.as_str().as_bytes(),
        );
        let block = &entry.expect("stored").block;
        assert_eq!(
            block.len(),
            KEY_AT + key.as_str().len() + replayed.packed_headers().len() + 4
        );
        assert_eq!(replayed.body().as_ptr(), block[block.len() - 4..].as_ptr());
    }

    #[test]
    fn the_claim_queue_stays_small_when_claims_complete() {
        let store = MemoryStore::with_config(100_000, DEFAULT_MAX_BYTES, 1);
        let response = StoredResponse::new(201, Bytes::from_static(b"{}"));
        for i in 0..10_000 {
            let key = StoreKey::new("s", &i.to_string());
            let token = ClaimToken(i);
            let claimed =
                store.claim_now(&key, &token, Fingerprint([0; 32]), Duration::from_secs(1));
            assert_eq!(claimed, Claim::Claimed(token.clone()));
            assert!(store.complete_now(
                &key,
                &token,
                Fingerprint([0; 32]),
                &response,
                Duration::from_secs(9)
            ));
        }
        let shard = lock(&store.inner.shards[0]);
        assert_eq!((shard.table.len(), shard.claim_count), (10_000, 0));
        assert!(shard.claims.len() <= 33, "{}", shard.claims.len());
        assert_eq!(shard.responses.len(), 10_000);
    }

    #[test]
    fn an_entry_fits_one_cache_line() {
        assert!(mem::size_of::<Entry>() <= 64, "{}", mem::size_of::<Entry>());
    }

    #[test]
    fn keys_with_the_same_hash_stay_apart() {
        // Distinct keys whose hashes collide completely: lookups compare the
        // key itself, and the queues name entries by id.
        let now = Instant::now();
        let mut shard = Shard::new(10, DEFAULT_MAX_BYTES);
        let fp = |n: u8| Fingerprint([n; 32]);
        assert!(shard.insert_claim(7, b"a", &ClaimToken(1), fp(1), Duration::MAX, now));
        assert!(shard.insert_claim(7, b"b", &ClaimToken(2), fp(2), Duration::MAX, now));
        assert_eq!(shard.table.len(), 2);
        assert_eq!(shard.find(7, b"a").map(Entry::fingerprint), Some(fp(1)));
        assert_eq!(shard.find(7, b"b").map(Entry::fingerprint), Some(fp(2)));
        assert!(shard.find(7, b"c").is_none());
        assert!(!shard.find(7, b"a").unwrap().claimed_by(&ClaimToken(2)));
        assert!(shard.find(7, b"b").unwrap().claimed_by(&ClaimToken(2)));
        shard.remove(7, b"a");
        assert!(shard.find(7, b"a").is_none());
        assert!(shard.find(7, b"b").is_some());
        // Claims are never evicted: there is nothing to make room with.
        assert!(!shard.evict_response(now));
        shard.remove(7, b"b");
        assert!(shard.table.is_empty());
        assert_eq!(
            (shard.claim_bytes, shard.response_bytes, shard.claim_count),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_eviction_queue_stays_small_when_keys_are_released() {
        let store = MemoryStore::with_config(1_000, DEFAULT_MAX_BYTES, 1);
        for i in 0..10_000 {
            let key = StoreKey::new("s", &i.to_string());
            let token = ClaimToken(i);
            let claimed =
                store.claim_now(&key, &token, Fingerprint([0; 32]), Duration::from_secs(1));
            assert_eq!(claimed, Claim::Claimed(token.clone()));
            assert!(store.release_now(&key, &token));
        }
        let shard = lock(&store.inner.shards[0]);
        assert!(shard.table.is_empty());
        assert!(shard.claims.len() <= 33, "{}", shard.claims.len());
        assert_eq!(shard.claim_bytes + shard.response_bytes, 0);
    }
}
