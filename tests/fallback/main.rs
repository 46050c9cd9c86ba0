//! The fallback layer.
//!
//! * `outcomes`: the fallback runs on exactly the outcomes configured — a
//!   table of every kind of outcome against every configuration;
//! * `failing`: a fallback that errs or panics is reported as
//!   `FallbackFailed`, the original reachable;
//! * `cancel`: a dropped response future never runs the fallback;
//! * `request`: `with_request` and `with_key` hand the fallback the right
//!   request or key;
//! * `static_response`, `last_good`: the `http` fallbacks;
//! * `traits`: `Send + Sync + Clone` and `Debug`.
#![cfg(feature = "http")]

mod cancel;
mod failing;
mod last_good;
mod outcomes;
mod request;
mod static_response;
mod traits;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts how often a fallback ran.
#[derive(Debug, Clone, Default)]
pub struct Runs(Arc<AtomicUsize>);

impl Runs {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}
