//! The sliding windows behind the failure-rate and slow-call-rate rules.
//!
//! * [`CountWindow`]: the last `n` calls, a true ring. One shared sequence
//!   number picks the slot; a slot is only written when its value changes.
//!   Once the ring is full and holds only successes, a success writes
//!   nothing at all (it reads the sequence number and the two aggregates):
//!   healthy traffic on several cores shares the ring's cache lines.
//! * [`TimeWindow`]: the last `d`, in buckets. There is one set of buckets
//!   per core (a thread's stripe picks one; a keyed breaker's per-key window
//!   has one set), so two cores rarely write the
//!   same cache line, and a failure sums only cores × buckets words. A bucket
//!   word packs its epoch with the counts; a writer that finds an older epoch
//!   swaps in a fresh bucket with one compare-and-swap, and a reader skips
//!   buckets whose epoch has left the window, so stale buckets drop out
//!   without any sweeping.

use std::sync::atomic::Ordering::Relaxed;

use crate::metrics::{CachePadded, Striped};
use crate::sync::{AtomicU32, AtomicU64, AtomicU8};

/// Counts in the window, as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

// One per breaker, so the padded count window's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    #[inline]
    pub(crate) fn record(&self, stripe: usize, now: u64, failure: bool, slow: bool) {
        match self {
            Window::Count(w) => w.record(failure, slow),
            Window::Time(w) => w.record(stripe, now, failure, slow),
        }
    }

    pub(crate) fn totals(&self, now: u64) -> Totals {
        match self {
            Window::Count(w) => w.totals(),
            Window::Time(w) => w.totals(now),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }

    /// Whether recording needs the current time.
    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

const RECORDED: u8 = 0b001;
const FAILED: u8 = 0b010;
const SLOW: u8 = 0b100;

#[derive(Debug, Default)]
struct Aggregates {
    // Signed in spirit: a slot's removal can be applied before its addition
    // by a slower thread, so the count may dip below zero for a moment.
    failures: AtomicU32,
    slow: AtomicU32,
}

/// The last `n` calls.
#[derive(Debug)]
pub(crate) struct CountWindow {
    seq: CachePadded<AtomicU64>,
    agg: CachePadded<Aggregates>,
    slots: Box<[AtomicU8]>,
    size: u64,
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = size.max(1);
        Self {
            seq: CachePadded(AtomicU64::new(0)),
            agg: CachePadded(Aggregates::default()),
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            size: u64::from(size),
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) {
        if !failure && !slow && self.full_of_successes() {
            // Every slot holds a success: recording one more changes no
            // slot, and where the ring's cursor stands does not matter
            // either (each slot that may fall out next is a success). No
            // write, so healthy traffic on several cores shares the line.
            return;
        }
        let seq = self.seq.fetch_add(1, Relaxed);
        let slot = &self.slots[(seq % self.size) as usize];
        let new = RECORDED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        if slot.load(Relaxed) == new {
            // The call that falls out had the same outcome: nothing changes.
            return;
        }
        let old = slot.swap(new, Relaxed);
        Self::adjust(&self.agg.failures, old & FAILED != 0, failure);
        Self::adjust(&self.agg.slow, old & SLOW != 0, slow);
    }

    /// The ring is full and holds neither failures nor slow calls, as the
    /// aggregates say. A failure being recorded at the same moment may be
    /// in its slot but not yet in them: the success is then ordered before
    /// it, which leaves the same ring (every slot it could have taken held a
    /// success). An aggregate that dipped below zero reads as non-zero, so
    /// the shortcut is not taken then.
    #[inline]
    fn full_of_successes(&self) -> bool {
        self.seq.load(Relaxed) >= self.size
            && self.agg.failures.load(Relaxed) == 0
            && self.agg.slow.load(Relaxed) == 0
    }

    #[inline]
    fn adjust(count: &AtomicU32, was: bool, is: bool) {
        match (was, is) {
            (false, true) => {
                count.fetch_add(1, Relaxed);
            }
            (true, false) => {
                count.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
    }

    fn totals(&self) -> Totals {
        let read = |c: &AtomicU32| u64::from((c.load(Relaxed) as i32).max(0) as u32);
        let calls = self.seq.load(Relaxed).min(self.size);
        Totals {
            calls,
            failures: read(&self.agg.failures).min(calls),
            slow: read(&self.agg.slow).min(calls),
        }
    }

    fn clear(&self) {
        for s in self.slots.iter() {
            s.store(0, Relaxed);
        }
        self.agg.failures.store(0, Relaxed);
        self.agg.slow.store(0, Relaxed);
        self.seq.store(0, Relaxed);
    }
}

// Bucket word: [epoch: 24 | failures: 20 | calls: 20] and
// slow word:   [epoch: 24 | unused: 20  | slow: 20].
const FIELD_BITS: u32 = 20;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const EPOCH_SHIFT: u32 = 2 * FIELD_BITS;
const EPOCH_MASK: u64 = (1 << 24) - 1;
/// A bucket stops counting a little below the field's capacity (leaving room
/// for racing increments) and from then on holds a sample of its period.
const SATURATED: u64 = FIELD_MASK - 4096;

#[derive(Debug, Default)]
struct Bucket {
    word: AtomicU64,
    slow: AtomicU64,
}

#[derive(Debug)]
struct Buckets(Box<[Bucket]>);

/// The last `buckets × bucket_nanos` nanoseconds, in `buckets` buckets per stripe.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    stripes: Striped<Buckets>,
    bucket_nanos: u64,
    buckets: u64,
}

impl TimeWindow {
    /// `buckets` buckets of `bucket_nanos` in each of `stripes` stripes
    /// (at least one).
    pub(crate) fn new(bucket_nanos: u64, buckets: u32, stripes: usize) -> Self {
        let buckets = buckets.max(1);
        Self {
            stripes: Striped::with_len(stripes, || {
                Buckets((0..buckets).map(|_| Bucket::default()).collect())
            }),
            bucket_nanos: bucket_nanos.max(1),
            buckets: u64::from(buckets),
        }
    }

    #[inline]
    fn record(&self, stripe: usize, now: u64, failure: bool, slow: bool) {
        let epoch = now / self.bucket_nanos;
        let bucket = &self.stripes.get_wrapped(stripe).0[(epoch % self.buckets) as usize];
        let tag = epoch & EPOCH_MASK;
        Self::bump(&bucket.word, tag, 1 | (u64::from(failure) << FIELD_BITS));
        if slow {
            Self::bump(&bucket.slow, tag, 1);
        }
    }

    #[inline]
    fn bump(word: &AtomicU64, tag: u64, inc: u64) {
        let mut cur = word.load(Relaxed);
        loop {
            let cur_tag = cur >> EPOCH_SHIFT;
            if cur_tag == tag {
                if cur & FIELD_MASK < SATURATED {
                    // An epoch change racing with this add only moves the
                    // count into the newer bucket: the call is recent anyway.
                    word.fetch_add(inc, Relaxed);
                }
                return;
            }
            // Only a newer epoch may replace the bucket; a call timed before
            // the bucket moved on is dropped rather than wiping newer counts.
            if tag.wrapping_sub(cur_tag) & EPOCH_MASK >= 1 << 23 {
                return;
            }
            match word.compare_exchange_weak(cur, (tag << EPOCH_SHIFT) | inc, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn totals(&self, now: u64) -> Totals {
        let tag = (now / self.bucket_nanos) & EPOCH_MASK;
        let live = |w: u64| tag.wrapping_sub(w >> EPOCH_SHIFT) & EPOCH_MASK < self.buckets;
        let mut t = Totals::default();
        for stripe in self.stripes.iter() {
            for b in stripe.0.iter() {
                let w = b.word.load(Relaxed);
                if w != 0 && live(w) {
                    t.calls += w & FIELD_MASK;
                    t.failures += (w >> FIELD_BITS) & FIELD_MASK;
                }
                let s = b.slow.load(Relaxed);
                if s != 0 && live(s) {
                    t.slow += s & FIELD_MASK;
                }
            }
        }
        t.failures = t.failures.min(t.calls);
        t.slow = t.slow.min(t.calls);
        t
    }

    fn clear(&self) {
        for stripe in self.stripes.iter() {
            for b in stripe.0.iter() {
                b.word.store(0, Relaxed);
                b.slow.store(0, Relaxed);
            }
        }
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(4);
        for _ in 0..4 {
            w.record(true, false);
        }
        assert_eq!(
            w.totals(),
            Totals {
                calls: 4,
                failures: 4,
                slow: 0
            }
        );
        w.record(false, true);
        w.record(false, false);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
        for _ in 0..4 {
            w.record(false, false);
        }
        assert_eq!(
            w.totals(),
            Totals {
                calls: 4,
                failures: 0,
                slow: 0
            }
        );
        w.clear();
        assert_eq!(w.totals(), Totals::default());
    }

    #[test]
    fn time_window_drops_stale_buckets() {
        // 4 buckets of 10 ns.
        let w = TimeWindow::new(10, 4, 1);
        w.record(0, 0, true, false);
        w.record(0, 15, false, true);
        assert_eq!(
            w.totals(15),
            Totals {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        // At 40 the bucket of epoch 0 has left the window (epochs 1..=4 remain).
        assert_eq!(
            w.totals(40),
            Totals {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        // A write in epoch 4 reuses the slot of epoch 0.
        w.record(0, 41, true, false);
        assert_eq!(
            w.totals(41),
            Totals {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        assert_eq!(w.totals(1_000), Totals::default());
    }

    #[test]
    fn time_window_ignores_late_writer() {
        let w = TimeWindow::new(10, 2, 1);
        w.record(0, 25, true, false); // epoch 2, slot 0
        w.record(0, 5, false, false); // epoch 0, slot 0: older, dropped
        assert_eq!(
            w.totals(25),
            Totals {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_saturates_instead_of_overflowing() {
        let w = TimeWindow::new(1_000, 1, 1);
        for _ in 0..(SATURATED + 10) {
            w.record(0, 0, false, false);
        }
        w.record(0, 0, true, false);
        let t = w.totals(0);
        assert_eq!(t.calls, SATURATED);
        assert_eq!(t.failures, 0);
    }
}
