//! [`FallbackHandle`] and [`FallbackSnapshot`]: how often the fallback ran,
//! and how it went.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// What a fallback counts. Updated on the failure paths only.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    served: AtomicU64,
    failed: AtomicU64,
    declined: AtomicU64,
}

/// How one run of the fallback ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ran {
    Served,
    Failed,
    Declined,
}

impl Stats {
    pub(crate) fn count(&self, ran: Ran) {
        let counter = match ran {
            Ran::Served => &self.served,
            Ran::Failed => &self.failed,
            Ran::Declined => &self.declined,
        };
        counter.fetch_add(1, Relaxed);
    }
}

/// Reads a fallback's counters; from [`FallbackLayer::pair`](super::FallbackLayer::pair)
/// or the preset's [`ResilienceHandle::fallback`](crate::stack::ResilienceHandle::fallback).
/// Clones read the same counters.
#[derive(Clone)]
pub struct FallbackHandle {
    stats: Arc<Stats>,
}

impl FallbackHandle {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The counters, read now.
    pub fn snapshot(&self) -> FallbackSnapshot {
        FallbackSnapshot {
            served: self.stats.served.load(Relaxed),
            failed: self.stats.failed.load(Relaxed),
            declined: self.stats.declined.load(Relaxed),
        }
    }
}

impl fmt::Debug for FallbackHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FallbackHandle")
            .field(&self.snapshot())
            .finish()
    }
}

/// A fallback's counters at one moment; from [`FallbackHandle::snapshot`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackSnapshot {
    /// Failed calls the fallback answered.
    pub served: u64,
    /// Runs of the fallback that failed or panicked
    /// ([`FallbackFailed`](super::error::FallbackFailed)).
    pub failed: u64,
    /// Runs in which the fallback had nothing to serve (a [`LastGood`](super)
    /// with no fresh entry): the caller got the original error.
    pub declined: u64,
}

impl fmt::Display for FallbackSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "served {} | failed {} | declined {}",
            self.served, self.failed, self.declined
        )
    }
}
