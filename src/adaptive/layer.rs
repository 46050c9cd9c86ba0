use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::algorithm::{Algorithm, Gradient};
use super::core::Core;
use super::handle::AdaptiveHandle;
use super::service::AdaptiveLimit;
use crate::bulkhead::BulkheadHandle;
use crate::classify::ErrorsAsFailures;
use crate::error::InvalidConfig;

/// The largest limit a bulkhead takes.
const MAX_LIMIT: usize = u32::MAX as usize;

/// Wraps services in an [`AdaptiveLimit`] that moves one bulkhead's limit;
/// every service it makes, and every clone of those, feeds the same
/// estimate.
///
/// `C` says which results are drops ([`Outcome::Failure`](crate::classify::Outcome)):
/// by default every `Err` ([`ErrorsAsFailures`]); see
/// [`classify`](Self::classify).
///
/// See the [module docs](super) for the semantics and where it goes.
pub struct AdaptiveLimitLayer<C = ErrorsAsFailures> {
    core: Arc<Core>,
    classify: C,
}

/// Builds an [`AdaptiveLimitLayer`]; from [`AdaptiveLimitLayer::builder`].
pub struct AdaptiveLimitBuilder {
    bulkhead: BulkheadHandle,
    algorithm: Algorithm,
    min_limit: usize,
    max_limit: usize,
    initial_limit: Option<usize>,
    name: Option<Arc<str>>,
}

impl AdaptiveLimitLayer {
    /// An adaptive limit on `bulkhead` with `algorithm` and the default
    /// bounds (1 to 1000, starting at the bulkhead's limit).
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the algorithm's field that is out of range.
    pub fn new(
        bulkhead: BulkheadHandle,
        algorithm: impl Into<Algorithm>,
    ) -> Result<Self, InvalidConfig> {
        Self::builder(bulkhead).algorithm(algorithm).build()
    }

    /// A builder for an adaptive limit on `bulkhead` (from
    /// [`BulkheadLayer::handle`](crate::bulkhead::BulkheadLayer::handle)).
    pub fn builder(bulkhead: BulkheadHandle) -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder {
            bulkhead,
            algorithm: Gradient::default().into(),
            min_limit: 1,
            max_limit: 1000,
            initial_limit: None,
            name: None,
        }
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Decides with `classify` which results are drops: an
    /// [`Outcome::Failure`](crate::classify::Outcome::Failure) is a drop,
    /// an `Outcome::Success` an RTT sample, an `Outcome::Ignored` neither.
    /// E.g. `HttpClassifier` (feature `http`) counts 5xx responses as
    /// drops.
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            core: self.core,
            classify,
        }
    }

    /// A handle on the limit: its value, the RTT estimates, the drops.
    pub fn handle(&self) -> AdaptiveHandle {
        AdaptiveHandle::new(self.core.clone())
    }
}

impl AdaptiveLimitBuilder {
    /// The algorithm: [`Gradient`] (the default) or
    /// [`Aimd`](super::Aimd).
    pub fn algorithm(mut self, algorithm: impl Into<Algorithm>) -> Self {
        self.algorithm = algorithm.into();
        self
    }

    /// The limit never goes under this (at least 1). Default 1.
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The limit never goes over this (at least `min_limit`, at most
    /// `u32::MAX`). Default 1000.
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// The limit to start from (in `[min_limit, max_limit]`). Default: the
    /// bulkhead's limit when the layer is built, brought into the bounds.
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.initial_limit = Some(n);
        self
    }

    /// A name for logs and metrics.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks the configuration and sets the bulkhead's limit to the
    /// initial one.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field: `adaptive.min_limit` (0),
    /// `adaptive.max_limit` (under `min_limit`, over `u32::MAX`),
    /// `adaptive.initial_limit` (outside the bounds), or the algorithm's
    /// (`adaptive.gradient.tolerance`, `adaptive.aimd.backoff_ratio`, …).
    pub fn build(self) -> Result<AdaptiveLimitLayer, InvalidConfig> {
        if self.min_limit == 0 {
            return Err(InvalidConfig::new(
                "adaptive.min_limit",
                "must be at least 1, got 0",
            ));
        }
        if self.max_limit < self.min_limit || self.max_limit > MAX_LIMIT {
            return Err(InvalidConfig::new(
                "adaptive.max_limit",
                format!(
                    "must be in [min_limit = {}, {MAX_LIMIT}], got {}",
                    self.min_limit, self.max_limit
                ),
            ));
        }
        let initial = match self.initial_limit {
            Some(n) if n < self.min_limit || n > self.max_limit => {
                return Err(InvalidConfig::new(
                    "adaptive.initial_limit",
                    format!(
                        "must be in [{}, {}], got {n}",
                        self.min_limit, self.max_limit
                    ),
                ))
            }
            Some(n) => n,
            None => self
                .bulkhead
                .max_concurrent()
                .clamp(self.min_limit, self.max_limit),
        };
        self.algorithm.check()?;
        let core = Core::new(
            self.name,
            self.bulkhead,
            self.algorithm,
            self.min_limit,
            self.max_limit,
            initial,
        );
        Ok(AdaptiveLimitLayer {
            core: Arc::new(core),
            classify: ErrorsAsFailures,
        })
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = AdaptiveLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit::new(inner, self.core.clone(), self.classify.clone())
    }
}

impl<C: Clone> Clone for AdaptiveLimitLayer<C> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<C> fmt::Debug for AdaptiveLimitLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("limit", &self.handle())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for AdaptiveLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitBuilder")
            .field("algorithm", &self.algorithm)
            .field("min_limit", &self.min_limit)
            .field("max_limit", &self.max_limit)
            .field("initial_limit", &self.initial_limit)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
