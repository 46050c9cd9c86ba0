//! Retries with backoff, a retry budget, server hints and safe request replay.
//!
//! (Module docs: see the end of this work.)

pub mod backoff;
#[cfg(feature = "http")]
pub mod body;
pub mod budget;
mod config;
pub mod future;
mod handle;
mod layer;
mod policy;
mod replay;
mod service;

pub use self::backoff::{Backoff, Delays, Jitter};
pub use self::budget::{BudgetSnapshot, RetryBudget, Withdrawal};
pub use self::config::{RetryConfig, RetryConfigBuilder};
pub use self::handle::{RetryHandle, RetrySnapshot};
pub use self::layer::RetryLayer;
#[cfg(feature = "http")]
pub use self::policy::{GrpcRetryOn, HttpRetryOn};
pub use self::policy::{RetryFailures, RetryIf, RetryOn, Verdict};
#[cfg(feature = "reqwest")]
pub use self::replay::ReqwestReplay;
pub use self::replay::{CloneRequest, CloneWithDeadline, NotReplayable, Replay};
#[cfg(feature = "http")]
pub use self::replay::{HttpReplay, HttpStash};
pub use self::service::Retry;
