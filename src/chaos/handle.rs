use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::metrics::{sum, thread_stripe, Count, Striped};

/// One stripe of the layer's counters.
#[derive(Debug)]
pub(super) struct Counters {
    passed: Count,
    delayed: Count,
    errors: Count,
    responses: Count,
    hangs: Count,
    refused: Count,
    reset: Count,
    /// Calls that got each window's fault, in declaration order.
    windows: Box<[Count]>,
}

/// What the layer decided for one call, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Passed,
    Error,
    Response,
    Hang,
    Refused,
    Reset,
}

/// The state every service of one layer shares with its handles.
pub(super) struct Stats {
    pub(super) name: Option<Cow<'static, str>>,
    /// Calls made; call `n` draws its faults from stream `n`.
    calls: AtomicU64,
    counters: Striped<Counters>,
}

impl Stats {
    pub(super) fn new(name: Option<Cow<'static, str>>, windows: usize) -> Self {
        Self {
            name,
            calls: AtomicU64::new(0),
            counters: Striped::from_fn(|| Counters {
                passed: Count::default(),
                delayed: Count::default(),
                errors: Count::default(),
                responses: Count::default(),
                hangs: Count::default(),
                refused: Count::default(),
                reset: Count::default(),
                windows: (0..windows).map(|_| Count::default()).collect(),
            }),
        }
    }

    /// The number of the next call.
    #[inline]
    pub(super) fn next_call(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed)
    }

    #[inline]
    pub(super) fn record(&self, decision: Decision, delayed: bool, window: Option<usize>) {
        let stripe = thread_stripe();
        let c = self.counters.get(stripe);
        let count = match decision {
            Decision::Passed => &c.passed,
            Decision::Error => &c.errors,
            Decision::Response => &c.responses,
            Decision::Hang => &c.hangs,
            Decision::Refused => &c.refused,
            Decision::Reset => &c.reset,
        };
        count.incr(stripe);
        if delayed {
            c.delayed.incr(stripe);
        }
        if let Some(w) = window.and_then(|w| c.windows.get(w)) {
            w.incr(stripe);
        }
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("name", &self.name)
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A handle on one [`FaultLayer`](super::FaultLayer): its counters.
///
/// Cheap to clone; every clone looks at the same layer, and reading takes
/// no lock. See the module docs.
#[derive(Clone)]
pub struct FaultHandle {
    stats: Arc<Stats>,
}

impl FaultHandle {
    pub(super) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }

    /// The layer's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.stats.name.as_deref()
    }

    /// What the layer has injected so far.
    pub fn snapshot(&self) -> FaultSnapshot {
        let counters = &self.stats.counters;
        let windows = counters.iter().next().map_or(0, |c| c.windows.len());
        FaultSnapshot {
            name: self.name().map(str::to_owned),
            calls: self.stats.calls.load(Ordering::Relaxed),
            passed: sum(counters, |c| &c.passed),
            delayed: sum(counters, |c| &c.delayed),
            errors: sum(counters, |c| &c.errors),
            responses: sum(counters, |c| &c.responses),
            hangs: sum(counters, |c| &c.hangs),
            refused: sum(counters, |c| &c.refused),
            reset: sum(counters, |c| &c.reset),
            windows: (0..windows)
                .map(|w| sum(counters, |c| &c.windows[w]))
                .collect(),
        }
    }
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// What a [`FaultLayer`](super::FaultLayer) has injected, from
/// [`FaultHandle::snapshot`].
///
/// Each call is counted once, in `call`, when its faults are chosen — a
/// call whose future is dropped before the fault took effect is counted
/// all the same — so `calls = passed + errors + responses + hangs +
/// refused + reset` once no call is being decided. The fields are read
/// one after another without a lock: while calls are made they may be a
/// moment apart.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct FaultSnapshot {
    /// The layer's name.
    pub name: Option<String>,
    /// Calls made through the layer.
    pub calls: u64,
    /// Calls handed to the inner service whose result is returned as it
    /// is (delayed or not).
    pub passed: u64,
    /// Calls delayed before anything else happened to them: by the layer's
    /// latency or by a [`Fault::delay`](super::Fault::delay).
    pub delayed: u64,
    /// Calls failed with a [`Fault::error`](super::Fault::error).
    pub errors: u64,
    /// Calls answered by the layer itself ([`Fault::respond`](super::Fault::respond),
    /// and with feature `http` `Fault::http_status` and `Fault::grpc_status`).
    pub responses: u64,
    /// Calls that hang ([`Fault::hang`](super::Fault::hang)).
    pub hangs: u64,
    /// Calls failed as refused connections ([`Fault::refused`](super::Fault::refused)).
    pub refused: u64,
    /// Calls sent and then failed as reset connections
    /// ([`Fault::reset`](super::Fault::reset)).
    pub reset: u64,
    /// Calls that got each [window](super::FaultBuilder::window)'s fault,
    /// in the order the windows were added: every call made in the window,
    /// or the window's rate of them.
    pub windows: Vec<u64>,
}

impl FaultSnapshot {
    /// The calls that got a fault other than a delay.
    pub fn injected(&self) -> u64 {
        self.errors
            .saturating_add(self.responses)
            .saturating_add(self.hangs)
            .saturating_add(self.refused)
            .saturating_add(self.reset)
    }
}

impl fmt::Display for FaultSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "{} calls | passed {} (delayed {}) | errors {}, responses {}, hangs {}, refused {}, reset {}",
            self.calls,
            self.passed,
            self.delayed,
            self.errors,
            self.responses,
            self.hangs,
            self.refused,
            self.reset,
        )?;
        if !self.windows.is_empty() {
            f.write_str(" | in windows:")?;
            for w in &self.windows {
                write!(f, " {w}")?;
            }
        }
        Ok(())
    }
}
