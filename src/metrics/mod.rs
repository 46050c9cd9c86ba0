//! Counting shared by every layer: striped counters and snapshots.
//!
//! Each layer keeps its counters in a `Striped` block of cache-line-sized
//! stripes. A thread that counts takes a *stripe slot* of its own for as long
//! as it lives: slot `i` owns stripe `i` of every block, and since no other
//! thread ever writes an owned stripe, its counters are bumped with a plain
//! load and store — no locked instruction, no cache line shared with another
//! core. Threads beyond the number of owned slots (twice the cores) share
//! stripe 0, bumped with atomic read-modify-writes. A slot is handed back when
//! its thread exits, so a pool that replaces its threads reuses them.
//!
//! Reading a value sums the stripes; readers are rare (snapshots, exporters),
//! writers are every call. The snapshot types live with their layer, e.g.
//! [`CircuitBreakerSnapshot`](crate::circuit_breaker::CircuitBreakerSnapshot).

pub(crate) mod listener;

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use crate::sync::AtomicU64;
use std::sync::atomic::Ordering;

/// Pads and aligns a value to 128 bytes, two cache lines, so that the
/// adjacent-line prefetcher does not couple neighbouring stripes.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for CachePadded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many stripe slots threads can own: twice the available parallelism
/// (room for a runtime's workers and a few other threads), 2 to 32.
pub(crate) fn owned_slots() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (2 * cores).clamp(2, 32)
    })
}

/// Stripes for data that every thread updates atomically and that is read
/// whole on the failure path (the time window's buckets): one per core,
/// rounded up to a power of two, at most 16.
pub(crate) fn shared_stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .clamp(1, 16)
    })
}

/// The number of stripes in a block: one per owned slot, plus the shared one.
pub(crate) fn stripe_count() -> usize {
    owned_slots() + 1
}

#[cfg(not(steadfast_loom))]
mod slot {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Mutex;

    const UNSET: usize = usize::MAX;

    static NEXT: AtomicUsize = AtomicUsize::new(1);
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    thread_local! {
        // Read on every call: a `const` cell, no lazy-initialisation check.
        static SLOT: Cell<usize> = const { Cell::new(UNSET) };
        // Only there to hand the slot back when the thread exits.
        static RETURN: Returner = const { Returner };
    }

    struct Returner;

    impl Drop for Returner {
        fn drop(&mut self) {
            let slot = SLOT.try_with(|s| s.replace(0)).unwrap_or(0);
            if slot != 0 && slot != UNSET {
                // The mutex orders this thread's last plain stores before the
                // next owner's first loads.
                if let Ok(mut free) = FREE.lock() {
                    free.push(slot);
                }
            }
        }
    }

    #[cold]
    fn take() -> usize {
        let recycled = FREE.lock().ok().and_then(|mut free| free.pop());
        let slot = recycled.unwrap_or_else(|| {
            // Past the owned slots a thread shares stripe 0; `NEXT` stops
            // growing there, so it cannot wrap.
            let limit = super::owned_slots();
            let mut next = NEXT.load(Relaxed);
            while next <= limit {
                match NEXT.compare_exchange_weak(next, next + 1, Relaxed, Relaxed) {
                    Ok(_) => return next,
                    Err(actual) => next = actual,
                }
            }
            0
        });
        // Register the hand-back; a thread already being torn down cannot,
        // and shares stripe 0 instead.
        if slot != 0 && RETURN.try_with(|_| ()).is_err() {
            if let Ok(mut free) = FREE.lock() {
                free.push(slot);
            }
            return 0;
        }
        slot
    }

    #[inline]
    pub(super) fn current() -> usize {
        SLOT.try_with(|s| {
            let v = s.get();
            if v != UNSET {
                return v;
            }
            let v = take();
            s.set(v);
            v
        })
        .unwrap_or(0)
    }
}

