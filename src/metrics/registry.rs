//! [`Registry`]: the handles to export, in one place.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::export::{Collect, Samples};

/// The sources to export: every layer's handle you [`register`](Self::register),
/// rendered for Prometheus with [`render_prometheus`](Self::render_prometheus)
/// (and, with feature `metrics`, published to the `metrics` facade).
///
/// No global state: make one, register the handles, and serve its text
/// from your scrape endpoint. See the [module docs](crate::metrics#exporters).
///
/// # Clone
///
/// Cheap; clones share the sources (and the facade exporter's state).
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sources: Mutex<Vec<Arc<dyn Collect>>>,
    #[cfg(feature = "metrics")]
    pub(super) facade: super::facade::State,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source — any layer's handle, e.g. a
    /// [`MetricsHandle`](super::MetricsHandle),
    /// [`CircuitBreakerHandle`](crate::circuit_breaker::CircuitBreakerHandle)
    /// or [`ResilienceHandle`](crate::ResilienceHandle); returns `self` for
    /// chaining. A registry can hold another (never itself: collecting
    /// would not end).
    pub fn register(&self, source: impl Collect + 'static) -> &Self {
        lock(&self.inner.sources).push(Arc::new(source));
        self
    }

    /// How many sources are registered.
    pub fn len(&self) -> usize {
        lock(&self.inner.sources).len()
    }

    /// `true` when no source is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every registered source's samples now.
    pub fn samples(&self) -> Samples {
        let mut out = Samples::new();
        self.collect(&mut out);
        out
    }

    /// The samples of every registered source, in the Prometheus text
    /// format (0.0.4); see [`render_prometheus`](super::render_prometheus).
    pub fn render_prometheus(&self) -> String {
        super::prometheus::render(&self.samples())
    }

    #[cfg(feature = "metrics")]
    pub(super) fn facade(&self) -> &super::facade::State {
        &self.inner.facade
    }
}

/// A registry collects its sources, in the order they were registered.
impl Collect for Registry {
    fn collect(&self, out: &mut Samples) {
        // Clone the list so that no lock is held while sources are read.
        let sources = lock(&self.inner.sources).clone();
        for source in sources {
            source.collect(out);
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.len())
            .finish()
    }
}
