//! Backoff schedules: how long to wait before each retry.
//!
//! A [`Backoff`] is a plain value: a *kind* that says how the delay grows,
//! a *cap* ([`max_delay`](Backoff::max_delay)) and a [`Jitter`] that spreads
//! the delays at random. Retry `n` counts from 1 (the first retry; `0` is
//! read as `1`).
//!
//! | kind | delay before retry `n` |
//! |---|---|
//! | [`exponential(base, factor)`](Backoff::exponential) | `base × factor^(n-1)` |
//! | [`linear(base, step)`](Backoff::linear) | `base + step × (n-1)` |
//! | [`fixed(delay)`](Backoff::fixed) | `delay` (a zero delay retries at once) |
//!
//! Every delay is capped at `max_delay`, which defaults to the larger of
//! 5 s and the kind's first delay. The arithmetic saturates: retry
//! `u32::MAX`, a factor of `1e300` or a base of [`Duration::MAX`] give the
//! cap, never an overflow or a panic.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::retry::backoff::{Backoff, Jitter};
//!
//! let ms = Duration::from_millis;
//! let backoff = Backoff::exponential(ms(100), 2.0).max_delay(ms(1_000));
//! let plain: Vec<_> = backoff.delays(7).take(6).collect();
//! assert_eq!(plain, [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]);
//!
//! // The same schedule with full jitter: each delay is drawn from [0, d].
//! // The same seed always gives the same delays.
//! let jittered = backoff.jitter(Jitter::Full);
//! for (d, max) in jittered.delays(7).take(5).zip(&plain) {
//!     println!("wait {d:?} (at most {max:?})");
//!     assert!(d <= *max);
//! }
//! assert!(jittered.delays(7).take(5).eq(jittered.delays(7).take(5)));
//! ```
//!
//! # Why jitter
//!
//! When a backend fails, every client that was talking to it fails at the
//! same moment. Without jitter they all retry on the same schedule, so the
//! retries arrive in synchronized waves that can knock over a backend that
//! is just recovering. Jitter spreads each wave out over time. The default
//! is [`Jitter::None`] so that schedules are exact and easy to reason about;
//! in production, [`Jitter::Full`] is recommended (it spreads load best, see
//! the AWS Architecture Blog post "Exponential Backoff And Jitter").
//!
//! | jitter | delay for an un-jittered delay `d` |
//! |---|---|
//! | [`None`](Jitter::None) | `d` |
//! | [`Full`](Jitter::Full) | uniform in `[0, d]` |
//! | [`Equal`](Jitter::Equal) | `d/2` + uniform in `[0, d/2]` |
//! | [`Proportional(f)`](Jitter::Proportional) | `d` × uniform in `[1-f, 1+f]` (gRPC uses `f = 0.2`) |
//! | [`Decorrelated`](Jitter::Decorrelated) | uniform in `[b, max(b, 3 × previous)]`, `b` = the first delay |
//!
//! The cap applies **after** jitter: no delay ever exceeds `max_delay`,
//! even when [`Proportional`](Jitter::Proportional) stretches it upwards.
//! Delays are drawn over whole nanoseconds; a delay longer than
//! `u64::MAX` nanoseconds (about 584 years) is jittered as if it were that
//! long.
//!
//! The random numbers come from any [`rand::Rng`]: [`Backoff::delays`] seeds
//! a [`SmallRng`], and [`Backoff::delays_with_rng`] or [`Backoff::delay`]
//! take yours, so tests can make jitter deterministic.
//!
//! [`SmallRng`]: rand::rngs::SmallRng

use std::fmt;
use std::iter::FusedIterator;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::error::InvalidConfig;

/// The default cap on a delay, unless the kind's first delay is larger.
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

/// The longest duration that jitter draws over: `u64::MAX` nanoseconds.
const MAX_JITTERED: Duration = Duration::from_nanos(u64::MAX);

/// A backoff schedule: how a delay grows with each retry, a cap, and jitter.
///
/// See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    kind: Kind,
    max_delay: Duration,
    jitter: Jitter,
}

/// How the un-jittered delay grows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Exponential { base: Duration, factor: f64 },
    Linear { base: Duration, step: Duration },
    Fixed { delay: Duration },
}

