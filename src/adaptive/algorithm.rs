//! The two limit algorithms, as plain arithmetic on one sample at a time.
//!
//! Nothing here reads a clock, takes a lock or knows about services: the
//! layer hands each finished call to [`Estimator::sample`] under its
//! try-lock, and the property tests drive the same function directly.

use std::time::Duration;

use crate::error::InvalidConfig;

/// Additive increase, multiplicative decrease: the limit grows by
/// [`increase`](Self::increase) for every limit's worth of successes while
/// the limit is in use, and is multiplied by
/// [`backoff_ratio`](Self::backoff_ratio) on every drop (a failure, a
/// timeout, or a call slower than [`timeout`](Self::timeout)).
///
/// The growth is TCP's congestion avoidance: about `increase` per round
/// trip at the limit, not per call, so the limit moves at most once per
/// limit's worth of calls on the way up. It needs no clock unless a
/// [`timeout`](Self::timeout) is set.
///
/// Default: increase 1, backoff ratio 0.9, no timeout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    increase: f64,
    backoff_ratio: f64,
    timeout: Option<Duration>,
}

impl Default for Aimd {
    fn default() -> Self {
        Self {
            increase: 1.0,
            backoff_ratio: 0.9,
            timeout: None,
        }
    }
}

impl Aimd {
    /// AIMD with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How much the limit grows per limit's worth of successes (`> 0`,
    /// finite). Default 1.
    pub fn increase(mut self, increase: f64) -> Self {
        self.increase = increase;
        self
    }

    /// What the limit is multiplied by on a drop (in `[0.5, 1)`). Default
    /// 0.9.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A call that succeeds but takes longer than `timeout` counts as a
    /// drop. Setting one makes the layer read the clock at the start and
    /// end of every call. Default: none (put a
    /// [`TimeoutLayer`](crate::timeout::TimeoutLayer) inside instead; its
    /// `Elapsed` is a failure and so a drop).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A gradient limit in the style of Netflix's Gradient2 and Envoy's
/// adaptive concurrency filter: it compares the short-term RTT (an average
/// over the last few calls) with the long-term one (the lowest RTT seen
/// over [`long_window`](Self::long_window)), and shrinks the limit when the
/// short-term RTT is more than [`tolerance`](Self::tolerance) times the
/// long-term: the backend is queueing.
///
/// Per measured call, while the limit is in use (at least half of it in
/// flight):
///
/// ```text
/// gradient  = clamp(tolerance × long / short, 0.5, 1)
/// target    = limit × gradient + queue          (queue: √limit unless set)
/// step      = min(smoothing × measure_every / limit, smoothing)
/// limit    += (target − limit) × step
/// ```
///
/// so that a limit's worth of calls — about one round trip at the limit —
/// moves the limit `smoothing` of the way to its target, however many
/// calls a second there are. (Gradient2 moves it that far on every call;
/// since each call reports on a limit one round trip old, that overshoots
/// and the limit swings between its bounds.)
///
/// then clamped to `[min_limit, max_limit]`. A drop (a failure, or a
/// timeout) is not an RTT sample: it multiplies the limit by
/// [`backoff_ratio`](Self::backoff_ratio), as AIMD does.
///
/// The long-term RTT is a windowed minimum rather than Gradient2's long
/// average: an average follows a queue that builds slowly and lets the
/// limit drift up with it; a minimum over the window only rises when the
/// backend's unloaded latency really has (after at most one window).
///
/// Default: tolerance 1.5, smoothing 0.2, queue √limit, backoff ratio 0.9,
/// one call in 8 timed, short-term average over 10 timed calls, long
/// window 30 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient {
    tolerance: f64,
    smoothing: f64,
    queue: Option<f64>,
    backoff_ratio: f64,
    short_window: u32,
    long_window: Duration,
    measure_every: u32,
}

impl Default for Gradient {
    fn default() -> Self {
        Self {
            tolerance: 1.5,
            smoothing: 0.2,
            queue: None,
            backoff_ratio: 0.9,
            short_window: 10,
            long_window: Duration::from_secs(30),
            measure_every: 8,
        }
    }
}

