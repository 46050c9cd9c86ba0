//! Fallback: a response when the call failed or was rejected.
//!
//! TODO docs

#[cfg(feature = "http")]
mod body;
pub mod error;
pub mod future;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod last_good;
mod layer;
mod policy;
mod service;

#[cfg(feature = "http")]
pub use self::body::ResponseBody;
#[cfg(feature = "http")]
pub use self::http::StaticResponse;
#[cfg(feature = "http")]
pub use self::last_good::{LastGood, LastGoodBuilder, MethodPathQuery};
pub use self::layer::FallbackLayer;
pub use self::policy::{CloneRequest, Failed, Recover, RequestKey, WithKey};
pub use self::service::Fallback;
