use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::CircuitBreakerConfig;
use super::handle::CircuitBreakerHandle;
use super::service::{CircuitBreaker, Nodes};
use super::state::Core;
use crate::classify::ErrorsAsFailures;

/// Wraps services in a [`CircuitBreaker`]; every service it makes shares one
/// breaker.
///
/// See the [module docs](super) for the semantics.
pub struct CircuitBreakerLayer<C = ErrorsAsFailures> {
    nodes: Nodes<C>,
    wait_when_open: bool,
}

impl CircuitBreakerLayer<ErrorsAsFailures> {
    /// One breaker with `config`, classifying every `Err` as a failure.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::with_classifier(config, ErrorsAsFailures)
    }
}

impl Default for CircuitBreakerLayer<ErrorsAsFailures> {
    /// One breaker with the default configuration.
    fn default() -> Self {
        Self::new(CircuitBreakerConfig::default())
    }
}

impl<C: Clone> CircuitBreakerLayer<C> {
    /// One breaker with `config` and the given classifier (for example
    /// `HttpClassifier`, feature `http`).
    pub fn with_classifier(config: CircuitBreakerConfig, classifier: C) -> Self {
        let core = Arc::new(Core::new(&config));
        Self {
            nodes: Nodes::new(core, classifier),
            wait_when_open: false,
        }
    }

    /// Makes the services wait in `poll_ready` until the breaker admits a
    /// call, instead of answering a rejected call with
    /// [`CircuitOpen`](super::error::CircuitOpen). See the module docs,
    /// "Backpressure", for when that is the better choice.
    pub fn wait_when_open(mut self) -> Self {
        self.wait_when_open = true;
        self
    }

    /// A handle on the shared breaker: state, manual control, metrics.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.nodes.core().clone())
    }
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes.clone(),
            wait_when_open: self.wait_when_open,
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", self.nodes.core())
            .field("wait_when_open", &self.wait_when_open)
            .finish()
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_nodes(inner, self.nodes.clone(), self.wait_when_open)
    }
}
