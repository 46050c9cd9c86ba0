//! Retries with backoff, a retry budget, server hints and safe request replay.
//!
//! (Work in progress: the layer lands with issue #3.)

pub mod backoff;
pub mod budget;
#[cfg(feature = "http")]
pub mod body;
