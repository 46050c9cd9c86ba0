//! Errors produced by the bulkhead (defined in the shared core, so that
//! other layers can recognise them).

pub use crate::rejection::{BulkheadFull, FullReason};

/// The old name of [`FullReason`].
///
/// Renamed because the crate root's [`Rejection`](crate::Rejection) now names
/// every reason one of this crate's layers ended a call; this enum is only
/// the bulkhead's part of it.
#[deprecated(note = "renamed to `FullReason`")]
pub type Rejection = FullReason;