impl Gradient {
    /// The gradient limit with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How much slower than the long-term RTT the short-term one may be
    /// before the limit shrinks (`>= 1`, finite). Default 1.5.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How far a limit's worth of calls moves the limit towards its target
    /// (in `(0, 1]`). Default 0.2.
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Calls allowed to queue at the backend beyond the estimate (`>= 0`,
    /// finite); it is also how fast the limit grows when latency is low.
    /// Default: the square root of the limit.
    pub fn queue(mut self, queue: f64) -> Self {
        self.queue = Some(queue);
        self
    }

    /// What the limit is multiplied by on a drop (in `[0.5, 1)`). Default
    /// 0.9.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// How many recent measured calls the short-term RTT averages over (at
    /// least 1). Default 10.
    pub fn short_window(mut self, calls: u32) -> Self {
        self.short_window = calls;
        self
    }

    /// Times one call in `n` on each thread (at least 1; 1 times every
    /// call). Default 8.
    ///
    /// Reading tokio's clock twice costs more than the rest of the layer;
    /// a measured call stands for `n` calls, so the limit moves as fast
    /// as when every call is measured. Drops are never sampled: each one
    /// counts.
    pub fn measure_every(mut self, n: u32) -> Self {
        self.measure_every = n;
        self
    }

    /// How long the lowest RTT is remembered as the long-term RTT (at
    /// least 1 ms). Default 30 s.
    pub fn long_window(mut self, window: Duration) -> Self {
        self.long_window = window;
        self
    }
}

/// The algorithm of an adaptive limit: [`Aimd`] or [`Gradient`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Additive increase, multiplicative decrease on drops.
    Aimd(Aimd),
    /// Short-term against long-term RTT.
    Gradient(Gradient),
}

impl From<Aimd> for Algorithm {
    fn from(a: Aimd) -> Self {
        Algorithm::Aimd(a)
    }
}

impl From<Gradient> for Algorithm {
    fn from(g: Gradient) -> Self {
        Algorithm::Gradient(g)
    }
}

impl Algorithm {
    /// Every how many calls (on a thread) the round-trip time is measured;
    /// 0: never.
    pub(crate) fn measure_every(&self) -> u32 {
        match self {
            Algorithm::Aimd(a) => u32::from(a.timeout.is_some()),
            Algorithm::Gradient(g) => g.measure_every,
        }
    }

    pub(crate) fn check(&self) -> Result<(), InvalidConfig> {
        fn ratio(name: &'static str, r: f64) -> Result<(), InvalidConfig> {
            if r.is_finite() && (0.5..1.0).contains(&r) {
                Ok(())
            } else {
                Err(InvalidConfig::new(
                    name,
                    format!("must be in [0.5, 1), got {r}"),
                ))
            }
        }
        match self {
            Algorithm::Aimd(a) => {
                if !(a.increase.is_finite() && a.increase > 0.0) {
                    return Err(InvalidConfig::new(
                        "adaptive.aimd.increase",
                        format!("must be finite and above 0, got {}", a.increase),
                    ));
                }
                if a.timeout == Some(Duration::ZERO) {
                    return Err(InvalidConfig::new(
                        "adaptive.aimd.timeout",
                        "must be above zero",
                    ));
                }
                ratio("adaptive.aimd.backoff_ratio", a.backoff_ratio)
            }
            Algorithm::Gradient(g) => {
                if !(g.tolerance.is_finite() && g.tolerance >= 1.0) {
                    return Err(InvalidConfig::new(
                        "adaptive.gradient.tolerance",
                        format!("must be finite and at least 1, got {}", g.tolerance),
                    ));
                }
                if !(g.smoothing.is_finite() && g.smoothing > 0.0 && g.smoothing <= 1.0) {
                    return Err(InvalidConfig::new(
                        "adaptive.gradient.smoothing",
                        format!("must be in (0, 1], got {}", g.smoothing),
                    ));
                }
                if let Some(q) = g.queue {
                    if !(q.is_finite() && q >= 0.0) {
                        return Err(InvalidConfig::new(
                            "adaptive.gradient.queue",
                            format!("must be finite and at least 0, got {q}"),
                        ));
                    }
                }
                if g.short_window == 0 {
                    return Err(InvalidConfig::new(
                        "adaptive.gradient.short_window",
                        "must be at least 1, got 0",
                    ));
                }
                if g.measure_every == 0 {
                    return Err(InvalidConfig::new(
                        "adaptive.gradient.measure_every",
                        "must be at least 1, got 0",
                    ));
                }
                if g.long_window < Duration::from_millis(1) {
                    return Err(InvalidConfig::new(
                        "adaptive.gradient.long_window",
                        format!("must be at least 1 ms, got {:?}", g.long_window),
                    ));
                }
                ratio("adaptive.gradient.backoff_ratio", g.backoff_ratio)
            }
        }
    }
}