/// Random spread applied to each delay of a [`Backoff`].
///
/// `d` is the un-jittered delay ([`Backoff::base_delay`]); every result is
/// then capped at the backoff's `max_delay`. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// No jitter: exactly `d`. The default.
    None,
    /// Uniform in `[0, d]`: spreads retries the most. Recommended.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`: never less than half the delay.
    Equal,
    /// `d` times uniform in `[1-f, 1+f]`; `f` must be in `[0, 1]`. gRPC's
    /// connection backoff uses `0.2`.
    Proportional(f64),
    /// AWS's "decorrelated jitter": uniform in `[b, max(b, 3 × previous)]`,
    /// where `b` is the first delay ([`Backoff::base_delay`]`(1)`) and
    /// `previous` the previous jittered delay (zero before the first retry,
    /// so the first delay is `b`). Each delay grows from the last one rather
    /// than from the retry number, so the kind only supplies `b`.
    Decorrelated,
}

// === impl Backoff ===

impl Backoff {
    /// Exponential backoff: `base × factor^(n-1)` before retry `n`.
    ///
    /// `base` must be greater than zero and `factor` a finite number of at
    /// least 1.0 (`1.0` gives a fixed delay).
    pub const fn exponential(base: Duration, factor: f64) -> Self {
        Self::with_kind(Kind::Exponential { base, factor }, base)
    }

    /// Linear backoff: `base + step × (n-1)` before retry `n`.
    pub const fn linear(base: Duration, step: Duration) -> Self {
        Self::with_kind(Kind::Linear { base, step }, base)
    }

    /// The same `delay` before every retry.
    ///
    /// [`Duration::ZERO`] is allowed: the retries are immediate (and may
    /// then use a `max_delay` of zero too).
    pub const fn fixed(delay: Duration) -> Self {
        Self::with_kind(Kind::Fixed { delay }, delay)
    }

    const fn with_kind(kind: Kind, first: Duration) -> Self {
        let max_delay = if first.as_nanos() > DEFAULT_MAX_DELAY.as_nanos() {
            first
        } else {
            DEFAULT_MAX_DELAY
        };
        Self {
            kind,
            max_delay,
            jitter: Jitter::None,
        }
    }

    /// Caps every delay, after jitter, at `max`.
    ///
    /// Defaults to the larger of 5 s and the kind's first delay. It must be
    /// at least that first delay, and greater than zero unless every delay
    /// of the kind is zero.
    pub const fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Spreads the delays at random; see [`Jitter`].
    ///
    /// Defaults to [`Jitter::None`]; [`Jitter::Full`] is recommended when
    /// many clients may fail at the same moment.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The kind's first delay: `base` for exponential and linear backoff,
    /// `delay` for a fixed one (not capped).
    pub const fn base(&self) -> Duration {
        match self.kind {
            Kind::Exponential { base, .. } | Kind::Linear { base, .. } => base,
            Kind::Fixed { delay } => delay,
        }
    }

    /// The cap on every delay, as set with [`max_delay`](Self::max_delay)
    /// or defaulted.
    pub const fn cap(&self) -> Duration {
        self.max_delay
    }

    /// The jitter, as set with [`jitter`](Self::jitter) (default
    /// [`Jitter::None`]).
    pub const fn jitter_mode(&self) -> Jitter {
        self.jitter
    }

    /// Un-jittered delay before retry `retry` (1 = first retry; 0 treated
    /// as 1), capped at `max_delay`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use steadfast::retry::backoff::Backoff;
    /// let b = Backoff::linear(Duration::from_secs(1), Duration::from_secs(2));
    /// assert_eq!(b.base_delay(3), Duration::from_secs(5));
    /// assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(5)); // the default cap
    /// ```
    pub fn base_delay(&self, retry: u32) -> Duration {
        let cap = self.max_delay;
        let steps = retry.max(1) - 1;
        match self.kind {
            Kind::Fixed { delay } => delay.min(cap),
            Kind::Linear { base, step } => step
                .checked_mul(steps)
                .and_then(|grow| base.checked_add(grow))
                .map_or(cap, |d| d.min(cap)),
            Kind::Exponential { base, factor } => {
                if steps == 0 {
                    return base.min(cap);
                }
                // `powi` takes an i32; past a few thousand steps any factor
                // above 1 has reached infinity anyway.
                let exp = i32::try_from(steps).unwrap_or(i32::MAX);
                let multiplier = factor.powi(exp);
                if multiplier == 1.0 {
                    return base.min(cap); // exact, with no round trip through f64
                }
                secs_to_duration(base.as_secs_f64() * multiplier, cap)
            }
        }
    }

