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
/// How many unexpired claims eviction passes over, looking for a completed
/// or expired entry, before it gives up and evicts the oldest claim.
const MAX_SKIPPED_CLAIMS: usize = 32;
/// Expired entries at the front of a shard's queue purged on each insert.
const SWEEP_PER_INSERT: usize = 2;

/// The embedded [`Store`]: claims and responses in this process's memory.
///
/// Keys are spread over shards, each a [`std::sync::Mutex`] around a hash
/// table; no lock is held across an `.await` (every method does its work at
/// once and returns a ready future). Clones share the same entries.
///
/// * Entries expire on [`tokio::time`]: a claim after its lock timeout, a
///   response after its TTL. Expired entries count as absent; they are purged
///   when their key is next used, from the oldest end on each insert, and by
///   eviction.
/// * At most [`max_entries`](MemoryStoreBuilder::max_entries) are kept
///   (default 100,000), taking at most
///   [`max_bytes`](MemoryStoreBuilder::max_bytes) (default 256 MiB, as
///   [`MemoryStoreStats::bytes`] estimates them). When a shard is full, the
///   oldest entry in it is evicted, preferring expired entries and stored
///   responses over claims that still hold: a running request keeps its
///   claim unless the shard holds nothing else near its oldest end. The
///   entry just written is never evicted to make room for itself. The bounds
///   are split evenly over the shards, so a shard that fills first evicts
///   while the store as a whole may hold a little less than the bounds.
/// * A stored response evicted before its TTL ran out is a key whose repeat
///   runs the handler again. [`stats`](Self::stats) counts them
///   ([`evicted_responses`](MemoryStoreStats::evicted_responses)): size the
///   bound for a TTL's worth of keyed requests (about 330 bytes per small
///   response) and watch that count.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStoreStats {
    /// Entries held, claims and responses, including expired ones not yet
    /// purged.
    pub entries: usize,
    /// An estimate of the bytes they take: each entry's block (its
    /// fingerprint, key, and the stored response's packed headers and body)
    /// and a fixed per-entry overhead for the table slot, the block's
    /// reference counts and the queue item. The table's spare capacity is
    /// not counted.
    pub bytes: usize,
    /// Stored responses evicted before their TTL ran out, to keep the
    /// bound. A repeat of such a key runs the handler again: if this grows,
    /// raise [`max_entries`](MemoryStoreBuilder::max_entries) (or shorten
    /// the TTL to what clients need).
    pub evicted_responses: u64,
    /// Claims evicted before their lock timeout, when a shard held nothing
    /// else near its oldest end (see [`MemoryStore`]).
    pub evicted_claims: u64,
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
    /// Entries in insertion order, for eviction and sweeping.
    order: VecDeque<Queued>,
    /// The id of the next entry inserted.
    next_id: u64,
    bytes: usize,
    /// This shard's share of the bounds on entries and bytes.
    cap: usize,
    cap_bytes: usize,
    /// Unexpired entries evicted, by kind (see [`MemoryStoreStats`]).
    evicted_responses: u64,
    evicted_claims: u64,
}

