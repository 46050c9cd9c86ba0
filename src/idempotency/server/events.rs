//! What the server layer reports: [`IdempotencyEvent`]s for its listeners
//! ([`on_event`](super::IdempotencyLayerBuilder::on_event)), and a
//! `tracing` event with the stable fields `layer`, `name`, `event` for
//! each.

use std::fmt;
use std::sync::Arc;

/// What happened; [`as_str`](Self::as_str) is the `event` field of the
/// `tracing` event and the `event` label of the exported counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdempotencyEventKind {
    /// A repeat answered with the stored response.
    Replay,
    /// A repeat answered 409: the first request with its key still ran.
    Conflict,
    /// A request answered 422: its key was used before for a different
    /// request.
    Mismatch,
    /// A new keyed request answered 503: the store was full of running
    /// claims.
    Shed,
    /// A store operation failed (a claim, renewal, release, write or read
    /// back).
    StoreError,
    /// A handler's claim was taken by another while it ran; its response
    /// is not stored.
    LeaseLost,
    /// The response of a handler that succeeded could not be stored after
    /// every attempt; the key stays claimed until the claim expires.
    StoreWriteFailure,
    /// A request finished in a task after its caller dropped it was cut
    /// off at the lock timeout.
    DetachedTimedOut,
}

impl IdempotencyEventKind {
    /// The stable name: `replay`, `conflict`, `mismatch`, `shed`,
    /// `store_error`, `lease_lost`, `store_write_failure`,
    /// `detached_timed_out`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Conflict => "conflict",
            Self::Mismatch => "mismatch",
            Self::Shed => "shed",
            Self::StoreError => "store_error",
            Self::LeaseLost => "lease_lost",
            Self::StoreWriteFailure => "store_write_failure",
            Self::DetachedTimedOut => "detached_timed_out",
        }
    }
}

impl fmt::Display for IdempotencyEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of an [`IdempotencyLayer`](super::IdempotencyLayer), handed
/// to its listeners.
#[derive(Debug, Clone)]
pub struct IdempotencyEvent {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) kind: IdempotencyEventKind,
}

impl IdempotencyEvent {
    /// The layer's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What happened.
    pub fn kind(&self) -> IdempotencyEventKind {
        self.kind
    }
}
