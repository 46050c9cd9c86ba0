use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::algorithm::Algorithm;
use super::core::Core;
use crate::bulkhead::BulkheadHandle;

/// A handle on one adaptive limit: the limit, the RTT estimates, the drops.
///
/// Cheap to clone; every clone looks at the same limit. Reading takes no
/// lock.
#[derive(Clone)]
pub struct AdaptiveHandle {
    core: Arc<Core>,
}

impl AdaptiveHandle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The limit's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.core.name.as_deref()
    }

    /// The limit the bulkhead was last given: the estimate rounded down.
    pub fn limit(&self) -> usize {
        self.core.limit()
    }

    /// The estimate, fraction included (AIMD grows it a fraction per call).
    pub fn estimate(&self) -> f64 {
        self.core.estimate()
    }

    /// The short-term RTT (the gradient's recent average), once measured.
    pub fn short_rtt(&self) -> Option<Duration> {
        self.core.short_rtt()
    }

    /// The long-term RTT (the gradient's windowed minimum), once measured.
    pub fn long_rtt(&self) -> Option<Duration> {
        self.core.long_rtt()
    }

    /// Calls that ended as drops since the layer was built: failures
    /// (timeouts included), and successes slower than AIMD's
    /// [`timeout`](super::Aimd::timeout).
    pub fn drops(&self) -> u64 {
        self.core.drops()
    }

    /// The algorithm and its settings.
    pub fn algorithm(&self) -> Algorithm {
        self.core.algorithm
    }

    /// The bulkhead whose limit this one moves.
    pub fn bulkhead(&self) -> &BulkheadHandle {
        &self.core.bulkhead
    }

    /// Everything above at one moment.
    pub fn snapshot(&self) -> AdaptiveSnapshot {
        let core = &*self.core;
        AdaptiveSnapshot {
            name: core.name.clone(),
            limit: core.limit(),
            estimate: core.estimate(),
            min_limit: core.min_limit,
            max_limit: core.max_limit,
            in_flight: core.bulkhead.in_flight(),
            short_rtt: core.short_rtt(),
            long_rtt: core.long_rtt(),
            samples: core.samples(),
            skipped: core.skipped(),
            drops: core.drops(),
        }
    }
}

impl fmt::Debug for AdaptiveHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveHandle")
            .field("name", &self.name())
            .field("limit", &self.limit())
            .field("short_rtt", &self.short_rtt())
            .field("long_rtt", &self.long_rtt())
            .field("drops", &self.drops())
            .finish()
    }
}

/// An adaptive limit at one moment, from [`AdaptiveHandle::snapshot`].
///
/// The fields are read one after another without a lock: while calls
/// finish, they may be a moment apart.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveSnapshot {
    /// The limit's name, shared with the layer (no copy).
    pub name: Option<Arc<str>>,
    /// The bulkhead's limit as last set: the estimate rounded down.
    pub limit: usize,
    /// The estimate, fraction included.
    pub estimate: f64,
    /// The lower bound.
    pub min_limit: usize,
    /// The upper bound.
    pub max_limit: usize,
    /// Calls holding a slot of the bulkhead.
    pub in_flight: usize,
    /// The short-term RTT, once measured.
    pub short_rtt: Option<Duration>,
    /// The long-term RTT, once measured.
    pub long_rtt: Option<Duration>,
    /// Finished calls the estimate took into account.
    pub samples: u64,
    /// Successful calls left out because another call was updating the
    /// estimate at that moment (callers never wait for it).
    pub skipped: u64,
    /// Calls that ended as drops.
    pub drops: u64,
}

impl fmt::Display for AdaptiveSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        write!(
            f,
            "limit {} ({:.2}) in [{}, {}], {} in flight | rtt short {:.2} ms, long {:.2} ms | samples {}, skipped {}, drops {}",
            self.limit,
            self.estimate,
            self.min_limit,
            self.max_limit,
            self.in_flight,
            ms(self.short_rtt),
            ms(self.long_rtt),
            self.samples,
            self.skipped,
            self.drops,
        )
    }
}
