//! LIB-DOCS-PLACEHOLDER
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod builder;
mod error;
mod sync;

pub mod circuit_breaker;
pub mod classify;
pub mod metrics;

pub use crate::builder::ServiceBuilderExt;
pub use crate::error::{cause_ref, is_caused_by, BoxError, InvalidConfig};
