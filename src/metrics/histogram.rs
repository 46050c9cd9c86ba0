//! A latency histogram with fixed log-scale buckets on striped atomics.
//!
//! Values are durations in nanoseconds. Below 512 ns everything falls in
//! one bucket; from 2⁹ ns (512 ns) to 2³⁷ ns (~137 s) each power of two is
//! cut into 16 equal sub-buckets, so a bucket is at most 1/16 of its lower
//! edge wide and its midpoint is within 1/32 (3.125 %) of any value in it;
//! values from 2³⁷ ns up share one overflow bucket, read back as the
//! maximum. 450 buckets in all.
//!
//! Recording takes the calling thread's stripe (see the module docs of
//! [`metrics`](crate::metrics)): a thread that owns its stripe updates the
//! bucket, the sum and the maximum with plain loads and stores — no locked
//! instruction and no cache line shared with another core. Reading sums the
//! stripes into a [`HistogramSnapshot`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{thread_stripe, Striped};

/// Sub-buckets per power of two (as a shift).
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// The first power of two with sub-buckets: 2⁹ ns.
const MIN_EXP: u32 = 9;
/// The last power of two with sub-buckets: 2³⁶ ns; from 2³⁷ ns the
/// overflow bucket.
const MAX_EXP: u32 = 36;
/// Bucket 0 (below 2⁹ ns), 16 per power of two, the overflow bucket.
pub(crate) const BUCKETS: usize = 1 + (MAX_EXP - MIN_EXP + 1) as usize * SUB + 1;
const OVERFLOW: usize = BUCKETS - 1;

/// The bucket of a value in nanoseconds.
#[inline]
fn index(ns: u64) -> usize {
    if ns < (1 << MIN_EXP) {
        return 0;
    }
    let exp = 63 - ns.leading_zeros();
    if exp > MAX_EXP {
        return OVERFLOW;
    }
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    1 + (exp - MIN_EXP) as usize * SUB + sub
}

/// The lower edge of bucket `i`, in nanoseconds.
fn lower(i: usize) -> u64 {
    match i {
        0 => 0,
        OVERFLOW => 1 << (MAX_EXP + 1),
        _ => {
            let exp = MIN_EXP + ((i - 1) / SUB) as u32;
            let sub = ((i - 1) % SUB) as u64;
            (SUB as u64 + sub) << (exp - SUB_BITS)
        }
    }
}

/// The upper edge of bucket `i` (exclusive), `None` for the overflow bucket.
fn upper(i: usize) -> Option<u64> {
    (i < OVERFLOW).then(|| lower(i + 1))
}

/// One stripe: a count per bucket, the sum and the maximum.
struct Cells {
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Cells {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

/// A latency histogram: fixed log-scale buckets on striped atomics, ≤ 3.125 %
/// relative error from 512 ns to 137 s.
///
/// Recording never allocates and takes no lock; each stripe is about 3.7 KB,
/// one per stripe slot (twice the cores plus one, at most 33), allocated
/// when the histogram is made. Snapshots are mergeable, so histograms of
/// several instances (or several processes) add up.
///
/// ```
/// use std::time::Duration;
/// use steadfast::metrics::Histogram;
///
/// let histogram = Histogram::new();
/// for ms in 1..=100 {
///     histogram.record(Duration::from_millis(ms));
/// }
/// let snapshot = histogram.snapshot();
/// assert_eq!(snapshot.count(), 100);
/// let p99 = snapshot.quantile(0.99).unwrap();
/// assert!(p99 >= Duration::from_micros(99_000 * 96 / 100) && p99 <= Duration::from_millis(100));
/// ```
pub struct Histogram {
    stripes: Striped<Cells>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            stripes: Striped::new(),
        }
    }

