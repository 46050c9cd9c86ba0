//! `MemoryStore`'s byte accounting against the heap (issue 10 part 5).
//!
//! A global allocator counts the bytes live on the heap; the store's own
//! count ([`MemoryStoreStats::bytes`]) must match what its entries really
//! take (blocks, table slots, queue items) within 10 %, so that
//! `max_bytes` bounds the heap, not only an estimate. Before, after a
//! million small completed keys the estimate was 23.6 MiB and the heap
//! 34.7 MiB.
//!
//! One test only: the counter is process-wide, and nothing else may
//! allocate while it measures.
#![cfg(feature = "http")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, MemoryStoreStats, Store, StoreKey, StoredResponse,
};

/// Counts the bytes live on the heap (as requested, without the system
/// allocator's own overhead).
struct LiveBytes;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counting is one atomic add or sub.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` and `layout` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const LOCK: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
const FP: Fingerprint = Fingerprint([3; 32]);

/// Claims and completes `n` keys with a small response; returns the heap
/// the store grew by and its stats.
async fn fill(store: &MemoryStore, n: u64) -> (usize, MemoryStoreStats) {
    let before = LIVE.load(Ordering::SeqCst);
    let response = StoredResponse::new(201, Bytes::from_static(b"{\"id\":1}"))
        .with_headers([("content-type", "application/json")]);
    for i in 0..n {
        let key = StoreKey::new("tenant", &format!("{i:016x}"));
        let token = ClaimToken::random();
        let claimed = store.claim(&key, &token, FP, LOCK).await.unwrap();
        assert_eq!(claimed, Claim::Claimed(token.clone()));
        assert!(store
            .complete(&key, &token, FP, response.clone(), TTL)
            .await
            .unwrap());
    }
    drop(response);
    let grown = LIVE.load(Ordering::SeqCst).saturating_sub(before);
    let stats = store.stats();
    eprintln!(
        "{n} keys: counted {} B, the heap grew by {grown} B",
        stats.bytes
    );
    (grown, stats)
}

fn within_10_percent(counted: usize, heap: usize) -> bool {
    counted.abs_diff(heap) * 10 <= heap
}

#[tokio::test(flavor = "current_thread")]
async fn the_byte_count_matches_the_heap_and_max_bytes_bounds_it() {
    // A million small completed keys, nothing evicted: the count is what
    // the heap grew by.
    let store = MemoryStore::builder()
        .max_entries(2_000_000)
        .max_bytes(4 << 30)
        .build()
        .unwrap();
    let (heap, stats) = fill(&store, 1_000_000).await;
    assert_eq!((stats.entries, stats.evicted_responses), (1_000_000, 0));
    assert!(
        within_10_percent(stats.bytes, heap),
        "counted {} B, the heap grew by {heap} B",
        stats.bytes
    );
    drop(store);

    // Past its bound: a 64 MiB store keeps the heap within 64 MiB + 10 %.
    let max = 64 << 20;
    let store = MemoryStore::builder()
        .max_entries(2_000_000)
        .max_bytes(max)
        .build()
        .unwrap();
    let (heap, stats) = fill(&store, 1_000_000).await;
    assert!(stats.evicted_responses > 0);
    assert!(stats.bytes <= max, "{stats:?}");
    assert!(heap <= max + max / 10, "the heap grew by {heap} B");
    assert!(
        within_10_percent(stats.bytes, heap),
        "counted {} B, the heap grew by {heap} B",
        stats.bytes
    );
}
