//! Errors produced by the bulkhead (defined in the shared core, so that
//! other layers can recognise them).

pub use crate::rejection::{BulkheadFull, Rejection};