    /// Records one duration (saturating at `u64::MAX` nanoseconds).
    #[inline]
    pub fn record(&self, value: Duration) {
        self.record_nanos(u64::try_from(value.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record_nanos(&self, ns: u64) {
        let stripe = thread_stripe();
        let cells = self.stripes.get(stripe);
        let bucket = &cells.buckets[index(ns)];
        if stripe == 0 {
            bucket.fetch_add(1, Relaxed);
            cells.sum.fetch_add(ns, Relaxed);
            cells.max.fetch_max(ns, Relaxed);
        } else {
            // The stripe is this thread's own: one writer, plain stores.
            bucket.store(bucket.load(Relaxed).wrapping_add(1), Relaxed);
            cells
                .sum
                .store(cells.sum.load(Relaxed).wrapping_add(ns), Relaxed);
            if ns > cells.max.load(Relaxed) {
                cells.max.store(ns, Relaxed);
            }
        }
    }

    /// The counts so far. Values recorded while the snapshot is taken may
    /// be in some of its fields and not yet in others.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut snapshot = HistogramSnapshot::empty();
        for cells in self.stripes.iter() {
            for (acc, bucket) in snapshot.buckets.iter_mut().zip(&cells.buckets) {
                *acc = acc.wrapping_add(bucket.load(Relaxed));
            }
            snapshot.sum_ns = snapshot.sum_ns.wrapping_add(cells.sum.load(Relaxed));
            snapshot.max_ns = snapshot.max_ns.max(cells.max.load(Relaxed));
        }
        snapshot.count = snapshot
            .buckets
            .iter()
            .fold(0u64, |acc, n| acc.wrapping_add(*n));
        snapshot
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Histogram").field(&self.snapshot()).finish()
    }
}

/// The counts of a [`Histogram`] at one moment: plain data, mergeable.
///
/// Quantiles are read at the midpoint of the bucket that holds the rank
/// (nearest rank: the smallest value with at least `q` of the values at or
/// below it), capped at the maximum seen, so from 512 ns to 137 s they are
/// within 3.125 % of the true value.
#[derive(Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Empty for an empty snapshot (no values), `BUCKETS` long otherwise.
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u64,
    max_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self::empty()
    }
}

impl HistogramSnapshot {
    /// A snapshot with no values.
    pub fn empty() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the values (wrapping after ~584 years).
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// The largest value, exact; zero when empty.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The mean, `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.sum_ns / self.count))
    }

    /// The value at quantile `q` (0.0 to 1.0, clamped; NaN reads as 0),
    /// `None` when empty. `quantile(1.0)` is the maximum.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        // Nearest rank, 1-based: at least one value.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*n);
            if seen >= rank {
                let estimate = match upper(i) {
                    Some(hi) => lower(i) + (hi - lower(i)) / 2,
                    None => self.max_ns,
                };
                return Some(Duration::from_nanos(estimate.min(self.max_ns)));
            }
        }
        Some(self.max())
    }

    /// The median.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Option<Duration> {
        self.quantile(0.9)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// How many values are at or below `bound`, counting each bucket by its
    /// midpoint (a bucket that straddles `bound` counts whole on the side of
    /// its midpoint): the cumulative count of a Prometheus `le` bucket.
    pub fn count_at_or_below(&self, bound: Duration) -> u64 {
        let bound = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| match upper(*i) {
                Some(hi) => lower(*i) + (hi - lower(*i)) / 2 <= bound,
                None => self.max_ns <= bound,
            })
            .fold(0u64, |acc, (_, n)| acc.saturating_add(*n))
    }

    /// The non-empty buckets, lowest first: `(lower edge, upper edge, count)`;
    /// the overflow bucket has no upper edge.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, Option<Duration>, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                (
                    Duration::from_nanos(lower(i)),
                    upper(i).map(Duration::from_nanos),
                    *n,
                )
            })
    }

    /// Adds `other`'s values to these, as if both had been recorded into one
    /// histogram.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (acc, n) in self.buckets.iter_mut().zip(&other.buckets) {
            *acc = acc.wrapping_add(*n);
        }
        self.count = self.count.wrapping_add(other.count);
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The values recorded since `earlier`, a snapshot of the same
    /// histogram taken before this one (the maximum stays this one's).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut delta = self.clone();
        for (acc, n) in delta.buckets.iter_mut().zip(&earlier.buckets) {
            *acc = acc.saturating_sub(*n);
        }
        delta.count = self.count.saturating_sub(earlier.count);
        delta.sum_ns = self.sum_ns.saturating_sub(earlier.sum_ns);
        delta
    }
}