    /// Jittered delay before retry `retry`, capped at `max_delay`.
    ///
    /// `previous` is the previous jittered delay ([`Duration::ZERO`] for
    /// the first retry); only [`Jitter::Decorrelated`] uses it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use steadfast::retry::backoff::{Backoff, Jitter};
    /// use rand::{rngs::SmallRng, SeedableRng};
    ///
    /// let b = Backoff::fixed(Duration::from_secs(2)).jitter(Jitter::Equal);
    /// let mut rng = SmallRng::seed_from_u64(1);
    /// let d = b.delay(1, Duration::ZERO, &mut rng);
    /// assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
    /// ```
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, previous: Duration, rng: &mut R) -> Duration {
        let jittered = match self.jitter {
            Jitter::None => self.base_delay(retry),
            Jitter::Full => uniform(rng, Duration::ZERO, jitter_span(self.base_delay(retry))),
            Jitter::Equal => {
                let d = jitter_span(self.base_delay(retry));
                let half = d / 2;
                half.saturating_add(uniform(rng, Duration::ZERO, d.saturating_sub(half)))
            }
            Jitter::Proportional(f) => {
                let d = jitter_span(self.base_delay(retry));
                let (lo, hi) = proportional_bounds(d, f);
                uniform(rng, lo, hi)
            }
            Jitter::Decorrelated => {
                let first = jitter_span(self.base_delay(1));
                let hi = jitter_span(previous.saturating_mul(3)).max(first);
                uniform(rng, first, hi)
            }
        };
        jittered.min(self.max_delay)
    }

    /// The schedule as an endless iterator of jittered delays, from retry 1
    /// on, with a [`SmallRng`] seeded from `seed`: the same seed always
    /// gives the same delays.
    ///
    /// [`SmallRng`]: rand::rngs::SmallRng
    pub fn delays(&self, seed: u64) -> Delays {
        self.delays_with_rng(SmallRng::seed_from_u64(seed))
    }

    /// The schedule as an endless iterator of jittered delays, from retry 1
    /// on, drawing from `rng`.
    pub fn delays_with_rng<R: Rng>(&self, rng: R) -> Delays<R> {
        Delays {
            backoff: *self,
            rng,
            retry: 0,
            previous: Duration::ZERO,
        }
    }

    /// Checks the settings; field names are `<field_prefix>.base`,
    /// `.factor`, `.max_delay` and `.jitter`.
    // Called by the retry layer's config builder, which lands separately.
    #[allow(dead_code)]
    pub(crate) fn validate(&self, field_prefix: &'static str) -> Result<(), InvalidConfig> {
        let err = |name, reason: String| InvalidConfig::new(field(field_prefix, name), reason);
        let (first, never_waits) = match self.kind {
            Kind::Exponential { base, factor } => {
                if base.is_zero() {
                    return Err(err("base", "must be greater than zero".into()));
                }
                if !factor.is_finite() {
                    return Err(err("factor", format!("must be finite, got {factor}")));
                }
                if factor < 1.0 {
                    return Err(err("factor", format!("must be at least 1.0, got {factor}")));
                }
                (base, false)
            }
            Kind::Linear { base, step } => (base, base.is_zero() && step.is_zero()),
            Kind::Fixed { delay } => (delay, delay.is_zero()),
        };
        if self.max_delay.is_zero() && !never_waits {
            return Err(err("max_delay", "must be greater than zero".into()));
        }
        if self.max_delay < first {
            let what = match self.kind {
                Kind::Fixed { .. } => "delay",
                _ => "base",
            };
            return Err(err(
                "max_delay",
                format!(
                    "must be at least the {what} ({first:?}), got {:?}",
                    self.max_delay
                ),
            ));
        }
        if let Jitter::Proportional(f) = self.jitter {
            if !(0.0..=1.0).contains(&f) {
                return Err(err(
                    "jitter",
                    format!("proportional jitter must be in [0, 1], got {f}"),
                ));
            }
        }
        Ok(())
    }
}

