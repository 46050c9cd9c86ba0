//! Counting shared by every layer: striped atomic counters and snapshots.
//!
//! Each layer keeps its counters in a `Striped` block: one cache-line-sized
//! stripe per slot, picked by the calling thread, so two cores that count at
//! the same time never write the same cache line. Reading a value sums the
//! stripes; readers are rare (snapshots, exporters), writers are every call.
//!
//! The snapshot types themselves live with their layer, e.g.
//! [`CircuitBreakerSnapshot`](crate::circuit_breaker::CircuitBreakerSnapshot).

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

/// The number of stripes a [`Striped`] block has: the next power of two at or
/// above the available parallelism, at most 16.
pub(crate) fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .next_power_of_two()
            .clamp(1, 16)
    })
}

/// The calling thread's stripe slot: threads are numbered in the order they
/// first count, so the first `stripe_count()` threads never share a stripe.
#[cfg(not(steadfast_loom))]
pub(crate) fn thread_slot() -> usize {
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;
    static NEXT: StdAtomicUsize = StdAtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

#[cfg(steadfast_loom)]
pub(crate) fn thread_slot() -> usize {
    0
}

/// A block of per-thread stripes of `T` (a struct of atomics).
pub(crate) struct Striped<T> {
    stripes: Box<[CachePadded<T>]>,
    mask: usize,
}

impl<T: Default> Striped<T> {
    pub(crate) fn new() -> Self {
        Self::from_fn(T::default)
    }
}

impl<T> Striped<T> {
    /// One stripe per slot of [`stripe_count`], each made by `make`.
    pub(crate) fn from_fn(make: impl FnMut() -> T) -> Self {
        Self::with_stripes(stripe_count(), make)
    }

    pub(crate) fn with_stripes(n: usize, mut make: impl FnMut() -> T) -> Self {
        let n = n.max(1).next_power_of_two();
        Self {
            stripes: (0..n).map(|_| CachePadded(make())).collect(),
            mask: n - 1,
        }
    }
}

impl<T> Striped<T> {
    /// The stripe of the calling thread.
    #[inline]
    pub(crate) fn local(&self) -> &T {
        &self.stripes[thread_slot() & self.mask]
    }

    /// The stripe at `index` (wrapped): callers that looked up their stripe
    /// once pass it along instead of asking the thread-local again.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &T {
        &self.stripes[index & self.mask]
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
    #[inline]
    pub(crate) fn incr(&self) {
        // Each stripe is written by "its" threads; a relaxed RMW is enough
        // for a counter that is only summed.
        self.0.fetch_add(1, Ordering::Relaxed);
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