/// The calling thread's stripe: `1..=owned_slots()` when it owns one, 0 (the
/// shared stripe) otherwise.
#[cfg(not(steadfast_loom))]
#[inline]
pub(crate) fn thread_stripe() -> usize {
    slot::current()
}

/// Under loom every thread shares stripe 0 (atomic updates only).
#[cfg(steadfast_loom)]
pub(crate) fn thread_stripe() -> usize {
    0
}

/// A block of stripes of `T` (a struct of atomics), one per stripe slot.
pub(crate) struct Striped<T> {
    stripes: Box<[CachePadded<T>]>,
}

impl<T: Default> Striped<T> {
    pub(crate) fn new() -> Self {
        Self::from_fn(T::default)
    }
}

impl<T> Striped<T> {
    /// One stripe per slot, each made by `make`.
    pub(crate) fn from_fn(mut make: impl FnMut() -> T) -> Self {
        Self {
            stripes: (0..stripe_count()).map(|_| CachePadded(make())).collect(),
        }
    }

    /// `n` stripes (at least one), each made by `make`, for data that takes
    /// atomic updates from any thread and is read whole: fewer stripes make
    /// reading cheaper. Index them with [`get_wrapped`](Self::get_wrapped).
    pub(crate) fn with_len(n: usize, mut make: impl FnMut() -> T) -> Self {
        Self {
            stripes: (0..n.max(1)).map(|_| CachePadded(make())).collect(),
        }
    }

    /// The stripe at `index` modulo the number of stripes.
    #[inline]
    pub(crate) fn get_wrapped(&self, index: usize) -> &T {
        &self.stripes[index % self.stripes.len()]
    }

    /// The stripe at `index` (from [`thread_stripe`]).
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &T {
        match self.stripes.get(index) {
            Some(s) => s,
            None => &self.stripes[0],
        }
    }

    /// Every stripe, for sums.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|s| &s.0)
    }
}

impl<T> fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Striped")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

/// One monotonically increasing counter inside a stripe.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Adds one. `stripe` must be the calling thread's [`thread_stripe`],
    /// the stripe this counter lives in: an owned stripe has one writer, so
    /// a plain load and store is exact; stripe 0 is shared.
    #[inline]
    pub(crate) fn incr(&self, stripe: usize) {
        if stripe == 0 {
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            self.0.store(
                self.0.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sums one field over every stripe.
pub(crate) fn sum<T>(block: &Striped<T>, field: impl Fn(&T) -> &Count) -> u64 {
    block
        .iter()
        .fold(0u64, |acc, s| acc.wrapping_add(field(s).get()))
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    /// These tests count slots: run them one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn live_threads_never_share_an_owned_stripe() {
        let _serial = serial();
        let main = thread_stripe();
        let barrier = std::sync::Barrier::new(4);
        let seen: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let x = thread_stripe();
                        // Stay alive until every thread has its slot.
                        barrier.wait();
                        x
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut owned: Vec<usize> = seen.iter().copied().filter(|&x| x != 0).collect();
        owned.push(main);
        owned.retain(|&x| x != 0);
        let before = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(
            owned.len(),
            before,
            "two live threads own one stripe: {seen:?}, main {main}"
        );
        assert!(seen.iter().all(|&x| x <= owned_slots()));
    }

    #[test]
    fn slots_are_handed_back_when_threads_exit() {
        let _serial = serial();
        // More short-lived threads than there are slots: recycling keeps
        // handing out owned stripes.
        let owned = (0..4 * owned_slots())
            .filter(|_| std::thread::spawn(thread_stripe).join().unwrap() != 0)
            .count();
        assert!(owned > owned_slots(), "only {owned} owned slots handed out");
    }

    #[test]
    fn counts_are_exact_across_threads() {
        let _serial = serial();
        let block: Striped<Count> = Striped::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        let stripe = thread_stripe();
                        block.get(stripe).incr(stripe);
                    }
                });
            }
        });
        assert_eq!(sum(&block, |c| c), 80_000);
    }
}
