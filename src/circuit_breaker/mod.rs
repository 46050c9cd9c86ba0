//! Circuit breaker: stop calling a backend that is failing, probe it now and
//! then, and resume when it answers again.
//!
//! DOCS-PLACEHOLDER

mod config;
mod handle;
mod keyed;
mod layer;
mod service;
mod state;
mod window;

pub mod error;
pub mod future;

pub use self::config::{CircuitBreakerBuilder, CircuitBreakerConfig, Window};
pub use self::handle::{CircuitBreakerHandle, CircuitBreakerSnapshot};

pub use self::layer::CircuitBreakerLayer;
pub use self::service::CircuitBreaker;
pub use self::state::{CircuitState, Transition, TransitionReason};