/// With feature `serde`: the count, sum, maximum and p50/p90/p99 (as
/// `Duration`s, `null` when empty), and the non-empty buckets as
/// `[lower_ns, upper_ns or null, count]`.
#[cfg(feature = "serde")]
impl serde::Serialize for HistogramSnapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let buckets: Vec<(u64, Option<u64>, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (lower(i), upper(i), *n))
            .collect();
        let mut s = serializer.serialize_struct("HistogramSnapshot", 7)?;
        s.serialize_field("count", &self.count)?;
        s.serialize_field("sum", &self.sum())?;
        s.serialize_field("max", &self.max())?;
        s.serialize_field("p50", &self.p50())?;
        s.serialize_field("p90", &self.p90())?;
        s.serialize_field("p99", &self.p99())?;
        s.serialize_field("buckets", &buckets)?;
        s.end()
    }
}

impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count)
            .field("sum", &self.sum())
            .field("max", &self.max())
            .field("p50", &self.p50())
            .field("p90", &self.p90())
            .field("p99", &self.p99())
            .finish()
    }
}

impl fmt::Display for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), |d| format!("{d:.1?}"));
        write!(
            f,
            "n={} p50={} p90={} p99={} max={}",
            self.count,
            show(self.p50()),
            show(self.p90()),
            show(self.p99()),
            show((self.count > 0).then(|| self.max())),
        )
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        assert_eq!(BUCKETS, 450);
        for i in 0..OVERFLOW {
            let (lo, hi) = (lower(i), upper(i).unwrap());
            assert!(lo < hi, "bucket {i}");
            assert_eq!(index(lo), i, "lower edge of {i}");
            assert_eq!(index(hi - 1), i, "last value of {i}");
            if i > 0 {
                // Width at most 1/16 of the lower edge.
                assert!((hi - lo) * 16 <= lo, "bucket {i}: {lo}..{hi}");
            }
        }
        assert_eq!(index(0), 0);
        assert_eq!(index(511), 0);
        assert_eq!(index(512), 1);
        assert_eq!(index((1 << 37) - 1), OVERFLOW - 1);
        assert_eq!(index(1 << 37), OVERFLOW);
        assert_eq!(index(u64::MAX), OVERFLOW);
    }

    #[test]
    fn empty_snapshot_has_no_quantiles() {
        let s = Histogram::new().snapshot();
        assert_eq!(s.count(), 0);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.mean(), None);
        assert_eq!(s.buckets().count(), 0);
    }

    #[test]
    fn sum_max_and_quantile_edges() {
        let h = Histogram::new();
        for ns in [300, 2_000, 3_000_000, 200_000_000_000] {
            h.record_nanos(ns);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum(), Duration::from_nanos(200_003_002_300));
        assert_eq!(s.max(), Duration::from_secs(200));
        // The overflow bucket reads as the maximum.
        assert_eq!(s.quantile(1.0), Some(Duration::from_secs(200)));
        assert_eq!(s.quantile(f64::NAN), s.quantile(0.0));
        assert_eq!(s.quantile(-3.0), s.quantile(0.0));
        assert_eq!(s.quantile(7.0), s.quantile(1.0));
        // The lowest bucket's midpoint is 256 ns.
        assert_eq!(s.quantile(0.25), Some(Duration::from_nanos(256)));
        assert_eq!(s.count_at_or_below(Duration::from_millis(10)), 3);
        assert_eq!(s.count_at_or_below(Duration::from_secs(199)), 3);
        assert_eq!(s.count_at_or_below(Duration::from_secs(200)), 4);
    }

    #[test]
    fn merge_and_since_add_up() {
        let (a, b) = (Histogram::new(), Histogram::new());
        for ms in 1..=10 {
            a.record(Duration::from_millis(ms));
            b.record(Duration::from_millis(10 * ms));
        }
        let before = a.snapshot();
        let mut merged = a.snapshot();
        merged.merge(&b.snapshot());
        assert_eq!(merged.count(), 20);
        assert_eq!(merged.max(), Duration::from_millis(100));
        assert_eq!(
            merged.sum(),
            Duration::from_millis(55) + Duration::from_millis(550)
        );
        a.record(Duration::from_secs(1));
        let delta = a.snapshot().since(&before);
        assert_eq!(delta.count(), 1);
        assert_eq!(delta.sum(), Duration::from_secs(1));
        assert_eq!(delta.buckets().count(), 1);
    }
}