/// An entry in the eviction queue. It names its entry by hash and id; an
/// item whose entry is gone (removed, maybe its key inserted again under a
/// new id) is stale and skipped.
struct Queued {
    hash: u64,
    id: u64,
    /// The sweep does not look the entry up before then (`None`: never). It
    /// starts as the insertion time (a claim may complete with any TTL);
    /// once the sweep finds the entry completed, whose expiry no longer
    /// changes, it is that expiry.
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

/// The fixed cost of one entry, beyond its block's bytes.
const ENTRY_OVERHEAD: usize = mem::size_of::<Entry>()
    + 2 * mem::size_of::<usize>() // the block's reference counts
    + 1 // the table's control byte
    + mem::size_of::<Queued>();

// === impl MemoryStore ===

impl MemoryStore {
    /// A store with the defaults: at most 100,000 entries and 256 MiB, four
    /// shards per CPU (rounded up to a power of two).
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
                    entries: acc.entries.saturating_add(shard.table.len()),
                    bytes: acc.bytes.saturating_add(shard.bytes),
                    evicted_responses: acc
                        .evicted_responses
                        .saturating_add(shard.evicted_responses),
                    evicted_claims: acc.evicted_claims.saturating_add(shard.evicted_claims),
                }
            })
    }

    /// The bound on entries this store keeps.
    pub fn max_entries(&self) -> usize {
        self.inner.max_entries
    }

    /// The bound on the bytes this store's entries take, as
    /// [`stats`](Self::stats) estimates them.
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inner.shards.len()
    }

    fn with_config(max_entries: usize, max_bytes: usize, shards: usize) -> Self {
        // Every shard holds at least one entry: no more shards than entries.
        let shards = shards.min(prev_power_of_two(max_entries)).max(1);
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

    fn claim_now(&self, key: &StoreKey, fingerprint: Fingerprint, lock_timeout: Duration) -> Claim {
        let now = Instant::now();
        let key = key.as_str().as_bytes();
        let (hash, mut shard) = self.shard(key);
        if let Some(entry) = shard.find(hash, key) {
            if !entry.expired(now) {
                return entry.view();
            }
            shard.remove(hash, key);
        }
        let token = ClaimToken::random();
        let block = block(&[&fingerprint.0, &token.0.to_le_bytes(), key]);
        shard.insert(hash, block, key.len(), now.checked_add(lock_timeout), now);
        Claim::Claimed(token)
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
        match shard.holder(hash, key, token, now) {
            Holder::Token => {
                let Shard { table, bytes, .. } = &mut *shard;
                let Some(entry) = table.find_mut(hash, |e| e.is(hash, key)) else {
                    return false; // `holder` just found it
                };
                let old_cost = entry.cost();
                let old = mem::replace(&mut entry.block, new);
                entry.completed = true;
                entry.status = response.status();
                entry.expires = now.checked_add(ttl);
                *bytes = bytes.saturating_sub(old_cost).saturating_add(entry.cost());
                let id = entry.id;
                shard.trim(now, id);
                drop(shard);
                // The claim's block is freed after the lock is released.
                drop(old);
                true
            }
            Holder::Expired => {
                shard.remove(hash, key);
                false
            }
            Holder::Other => false,
        }
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
        match shard.holder(hash, key, token, now) {
            Holder::Token => {
                shard.remove(hash, key);
                true
            }
            Holder::Expired => {
                shard.remove(hash, key);
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
            .field("max_bytes", &self.inner.max_bytes)
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
    /// 100,000. When full, the oldest entry is evicted; see [`MemoryStore`].
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The most bytes the entries may take, as [`MemoryStoreStats::bytes`]
    /// estimates them, at least 1; default 256 MiB. When a stored response
    /// takes a shard past its share, the shard's oldest entries are evicted
    /// (never the one just stored) until it fits; see [`MemoryStore`]. With
    /// large responses this is the bound that holds, not
    /// [`max_entries`](Self::max_entries).
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
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
    fn new(cap: usize, cap_bytes: usize) -> Self {
        Self {
            table: HashTable::new(),
            order: VecDeque::new(),
            next_id: 0,
            bytes: 0,
            cap,
            cap_bytes,
            evicted_responses: 0,
            evicted_claims: 0,
        }
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.table.find(hash, |e| e.is(hash, key))
    }

    fn holder(&self, hash: u64, key: &[u8], token: &ClaimToken, now: Instant) -> Holder {
        match self.find(hash, key) {
            Some(entry) if entry.expired(now) => Holder::Expired,
            Some(entry) if entry.claimed_by(token) => Holder::Token,
            _ => Holder::Other,
        }
    }

    fn insert(
        &mut self,
        hash: u64,
        block: Arc<[u8]>,
        key_len: usize,
        expires: Option<Instant>,
        now: Instant,
    ) {
        self.sweep(now);
        while self.table.len() >= self.cap && !self.table.is_empty() {
            self.evict_one(now, None);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let entry = Entry {
            hash,
            id,
            expires,
            block,
            key_len,
            status: 0,
            completed: false,
        };
        self.bytes = self.bytes.saturating_add(entry.cost());
        self.order.push_back(Queued {
            hash,
            id,
            recheck: Some(now),
        });
        self.table.insert_unique(hash, entry, |e| e.hash);
        self.trim(now, id);
    }

    /// Evicts the oldest entries, never `spare`, while the shard takes more
    /// bytes than its share and holds anything else.
    fn trim(&mut self, now: Instant, spare: u64) {
        while self.bytes > self.cap_bytes && self.table.len() > 1 {
            self.evict_one(now, Some(spare));
        }
    }

    /// Removes the entry for `key`, if any.
    fn remove(&mut self, hash: u64, key: &[u8]) {
        if let Ok(found) = self.table.find_entry(hash, |e| e.is(hash, key)) {
            let (entry, _) = found.remove();
            self.bytes = self.bytes.saturating_sub(entry.cost());
        }
        self.compact();
    }

    /// Removes the entry a queue item stands for, if it is still there.
    fn remove_queued(&mut self, item: &Queued) {
        if let Ok(found) = self.table.find_entry(item.hash, |e| e.id == item.id) {
            let (entry, _) = found.remove();
            self.bytes = self.bytes.saturating_sub(entry.cost());
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
            match self.table.find(front.hash, |e| e.id == front.id) {
                Some(entry) if !entry.expired(now) => {
                    // A completed entry's expiry is final: look again then.
                    // A claim may yet complete with a shorter TTL.
                    if entry.completed {
                        front.recheck = entry.expires;
                    }
                    return;
                }
                Some(_) => {
                    if let Some(front) = self.order.pop_front() {
                        self.remove_queued(&front);
                    }
                }
                None => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Evicts one entry: the oldest expired entry or stored response within
    /// reach, else the oldest claim.
    fn evict_one(&mut self, now: Instant, spare: Option<u64>) {
        let mut skipped: Vec<Queued> = Vec::new();
        let mut evicted = false;
        while let Some(item) = self.order.pop_front() {
            let Some(entry) = self.live(&item) else {
                continue; // stale
            };
            if Some(item.id) == spare {
                skipped.push(item);
                continue;
            }
            if entry.expired(now) || entry.completed {
                if !entry.expired(now) {
                    self.evicted_responses = self.evicted_responses.saturating_add(1);
                }
                self.remove_queued(&item);
                evicted = true;
                break;
            }
            skipped.push(item);
            if skipped.len() >= MAX_SKIPPED_CLAIMS {
                break;
            }
        }
        if !evicted {
            if let Some(i) = skipped.iter().position(|item| Some(item.id) != spare) {
                // Skipped items are unexpired claims (and `spare`).
                let oldest = skipped.remove(i);
                self.evicted_claims = self.evicted_claims.saturating_add(1);
                self.remove_queued(&oldest);
                evicted = true;
            }
        }
        for item in skipped.into_iter().rev() {
            self.order.push_front(item);
        }
        if !evicted {
            // Every entry has a queue item, so this is unreachable; never
            // loop forever if that ever breaks.
            let any = self
                .table
                .iter()
                .find(|e| Some(e.id) != spare)
                .map(|e| Queued {
                    hash: e.hash,
                    id: e.id,
                    recheck: None,
                });
            if let Some(item) = any {
                self.remove_queued(&item);
            }
        }
    }

    /// The entry `item` stands for, if it is still in the table.
    fn live(&self, item: &Queued) -> Option<&Entry> {
        self.table.find(item.hash, |e| e.id == item.id)
    }

    /// Drops stale queue items once they outnumber the live entries.
    fn compact(&mut self) {
        if self.order.len() > self.table.len().saturating_mul(2).saturating_add(32) {
            let table = &self.table;
            self.order
                .retain(|item| table.find(item.hash, |e| e.id == item.id).is_some());
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

    /// Whether this is a claim held by `token`.
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

    /// The bytes this entry is counted as.
    fn cost(&self) -> usize {
        ENTRY_OVERHEAD.saturating_add(self.block.len())
    }
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
        let store = MemoryStore::with_config(5, 5_000, 64);
        assert_eq!(store.shards(), 4);
        let caps: usize = store.inner.shards.iter().map(|s| lock(s).cap).sum();
        assert_eq!(caps, 5);
        let cap_bytes: usize = store.inner.shards.iter().map(|s| lock(s).cap_bytes).sum();
        assert_eq!(cap_bytes, 5_000);
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
        let Claim::Claimed(token) = store.claim_now(&key, fp, Duration::from_secs(1)) else {
            panic!("a new key is free");
        };
        assert!(store.complete_now(&key, &token, fp, &response, Duration::from_secs(9)));
        let Claim::Completed {
            fingerprint,
            response: replayed,
        } = store.claim_now(&key, Fingerprint([0; 32]), Duration::from_secs(1))
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
    fn an_entry_fits_one_cache_line() {
        assert!(mem::size_of::<Entry>() <= 64, "{}", mem::size_of::<Entry>());
    }

    #[test]
    fn keys_with_the_same_hash_stay_apart() {
        // Distinct keys whose hashes collide completely: lookups compare the
        // key itself, and the queue names entries by id.
        let now = Instant::now();
        let mut shard = Shard::new(10, DEFAULT_MAX_BYTES);
        let token = |n: u128| n.to_le_bytes();
        shard.insert(7, block(&[&[1; 32], &token(1), b"a"]), 1, None, now);
        shard.insert(7, block(&[&[2; 32], &token(2), b"b"]), 1, None, now);
        assert_eq!(shard.table.len(), 2);
        assert_eq!(
            shard.find(7, b"a").map(Entry::fingerprint),
            Some(Fingerprint([1; 32]))
        );
        assert_eq!(
            shard.find(7, b"b").map(Entry::fingerprint),
            Some(Fingerprint([2; 32]))
        );
        assert!(shard.find(7, b"c").is_none());
        assert!(matches!(
            shard.holder(7, b"a", &ClaimToken(2), now),
            Holder::Other
        ));
        assert!(matches!(
            shard.holder(7, b"b", &ClaimToken(2), now),
            Holder::Token
        ));
        shard.remove(7, b"a");
        assert!(shard.find(7, b"a").is_none());
        assert!(shard.find(7, b"b").is_some());
        // The queue item of the removed key is stale; eviction takes "b".
        shard.evict_one(now, None);
        assert!(shard.table.is_empty());
        assert_eq!(shard.bytes, 0);
    }

    #[test]
    fn the_eviction_queue_stays_small_when_keys_are_released() {
        let store = MemoryStore::with_config(1_000, DEFAULT_MAX_BYTES, 1);
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
        assert!(shard.table.is_empty());
        assert!(shard.order.len() <= 33, "{}", shard.order.len());
        assert_eq!(shard.bytes, 0);
    }
}