/// `secs` as a duration, clamped to `[0, cap]`; NaN and infinities never
/// reach [`Duration::from_secs_f64`] (which would panic).
fn secs_to_duration(secs: f64, cap: Duration) -> Duration {
    if secs.is_nan() || secs >= cap.as_secs_f64() {
        cap
    } else if secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
    }
}

/// `d`, limited to what jitter draws over (`u64::MAX` nanoseconds).
fn jitter_span(d: Duration) -> Duration {
    d.min(MAX_JITTERED)
}

/// The whole nanoseconds of `d` (at most [`MAX_JITTERED`]).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration drawn uniformly from `[lo, hi]` over whole nanoseconds; `lo`
/// when the range is empty or a single point.
fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (nanos(lo), nanos(hi));
    if hi <= lo {
        return Duration::from_nanos(lo);
    }
    Duration::from_nanos(rng.random_range(lo..=hi))
}

/// `[d × (1-f), d × (1+f)]` in whole nanoseconds, `f` clamped to `[0, 1]`
/// (NaN counts as 0); the upper bound saturates.
fn proportional_bounds(d: Duration, f: f64) -> (Duration, Duration) {
    let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
    let d = nanos(d);
    // Float-to-int `as` saturates; `min(d)` keeps the lower bound >= 0
    // whatever the rounding.
    let spread = ((d as f64 * f) as u64).min(d);
    (
        Duration::from_nanos(d - spread),
        Duration::from_nanos(d.saturating_add(spread)),
    )
}

/// `<prefix>.<name>`, the field an [`InvalidConfig`] names.
fn field(prefix: &'static str, name: &'static str) -> String {
    format!("{prefix}.{name}")
}

// === impl Delays ===

/// An endless iterator over the delays of a [`Backoff`], from retry 1 on;
/// made by [`Backoff::delays`] and [`Backoff::delays_with_rng`].
///
/// After retry `u32::MAX` it keeps yielding that retry's delay.
#[derive(Clone)]
pub struct Delays<R = SmallRng> {
    backoff: Backoff,
    rng: R,
    retry: u32,
    previous: Duration,
}

impl<R> Delays<R> {
    /// The schedule being followed.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// How many delays have been yielded so far (saturating at `u32::MAX`).
    pub fn retries(&self) -> u32 {
        self.retry
    }
}

impl<R> fmt::Debug for Delays<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delays")
            .field("backoff", &self.backoff)
            .field("retry", &self.retry)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl<R: Rng> Iterator for Delays<R> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let d = self.backoff.delay(self.retry, self.previous, &mut self.rng);
        self.previous = d;
        Some(d)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

