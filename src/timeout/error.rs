//! The errors of [`Timeout`](super::Timeout) and
//! [`WithDeadline`](super::WithDeadline) (defined in the shared core, so
//! that other layers can recognise them).

pub use crate::rejection::{DeadlineExceeded, Elapsed};
