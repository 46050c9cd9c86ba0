//! The error of [`RateLimit`](super::RateLimit): [`RateLimited`], a call
//! that came sooner than the rate allows.

pub use crate::rejection::RateLimited;