impl<R: Rng> FusedIterator for Delays<R> {}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn check(b: Backoff) -> Result<(), InvalidConfig> {
        b.validate("retry.backoff")
    }

    fn field_of(b: Backoff) -> String {
        check(b).unwrap_err().field().to_owned()
    }

    #[test]
    fn valid_configurations_pass() {
        check(Backoff::exponential(MS * 100, 2.0)).unwrap();
        check(Backoff::exponential(MS * 100, 1.0).jitter(Jitter::Full)).unwrap();
        check(Backoff::linear(Duration::ZERO, MS * 10)).unwrap();
        check(Backoff::fixed(Duration::from_secs(60))).unwrap(); // default cap grows
        check(Backoff::fixed(Duration::ZERO)).unwrap();
        check(Backoff::fixed(Duration::ZERO).max_delay(Duration::ZERO)).unwrap();
        check(Backoff::linear(Duration::ZERO, Duration::ZERO).max_delay(Duration::ZERO)).unwrap();
        check(Backoff::fixed(MS).jitter(Jitter::Proportional(0.0))).unwrap();
        check(Backoff::fixed(MS).jitter(Jitter::Proportional(1.0))).unwrap();
        check(Backoff::exponential(Duration::MAX, 1e300)).unwrap();
    }

    #[test]
    fn factor_errors_name_the_factor() {
        let err = check(Backoff::exponential(MS, 0.5)).unwrap_err();
        assert_eq!(err.field(), "retry.backoff.factor");
        assert_eq!(err.reason(), "must be at least 1.0, got 0.5");
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -2.0, 0.0] {
            assert_eq!(
                field_of(Backoff::exponential(MS, bad)),
                "retry.backoff.factor"
            );
        }
        assert_eq!(
            check(Backoff::exponential(MS, f64::INFINITY))
                .unwrap_err()
                .reason(),
            "must be finite, got inf"
        );
    }

    #[test]
    fn exponential_base_must_be_positive() {
        let err = check(Backoff::exponential(Duration::ZERO, 2.0)).unwrap_err();
        assert_eq!(err.field(), "retry.backoff.base");
        assert_eq!(err.reason(), "must be greater than zero");
    }

    #[test]
    fn max_delay_errors_name_max_delay() {
        let err = check(Backoff::exponential(MS * 100, 2.0).max_delay(MS * 50)).unwrap_err();
        assert_eq!(err.field(), "retry.backoff.max_delay");
        assert_eq!(err.reason(), "must be at least the base (100ms), got 50ms");

        let err = check(Backoff::fixed(MS * 100).max_delay(MS)).unwrap_err();
        assert_eq!(err.reason(), "must be at least the delay (100ms), got 1ms");

        let err = check(Backoff::linear(Duration::ZERO, MS).max_delay(Duration::ZERO)).unwrap_err();
        assert_eq!(err.field(), "retry.backoff.max_delay");
        assert_eq!(err.reason(), "must be greater than zero");

        let zero_cap = Backoff::exponential(MS, 2.0).max_delay(Duration::ZERO);
        assert_eq!(field_of(zero_cap), "retry.backoff.max_delay");
    }

    #[test]
    fn jitter_errors_name_the_jitter() {
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            let b = Backoff::fixed(MS).jitter(Jitter::Proportional(bad));
            assert_eq!(field_of(b), "retry.backoff.jitter", "f = {bad}");
        }
        let err = check(Backoff::fixed(MS).jitter(Jitter::Proportional(1.5))).unwrap_err();
        assert_eq!(
            err.reason(),
            "proportional jitter must be in [0, 1], got 1.5"
        );
    }

    #[test]
    fn field_names_follow_the_prefix() {
        let b = Backoff::exponential(MS, 0.5);
        let err = b.validate("other.backoff").unwrap_err();
        assert_eq!(err.field(), "other.backoff.factor");
    }

    #[test]
    fn secs_to_duration_guards_bad_floats() {
        let cap = Duration::from_secs(10);
        assert_eq!(secs_to_duration(f64::NAN, cap), cap);
        assert_eq!(secs_to_duration(f64::INFINITY, cap), cap);
        assert_eq!(secs_to_duration(f64::NEG_INFINITY, cap), Duration::ZERO);
        assert_eq!(secs_to_duration(-1.0, cap), Duration::ZERO);
        assert_eq!(secs_to_duration(1e300, Duration::MAX), Duration::MAX);
        assert_eq!(secs_to_duration(2.5, cap), MS * 2_500);
    }

    #[test]
    fn proportional_bounds_are_symmetric_and_saturate() {
        assert_eq!(proportional_bounds(MS * 100, 0.2), (MS * 80, MS * 120));
        assert_eq!(proportional_bounds(MS * 100, 0.0), (MS * 100, MS * 100));
        assert_eq!(
            proportional_bounds(MS * 100, f64::NAN),
            (MS * 100, MS * 100)
        );
        assert_eq!(
            proportional_bounds(MS * 100, 7.0),
            (Duration::ZERO, MS * 200)
        );
        assert_eq!(proportional_bounds(MAX_JITTERED, 1.0).1, MAX_JITTERED);
    }

    #[test]
    fn invalid_settings_never_panic_when_used() {
        let mut rng = SmallRng::seed_from_u64(0);
        let odd = [
            Backoff::exponential(MS, f64::NAN),
            Backoff::exponential(MS, -3.0),
            Backoff::exponential(MS, 0.0),
            Backoff::exponential(Duration::MAX, f64::INFINITY).max_delay(Duration::ZERO),
            Backoff::fixed(Duration::MAX).jitter(Jitter::Proportional(f64::NAN)),
            Backoff::fixed(Duration::MAX).jitter(Jitter::Proportional(-5.0)),
        ];
        for b in odd {
            for retry in [0, 1, 2, 3, 1_000, u32::MAX] {
                let d = b.delay(retry, Duration::MAX, &mut rng);
                assert!(d <= b.cap(), "{b:?} retry {retry}: {d:?}");
            }
        }
    }
}
