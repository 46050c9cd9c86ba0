//! The latency histogram and `MetricsLayer`: exact counts under threads,
//! quantiles within the stated error, every outcome and rejection counted,
//! cancellation, virtual-time durations.

mod histogram;
mod layer;