/// One finished call, as the algorithm sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Nanoseconds on the layer's clock when the call ended (0 when the
    /// algorithm reads no clock).
    pub(crate) now_ns: u64,
    /// The call's round trip, when measured.
    pub(crate) rtt_ns: Option<u64>,
    /// A failure or a timeout.
    pub(crate) dropped: bool,
    /// Calls in flight when it ended (itself included).
    pub(crate) in_flight: usize,
}

/// The state of one adaptive limit. Every method keeps `limit` in
/// `[min, max]` (the property tests check it for any samples).
#[derive(Debug, Clone)]
pub(crate) struct Estimator {
    algorithm: Algorithm,
    min: f64,
    max: f64,
    limit: f64,
    /// Gradient: the short-term RTT average (ns; 0 before the first sample).
    short_ns: f64,
    /// Gradient: the lowest RTT of this half-window and the last one.
    min_now_ns: u64,
    min_prev_ns: u64,
    /// Gradient: when this half-window ends.
    half_end_ns: u64,
}

impl Estimator {
    pub(crate) fn new(algorithm: Algorithm, min: usize, max: usize, initial: usize) -> Self {
        Self {
            algorithm,
            min: min as f64,
            max: max as f64,
            limit: (initial as f64).clamp(min as f64, max as f64),
            short_ns: 0.0,
            min_now_ns: u64::MAX,
            min_prev_ns: u64::MAX,
            half_end_ns: 0,
        }
    }

    /// The limit as a number of calls.
    pub(crate) fn limit(&self) -> usize {
        // `limit` is in [min, max], both whole numbers of at least 1.
        self.limit.floor() as usize
    }

    /// The exact limit, fraction included.
    pub(crate) fn estimate(&self) -> f64 {
        self.limit
    }

    /// The short-term RTT, when known.
    pub(crate) fn short_rtt(&self) -> Option<Duration> {
        (self.short_ns > 0.0).then(|| Duration::from_nanos(self.short_ns as u64))
    }

    /// The long-term RTT, when known.
    pub(crate) fn long_rtt(&self) -> Option<Duration> {
        let m = self.min_now_ns.min(self.min_prev_ns);
        (m != u64::MAX).then(|| Duration::from_nanos(m))
    }

    /// One drop, whatever the algorithm: the multiplicative decrease.
    pub(crate) fn drop_once(&mut self) {
        let ratio = match &self.algorithm {
            Algorithm::Aimd(a) => a.backoff_ratio,
            Algorithm::Gradient(g) => g.backoff_ratio,
        };
        self.limit = (self.limit * ratio).clamp(self.min, self.max);
    }

