//! The [`Deadline`] of a whole call, carried with the request.
//!
//! A deadline is the instant by which a call — every attempt and every
//! backoff sleep included — must be finished. The layer that bounds the whole
//! call sets it; the layers inside read it and shrink to what is left, without
//! knowing about each other:
//!
//! - retry never sleeps past it and never starts an attempt after it;
//! - a per-attempt timeout waits at most until it;
//! - a bulkhead queue waits at most until it.
//!
//! For `http::Request<B>` the deadline lives in the request's extensions (feature
//! `http`). Other request types carry it by implementing [`CarriesDeadline`].
//!
//! ```
//! use std::time::Duration;
//! use steadfast::deadline::{CarriesDeadline, Deadline};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut req = http::Request::new(());
//! assert_eq!(req.deadline(), None);
//!
//! req.set_deadline(Deadline::after(Duration::from_secs(2)));
//! // A caller further out asks for less: the earlier deadline wins.
//! req.tighten_deadline(Deadline::after(Duration::from_secs(1)));
//! assert_eq!(req.deadline().unwrap().remaining(), Duration::from_secs(1));
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a whole call must be finished.
///
/// A thin, `Copy` wrapper around [`tokio::time::Instant`], so it follows a
/// paused test clock. Ordered: the earlier deadline is the smaller one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

/// About 30 years: what "no deadline" saturates to when an `Instant` would
/// overflow.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// A deadline `timeout` from now. Saturates (a `Duration::MAX` timeout is a
    /// deadline decades away, not a panic).
    pub fn after(timeout: Duration) -> Self {
        Self::after_from(Instant::now(), timeout)
    }

    /// A deadline `timeout` after `now`, saturating.
    pub fn after_from(now: Instant, timeout: Duration) -> Self {
        let timeout = timeout.min(FAR_FUTURE);
        Self(
            now.checked_add(timeout)
                .or_else(|| now.checked_add(Duration::from_secs(86_400)))
                .unwrap_or(now),
        )
    }

    /// The instant itself.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// Time left from now; zero once the deadline has passed.
    pub fn remaining(self) -> Duration {
        self.remaining_at(Instant::now())
    }

    /// Time left at `now`; zero once the deadline has passed.
    pub fn remaining_at(self, now: Instant) -> Duration {
        self.0.saturating_duration_since(now)
    }

    /// `true` once the deadline has passed.
    pub fn is_expired(self) -> bool {
        self.is_expired_at(Instant::now())
    }

    /// `true` when the deadline is at or before `now`.
    pub fn is_expired_at(self, now: Instant) -> bool {
        self.0 <= now
    }

    /// The earlier of `self` and `other`.
    pub fn earliest(self, other: Option<Deadline>) -> Deadline {
        match other {
            Some(other) if other < self => other,
            _ => self,
        }
    }
}

/// A request that can carry a [`Deadline`].
///
/// Implemented for `http::Request<B>` (feature `http`), where the deadline is
/// kept in the request's extensions. Implement it for your own request type
/// to let the deadline layer and retry see it.
///
/// ```
/// use steadfast::deadline::{CarriesDeadline, Deadline};
///
/// struct Query {
///     sql: String,
///     deadline: Option<Deadline>,
/// }
///
/// impl CarriesDeadline for Query {
///     fn deadline(&self) -> Option<Deadline> {
///         self.deadline
///     }
///     fn set_deadline(&mut self, deadline: Deadline) {
///         self.deadline = Some(deadline);
///     }
/// }
/// # let _ = |q: Query| q.sql;
/// ```
pub trait CarriesDeadline {
    /// The deadline the request carries, if any.
    fn deadline(&self) -> Option<Deadline>;

    /// Sets the deadline, replacing any earlier one.
    fn set_deadline(&mut self, deadline: Deadline);

    /// Sets `deadline` unless the request already carries an earlier one;
    /// returns the deadline in force.
    fn tighten_deadline(&mut self, deadline: Deadline) -> Deadline {
        let effective = deadline.earliest(self.deadline());
        self.set_deadline(effective);
        effective
    }
}

#[cfg(feature = "http")]
impl<B> CarriesDeadline for http::Request<B> {
    #[inline]
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    #[inline]
    fn set_deadline(&mut self, deadline: Deadline) {
        self.extensions_mut().insert(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn saturates_and_orders() {
        let now = Instant::now();
        let far = Deadline::after_from(now, Duration::MAX);
        assert!(far.remaining_at(now) >= Duration::from_secs(86_400));
        let near = Deadline::after_from(now, Duration::from_secs(1));
        assert!(near < far);
        assert_eq!(far.earliest(Some(near)), near);
        assert_eq!(near.earliest(Some(far)), near);
        assert_eq!(near.earliest(None), near);
        assert!(!near.is_expired_at(now));
        assert!(near.is_expired_at(now + Duration::from_secs(1)));
        assert_eq!(
            near.remaining_at(now + Duration::from_secs(5)),
            Duration::ZERO
        );
    }
}
