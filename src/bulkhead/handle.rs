use std::fmt;
use std::sync::Arc;

use super::error::FullReason;
use super::permit::Shared;
use super::semaphore::MAX_PERMITS;
use crate::error::InvalidConfig;

/// A handle on one bulkhead: its occupancy, its counters, and its limit.
///
/// Cheap to clone; every clone looks at the same bulkhead. Reading takes no
/// lock.
#[derive(Clone)]
pub struct BulkheadHandle {
    shared: Arc<Shared>,
}

impl BulkheadHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bulkhead's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// Calls holding a slot now: running in the inner service, or (with
    /// `hold_until_body_end`) streaming their response body, or handed a
    /// slot from the queue and about to start.
    pub fn in_flight(&self) -> usize {
        self.shared.sem.in_flight()
    }

    /// Calls waiting in the queue for a slot now.
    pub fn waiting(&self) -> usize {
        self.shared.sem.waiting()
    }

    /// The limit on calls in flight.
    pub fn max_concurrent(&self) -> usize {
        self.shared.sem.limit()
    }

    /// Calls rejected with [`BulkheadFull`](super::error::BulkheadFull) for
    /// `reason`, since the bulkhead was made.
    pub fn rejected(&self, reason: FullReason) -> u64 {
        let s = self.shared.totals();
        match reason {
            FullReason::QueueFull => s.queue_full,
            FullReason::WaitTimedOut => s.wait_timed_out,
        }
    }

    /// Changes the limit on calls in flight, for every service of the
    /// layer, at once.
    ///
    /// Raising it lets waiting calls in, oldest first. Lowering it never
    /// cuts a call short: while more calls are in flight than the new
    /// limit, finished calls free no slot, until the count is under it.
    /// This is also the hook for an adaptive limit (AIMD, Gradient) that
    /// moves the limit as latency and errors change.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `bulkhead.max_concurrent` for 0 or more than
    /// `u32::MAX`; the limit is then unchanged.
    ///
    /// ```
    /// use steadfast::bulkhead::BulkheadLayer;
    ///
    /// # fn main() -> Result<(), steadfast::InvalidConfig> {
    /// let layer = BulkheadLayer::new(10)?;
    /// let handle = layer.handle();
    /// handle.set_max_concurrent(4)?;
    /// assert_eq!(handle.max_concurrent(), 4);
    /// assert!(handle.set_max_concurrent(0).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_max_concurrent(&self, max_concurrent: usize) -> Result<(), InvalidConfig> {
        check_max_concurrent(max_concurrent)?;
        self.shared.sem.set_limit(max_concurrent);
        Ok(())
    }

    /// The bulkhead's counters and occupancy.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let s = self.shared.totals();
        BulkheadSnapshot {
            name: self.shared.name.clone(),
            max_concurrent: self.max_concurrent(),
            in_flight: self.in_flight(),
            waiting: self.waiting(),
            admitted: s.admitted,
            waited: s.waited,
            rejected_queue_full: s.queue_full,
            rejected_wait_timed_out: s.wait_timed_out,
            cancelled_waiting: s.cancelled,
        }
    }
}

/// The rule for `max_concurrent`, shared by the builder and the handle.
pub(crate) fn check_max_concurrent(n: usize) -> Result<(), InvalidConfig> {
    if n == 0 {
        return Err(InvalidConfig::new(
            "bulkhead.max_concurrent",
            "must be at least 1, got 0",
        ));
    }
    if n > MAX_PERMITS {
        return Err(InvalidConfig::new(
            "bulkhead.max_concurrent",
            format!("must be at most {MAX_PERMITS}, got {n}"),
        ));
    }
    Ok(())
}

impl fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadHandle")
            .field("name", &self.name())
            .field("max_concurrent", &self.max_concurrent())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A bulkhead's counters at one moment, from [`BulkheadHandle::snapshot`].
///
/// Counters count since the bulkhead was made. The fields are read one
/// after another without a lock: while calls come and go, they may be a
/// moment apart.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// The bulkhead's name, shared with the bulkhead (no copy).
    pub name: Option<Arc<str>>,
    /// The limit on calls in flight.
    pub max_concurrent: usize,
    /// Calls holding a slot.
    pub in_flight: usize,
    /// Calls waiting in the queue.
    pub waiting: usize,
    /// Calls that got a slot, at once or after waiting.
    pub admitted: u64,
    /// Of `admitted`, the calls that waited in the queue first.
    pub waited: u64,
    /// Calls rejected because they could not wait
    /// ([`FullReason::QueueFull`]).
    pub rejected_queue_full: u64,
    /// Calls rejected after waiting too long ([`FullReason::WaitTimedOut`]).
    pub rejected_wait_timed_out: u64,
    /// Waiting calls whose future was dropped before they got a slot.
    pub cancelled_waiting: u64,
}

impl BulkheadSnapshot {
    /// Every rejection, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_queue_full
            .saturating_add(self.rejected_wait_timed_out)
    }
}

impl fmt::Display for BulkheadSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "{}/{} in flight, {} waiting | admitted {} (waited {}) | rejected: queue full {}, wait timed out {} | cancelled while waiting {}",
            self.in_flight,
            self.max_concurrent,
            self.waiting,
            self.admitted,
            self.waited,
            self.rejected_queue_full,
            self.rejected_wait_timed_out,
            self.cancelled_waiting,
        )
    }
}