    /// Takes one finished call into account; `true` when a call that
    /// succeeded counted as a drop (slower than AIMD's timeout).
    pub(crate) fn sample(&mut self, s: Sample) -> bool {
        match self.algorithm {
            Algorithm::Aimd(a) => {
                let slow = match (a.timeout, s.rtt_ns) {
                    (Some(t), Some(rtt)) => u128::from(rtt) > t.as_nanos(),
                    _ => false,
                };
                if s.dropped || slow {
                    self.drop_once();
                } else if s.in_flight as f64 * 2.0 >= self.limit {
                    self.limit = (self.limit + a.increase / self.limit).clamp(self.min, self.max);
                }
                slow && !s.dropped
            }
            Algorithm::Gradient(g) => {
                if s.dropped {
                    self.drop_once();
                    return false;
                }
                let Some(rtt) = s.rtt_ns else { return false };
                let rtt = rtt.max(1);
                // The long-term RTT: the least of this half-window and the last.
                if s.now_ns >= self.half_end_ns {
                    let half = u64::try_from(g.long_window.as_nanos() / 2).unwrap_or(u64::MAX);
                    self.min_prev_ns = if s.now_ns >= self.half_end_ns.saturating_add(half) {
                        // A whole half-window without samples: forget it.
                        u64::MAX
                    } else {
                        self.min_now_ns
                    };
                    self.min_now_ns = u64::MAX;
                    self.half_end_ns = s.now_ns.saturating_add(half.max(1));
                }
                self.min_now_ns = self.min_now_ns.min(rtt);
                let rtt = rtt as f64;
                self.short_ns = if self.short_ns == 0.0 {
                    rtt
                } else {
                    self.short_ns + (rtt - self.short_ns) / f64::from(g.short_window)
                };
                // Not limited by the limit: nothing to learn about it.
                if (s.in_flight as f64) * 2.0 < self.limit {
                    return false;
                }
                let long = self.min_now_ns.min(self.min_prev_ns) as f64;
                let gradient = (g.tolerance * long / self.short_ns).clamp(0.5, 1.0);
                let queue = g.queue.unwrap_or_else(|| self.limit.sqrt());
                let target = self.limit * gradient + queue;
                // One limit's worth of samples (about one round trip at the
                // limit) moves it `smoothing` of the way: per call, that
                // over the limit. Samples arrive a round trip after the
                // limit that shaped them, so a faster step overshoots.
                // A measured call stands for `measure_every`; never more
                // than `smoothing` of the way at once.
                let step = (g.smoothing * f64::from(g.measure_every) / self.limit).min(g.smoothing);
                let next = self.limit + (target - self.limit) * step;
                if next.is_finite() {
                    self.limit = next.clamp(self.min, self.max);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(now_ms: u64, rtt_ms: u64, in_flight: usize) -> Sample {
        Sample {
            now_ns: now_ms * 1_000_000,
            rtt_ns: Some(rtt_ms * 1_000_000),
            dropped: false,
            in_flight,
        }
    }

    #[test]
    fn aimd_grows_by_one_per_limits_worth_of_successes() {
        let mut e = Estimator::new(Aimd::new().into(), 1, 100, 10);
        for _ in 0..10 {
            e.sample(ok(0, 1, 10));
        }
        // 10 successes at limit ~10: about one more.
        assert_eq!(e.limit(), 10);
        assert!((e.estimate() - 10.95).abs() < 0.05, "{}", e.estimate());
        for _ in 0..11 {
            e.sample(ok(0, 1, 10));
        }
        assert_eq!(e.limit(), 11);
    }

    #[test]
    fn aimd_does_not_grow_while_the_limit_is_not_used() {
        let mut e = Estimator::new(Aimd::new().into(), 1, 100, 10);
        for _ in 0..1000 {
            e.sample(ok(0, 1, 4));
        }
        assert_eq!(e.estimate(), 10.0);
    }

    #[test]
    fn aimd_backs_off_on_a_drop_and_on_a_slow_call() {
        let mut e = Estimator::new(
            Aimd::new().timeout(Duration::from_millis(50)).into(),
            2,
            100,
            10,
        );
        e.sample(Sample {
            dropped: true,
            ..ok(0, 1, 10)
        });
        assert_eq!(e.estimate(), 9.0);
        assert!(e.sample(ok(0, 51, 10)), "slow: a drop");
        assert!((e.estimate() - 8.1).abs() < 1e-9);
        // Exactly the timeout is not slow.
        e.sample(ok(0, 50, 1));
        assert!((e.estimate() - 8.1).abs() < 1e-9);
        for _ in 0..100 {
            e.drop_once();
        }
        assert_eq!(e.limit(), 2, "never under the minimum");
    }

    #[test]
    fn gradient_shrinks_when_latency_queues_and_grows_when_it_does_not() {
        let g = Gradient::new().queue(2.0).measure_every(1);
        let mut e = Estimator::new(g.into(), 1, 1000, 50);
        // Unloaded: 10 ms; the limit grows by the queue, smoothed, over a
        // limit's worth of calls.
        e.sample(ok(0, 10, 50));
        assert!((e.estimate() - 50.008).abs() < 1e-9, "{}", e.estimate());
        assert_eq!(e.long_rtt(), Some(Duration::from_millis(10)));
        // Queueing: 40 ms calls; the short-term average climbs, the limit falls.
        for i in 0..200 {
            e.sample(ok(1 + i, 40, 60));
        }
        assert!(e.limit() < 40, "{}", e.estimate());
        assert_eq!(e.long_rtt(), Some(Duration::from_millis(10)));
        assert!(e.short_rtt().unwrap() > Duration::from_millis(35));
    }

    #[test]
    fn gradient_forgets_the_long_term_minimum_after_the_window() {
        let g = Gradient::new().long_window(Duration::from_secs(2));
        let mut e = Estimator::new(g.into(), 1, 100, 10);
        e.sample(ok(0, 10, 1));
        e.sample(ok(999, 20, 1));
        assert_eq!(e.long_rtt(), Some(Duration::from_millis(10)));
        // The second half-window: the first one's minimum is still in.
        e.sample(ok(1_500, 20, 1));
        assert_eq!(e.long_rtt(), Some(Duration::from_millis(10)));
        // The third: only the second's.
        e.sample(ok(2_500, 30, 1));
        assert_eq!(e.long_rtt(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn every_setting_is_checked() {
        let bad: [(Algorithm, &str); 10] = [
            (Aimd::new().increase(0.0).into(), "adaptive.aimd.increase"),
            (
                Aimd::new().increase(f64::NAN).into(),
                "adaptive.aimd.increase",
            ),
            (
                Aimd::new().backoff_ratio(1.0).into(),
                "adaptive.aimd.backoff_ratio",
            ),
            (
                Aimd::new().timeout(Duration::ZERO).into(),
                "adaptive.aimd.timeout",
            ),
            (
                Gradient::new().tolerance(0.9).into(),
                "adaptive.gradient.tolerance",
            ),
            (
                Gradient::new().smoothing(0.0).into(),
                "adaptive.gradient.smoothing",
            ),
            (
                Gradient::new().queue(f64::INFINITY).into(),
                "adaptive.gradient.queue",
            ),
            (
                Gradient::new().short_window(0).into(),
                "adaptive.gradient.short_window",
            ),
            (
                Gradient::new().measure_every(0).into(),
                "adaptive.gradient.measure_every",
            ),
            (
                Gradient::new().long_window(Duration::ZERO).into(),
                "adaptive.gradient.long_window",
            ),
        ];
        for (algorithm, field) in bad {
            assert_eq!(algorithm.check().unwrap_err().field(), field);
        }
        assert!(Algorithm::from(Aimd::new()).check().is_ok());
        assert!(Algorithm::from(Gradient::new()).check().is_ok());
        assert!(Algorithm::from(Gradient::new().backoff_ratio(0.4))
            .check()
            .is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn algorithm() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            (
                0.01f64..50.0,
                0.5f64..0.999,
                proptest::option::of(1u64..10_000)
            )
                .prop_map(|(inc, ratio, timeout)| {
                    let a = Aimd::new().increase(inc).backoff_ratio(ratio);
                    match timeout {
                        Some(ms) => a.timeout(Duration::from_millis(ms)).into(),
                        None => a.into(),
                    }
                }),
            (
                1.0f64..10.0,
                0.001f64..=1.0,
                proptest::option::of(0.0f64..1_000.0),
                0.5f64..0.999,
                1u32..1_000,
                1u64..100_000,
                1u32..100,
            )
                .prop_map(|(tol, smoothing, queue, ratio, short, long_ms, every)| {
                    let g = Gradient::new()
                        .tolerance(tol)
                        .smoothing(smoothing)
                        .backoff_ratio(ratio)
                        .short_window(short)
                        .measure_every(every)
                        .long_window(Duration::from_millis(long_ms));
                    match queue {
                        Some(q) => g.queue(q).into(),
                        None => g.into(),
                    }
                }),
        ]
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            proptest::option::of(prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()]),
            any::<bool>(),
            prop_oneof![Just(0usize), Just(usize::MAX), 0usize..10_000],
        )
            .prop_map(|(now_ns, rtt_ns, dropped, in_flight)| Sample {
                now_ns,
                rtt_ns,
                dropped,
                in_flight,
            })
    }

    proptest! {
        /// Whatever the settings and the samples (zero and huge RTTs,
        /// clocks going back, any number in flight), the limit stays in
        /// `[min, max]` and is a finite number.
        #[test]
        fn the_limit_never_leaves_its_bounds(
            algorithm in algorithm(),
            min in 1usize..1_000,
            span in 0usize..100_000,
            initial in any::<usize>(),
            samples in proptest::collection::vec(sample(), 1..300),
        ) {
            prop_assert!(algorithm.check().is_ok());
            let max = min + span;
            let mut e = Estimator::new(algorithm, min, max, initial);
            for s in samples {
                if s.in_flight % 7 == 0 {
                    e.drop_once();
                }
                let _ = e.sample(s);
                prop_assert!(e.estimate().is_finite());
                prop_assert!((min..=max).contains(&e.limit()), "{} not in [{min}, {max}]", e.estimate());
            }
        }
    }
}
